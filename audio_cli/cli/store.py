"""Store commands: compare, enroll, identify, speakers, calibrate, index (search: cli/search.py)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from audio_cli.cli import messages
from audio_cli.cli.errors import EXIT_INPUT, EXIT_USAGE, answers, combined_status
from audio_cli.cli.messages import plural
from audio_cli.cli.options import (
    DbOpt,
    JsonOpt,
    ModelOpt,
    check_inputs_exist,
    cosine,
    embedding_options,
    refuse,
)
from audio_cli.frontend.inputs import STDIN
from audio_cli.pipeline.options import EmbedOptions, default_model
from engines.errors import AudioCliError, InputAudioError, ModelError, UsageError

if TYPE_CHECKING:
    from audio_cli.pipeline.handle import ModelHandle
    from audio_cli.pipeline.results import EmbeddingResult
    from audio_cli.pipeline.speaker import SpeakerEmbedder

# Registered on the root command by audio_cli.cli.main (LAZY_COMMANDS).
app = typer.Typer()

ThresholdOpt = Annotated[float | None, typer.Option(
    metavar="COSINE", callback=cosine,
    help="Decision threshold on the raw cosine, from -1 to 1 (default: the store's calibrated "
    "value, else the model's default).")]
TopOpt = Annotated[int, typer.Option(metavar="N", min=1, help="Show this many candidates.")]

# Fewer trials than this and an equal-error threshold moves by several hundredths from one
# recording to the next (a 1 % error rate needs ~100 trials of a kind to be seen at all).
MIN_SAME_PAIRS = 50
MIN_DIFFERENT_PAIRS = 100

speakers_app = typer.Typer(help="List, remove, rename, export, import or map enrolled "
                           "speakers.",
                           no_args_is_help=True)
app.add_typer(speakers_app, name="speakers")


def _emit(document: dict, json_output: bool, text: str) -> None:
    sys.stdout.write(json.dumps(document) + "\n" if json_output else text + "\n")


def load(options: EmbedOptions) -> SpeakerEmbedder:
    """The model `options` name, on their engine (pipeline.speaker)."""
    from audio_cli.pipeline.speaker import SpeakerEmbedder

    return SpeakerEmbedder.from_options(options)


def model_typed(ctx: typer.Context) -> bool:
    """True if --model was typed on the command line (not a default, nor an environment
    variable): the one test of the store-model rule (`store_model`)."""
    source = ctx.get_parameter_source("model")
    return source is not None and source.name == "COMMANDLINE"


def store_model(ctx: typer.Context, model: str, db: Path | None, kind: str
                ) -> tuple[str, str | None]:
    """The model a store command runs: --model when typed; else the store's model when its
    `kind` vectors ("exemplars" or "recordings") are of exactly one model; else `model`, the
    default the options hold (AUDIO_MODEL, else the built-in one). Returns (model, the
    weights digest the store expects of it, or None). A store of several models that lacks
    the default is a one-line UsageError listing them."""
    from audio_cli.models.registry import display_name
    from audio_cli.store.db import Store, default_db_path

    path = db if db is not None else default_db_path()
    if model_typed(ctx) or not path.exists():
        return model, None
    with Store(path, readonly=True) as store:
        held = store.models_of(kind)
    if len(held) == 1:
        return held[0]
    if held and display_name(model) not in {name for name, _ in held}:
        raise UsageError(f"{path}: its {kind} are of {len(held)} models "
                         f"({', '.join(name for name, _ in held)}); pass --model")
    return model, None


def check_store_model(identity: ModelHandle, expected: str | None, db: Path | None) -> None:
    """ModelError if the store's model (`store_model`) found here is other weights."""
    if expected is not None and identity.digest != expected:
        from audio_cli.store.db import default_db_path

        raise ModelError(f"{db if db is not None else default_db_path()}: holds vectors of "
                         f"{identity.name} with weights {expected}; {identity.name} here has "
                         f"weights {identity.digest}; pass --model")


def note_skipped(names: list[str], identity: ModelHandle) -> None:
    """Say which enrolled speakers a query left out: none of their exemplars is of this
    model (identify, diarize --db)."""
    for name in names:
        messages.note(f"note: {name} has no exemplar of {identity.name}; not considered")


def made(options: EmbedOptions):
    """How this run's vectors are made, as the store records it (store.settings.Made)."""
    from audio_cli.store.settings import Made

    return Made(options.vad, options.precision)


