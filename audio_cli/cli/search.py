"""`audio search`: indexed recordings ranked by voice, for one query or many in one call."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import numpy as np
import typer

from audio_cli.cli import main as checks
from audio_cli.cli.embed import plural
from audio_cli.cli.store import (
    DbOpt,
    EngineOpt,
    JsonOpt,
    MinDurOpt,
    ModelOpt,
    ThreadsOpt,
    VadOpt,
    _embedder,
)
from audio_cli.models.registry import DEFAULT_MODEL

# Registered on the root command by audio_cli.cli.main (LAZY_COMMANDS).
app = typer.Typer()


def _single(args: list[str]) -> bool:
    """One query named directly (a file or `-`): the one-document output of old."""
    return len(args) == 1 and not args[0].startswith("@") and not os.path.isdir(args[0])


def _record(file: str, embedder, answer, hits) -> dict:
    return {"query": file, "model": embedder.name, "model_digest": embedder.digest,
            "mode": answer.mode, "results": [{"path": h.path, "score": h.score,
                                              "duration": h.duration} for h in hits]}


def _text(hits) -> str:
    return "\n".join(f"{h.score:.4f}  {h.path}" for h in hits) or "(no match)"


@app.command("search")
def search(
    queries: Annotated[list[str], typer.Argument(
        metavar="FILE...", help="Recordings of the voices to look for: files, folders "
        "(recursive), @LIST files naming them, or - (stdin). One file: its results; more: "
        "each query's results in turn (with --json, one JSON line per query).")],
    top: Annotated[int, typer.Option(metavar="N", min=1, help="How many recordings to list.")
                   ] = 10,
    min_score: Annotated[float | None, typer.Option(
        metavar="COSINE", callback=checks.cosine, help="Hide results below this cosine.")
    ] = None,
    exact: Annotated[bool, typer.Option(
        "--exact", help="Exact search even where the store is large enough for approximate "
        "search.")] = False,
    db: DbOpt = None, model: ModelOpt = DEFAULT_MODEL, engine: EngineOpt = "auto",
    threads: ThreadsOpt = None, min_duration: MinDurOpt = 0.5, json_output: JsonOpt = False,
    vad: VadOpt = False, precision: checks.PrecisionOpt = "float32",
) -> None:
    """Indexed recordings ranked by how close their voice is to each query's."""
    from audio_cli.cli.inputs import expand_inputs
    from audio_cli.pipeline.speaker import InputFailure
    from audio_cli.store.db import Store
    from audio_cli.store.ranking import search_many
    from audio_cli.store.settings import warn_query

    single = _single(queries)
    if single:
        checks.check_inputs_exist(queries)
        items = []
    else:
        items = expand_inputs(queries)
    with Store(db, readonly=True) as store:
        embedder = _embedder(model, engine, threads, precision)
        warn_query(store, "recordings", embedder.digest, embedder.name, embedder.made(vad))
        failures = []
        if single:
            results = embedder.embed_all(queries, min_duration, vad)
        else:
            failures = [(i.path, str(i.error)) for i in items if i.error is not None]
            results = []
            sources = [i.path for i in items if i.error is None]
            for item in embedder.speaker.embed_sources(sources, min_duration, vad):
                if isinstance(item, InputFailure):
                    failures.append((item.file, item.message))
                else:
                    results.append(item)
        answer = None
        if results:
            matrix = np.stack([r.embedding for r in results])
            answer = search_many(store, embedder, matrix, top, min_score, force_exact=exact)
    for _, message in failures:
        sys.stderr.write(f"audio: error: {message}\n")
    if answer is not None:
        why = f" ({answer.note})" if answer.note else ""
        sys.stderr.write(f"audio: {answer.mode} search over {plural(answer.vectors, 'vector')}"
                         f"{why}\n")
        out = []
        for result, hits in zip(results, answer.hits, strict=True):
            if json_output:
                out.append(json.dumps(_record(result.file, embedder, answer, hits)))
            elif single:
                out.append(_text(hits))
            else:
                out.append(f"# {result.file}\n{_text(hits)}\n")
        sys.stdout.write("\n".join(out).rstrip("\n") + "\n")
    if failures:
        raise typer.Exit(3)

