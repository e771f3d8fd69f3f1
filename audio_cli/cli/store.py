"""Store commands: compare, enroll, identify, speakers, calibrate, index (search: cli/search.py)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from audio_cli.cli import main as checks
from audio_cli.cli.embed import plural
from audio_cli.frontend.audio import STDIN
from audio_cli.models.registry import DEFAULT_MODEL
from audio_cli.pipeline.speaker import cosine_similarity
from engines.errors import DEBUG_ENV, AudioCliError, UsageError

# Registered on the root command by audio_cli.cli.main (LAZY_COMMANDS).
app = typer.Typer()

DbOpt = Annotated[Path | None, typer.Option(
    "--db", metavar="PATH", callback=checks.db_folder,
    help="Store file (default: $AUDIO_DB, else audio/store.sqlite3 in the user's data "
    "directory).")]
ModelOpt = checks.ModelOpt
EngineOpt = checks.EngineOpt
ThreadsOpt = checks.ThreadsOpt
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
MinDurOpt = checks.MinDurOpt
VadOpt = checks.VadOpt
ThresholdOpt = Annotated[float | None, typer.Option(
    metavar="COSINE", callback=checks.cosine,
    help="Decision threshold on the raw cosine, from -1 to 1 (default: the store's calibrated "
    "value, else the model's default).")]
TopOpt = Annotated[int, typer.Option(metavar="N", min=1, help="Show this many candidates.")]

# Fewer trials than this and an equal-error threshold moves by several hundredths from one
# recording to the next (a 1 % error rate needs ~100 trials of a kind to be seen at all).
MIN_SAME_PAIRS = 50
MIN_DIFFERENT_PAIRS = 100

speakers_app = typer.Typer(help="List, remove, rename, export or import enrolled speakers.",
                           no_args_is_help=True)
app.add_typer(speakers_app, name="speakers")


def _emit(document: dict, json_output: bool, text: str) -> None:
    sys.stdout.write(json.dumps(document) + "\n" if json_output else text + "\n")


@contextmanager
def _all_errors_exit(code: int) -> Iterator[None]:
    """For compare/identify, whose 0/1 are answers: every error exits with `code` (2)."""
    try:
        yield
    except AudioCliError as exc:
        exc.exit_code = code
        raise
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        error = AudioCliError(f"internal error: {type(exc).__name__}: {exc}")
        error.exit_code = code
        raise error from None


def _embedder(model: str, engine: str, threads: int | None, precision: str = "float32"):
    from audio_cli.store.identity import Embedder
    from engines import resolve_engine_name

    resolve_engine_name(engine)
    return Embedder.load(model, engine=engine, threads=threads, name=checks.model_name(model),
                         precision=precision)


def _threshold(option: float | None, db: Path | None, embedder):
    """--threshold, else the store's value (if a store exists), else the model's default."""
    from audio_cli.store.db import Store, default_db_path
    from audio_cli.store.speakers import pick_threshold, stored_threshold

    stored = None
    if option is None and (db is not None or default_db_path().exists()):
        with Store(db, readonly=True) as store:
            stored = stored_threshold(store, embedder)
    return pick_threshold(option, stored, embedder.speaker.config.model_type)


@app.command("compare")
def compare(
    file_a: Annotated[str, typer.Argument(metavar="FILE_A", help="First recording.")],
    file_b: Annotated[str, typer.Argument(metavar="FILE_B", help="Second recording.")],
    threshold: ThresholdOpt = None, db: DbOpt = None, model: ModelOpt = DEFAULT_MODEL,
    engine: EngineOpt = "auto", threads: ThreadsOpt = None, min_duration: MinDurOpt = 0.5,
    json_output: JsonOpt = False, vad: VadOpt = False,
    precision: checks.PrecisionOpt = "float32",
) -> None:
    """Same speaker? Raw cosine in [-1, 1]; exit 0 same, 1 different, 2 error."""
    with _all_errors_exit(2):
        checks.check_inputs_exist([file_a, file_b])
        embedder = _embedder(model, engine, threads, precision)
        chosen = _threshold(threshold, db, embedder)
        a, b = embedder.embed_all([file_a, file_b], min_duration, vad)
        score = cosine_similarity(a.embedding, b.embedding)
        same = score >= chosen.value
        document = {"files": [a.file, b.file], "score": score, "threshold": chosen.value,
                    "threshold_origin": chosen.origin, "same_speaker": same,
                    "model": embedder.name, "model_digest": embedder.digest,
                    "engine": embedder.engine}
        verdict = "same speaker" if same else "different speakers"
        _emit(document, json_output, f"{score:.4f}  {verdict} (threshold {chosen.value:g}, "
              f"{chosen.origin})")
    if not same:
        raise typer.Exit(1)


@app.command("enroll")
def enroll(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Speaker name.")],
    files: Annotated[list[str], typer.Argument(metavar="FILE...",
                                               help="Recordings of this speaker.")],
    db: DbOpt = None, model: ModelOpt = DEFAULT_MODEL, engine: EngineOpt = "auto",
    threads: ThreadsOpt = None, min_duration: MinDurOpt = 0.5, json_output: JsonOpt = False,
    vad: VadOpt = False, precision: checks.PrecisionOpt = "float32",
) -> None:
    """Add recordings of a speaker to the store (all or none: any bad file stores nothing)."""
    from audio_cli.store.db import Store
    from audio_cli.store.speakers import check_enroll, check_name
    from audio_cli.store.speakers import enroll as enroll_speaker

    check_name(name)
    checks.check_inputs_exist(files)
    with Store(db) as store:
        embedder = _embedder(model, engine, threads, precision)
        from audio_cli.store.settings import warn

        warn(check_enroll(store, embedder, vad))
        sources = [f if f == STDIN else str(Path(f).expanduser().absolute()) for f in files]
        results = embedder.embed_all(sources, min_duration, vad)
        total = enroll_speaker(store, embedder, name, results, vad)
        document = {"speaker": name, "added": len(results), "exemplars": total,
                    "model": embedder.name, "model_digest": embedder.digest,
                    "db": str(store.path)}
    _emit(document, json_output, f"{name}: {len(results)} added, "
          f"{plural(total, 'exemplar')} ({embedder.name})")


@app.command("identify")
def identify(
    file: Annotated[str, typer.Argument(metavar="FILE", help="Recording of an unknown speaker.")],
    top: TopOpt = 1,
    threshold: ThresholdOpt = None,
    scoring: Annotated[str, typer.Option(
        metavar="mean|max", help="mean: cosine with the re-normalised mean of a speaker's "
        "exemplars; max: best exemplar.")] = "mean",
    db: DbOpt = None, model: ModelOpt = DEFAULT_MODEL, engine: EngineOpt = "auto",
    threads: ThreadsOpt = None, min_duration: MinDurOpt = 0.5, json_output: JsonOpt = False,
    vad: VadOpt = False, precision: checks.PrecisionOpt = "float32",
) -> None:
    """Which enrolled speaker is this? Exit 0 identified, 1 unknown, 2 error."""
    from audio_cli.store.db import Store
    from audio_cli.store.settings import warn_query
    from audio_cli.store.speakers import identify as identify_speaker

    with _all_errors_exit(2):
        checks.check_inputs_exist([file])
        with Store(db, readonly=True) as store:
            embedder = _embedder(model, engine, threads, precision)
            warn_query(store, "exemplars", embedder.digest, embedder.name, embedder.made(vad))
            chosen = _threshold(threshold, store.path, embedder)
            (query,) = embedder.embed_all([file], min_duration, vad)
            result = identify_speaker(store, embedder, query.embedding, scoring)
        for name in result.skipped:
            sys.stderr.write(f"audio: note: {name} has no exemplar of {embedder.name}; "
                             "not considered\n")
        best = result.ranked[0]
        margin = best.score - result.ranked[1].score if len(result.ranked) > 1 else None
        known = best.score >= chosen.value
        document = {
            "file": query.file, "speaker": best.name if known else None, "identified": known,
            "score": best.score, "margin": margin, "threshold": chosen.value,
            "threshold_origin": chosen.origin, "scoring": scoring, "model": embedder.name,
            "model_digest": embedder.digest,
            "candidates": [{"name": c.name, "score": c.score, "exemplars": c.exemplars}
                           for c in result.ranked[:top]]}
        lines = [f"{best.name if known else 'unknown'}  score {best.score:.4f}"
                 + (f"  margin {margin:.4f}" if margin is not None else "")
                 + f"  (threshold {chosen.value:g}, {chosen.origin})"]
        if top > 1:
            lines += [f"  {c.score:.4f}  {c.name}" for c in result.ranked[:top]]
        _emit(document, json_output, "\n".join(lines))
    if not known:
        raise typer.Exit(1)


@app.command("calibrate")
def calibrate(
    db: DbOpt = None, model: ModelOpt = DEFAULT_MODEL, engine: EngineOpt = "auto",
    threads: ThreadsOpt = None, json_output: JsonOpt = False,
) -> None:
    """Store the equal-error threshold measured on pairs of enrolled exemplars."""
    from audio_cli.store.db import Store
    from audio_cli.store.speakers import calibrate as calibrate_store

    with Store(db, create=False) as store:
        embedder = _embedder(model, engine, threads)
        result = {**calibrate_store(store, embedder), "model_digest": embedder.digest}
    same, different = result["same_pairs"], result["different_pairs"]
    if same < MIN_SAME_PAIRS or different < MIN_DIFFERENT_PAIRS:
        sys.stderr.write(
            "audio: warning: the threshold rests on only "
            f"{plural(same, 'same-speaker pair')} and "
            f"{plural(different, 'different-speaker pair')} (at least "
            f"{MIN_SAME_PAIRS} and {MIN_DIFFERENT_PAIRS} advised); enroll more recordings "
            "and calibrate again\n")
    _emit(result, json_output, f"threshold {result['threshold']:.4f} (EER {result['eer']:.2%} "
          f"on {same} same / {plural(different, 'different pair')})")


@speakers_app.command("list")
def speakers_list(db: DbOpt = None, json_output: JsonOpt = False) -> None:
    """Enrolled speakers and their exemplar counts per model."""
    from audio_cli.store.db import Store, default_db_path
    from audio_cli.store.speakers import list_speakers

    path = db if db is not None else default_db_path()
    if path.exists():
        with Store(path, readonly=True) as store:
            speakers = list_speakers(store)
    else:  # listing creates no store
        speakers = []
    text = "\n".join(f"{s['name']}\t" + ", ".join(f"{n} x {m}" for m, n in s["exemplars"].items())
                     for s in speakers)
    _emit({"speakers": speakers}, json_output, text or "(no speakers)")


@speakers_app.command("remove")
def speakers_remove(name: Annotated[str, typer.Argument(metavar="NAME")], db: DbOpt = None,
                    json_output: JsonOpt = False) -> None:
    """Delete a speaker and all its exemplars."""
    from audio_cli.store.db import Store
    from audio_cli.store.speakers import remove_speaker

    with Store(db, create=False) as store:
        count = remove_speaker(store, name)
    _emit({"removed": name, "exemplars": count}, json_output, f"removed {name} ({count})")


@speakers_app.command("rename")
def speakers_rename(old: Annotated[str, typer.Argument(metavar="OLD")],
                    new: Annotated[str, typer.Argument(metavar="NEW")], db: DbOpt = None,
                    json_output: JsonOpt = False) -> None:
    """Rename a speaker."""
    from audio_cli.store.db import Store
    from audio_cli.store.speakers import rename_speaker

    with Store(db, create=False) as store:
        rename_speaker(store, old, new)
    _emit({"renamed": old, "to": new}, json_output, f"{old} -> {new}")


@speakers_app.command("export")
def speakers_export(out: Annotated[Path, typer.Argument(metavar="FILE",
                                                       help="New JSON file to write.")],
                    db: DbOpt = None, json_output: JsonOpt = False) -> None:
    """Write all speakers and exemplars to a new JSON file (never overwrites)."""
    from audio_cli.store.db import Store
    from audio_cli.store.transfer import export_speakers

    with Store(db, readonly=True) as store:
        result = export_speakers(store, out)
    _emit(result, json_output, f"{out}: {plural(result['speakers'], 'speaker')}")


@speakers_app.command("import")
def speakers_import(file: Annotated[Path, typer.Argument(
                        metavar="FILE", help="A file written by `audio speakers export`.")],
                    db: DbOpt = None, json_output: JsonOpt = False) -> None:
    """Merge speakers from an export (same name = same speaker)."""
    from audio_cli.store.db import Store
    from audio_cli.store.transfer import import_speakers

    with Store(db) as store:
        result = import_speakers(store, file)
    _emit(result, json_output, f"{plural(result['speakers'], 'speaker')}, "
          f"{plural(result['exemplars_added'], 'exemplar')} added")


@app.command("index")
def index(
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="PATH...", help="Audio files or folders (recursive).", show_default=False)
    ] = None,
    prune: Annotated[bool, typer.Option(
        "--prune", help="Drop indexed files under PATHS that are gone.")] = False,
    source: Annotated[Path | None, typer.Option(
        "--from", metavar="FILE.parquet", help="Load the vectors of an `embed-speaker "
        "--output` Parquet file or folder instead of embedding (same --model).")] = None,
    db: DbOpt = None, model: ModelOpt = DEFAULT_MODEL, engine: EngineOpt = "auto",
    threads: ThreadsOpt = None, min_duration: MinDurOpt = 0.5, json_output: JsonOpt = False,
    vad: VadOpt = False, precision: checks.PrecisionOpt = "float32",
) -> None:
    """Embed new or changed recordings into the store (exit 3 if some could not be read)."""
    from audio_cli.store.db import Store
    from audio_cli.store.index import index_paths, stderr_progress

    if (source is None) == (not paths):
        raise UsageError("index takes PATH... or --from FILE.parquet (one of the two)")
    if source is not None:
        return _index_from(source, prune, db, model, engine, threads, json_output)
    with Store(db) as store:
        embedder = _embedder(model, engine, threads, precision)
        report = index_paths(store, embedder, paths, prune, min_duration,
                             stderr_progress("indexing"), vad=vad)
    for failure in report.failures:
        sys.stderr.write(f"audio: error: {failure.message}\n")
    document = {"found": report.found, "added": report.added, "updated": report.updated,
                "unchanged": report.unchanged, "pruned": report.pruned,
                "failed": [{"file": f.file, "error": f.message} for f in report.failures],
                "model": embedder.name, "model_digest": embedder.digest}
    _emit(document, json_output, f"{report.found} found: {report.added} added, {report.updated}"
          f" updated, {report.unchanged} unchanged, {report.pruned} pruned, "
          f"{len(report.failures)} failed")
    if report.failures:
        raise typer.Exit(3)


def _index_from(source: Path, prune: bool, db: Path | None, model: str, engine: str,
                threads: int | None, json_output: bool) -> None:
    """`index --from`: bulk-load an embed-speaker Parquet output (store/bulk.py)."""
    from audio_cli.pipeline.parquet import require_pyarrow
    from audio_cli.store.bulk import index_parquet
    from audio_cli.store.db import Store

    require_pyarrow()
    if prune:
        raise UsageError("--prune works with PATH..., not with --from")
    if not source.exists():
        raise UsageError(f"--from {source}: no such file or folder")
    with Store(db) as store:
        embedder = _embedder(model, engine, threads)
        report = index_parquet(store, embedder, source)
    document = {"rows": report.rows, "added": report.added, "updated": report.updated,
                "unchanged": report.unchanged, "errors_skipped": report.errors,
                "skipped": report.skipped, "model": embedder.name,
                "model_digest": embedder.digest}
    _emit(document, json_output, f"{plural(report.rows, 'row')}: {report.added} added, "
          f"{report.updated} updated, {report.unchanged} unchanged, {report.errors} error rows "
          f"skipped" + (f", {report.skipped} without a file or vector" if report.skipped else ""))
