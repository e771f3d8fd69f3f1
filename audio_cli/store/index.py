"""Voice search's index: recordings embedded into the store incrementally (ranked: ranking.py)."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from audio_cli.frontend.folders import walk_audio
from audio_cli.pipeline.options import EmbedOptions
from audio_cli.pipeline.results import EmbeddingResult, InputFailure
from audio_cli.store import ann
from audio_cli.store.checks import vector_problem
from audio_cli.store.db import Store, now, pack
from audio_cli.store.settings import Made, check_adding, warn
from audio_cli.store.vectors import store_state, sync
from engines.errors import InputAudioError

if TYPE_CHECKING:
    from audio_cli.pipeline.speaker import SpeakerEmbedder

COMMIT_EVERY = 16  # results per write transaction
COMMIT_SECONDS = 2.0  # ... or this long since the last commit, whichever comes first


@dataclass
class IndexReport:
    """What one `index` run did."""

    found: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    pruned: int = 0
    failures: list[InputFailure] = field(default_factory=list)


def find_audio(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[InputFailure]]:
    """Audio files under each path (files given by name are taken whatever their suffix), and
    the entries of folders that are not regular files (FIFOs, sockets, devices, dangling
    links: never opened), as failures."""
    found: dict[Path, None] = {}
    skipped: dict[str, InputFailure] = {}
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        if path.is_file():
            found[path] = None
        elif path.is_dir():
            for entry in walk_audio(path):
                if entry.problem is None:
                    found[Path(entry.path)] = None
                else:
                    skipped[entry.path] = InputFailure(entry.path,
                                                       InputAudioError(entry.message))
        else:
            raise InputAudioError(f"{path}: no such file or directory")
    return list(found), list(skipped.values())


def _signature(path: Path) -> tuple[int, int] | InputFailure:
    """(size, mtime_ns) of a file, or a failure if it went away (or cannot be seen) meanwhile."""
    try:
        st = path.stat()
    except OSError as exc:
        return InputFailure(str(path), InputAudioError(f"{path}: {exc.strerror or exc}"))
    return st.st_size, st.st_mtime_ns


def _under(path: str, roots: list[Path]) -> bool:
    return any(path == str(r) or path.startswith(str(r).rstrip(os.sep) + os.sep) for r in roots)


# One recording's row, added or replacing the model's row of that path: (path, size, mtime_ns,
# model_id, engine, duration, created, vector, vad, precision).
UPSERT_RECORDING = (
    "INSERT INTO recordings (path, size, mtime_ns, model_id, engine, duration, created, "
    "vector, vad, precision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (model_id, path) DO UPDATE SET size = excluded.size, "
    "mtime_ns = excluded.mtime_ns, engine = excluded.engine, duration = excluded.duration, "
    "created = excluded.created, vector = excluded.vector, vad = excluded.vad, "
    "precision = excluded.precision")


def signatures_of(conn: sqlite3.Connection, model: int, made: Made | None = None
                  ) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of the model's indexed recordings; with `made` (VAD), a
    recording whose vector an earlier VAD rule made gets no signature, so that indexing it
    again replaces it."""
    stale = made is not None and made.vad
    return {p: (-1, -1) if stale and v not in (None, 0, made.vad_column) else (s, m)
            for p, s, m, v in conn.execute(
                "SELECT path, size, mtime_ns, vad FROM recordings WHERE model_id = ?", (model,))}


def index_paths(store: Store, speaker: SpeakerEmbedder, paths: list[str],
                options: EmbedOptions, prune: bool = False,
                progress: Callable[[int, int], None] | None = None) -> IndexReport:
    """Embed new or changed audio under `paths` into the store, committing in small steps.
    With `options.vad`, only each file's speech; how vectors are made (VAD, precision) is
    recorded, and refused if the model's recordings in the store were made the other way
    (store.settings.check_adding)."""
    identity = speaker.model
    made = Made(options.vad, speaker.precision)
    files, skipped = find_audio(paths)
    report = IndexReport(found=len(files) + len(skipped), failures=list(skipped))
    with store.write() as conn:
        model = store.model_row(conn, identity.name, identity.digest, identity.dim,
                                identity.frontend)
        warning = check_adding(conn, "recordings", model, identity.name, made, "index")
        known = signatures_of(conn, model, made)
    warn(warning)
    todo, signatures = [], {}
    for path in files:
        sig = _signature(path)
        if isinstance(sig, InputFailure):
            report.failures.append(sig)
            continue
        signatures[str(path)] = sig
        if known.get(str(path)) == sig:
            report.unchanged += 1
        else:
            todo.append(str(path))
    pending: list[EmbeddingResult] = []
    last_commit = time.monotonic()

    def commit() -> None:
        nonlocal last_commit
        with store.write() as conn:
            if pending:  # another process may have indexed the other way meanwhile
                check_adding(conn, "recordings", model, identity.name, made, "index")
            for r in pending:
                size, mtime = signatures[r.file]
                conn.execute(
                    UPSERT_RECORDING,
                    (r.file, size, mtime, model, r.engine, r.duration, now(),
                     pack(r.embedding), made.vad_column, made.precision))
                if r.file in known:
                    report.updated += 1
                else:
                    report.added += 1
        pending.clear()
        last_commit = time.monotonic()

    results = speaker.embed_sources(todo, options.min_duration, options.vad)
    for done, item in enumerate(results, start=1):
        problem = None if isinstance(item, InputFailure) else vector_problem(
            item.embedding, identity.dim)
        if isinstance(item, InputFailure):
            report.failures.append(item)
        elif problem is not None:  # never stored: it would match nothing, or everything
            report.failures.append(InputFailure(item.file, InputAudioError(
                f"{item.file}: its vector holds {problem}; not stored")))
        else:
            pending.append(item)
        if len(pending) >= COMMIT_EVERY or time.monotonic() - last_commit > COMMIT_SECONDS:
            commit()
        if progress is not None:
            progress(done, len(todo))
    commit()
    if prune:
        report.pruned = prune_missing(store, [Path(p).expanduser().absolute() for p in paths],
                                      set(signatures))
    sync_files(store, identity.digest, identity.dim)
    return report


def sync_files(store: Store, digest: str, dim: int) -> None:
    """Bring the model's vector files (and approximate-search graph) in step with SQLite."""
    view = sync(store, digest, dim)
    if view is None:
        return
    with store.read() as conn:
        state = store_state(conn)
        if state is not None and state[1] == view.log:
            try:
                ann.update(conn, store, state[0], digest, view)
            except (OSError, RuntimeError, ValueError) as exc:  # usearch reports as RuntimeError
                warnings.warn(f"approximate-search graph not written ({exc})", stacklevel=2)


def prune_missing(store: Store, roots: list[Path], present: set[str]) -> int:
    """Drop recordings (of any model) under `roots` that are no longer there."""
    with store.write() as conn:
        gone = [(i,) for i, path in conn.execute("SELECT id, path FROM recordings")
                if _under(path, roots) and path not in present]
        conn.executemany("DELETE FROM recordings WHERE id = ?", gone)
    return len(gone)


def stderr_progress(label: str) -> Callable[[int, int], None] | None:
    """A one-line progress counter on stderr when it is a terminal, else None."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        sys.stderr.write(f"\r{label} {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return show
