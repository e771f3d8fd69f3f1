"""`audio diarize --db STORE`: the store's rules for naming diarized speakers (store/naming.py
does the naming). As for `audio identify`: without a typed --model the store's model is used
(cli.store.store_model), its weights must be the store's, and the speakers must have been
enrolled with that model; a store that does not exist or holds no speakers is an error."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from audio_cli.cli.options import db_folder

if TYPE_CHECKING:
    from audio_cli.store.naming import Namer

NamesDbOpt = Annotated[Path | None, typer.Option(
    "--db", metavar="STORE", callback=db_folder,
    help="Name the speakers enrolled in this store (`audio enroll`) where their voices "
    "match; the others keep their SPEAKER_xx labels.")]


def store_namer(ctx: typer.Context, model: str, db: Path) -> tuple[str, Namer]:
    """The model to diarize with and the Namer of the store `db`, checked before any
    recording is read: StoreError (no such store, not a store, no speakers enrolled),
    ModelError (the store's weights differ, no speaker enrolled with this model)."""
    from audio_cli.cli.store import check_store_model, note_skipped, store_model
    from audio_cli.pipeline.handle import open_model
    from audio_cli.store.db import Store
    from audio_cli.store.naming import Namer
    from audio_cli.store.settings import Made

    with Store(db, readonly=True):  # no such store, or not one: said before anything else
        pass
    model, expected = store_model(ctx, model, db, "exemplars")
    identity = open_model(model)  # the model's identity: no engine is built
    check_store_model(identity, expected, db)
    with Store(db, readonly=True) as store:
        # diarization embeds speech only (segmentation or voice-activity detection) and
        # runs the network at float32: exemplars enrolled with --vad are made alike
        namer = Namer(store, identity, Made(vad=True))
    note_skipped(namer.skipped, identity)
    return model, namer
