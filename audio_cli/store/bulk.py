"""`audio index --from FILE.parquet`: precomputed vectors (an embed-speaker Parquet output, on one
machine or a Ray cluster) loaded into the store in bulk, as `index` would have embedded them.

The file is read twice, a record batch at a time, so memory does not grow with its rows: first
the small columns (which model, windows or not, how the vectors were made: everything that can
refuse the whole file, before anything is written), then every column, each batch checked and
written in one transaction. A run stopped part-way leaves the batches committed so far (a
consistent store); running it again adds the rest (the committed rows are then unchanged)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from audio_cli.pipeline.handle import ModelHandle
from audio_cli.store.checks import good_rows
from audio_cli.store.db import Store, now
from audio_cli.store.index import UPSERT_RECORDING, sync_files
from audio_cli.store.settings import Made, check_adding, warn
from engines.errors import ModelError, UsageError

BULK_ROWS = 20000  # rows per record batch, checked and written in one transaction
# The columns of the first pass: all that can refuse the whole file.
SURVEY_COLUMNS = ("model", "model_digest", "start", "speech", "engine", "error", "size")
IN_CHUNK = 500  # paths per `IN (...)` query


@dataclass
class BulkReport:
    """What one `index --from` run did."""

    rows: int = 0  # rows in the file(s)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: int = 0  # failed inputs' rows (no vector), skipped
    skipped: int = 0  # rows without a file to point at (stdin) or without a vector (VAD)
    refused: list[str] = field(default_factory=list)  # paths of non-finite or zero vectors


@dataclass
class Survey:
    """What the first pass over the file found (small columns only)."""

    digests: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    windows: bool = False  # some row has a window start
    made: set[Made] = field(default_factory=set)  # of the rows that can be indexed


def _made(speech: list, engines: list) -> list[Made]:
    """How each row's vector was made: a speech duration is recorded only with --vad; the
    engine's name ends in -int8 for the int8 network."""
    return [Made(sp is not None, "int8" if (engine or "").endswith("-int8") else "float32")
            for sp, engine in zip(speech, engines, strict=True)]


def survey(data, columns: tuple[str, ...] = SURVEY_COLUMNS) -> Survey:
    """The first pass: models, windows and ways of making of the rows of `data` (a dataset)."""
    import pyarrow.compute as pc

    found = Survey()
    for batch in batches(data, columns):
        found.digests.update(d for d in pc.unique(batch.column("model_digest")).to_pylist() if d)
        found.names.update(n for n in pc.unique(batch.column("model")).to_pylist() if n)
        found.windows = found.windows or batch.column("start").null_count < batch.num_rows
        usable = batch.filter(pc.and_(pc.is_null(batch.column("error")),
                                      pc.is_valid(batch.column("size"))))
        found.made.update(_made(usable.column("speech").to_pylist(),
                                usable.column("engine").to_pylist()))
    return found


def batches(data, columns):
    """The record batches of a dataset's files, one at a time. pyarrow.parquet's
    ParquetFile.iter_batches reads a row group at a time; the dataset scanner it replaces here
    kept ~1 KB a row (1.4 GB for 10^6 rows of 256 values, bench/bulk_load.py)."""
    import pyarrow.parquet as pq

    for name in sorted(data.files):
        with pq.ParquetFile(name, pre_buffer=False) as parquet:
            yield from parquet.iter_batches(batch_size=BULK_ROWS, columns=list(columns))


def check_identity(found: Survey, dim: int, source: Path, identity: ModelHandle) -> None:
    """Refuse vectors of another model than `identity`'s (by weights digest and dimension)."""
    digests = sorted(found.digests)
    if len(digests) > 1:
        raise ModelError(f"{source}: holds vectors of {len(digests)} models "
                         f"({', '.join(digests)}); index one model's rows at a time")
    if digests and digests[0] != identity.digest:
        raise ModelError(f"{source}: vectors of {', '.join(sorted(found.names))} (weights "
                         f"{digests[0]}), not of {identity.name} (weights {identity.digest}); "
                         "pass the --model they were made with")
    if dim != identity.dim:
        raise ModelError(f"{source}: vectors of {dim} values, {identity.name} "
                         f"makes {identity.dim}")


