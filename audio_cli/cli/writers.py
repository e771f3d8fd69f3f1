"""`--output FILE`: write embeddings to .npz, .npy (+ a row-order sidecar), .jsonl or .parquet,
atomically.

Every file is written under a temporary name beside its destination and moved into place
only at the end, so an interrupted run leaves nothing behind; an existing file is never
replaced unless `force` is set. A write the file system refuses (no space left, an I/O
error, ...) is one line naming the output (engines.files.disk_errors). Failed inputs appear
only in .jsonl and .parquet (as error records/rows).

Layouts (also in docs/cli.md):
- .npz, whole files: key = the path as given (`stdin` for -), value = (dim,) float32 vector;
  with windows: `PATH` = (n, dim) float32 vectors, `PATH:start` and `PATH:end` = (n,)
  float64 seconds; with --vad a window with too little speech is a row of NaN.
- .npy: one (rows, dim) float32 matrix; `FILE.paths.txt` lists the row order, one path per
  line (with windows: `path<TAB>start<TAB>end`).
- .jsonl: the same records as `--json`.
- .parquet: one row per input (per window), columns in audio_cli/pipeline/parquet.py; needs
  pyarrow (the `parquet` extra).
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from pathlib import Path

import numpy as np

from audio_cli.cli.outcomes import Outcome, json_lines
from audio_cli.cli.signals import signals_held
from engines.errors import UsageError
from engines.files import TargetExists, disk_errors, publish, scratch_file

FORMATS = (".npz", ".npy", ".jsonl", ".parquet")
SIDECAR_SUFFIX = ".paths.txt"


def destinations(path: Path) -> list[Path]:
    """Every file an output path stands for (an .npy brings its sidecar)."""
    if path.suffix.lower() == ".npy":
        return [path, path.with_name(path.name + SIDECAR_SUFFIX)]
    return [path]


def check_output(path: str, force: bool, formats: tuple[str, ...] = FORMATS) -> Path:
    """Refuse, before any work, an unknown format (not in `formats`), a missing folder or
    an existing file."""
    out = Path(path)
    if out.suffix.lower() not in formats:
        raise UsageError(f"--output {path}: unknown format (use a name ending in "
                         f"{', '.join(formats)})")
    if not out.parent.is_dir():
        raise UsageError(f"--output {path}: the folder {out.parent} does not exist")
    if out.suffix.lower() == ".parquet":
        from audio_cli.pipeline.parquet import require_pyarrow

        require_pyarrow()
    for target in destinations(out):
        if target.is_dir():
            raise UsageError(f"--output: {target} is a directory")
        if target.exists() and not force:
            raise UsageError(f"--output: {target} exists; not overwriting it (pass --force)")
    return out


class OutputFile:
    """Collects outcomes and writes them to `path` on `commit()` (nothing on `discard()`)."""

    def __init__(self, path: Path, force: bool, model: str, engine: str, digest: str = "",
                 dim: int = 0):
        self.path, self.force, self.model, self.engine = path, force, model, engine
        self.digest, self.dim = digest, dim  # dim: the vector length (for .parquet)
        self.count = 0  # embeddings (vectors) written
        self._temps: dict[Path, Path] = {}
        self._jsonl = self._npz = self._parquet = None
        self._rows: list[np.ndarray] = []
        self._sidecar: list[str] = []

    @classmethod
    def of(cls, path: Path, force: bool, speaker) -> OutputFile:
        """The output of a run of `speaker` (a pipeline.speaker.SpeakerEmbedder)."""
        return cls(path, force, speaker.model_id, speaker.engine_name, speaker.model.digest,
                   speaker.model.dim)

    def start(self) -> None:
        """Open the scratch file(s) a streamed format is written to (call inside the block
        whose clean-up calls `discard()`)."""
        with disk_errors(self.path):
            self._start()

    def _start(self) -> None:
        kind = self.path.suffix.lower()
        if kind == ".jsonl":
            self._jsonl = open(self._temp(self.path), "w", encoding="utf-8")  # noqa: SIM115
        elif kind == ".npz":
            self._npz = zipfile.ZipFile(self._temp(self.path), "w", allowZip64=True)
        elif kind == ".parquet":
            from audio_cli.pipeline.parquet import ParquetRows

            self._parquet = ParquetRows(self._temp(self.path), self.dim)

    def _temp(self, target: Path) -> Path:
        with signals_held():  # the scratch file is known to discard() before a signal acts
            self._temps[target] = scratch_file(target)
        return self._temps[target]

    def add(self, outcome: Outcome) -> None:
        """Record one input's outcome."""
        with disk_errors(self.path):
            self._add(outcome)

    def _add(self, outcome: Outcome) -> None:
        if self._jsonl is not None:
            self._jsonl.write(json_lines(outcome, self.model, self.engine, self.digest))
        if self._parquet is not None:
            for row in outcome_rows(outcome, self.model, self.engine, self.digest,
                                    file_signature(outcome.file)):
                self._parquet.add(row)
                self.count += row.get("embedding") is not None
            return
        if outcome.error is not None:
            return
        if outcome.windows is not None:
            dim = next((len(w.embedding) for w in outcome.windows if w.embedding is not None), 0)
            vectors = np.stack([np.full(dim, np.nan) if w.embedding is None else w.embedding
                                for w in outcome.windows]).astype(np.float32)  # NaN: no speech
            starts = np.array([w.start for w in outcome.windows], dtype=np.float64)
            ends = np.array([w.end for w in outcome.windows], dtype=np.float64)
            self._store(outcome.file, vectors, {"start": starts, "end": ends})
            self._sidecar += [f"{outcome.file}\t{s:.6f}\t{e:.6f}"
                              for s, e in zip(starts, ends, strict=True)]
        else:
            self._store(outcome.file, outcome.result.embedding.astype(np.float32)[None], {})
            self._sidecar.append(outcome.file)

    def _store(self, key: str, vectors: np.ndarray, extras: dict[str, np.ndarray]) -> None:
        self.count += len(vectors)
        if self._npz is not None:
            self._npz_array(key, vectors if extras else vectors[0])
            for name, values in extras.items():
                self._npz_array(f"{key}:{name}", values)
        elif self._jsonl is None:
            self._rows.append(vectors)

    def _npz_array(self, key: str, array: np.ndarray) -> None:
        with self._npz.open(key + ".npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)

    def commit(self) -> None:
        """Finish the temporary files and move them into place."""
        with disk_errors(self.path):
            self._commit()

    def _commit(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._npz is not None:
            self._npz.close()
        if self._parquet is not None:
            self._parquet.close()
        if self.path.suffix.lower() == ".npy":
            with open(self._temp(self.path), "wb") as handle:  # a path would gain ".npy"
                np.save(handle, np.concatenate(self._rows), allow_pickle=False)
            sidecar = destinations(self.path)[1]
            self._temp(sidecar).write_text("".join(f"{p}\n" for p in self._sidecar),
                                           encoding="utf-8")
        for target, temp in self._temps.items():
            try:
                publish(temp, target, replace=self.force)
            except TargetExists:
                raise UsageError(f"--output: {target} appeared during the run; not "
                                 "overwriting it (pass --force)") from None
        self._temps.clear()

    def discard(self) -> None:
        """Delete the temporary files (an interrupted or empty run writes nothing)."""
        for handle in (self._jsonl, self._npz, getattr(self._parquet, "writer", None)):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
        for temp in self._temps.values():
            temp.unlink(missing_ok=True)
        self._temps.clear()




def file_signature(path: str) -> tuple[int | None, int | None]:
    """(size, mtime_ns) of an input file as it is now; (None, None) for stdin or a vanished
    file."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None, None
    return st.st_size, st.st_mtime_ns


def outcome_rows(outcome: Outcome, model: str, engine: str, digest: str,
                 signature: tuple[int | None, int | None]) -> list[dict]:
    """The Parquet rows of one input (audio_cli/pipeline/parquet.py): one for a whole file or
    a failure, one per window."""
    size, mtime = signature
    base = {"path": outcome.file, "size": size, "mtime_ns": mtime, "model": model,
            "model_digest": digest, "engine": engine}
    if outcome.error is not None:
        return [{**base, "error": outcome.message}]
    if outcome.windows is None:
        r = outcome.result
        return [{**base, "duration": r.duration, "speech": r.speech,
                 "dimension": r.dimension, "embedding": r.embedding}]
    duration = max(w.end for w in outcome.windows)
    return [{**base, "duration": duration, "start": w.start, "end": w.end, "speech": w.speech,
             "dimension": None if w.embedding is None else len(w.embedding),
             "embedding": w.embedding} for w in outcome.windows]
