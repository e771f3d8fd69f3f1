"""`audio search`: indexed recordings ranked by voice, for one query or many in one call."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Annotated

import numpy as np
import typer

from audio_cli.cli import messages
from audio_cli.cli.embed import is_single_file
from audio_cli.cli.errors import combined_status
from audio_cli.cli.messages import plural
from audio_cli.cli.options import (
    DbOpt,
    JsonOpt,
    check_inputs_exist,
    cosine,
    embedding_options,
)
from audio_cli.cli.store import check_store_model, embed_all, load, made, store_model
from audio_cli.pipeline.options import EmbedOptions

# Registered on the root command by audio_cli.cli.main (LAZY_COMMANDS).
app = typer.Typer()


def _record(file: str, identity, answer, hits) -> dict:
    return {"query": file, "model": identity.name, "model_digest": identity.digest,
            "mode": answer.mode, "results": [{"path": h.path, "score": h.score,
                                              "duration": h.duration} for h in hits]}


def _text(hits) -> str:
    return "\n".join(f"{h.score:.4f}  {h.path}" for h in hits) or "(no match)"


@app.command("search")
@embedding_options
def search(
    ctx: typer.Context,
    queries: Annotated[list[str], typer.Argument(
        metavar="FILE...", help="Recordings of the voices to look for: files, folders "
        "(recursive), @LIST files naming them, or - (stdin). One file: its results; more: "
        "each query's results in turn (with --json, one JSON line per query).")],
    options: EmbedOptions,
    top: Annotated[int, typer.Option(metavar="N", min=1, help="How many recordings to list.")
                   ] = 10,
    min_score: Annotated[float | None, typer.Option(
        metavar="COSINE", callback=cosine, help="Hide results below this cosine.")
    ] = None,
    exact: Annotated[bool, typer.Option(
        "--exact", help="Exact search even where the store is large enough for approximate "
        "search.")] = False,
    db: DbOpt = None, json_output: JsonOpt = False,
) -> None:
    """Indexed recordings ranked by how close their voice is to each query's."""
    from audio_cli.cli.inputs import expand_inputs
    from audio_cli.pipeline.results import InputFailure
    from audio_cli.store.db import Store
    from audio_cli.store.ranking import search_many
    from audio_cli.store.settings import warn_query

    single = is_single_file(queries)  # one query named directly: one document, as of old
    if single:
        check_inputs_exist(queries)
        items = []
    else:
        items = expand_inputs(queries)
    model, expected = store_model(ctx, options.model, db, "recordings")
    options = dataclasses.replace(options, model=model)
    with Store(db, readonly=True) as store:
        speaker = load(options)
        identity = speaker.model
        check_store_model(identity, expected, db)
        warn_query(store, "recordings", identity.digest, identity.name, made(options))
        failures = []
        if single:
            results = embed_all(speaker, queries, options)
        else:
            failures = [InputFailure(i.path, i.error) for i in items if i.error is not None]
            results = []
            sources = [i.path for i in items if i.error is None]
            for item in speaker.embed_sources(sources, options.min_duration, options.vad):
                (failures if isinstance(item, InputFailure) else results).append(item)
        answer = None
        if results:
            matrix = np.stack([r.embedding for r in results])
            answer = search_many(store, identity, matrix, top, min_score, force_exact=exact)
    for failure in failures:
        messages.error(failure.message)
    if answer is not None:
        why = f" ({answer.note})" if answer.note else ""
        messages.note(f"{answer.mode} search over {plural(answer.vectors, 'vector')}{why}")
        out = []
        for result, hits in zip(results, answer.hits, strict=True):
            if json_output:
                out.append(json.dumps(_record(result.file, identity, answer, hits)))
            elif single:
                out.append(_text(hits))
            else:
                out.append(f"# {result.file}\n{_text(hits)}\n")
        sys.stdout.write("\n".join(out).rstrip("\n") + "\n")
    if failures:
        raise typer.Exit(combined_status(f.error for f in failures))