def embed_all(speaker: SpeakerEmbedder, sources: list[str], options: EmbedOptions
              ) -> list[EmbeddingResult]:
    """Embed every source or raise: one failure as it is, several listed in one error of
    their kind (bad input where the kinds differ)."""
    from audio_cli.pipeline.results import InputFailure

    results, failures = [], []
    for item in speaker.embed_sources(sources, options.min_duration, options.vad):
        (failures if isinstance(item, InputFailure) else results).append(item)
    if len(failures) == 1:
        raise failures[0].error
    if failures:
        kinds = {failure.error.kind for failure in failures}
        error = AudioCliError(f"{len(failures)} inputs failed: "
                              + "; ".join(f.message for f in failures))
        error.kind = kinds.pop() if len(kinds) == 1 else InputAudioError.kind
        raise error
    return results


def _threshold(option: float | None, db: Path | None, identity: ModelHandle):
    """--threshold, else the store's value (if a store exists), else the model's default."""
    from audio_cli.store.db import Store, default_db_path
    from audio_cli.store.speakers import pick_threshold, stored_threshold

    stored = None
    if option is None and (db is not None or default_db_path().exists()):
        with Store(db, readonly=True) as store:
            stored = stored_threshold(store, identity)
    return pick_threshold(option, stored, identity.config.model_type)


@app.command("compare")
@embedding_options
def compare(
    file_a: Annotated[str, typer.Argument(metavar="FILE_A", help="First recording.")],
    file_b: Annotated[str, typer.Argument(metavar="FILE_B", help="Second recording.")],
    options: EmbedOptions,
    threshold: ThresholdOpt = None, db: DbOpt = None, json_output: JsonOpt = False,
) -> None:
    """Same speaker? Raw cosine in [-1, 1]; exit 0 same, 1 different, 2 error."""
    from audio_cli.pipeline.speaker import cosine_similarity

    with answers(EXIT_USAGE):
        check_inputs_exist([file_a, file_b])
        speaker = load(options)
        identity = speaker.model
        chosen = _threshold(threshold, db, identity)
        a, b = embed_all(speaker, [file_a, file_b], options)
        score = cosine_similarity(a.embedding, b.embedding)
        same = score >= chosen.value
        document = {"files": [a.file, b.file], "score": score, "threshold": chosen.value,
                    "threshold_origin": chosen.origin, "same_speaker": same,
                    "model": identity.name, "model_digest": identity.digest,
                    "engine": speaker.engine_name}
        verdict = "same speaker" if same else "different speakers"
        _emit(document, json_output, f"{score:.4f}  {verdict} (threshold {chosen.value:g}, "
              f"{chosen.origin})")
    if not same:
        raise typer.Exit(1)


@app.command("enroll")
@embedding_options
def enroll(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Speaker name.")],
    files: Annotated[list[str], typer.Argument(metavar="FILE...",
                                               help="Recordings of this speaker.")],
    options: EmbedOptions,
    db: DbOpt = None, json_output: JsonOpt = False,
) -> None:
    """Add recordings of a speaker to the store (all or none: any bad file stores nothing)."""
    from audio_cli.store.db import Store
    from audio_cli.store.settings import warn
    from audio_cli.store.speakers import check_enroll, check_name
    from audio_cli.store.speakers import enroll as enroll_speaker

    check_name(name)
    check_inputs_exist(files)
    model, expected = store_model(ctx, options.model, db, "exemplars")
    options = dataclasses.replace(options, model=model)
    with Store(db) as store:
        speaker = load(options)
        identity = speaker.model
        check_store_model(identity, expected, db)
        warn(check_enroll(store, identity, made(options)))
        sources = [f if f == STDIN else str(Path(f).expanduser().absolute()) for f in files]
        results = embed_all(speaker, sources, options)
        total = enroll_speaker(store, identity, name, results, made(options))
        document = {"speaker": name, "added": len(results), "exemplars": total,
                    "model": identity.name, "model_digest": identity.digest,
                    "db": str(store.path)}
    _emit(document, json_output, f"{name}: {len(results)} added, "
          f"{plural(total, 'exemplar')} ({identity.name})")


