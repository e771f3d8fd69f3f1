"""Embeddings as Parquet (pyarrow, an optional extra): one row per input, or per window.

Columns (also in docs/scale.md):
- path (string): the input as given (`stdin` for -); size (int64), mtime_ns (int64): the file's
  size and modification time when it was embedded (null for stdin);
- duration (float64): seconds of the recording; start, end (float64): the window's seconds
  (null for a whole file); speech (float64): seconds of speech with --vad (else null);
- model, model_digest, engine (string): the model's name, its identity (the weights digest the
  store records) and the engine that ran it; dimension (int32);
- embedding (fixed_size_list<float32>[dim]): the unit vector; null for a failed input and,
  with --vad, for a window with too little speech;
- error (string): the one-line message of a failed input (null otherwise).

pyarrow and pandas read a file and a folder of such files alike, duckdb a file or the folder's
`DIR/*.parquet`; unfinished scratch files are hidden and end in `.part`, so none of them reads
those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.errors import UsageError

INSTALL_HINT = "pip install 'audio-speaker[parquet]'"
ROW_GROUP = 4096  # rows buffered before a row group is written
COLUMNS = ("path", "size", "mtime_ns", "duration", "start", "end", "speech", "model",
           "model_digest", "engine", "dimension", "embedding", "error")


def require_pyarrow():
    """The pyarrow module, or a one-line UsageError saying how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise UsageError(f"Parquet output needs pyarrow, which is not installed here "
                         f"({INSTALL_HINT})") from None
    return pyarrow


def schema(dim: int):
    """The Arrow schema of embedding rows of `dim` values."""
    pa = require_pyarrow()
    return pa.schema([
        ("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
        ("duration", pa.float64()), ("start", pa.float64()), ("end", pa.float64()),
        ("speech", pa.float64()), ("model", pa.string()), ("model_digest", pa.string()),
        ("engine", pa.string()), ("dimension", pa.int32()),
        ("embedding", pa.list_(pa.float32(), dim)), ("error", pa.string()),
    ], metadata={b"audio.dimension": str(dim).encode()})


def to_table(rows: list[dict], dim: int):
    """Rows (dicts with the COLUMNS; `embedding` a (dim,) array or None) as an Arrow table."""
    pa = require_pyarrow()
    shape = schema(dim)
    missing = np.array([r.get("embedding") is None for r in rows], dtype=bool)
    values = np.zeros((len(rows), dim), dtype=np.float32)
    for i, row in enumerate(rows):
        if not missing[i]:
            values[i] = row["embedding"]
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), dim,
                                                  mask=pa.array(missing))
    arrays = [embedding if name == "embedding" else
              pa.array([r.get(name) for r in rows], type=shape.field(name).type)
              for name in COLUMNS]
    return pa.Table.from_arrays(arrays, schema=shape)


class ParquetRows:
    """Rows streamed into one Parquet file at `path`, a row group at a time."""

    def __init__(self, path: Path, dim: int):
        require_pyarrow()
        import pyarrow.parquet as pq

        self.dim = dim
        self.rows: list[dict] = []
        self.writer = pq.ParquetWriter(str(path), schema(dim), compression="zstd")

    def add(self, row: dict) -> None:
        """Buffer one row; a full buffer becomes a row group."""
        self.rows.append(row)
        if len(self.rows) >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as a row group."""
        if self.rows:
            self.writer.write_table(to_table(self.rows, self.dim))
            self.rows = []

    def close(self) -> None:
        """Write what is left and the file's footer."""
        self.flush()
        self.writer.close()


def open_dataset(path: Path, columns: tuple[str, ...] = COLUMNS, kind: str = "an embedding file"):
    """The Parquet file or folder at `path` as a pyarrow dataset (read by the caller, whole or
    a batch at a time); a one-line UsageError for something that is not an embedding file of
    this tool."""
    require_pyarrow()
    import pyarrow.dataset as ds

    try:
        data = ds.dataset(str(path), format="parquet")
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UsageError(f"{path}: cannot read it as Parquet ({str(exc).splitlines()[0]})"
                         ) from None
    missing = [c for c in columns if c not in data.schema.names]
    if missing:
        raise UsageError(f"{path}: not {kind} of audio (no column "
                         f"{', '.join(missing)})")
    return data


def open_rows(path: Path, columns: tuple[str, ...] = COLUMNS, kind: str = "an embedding file"):
    """The Parquet file or folder at `path` as an Arrow table of `columns`; a one-line
    UsageError for something that is not an embedding file of this tool."""
    data = open_dataset(path, columns, kind)
    try:
        return data.to_table(columns=list(columns))
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UsageError(f"{path}: cannot read it as Parquet ({str(exc).splitlines()[0]})"
                         ) from None


def dimension_of(table) -> int:
    """The vector length of an embedding table (from its column type)."""
    return int(table.schema.field("embedding").type.list_size)


def vectors_of(table) -> np.ndarray:
    """The (rows, dim) float32 matrix of a table (or record batch) whose embeddings are all
    present."""
    column = table.column("embedding")
    if hasattr(column, "combine_chunks"):  # a table's column; a batch's is one array
        column = column.combine_chunks()
    flat = column.flatten()  # honours slices' offsets
    return np.asarray(flat, dtype=np.float32).reshape(len(table), dimension_of(table))
