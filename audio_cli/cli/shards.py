"""A folder of Parquet shards that a `--ray` run writes and a rerun resumes.

Layout: `DIR.parquet/part-<milliseconds>-<random>.parquet`, each shard a complete Parquet file
of rows (embeddings: audio_cli/pipeline/parquet.py; turns: cli/diarize.py), written under a
hidden scratch name and published in one step, so a shard is either whole or absent. pyarrow,
duckdb and pandas read the folder as one table and skip the hidden scratch files.

Resuming: an input whose path, size, modification time and identity (the model's digest, or
the diarization settings') match a row already in a shard is not run again. A row of an input
that changed since, or that failed, is removed from its shard (the shard is rewritten,
atomically) before the run takes the input again, so every input has its rows in exactly one
shard. One run writes to a folder at a time.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from audio_cli.cli.signals import signals_held
from engines.errors import UsageError
from engines.files import new_file, publish, scratch_file

SHARD_ROWS = 20000  # rows in one shard at most (AUDIO_RAY_SHARD_ROWS overrides it)
ROWS_ENV = "AUDIO_RAY_SHARD_ROWS"
SHARD_SECONDS = 60.0  # a shard is published at least this often (what a kill can lose)
SHARD_PREFIX = "part-"
SCRATCH_PREFIX = f".{SHARD_PREFIX}"


def shard_files(folder: Path) -> list[Path]:
    """The published shards of a folder, oldest first."""
    return sorted(p for p in folder.glob(f"{SHARD_PREFIX}*.parquet") if p.is_file())


def check_folder(folder: Path) -> None:
    """Refuse, before any work, an output that is a file or whose parent folder is missing."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--output {folder}: a file; with --ray the output is a folder of "
                         "Parquet shards (name a new or earlier --ray output)")
    if not folder.parent.is_dir():
        raise UsageError(f"--output {folder}: the folder {folder.parent} does not exist")


def prepare_folder(folder: Path, force: bool) -> bool:
    """Create the output folder, or open an existing one: scratch files of a killed run are
    removed, and with `force` every shard too. True if it was created."""
    check_folder(folder)
    created = not folder.exists()
    folder.mkdir(exist_ok=True)
    stale = list(folder.glob(f"{SCRATCH_PREFIX}*.part"))
    if force:
        stale += shard_files(folder)
    for path in stale:
        path.unlink(missing_ok=True)
    return created


@dataclass(frozen=True)
class Keys:
    """The columns a resumed run reads from the shards: the input's path, its identity (a
    folder of another identity is refused, saying `what` it holds); size, mtime_ns and error
    are the same in every kind of row."""

    path: str = "path"
    identity: str = "model_digest"
    what: str = "vectors of another model (weights"  # ... {digests}); name a new folder
    kind: str = "an embedding file"  # what a shard without these columns is not

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.path, "size", "mtime_ns", self.identity, "error")


EMBEDDINGS = Keys()


@dataclass
class Done:
    """What the shards already hold: the keys of inputs embedded, shards to rewrite."""

    keys: set[tuple[str, int, int]] = field(default_factory=set)  # (path, size, mtime_ns)
    rows: int = 0


def done_inputs(folder: Path, digest: str, wanted: dict[str, tuple[int, int] | None],
                keys: Keys = EMBEDDINGS) -> Done:
    """The inputs already written with this identity (`digest`). `wanted`: path ->
    (size, mtime_ns) of this run's inputs (None: cannot be run). Rows of these paths that
    failed or are out of date are removed from their shards here."""
    from audio_cli.pipeline.parquet import open_rows

    done = Done()
    for shard in shard_files(folder):
        table = open_rows(shard, keys.columns, keys.kind)
        digests = {d for d in table.column(keys.identity).to_pylist() if d}
        if digests - {digest}:
            raise UsageError(f"--output {folder}: holds {keys.what} "
                             f"{', '.join(sorted(digests - {digest}))}); name a new folder "
                             "or pass --force to replace them")
        keep = []
        for path, size, mtime, error in zip(*(table.column(c).to_pylist() for c in
                                              (keys.path, "size", "mtime_ns", "error")),
                                            strict=True):
            current = wanted.get(path, "absent")
            stale = current != "absent" and (error is not None or current != (size, mtime))
            keep.append(not stale)
            if not stale and current != "absent":
                done.keys.add((path, size, mtime))
        done.rows += sum(keep)
        if not all(keep):
            _rewrite(shard, keep)
    return done


def _positive(text: str | None, default: int) -> int:
    """A positive whole number from an environment variable, else the default."""
    if text is None:
        return default
    if not text.strip().isdigit() or int(text) < 1:
        raise UsageError(f"{ROWS_ENV}={text}: must be a whole number above 0")
    return int(text)


def _rewrite(shard: Path, keep: list[bool]) -> None:
    """Replace a shard by its rows where `keep` is True (removed if none is)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not any(keep):
        shard.unlink()
        return
    table = pq.read_table(shard).filter(pa.array(keep))
    with new_file(shard, replace=True) as draft:
        pq.write_table(table, draft.path, compression="zstd")


class ShardWriter:
    """Rows (Arrow tables) appended to a scratch shard, published every SHARD_ROWS rows or
    SHARD_SECONDS; `discard()` drops the unpublished one (an interrupted run)."""

    def __init__(self, folder: Path, schema):
        self.folder, self.schema = folder, schema  # the rows' Arrow schema
        self.limit = _positive(os.environ.get(ROWS_ENV), SHARD_ROWS)
        self.shards = 0  # published by this run
        self._writer = self._scratch = self._target = None
        self._rows, self._opened = 0, 0.0

    def _open(self) -> None:
        import pyarrow.parquet as pq

        name = f"{SHARD_PREFIX}{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}.parquet"
        self._target = self.folder / name
        with signals_held():  # the scratch name is known to discard() before a signal acts
            self._scratch = scratch_file(self._target)
        self._writer = pq.ParquetWriter(str(self._scratch), self.schema,
                                        compression="zstd")
        self._rows, self._opened = 0, time.monotonic()

    def add(self, table) -> None:
        """Append rows; publish the shard when it is full or old enough."""
        if len(table) == 0:
            return
        if self._writer is None:
            self._open()
        self._writer.write_table(table)
        self._rows += len(table)
        if self._rows >= self.limit or time.monotonic() - self._opened >= SHARD_SECONDS:
            self.publish()

    def publish(self) -> None:
        """Finish the open shard and move it into place."""
        if self._writer is None:
            return
        self._writer.close()
        publish(self._scratch, self._target, replace=False)
        self._writer = self._scratch = None
        self.shards += 1

    def discard(self) -> None:
        """Delete the unpublished shard."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._scratch.unlink(missing_ok=True)
                self._writer = self._scratch = None