@app.command("identify")
@embedding_options
def identify(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="Recording of an unknown speaker.")],
    options: EmbedOptions,
    top: TopOpt = 1,
    threshold: ThresholdOpt = None,
    scoring: Annotated[str, typer.Option(
        metavar="mean|max", help="mean: cosine with the re-normalised mean of a speaker's "
        "exemplars; max: best exemplar.")] = "mean",
    db: DbOpt = None, json_output: JsonOpt = False,
) -> None:
    """Which enrolled speaker is this? Exit 0 identified, 1 unknown, 2 error."""
    from audio_cli.store.db import Store
    from audio_cli.store.settings import warn_query
    from audio_cli.store.speakers import identify as identify_speaker

    with answers(EXIT_USAGE):
        check_inputs_exist([file])
        model, expected = store_model(ctx, options.model, db, "exemplars")
        options = dataclasses.replace(options, model=model)
        with Store(db, readonly=True) as store:
            speaker = load(options)
            identity = speaker.model
            check_store_model(identity, expected, db)
            warn_query(store, "exemplars", identity.digest, identity.name, made(options))
            chosen = _threshold(threshold, store.path, identity)
            (query,) = embed_all(speaker, [file], options)
            result = identify_speaker(store, identity, query.embedding, scoring)
        note_skipped(result.skipped, identity)
        best = result.ranked[0]
        margin = best.score - result.ranked[1].score if len(result.ranked) > 1 else None
        known = best.score >= chosen.value
        document = {
            "file": query.file, "speaker": best.name if known else None, "identified": known,
            "score": best.score, "margin": margin, "threshold": chosen.value,
            "threshold_origin": chosen.origin, "scoring": scoring, "model": identity.name,
            "model_digest": identity.digest,
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
    ctx: typer.Context,
    db: DbOpt = None, model: ModelOpt = None, json_output: JsonOpt = False,
) -> None:
    """Store the equal-error threshold measured on pairs of enrolled exemplars."""
    from audio_cli.pipeline.handle import open_model
    from audio_cli.store.db import Store
    from audio_cli.store.speakers import calibrate as calibrate_store

    model, expected = store_model(ctx, model or default_model(), db, "exemplars")
    with Store(db, create=False) as store:
        identity = open_model(model)  # the model's identity: no engine is built
        check_store_model(identity, expected, db)
        result = {**calibrate_store(store, identity), "model_digest": identity.digest}
    same, different = result["same_pairs"], result["different_pairs"]
    if same < MIN_SAME_PAIRS or different < MIN_DIFFERENT_PAIRS:
        messages.warning(
            f"the threshold rests on only {plural(same, 'same-speaker pair')} and "
            f"{plural(different, 'different-speaker pair')} (at least "
            f"{MIN_SAME_PAIRS} and {MIN_DIFFERENT_PAIRS} advised); enroll more recordings "
            "and calibrate again")
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

    with Store(db) as store:  # a failed run into a new store leaves none behind
        result = import_speakers(store, file)
        for refusal in result["refused"]:
            messages.error(refusal)
        result = {**result, "refused": len(result["refused"])}
        _emit(result, json_output, f"{plural(result['speakers'], 'speaker')}, "
              f"{plural(result['exemplars_added'], 'exemplar')} added"
              + (f", {result['refused']} refused (bad vectors)" if result["refused"] else ""))
        if result["refused"]:
            raise typer.Exit(EXIT_INPUT)