def index_parquet(store: Store, identity: ModelHandle, source: Path) -> BulkReport:
    """Load the vectors of a Parquet file or folder into the store's recordings of this
    model. A row whose file has the same size and modification time as the store's is left
    as it is; a relative path is taken from the current directory (as `index PATH` does)."""
    from audio_cli.pipeline.parquet import COLUMNS, dimension_of, open_dataset

    data = open_dataset(source)
    found = survey_or_refuse(data, source)
    check_identity(found, dimension_of(data), source, identity)
    if found.windows:
        raise UsageError(f"{source}: holds windows (--window); the store indexes one vector "
                         "per recording")
    if len({m.vad for m in found.made}) > 1:
        raise UsageError(f"{source}: holds vectors made with and without --vad; index them "
                         "into different stores (--db)")
    with store.write() as conn:
        model = store.model_row(conn, identity.name, identity.digest, identity.dim,
                                identity.frontend)
        for warning in {check_adding(conn, "recordings", model, identity.name, m, "index")
                        for m in found.made}:
            warn(warning)
    report = BulkReport()
    created = now()
    for batch in read_or_refuse(data, COLUMNS, source):
        _load_batch(store, identity, model, batch, created, report)
    sync_files(store, identity.digest, identity.dim)
    return report


def survey_or_refuse(data, source: Path) -> Survey:
    """`survey`, a file that cannot be read being a one-line UsageError."""
    return next(iter(read_or_refuse(data, None, source, first=True)))


def read_or_refuse(data, columns, source: Path, first: bool = False):
    """The batches of `data` (or, with `first`, one Survey of it); a Parquet read error (a
    corrupt page, a truncated file) is a one-line UsageError naming `source`."""
    try:
        if first:
            yield survey(data)
            return
        yield from batches(data, columns)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UsageError(f"{source}: cannot read it as Parquet ({str(exc).splitlines()[0]})"
                         ) from None


def _load_batch(store: Store, identity: ModelHandle, model: int, batch, created: str,
                report: BulkReport) -> None:
    """Check one record batch and write its good rows in one transaction."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from audio_cli.pipeline.parquet import vectors_of

    report.rows += batch.num_rows
    failed = pc.is_valid(batch.column("error"))
    errors = int(pc.sum(failed).as_py() or 0)
    report.errors += errors
    usable = pc.and_(pc.and_(pc.invert(failed), pc.is_valid(batch.column("size"))),
                     pc.is_valid(batch.column("embedding")))
    good = batch.filter(usable)
    report.skipped += batch.num_rows - errors - good.num_rows
    vectors = vectors_of(good)
    fit = good_rows(vectors)  # NaN, infinite or zero vectors are refused
    if not fit.all():
        report.refused += [str(p) for p, ok in zip(good.column("path").to_pylist(), fit,
                                                   strict=True) if not ok]
        good, vectors = good.filter(pa.array(fit)), vectors[fit]
    if not good.num_rows:
        return
    paths = [str(Path(p).expanduser().absolute()) for p in good.column("path").to_pylist()]
    sizes = good.column("size").to_pylist()
    mtimes = good.column("mtime_ns").to_pylist()
    engines = good.column("engine").to_pylist()
    durations = good.column("duration").to_pylist()
    made = _made(good.column("speech").to_pylist(), engines)
    vectors = vectors.astype("<f4")
    with store.write() as conn:
        for m in set(made):  # another process may have indexed the other way meanwhile
            check_adding(conn, "recordings", model, identity.name, m, "index")
        known = _signatures(conn, model, paths)
        rows = []
        for i, path in enumerate(paths):
            before = known.get(path)
            if before == (sizes[i], mtimes[i]):
                report.unchanged += 1
                continue
            if before is None:
                report.added += 1
            else:
                report.updated += 1
            known[path] = (sizes[i], mtimes[i])  # a path twice: compared with its earlier row
            rows.append((path, sizes[i], mtimes[i], model, engines[i], durations[i], created,
                         vectors[i].tobytes(), made[i].vad_column, made[i].precision))
        conn.executemany(UPSERT_RECORDING, rows)


def _signatures(conn, model: int, paths: list[str]) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of those of `paths` the store holds for this model."""
    found = {}
    for first in range(0, len(paths), IN_CHUNK):
        chunk = paths[first:first + IN_CHUNK]
        found.update((p, (s, m)) for p, s, m in conn.execute(
            "SELECT path, size, mtime_ns FROM recordings WHERE model_id = ? AND path IN "
            f"({','.join('?' * len(chunk))})", (model, *chunk)))
    return found
