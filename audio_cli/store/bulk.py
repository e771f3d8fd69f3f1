"""`audio index --from FILE.parquet`: precomputed vectors (an embed-speaker Parquet output, on one
machine or a Ray cluster) loaded into the store in bulk, as `index` would have embedded them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from audio_cli.pipeline.handle import ModelHandle
from audio_cli.store.checks import good_rows
from audio_cli.store.db import Store, now
from audio_cli.store.index import UPSERT_RECORDING, signatures_of, sync_files
from audio_cli.store.settings import Made, check_adding, warn
from engines.errors import ModelError, UsageError

BULK_ROWS = 20000  # rows per write transaction


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


def check_identity(table, source: Path, identity: ModelHandle) -> None:
    """Refuse vectors of another model than `identity`'s (by weights digest and dimension)."""
    from audio_cli.pipeline.parquet import dimension_of

    digests = sorted(d for d in table.column("model_digest").unique().to_pylist() if d)
    if len(digests) > 1:
        raise ModelError(f"{source}: holds vectors of {len(digests)} models "
                         f"({', '.join(digests)}); index one model's rows at a time")
    if digests and digests[0] != identity.digest:
        names = sorted({n for n in table.column("model").unique().to_pylist() if n})
        raise ModelError(f"{source}: vectors of {', '.join(names)} (weights {digests[0]}), not "
                         f"of {identity.name} (weights {identity.digest}); pass the --model "
                         "they were made with")
    if dimension_of(table) != identity.dim:
        raise ModelError(f"{source}: vectors of {dimension_of(table)} values, {identity.name} "
                         f"makes {identity.dim}")


def index_parquet(store: Store, identity: ModelHandle, source: Path) -> BulkReport:
    """Load the vectors of a Parquet file or folder into the store's recordings of this
    model. A row whose file has the same size and modification time as the store's is left
    as it is; a relative path is taken from the current directory (as `index PATH` does)."""
    import pyarrow.compute as pc

    from audio_cli.pipeline.parquet import open_rows, vectors_of

    table = open_rows(source)
    check_identity(table, source, identity)
    report = BulkReport(rows=len(table))
    if table.column("start").null_count < len(table):
        raise UsageError(f"{source}: holds windows (--window); the store indexes one vector "
                         "per recording")
    failed = pc.is_valid(table.column("error"))
    report.errors = int(pc.sum(failed).as_py() or 0)
    usable = pc.and_(pc.and_(pc.invert(failed), pc.is_valid(table.column("size"))),
                     pc.is_valid(table.column("embedding")))
    good = table.filter(usable)
    report.skipped = report.rows - report.errors - len(good)
    fit = good_rows(vectors_of(good))  # NaN, infinite or zero vectors are refused
    if not fit.all():
        report.refused = [str(p) for p, ok in zip(good.column("path").to_pylist(), fit,
                                                  strict=True) if not ok]
        import pyarrow as pa

        good = good.filter(pa.array(fit))
    paths = [str(Path(p).expanduser().absolute()) for p in good.column("path").to_pylist()]
    sizes = good.column("size").to_pylist()
    mtimes = good.column("mtime_ns").to_pylist()
    engines = good.column("engine").to_pylist()
    durations = good.column("duration").to_pylist()
    vectors = vectors_of(good).astype("<f4")
    # How each vector was made: a speech duration is recorded only with --vad; the engine's
    # name ends in -int8 for the int8 network.
    made = [Made(speech is not None, "int8" if (engine or "").endswith("-int8") else "float32")
            for speech, engine in zip(good.column("speech").to_pylist(), engines, strict=True)]
    if len({m.vad for m in made}) > 1:
        raise UsageError(f"{source}: holds vectors made with and without --vad; index them "
                         "into different stores (--db)")
    with store.write() as conn:
        model = store.model_row(conn, identity.name, identity.digest, identity.dim,
                                identity.frontend)
        for warning in {check_adding(conn, "recordings", model, identity.name, m, "index")
                        for m in set(made)}:
            warn(warning)
        known = signatures_of(conn, model)
    todo = []
    for i, path in enumerate(paths):
        before = known.get(path)
        if before == (sizes[i], mtimes[i]):
            report.unchanged += 1
            continue
        if before is None:
            report.added += 1
        else:
            report.updated += 1
        known[path] = (sizes[i], mtimes[i])  # a path twice: its first row counts
        todo.append(i)
    created = now()
    for first in range(0, len(todo), BULK_ROWS):
        with store.write() as conn:
            for m in set(made):  # another process may have indexed the other way meanwhile
                check_adding(conn, "recordings", model, identity.name, m, "index")
            conn.executemany(
                UPSERT_RECORDING,
                [(paths[i], sizes[i], mtimes[i], model, engines[i], durations[i], created,
                  vectors[i].tobytes(), int(made[i].vad), made[i].precision)
                 for i in todo[first:first + BULK_ROWS]])
    sync_files(store, identity.digest, identity.dim)
    return report