@speakers_app.command("map")
def speakers_map(
    ctx: typer.Context,
    plot: Annotated[str, typer.Option(
        "--plot", metavar="FILE.png|.svg", help="The new picture to write (needs matplotlib).")],
    db: DbOpt = None, model: ModelOpt = None, threshold: ThresholdOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --plot file.")
                     ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Draw every exemplar and indexed recording as a point (neighbours stay near), coloured
    by speaker: the speaker enrolled, or the one a recording is identified as."""
    from audio_cli.pipeline.handle import open_model
    from audio_cli.plots.figure import check_plot_path, save
    from audio_cli.plots.voices import map_figure, voice_map
    from audio_cli.store.db import Store
    from audio_cli.store.points import identified, model_points

    path = check_plot_path(plot, force)
    model, expected = store_model(ctx, model or default_model(), db, "recordings")
    if expected is None:
        model, expected = store_model(ctx, model, db, "exemplars")
    with Store(db, create=False, readonly=True) as store:
        identity = open_model(model)  # the model's identity: no engine is built
        check_store_model(identity, expected, db)
        points = model_points(store, identity)
        chosen = _threshold(threshold, store.path, identity)
        title = (f"{store.path.name}: {plural(len(set(points.names)), 'speaker')} enrolled "
                 f"({plural(len(points.names), 'exemplar')}), "
                 f"{plural(len(points.paths), 'recording')}; {Path(identity.name).name}")
    labels = identified(points, chosen.value)
    save(map_figure(voice_map(points, labels, title)), path, force)
    messages.note(f"wrote the map to {path}")
    _emit({"plot": str(path), "exemplars": len(points.names), "recordings": len(points.paths),
           "speakers": len(set(points.names)),
           "identified": sum(label is not None for label in labels),
           "threshold": chosen.value, "threshold_origin": chosen.origin,
           "model": identity.name, "model_digest": identity.digest}, json_output,
          f"{path}: {plural(len(points.names), 'exemplar')}, "
          f"{plural(len(points.paths), 'recording')} "
          f"({sum(label is not None for label in labels)} identified)")


@app.command("index")
@embedding_options
def index(
    ctx: typer.Context,
    options: EmbedOptions,
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="PATH...", help="Audio files or folders (recursive).", show_default=False)
    ] = None,
    prune: Annotated[bool, typer.Option(
        "--prune", help="Drop indexed files under PATHS that are gone.")] = False,
    source: Annotated[Path | None, typer.Option(
        "--from", metavar="FILE.parquet", help="Load the vectors of an `embed-speaker "
        "--output` Parquet file or folder instead of embedding (same --model).")] = None,
    db: DbOpt = None, json_output: JsonOpt = False,
) -> None:
    """Embed new or changed recordings into the store (exit 3 if some could not be read)."""
    from audio_cli.store.db import Store
    from audio_cli.store.index import index_paths, stderr_progress

    if (source is None) == (not paths):
        raise UsageError("index takes PATH... or --from FILE.parquet (one of the two)")
    if source is not None:
        refuse(ctx, ("engine", "threads", "precision", "min_duration", "vad"),
               "not with --from, whose rows say how each vector was made")
        model, expected = store_model(ctx, options.model, db, "recordings")
        return _index_from(source, prune, db, (model, expected), json_output)
    paths, empty = _folders_without_audio(paths, prune)
    if not paths:  # nothing to index: no store is opened, no model loaded
        for failure in empty:
            messages.error(failure.message)
        _emit({"found": 0, "added": 0, "updated": 0, "unchanged": 0, "pruned": 0,
               "failed": [{"file": f.file, "error": f.message} for f in empty]}, json_output,
              f"0 found: 0 added, 0 updated, 0 unchanged, 0 pruned, {len(empty)} failed")
        raise typer.Exit(EXIT_INPUT)
    model, expected = store_model(ctx, options.model, db, "recordings")
    options = dataclasses.replace(options, model=model)
    with Store(db) as store:  # a failed run into a new store leaves none behind
        speaker = load(options)
        identity = speaker.model
        check_store_model(identity, expected, db)
        report = index_paths(store, speaker, paths, options, prune, stderr_progress("indexing"))
        report.failures[:0] = empty
        for failure in report.failures:
            messages.error(failure.message)
        document = {"found": report.found, "added": report.added, "updated": report.updated,
                    "unchanged": report.unchanged, "pruned": report.pruned,
                    "failed": [{"file": f.file, "error": f.message} for f in report.failures],
                    "model": identity.name, "model_digest": identity.digest}
        _emit(document, json_output, f"{report.found} found: {report.added} added, "
              f"{report.updated} updated, {report.unchanged} unchanged, {report.pruned} "
              f"pruned, {len(report.failures)} failed")
        if report.failures:
            raise typer.Exit(combined_status(f.error for f in report.failures))


def _folders_without_audio(paths: list[str], prune: bool) -> tuple[list[str], list]:
    """The paths to index, and a failed input for each folder without audio files, as
    embed-speaker reports it. With --prune such a folder is indexed: its files may be gone."""
    import os

    from audio_cli.cli.inputs import no_audio_files
    from audio_cli.frontend.folders import has_audio_names
    from audio_cli.pipeline.results import InputFailure

    if prune:
        return paths, []
    empty = [p for p in paths if os.path.isdir(p) and not has_audio_names(p)]
    return ([p for p in paths if p not in empty],
            [InputFailure(p, no_audio_files(p)) for p in empty])


def _index_from(source: Path, prune: bool, db: Path | None, model: tuple[str, str | None],
                json_output: bool) -> None:
    """`index --from`: bulk-load an embed-speaker Parquet output (store/bulk.py); `model`:
    the model and the digest the store expects of it (`store_model`)."""
    from audio_cli.pipeline.handle import open_model
    from audio_cli.pipeline.parquet import require_pyarrow
    from audio_cli.store.bulk import index_parquet
    from audio_cli.store.db import Store

    require_pyarrow()
    if prune:
        raise UsageError("--prune works with PATH..., not with --from")
    if not source.exists():
        raise UsageError(f"--from {source}: no such file or folder")
    with Store(db) as store:  # a failed run into a new store leaves none behind
        identity = open_model(model[0])  # the model's identity: no engine is built
        check_store_model(identity, model[1], db)
        report = index_parquet(store, identity, source)
        for path in report.refused:
            messages.error(f"{source}: the row of {path} holds a non-finite or zero vector; "
                           "refused")
        document = {"rows": report.rows, "added": report.added, "updated": report.updated,
                    "unchanged": report.unchanged, "errors_skipped": report.errors,
                    "skipped": report.skipped, "refused": len(report.refused),
                    "model": identity.name, "model_digest": identity.digest}
        _emit(document, json_output, f"{plural(report.rows, 'row')}: {report.added} added, "
              f"{report.updated} updated, {report.unchanged} unchanged, {report.errors} error "
              "rows skipped"
              + (f", {report.skipped} without a file or vector" if report.skipped else "")
              + (f", {len(report.refused)} refused (bad vectors)" if report.refused else ""))
        if report.refused:
            raise typer.Exit(EXIT_INPUT)
