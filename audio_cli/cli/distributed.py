"""`--ray ADDRESS --output DIR.parquet`: a command's one-machine code on a Ray cluster
(embed-speaker here; diarize in cli/diarize_ray.py, through the same `run_on_ray`).

The driver (this process) lists the inputs, reads what an earlier run already wrote
(cli/shards.py), and hands Ray Data the rest, sorted by file size so that a batch holds
recordings of similar length. Actors (a `RayBatch` subclass, a callable class for
`map_batches`) each load the models once, with onnxruntime on as many threads as the actor has
CPUs, and decode and process their batches with the one-machine code (embed-speaker:
cli/outcomes.py `outcomes`). A failed input comes back as an error row. The driver writes the
rows it receives into Parquet shards, published one at a time, so a killed run loses at most
the shard being written and a rerun resumes.

Input paths must name the same files on every node (a shared file system).
Ray is an optional extra: `pip install 'audio-speaker[ray]'`.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from audio_cli.cli import messages, shards
from audio_cli.cli.errors import EXIT_OK, combined_status
from audio_cli.pipeline.options import EmbedOptions
from engines.errors import AudioCliError, EngineError, ModelError, UsageError

INSTALL_HINT = "pip install 'audio-speaker[ray]'"
CLIENT_HINT = "pip install 'ray[client]'"  # Ray Client (ray://) needs grpcio beside Ray
ERROR_KIND = "error_kind"  # an actor's column beside the rows (not written): the error's kind
BATCH_FILES = 8  # inputs per actor call (sorted by size: similar durations together)
PROGRESS_SECONDS = 2.0  # at most one progress line this often


def check_address(address: str) -> str | None:
    """The address for ray.init: None starts Ray here (`local`); `auto` joins the running
    cluster (RAY_ADDRESS or the one started on this machine); `ray://HOST:PORT` is a client."""
    if address == "local":
        return None
    if address == "auto" or (address.startswith("ray://") and len(address) > len("ray://")):
        return address
    raise UsageError(f"--ray {address}: use local, auto or ray://HOST:PORT")


def require_ray():
    """The ray module, or a one-line UsageError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError(f"--ray needs Ray, which is not installed here ({INSTALL_HINT})"
                         ) from None
    return ray


def require_client(address: str | None) -> None:
    """For a `ray://` address: Ray Client's package (grpcio), or a one-line UsageError."""
    import importlib.util

    if address is None or not address.startswith("ray://"):
        return
    try:
        missing = importlib.util.find_spec("grpc") is None
    except (ImportError, ValueError):
        missing = True
    if missing:
        raise UsageError(f"--ray {address}: Ray Client is not installed here ({CLIENT_HINT})")


class RayBatch:
    """A Ray Data actor's base (a callable class for `map_batches`): turns a batch of inputs
    (columns path as given, file, size, mtime_ns) into an Arrow table of rows, a failed input
    into its error rows, never a failed job. A subclass loads its models once in `__init__`
    and gives `outcomes(items)` (one per cli.inputs.InputItem, in order), `rows(outcome,
    path, key)` (`key`: size, mtime_ns) and `table(rows)`."""

    def __call__(self, batch):
        from audio_cli.cli.errors import internal_message
        from audio_cli.cli.inputs import InputItem
        from audio_cli.cli.outcomes import Outcome

        given, files = batch.column("path").to_pylist(), batch.column("file").to_pylist()
        sizes, mtimes = batch.column("size").to_pylist(), batch.column("mtime_ns").to_pylist()

        def run(indices):
            return list(self.outcomes([InputItem(files[i]) for i in indices]))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # input warnings: the row is still written
            try:
                results = run(range(len(files)))
            except Exception:  # noqa: BLE001 - find the input at fault: each alone
                results = []
                for i in range(len(files)):
                    try:
                        results += run([i])
                    except Exception as exc:  # noqa: BLE001 - an error row, never a failed job
                        error = exc if isinstance(exc, AudioCliError) else AudioCliError(
                            internal_message(exc))
                        results.append(Outcome(files[i], error=error))
        rows, kinds = [], []
        for i, outcome in enumerate(results):
            for row in self.rows(outcome, given[i], (sizes[i], mtimes[i])):
                rows.append(row)
                kinds.append(None if outcome.error is None else outcome.error.kind)
        return self.table(rows).append_column(ERROR_KIND, _strings(kinds))


class EmbedBatch(RayBatch):
    """embed-speaker's actor: loads the model once, embeds a batch's inputs."""

    def __init__(self, options: EmbedOptions, name: str, digest: str,
                 windows: tuple[float, float] | None):
        from audio_cli.pipeline.handle import open_model
        from audio_cli.pipeline.speaker import SpeakerEmbedder

        model = open_model(options.model, options.engine)
        check_digest(options.model, model.digest, digest)
        model.name = name
        self.speaker = SpeakerEmbedder(model, options.engine, options.threads, options.precision,
                                       max_duration=options.max_duration)
        self.options, self.digest, self.windows = options, digest, windows

    def outcomes(self, items):
        from audio_cli.cli.outcomes import outcomes

        return outcomes(self.speaker, items, self.options, self.windows)

    def rows(self, outcome, path: str, key: tuple) -> list[dict]:
        from audio_cli.cli.writers import outcome_rows

        speaker = self.speaker
        return [{**row, "path": path} for row in outcome_rows(
            outcome, speaker.model_id, speaker.engine_name, self.digest, key)]

    def table(self, rows: list[dict]):
        from audio_cli.pipeline.parquet import to_table

        return to_table(rows, self.speaker.config.embedding_dim)


def check_digest(model: str, found: str, digest: str) -> None:
    """On an actor: the model's weights are the driver's (another copy on this node may
    differ), else a ModelError."""
    if found != digest:
        raise ModelError(f"{model} on node {os.uname().nodename} has other weights than on "
                         f"the driver ({found}, not {digest})")


def _strings(values: list):
    import pyarrow as pa

    return pa.array(values, type=pa.string())


def _listing(files: list[str]) -> tuple[list[dict], list]:
    """This run's inputs as rows for Ray (path as given, absolute file, size, mtime) and the
    inputs that failed already (InputItem with an error)."""
    from audio_cli.cli.inputs import InputItem, expand_inputs, mark_missing
    from audio_cli.frontend.inputs import STDIN
    from engines.errors import InputAudioError

    items = mark_missing(expand_inputs(files))
    if any(i.path == STDIN for i in items):
        raise UsageError("--ray reads files, not stdin (-)")
    todo, failed = [], []
    for item in items:
        if item.error is not None:
            failed.append(item)
            continue
        try:
            st = os.stat(item.path)
        except OSError as exc:
            failed.append(InputItem(item.path, InputAudioError(f"{item.path}: {exc.strerror}")))
            continue
        todo.append({"path": item.path, "file": os.path.abspath(item.path),
                     "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return todo, failed


@dataclass(frozen=True)
class RayJob:
    """One kind of `--ray` run, made on the driver once the inputs are listed."""

    verb: str  # what is done to an input: "embed", "diarize" (in the notes)
    actor: type  # a RayBatch subclass, built on each actor from `arguments`
    arguments: dict
    digest: str  # the rows' identity: a rerun skips the inputs written with it
    schema: object  # the rows' Arrow schema
    keys: shards.Keys  # the rows' key columns (shards.done_inputs)
    failures: Callable  # [Outcome] of inputs failed on the driver -> their Arrow table
    threads: int = 1  # per actor
    batch_files: int = BATCH_FILES  # inputs per actor call


def embed_on_ray(address: str, files: list[str], options: EmbedOptions, *, output: str | None,
                 force: bool, windows: tuple[float, float] | None, json_output: bool) -> int:
    """Run `embed-speaker` on Ray into a folder of Parquet shards (`windows`: the checked
    --window and --hop, or None); returns the exit status."""

    def prepare() -> RayJob:
        from audio_cli.cli.writers import outcome_rows
        from audio_cli.pipeline.handle import open_model
        from audio_cli.pipeline.parquet import schema, to_table

        model = open_model(options.model, options.engine)  # on the driver: no engine is built
        model.check_min_duration(options.min_duration)  # before Ray starts
        digest, dim, name = model.digest, model.dim, model.name
        threads = options.threads or 1

        def failures(outcomes: list) -> object:
            return to_table([row for o in outcomes for row in outcome_rows(
                o, name, options.engine, digest, (None, None))], dim)

        return RayJob(verb="embed", actor=EmbedBatch, arguments={
            "options": dataclasses.replace(options, model=model_spec(options.model),
                                           threads=threads),
            "name": name, "digest": digest, "windows": windows}, digest=digest,
            schema=schema(dim), keys=shards.EMBEDDINGS, failures=failures, threads=threads)

    return run_on_ray(address, files, prepare, output=output, force=force,
                      json_output=json_output)


def run_on_ray(address: str, files: list[str], prepare: Callable[[], RayJob], *,
               output: str | None, force: bool, json_output: bool) -> int:
    """Run a job on Ray into a folder of Parquet shards: `prepare()` loads what the driver
    needs (after every usage check, before Ray starts); returns the exit status."""
    from audio_cli.cli.messages import plural
    from audio_cli.pipeline.parquet import require_pyarrow

    ray_address = check_address(address)
    if output is None or not output.lower().endswith(".parquet"):
        raise UsageError("--ray writes to --output DIR.parquet (a folder of Parquet shards)")
    if json_output:
        raise UsageError("--ray writes to --output only; --json is not available with it")
    require_pyarrow()
    ray = require_ray()
    require_client(ray_address)
    folder = Path(output)
    shards.check_folder(folder)
    todo, failed = _listing(files)
    job = prepare()
    created = shards.prepare_folder(folder, force)
    wanted = {r["path"]: (r["size"], r["mtime_ns"]) for r in todo}
    wanted.update({i.path: None for i in failed})
    done = shards.done_inputs(folder, job.digest, wanted, job.keys)
    todo = [r for r in todo if (r["path"], r["size"], r["mtime_ns"]) not in done.keys]
    todo.sort(key=lambda r: r["size"])  # similar durations share a batch
    total = len(todo) + len(failed)
    if done.keys:
        messages.note(f"{plural(len(done.keys), 'input')} already in {folder}; "
                      f"{plural(total, 'input')} to {job.verb}")
    if not total:
        return EXIT_OK
    writer = shards.ShardWriter(folder, job.schema)
    threads = job.threads
    errors: list[AudioCliError] = []
    started_here = False
    try:
        table = job.failures([_failure(item) for item in failed])
        for message in table.column("error").to_pylist():
            messages.error(message)
        errors += [item.error for item in failed]
        writer.add(table)
        if todo:
            started_here = not ray.is_initialized()
            if started_here:
                _start(ray, ray_address)
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False  # this run's own progress lines instead
            context.print_on_execution_start = False
            cpus = int(ray.cluster_resources().get("CPU", 0))
            if threads > cpus:  # no actor could ever be placed
                raise UsageError(f"--threads {threads}: the Ray cluster has {cpus} CPUs")
            actors = max(1, min(cpus // threads, -(-len(todo) // job.batch_files)))
            messages.note(f"ray: {plural(len(todo), 'input')} on {plural(actors, 'actor')} x "
                          f"{plural(threads, 'thread')}")
            dataset = ray.data.from_items(todo).map_batches(
                job.actor, batch_size=job.batch_files, batch_format="pyarrow",
                num_cpus=threads, compute=ray.data.ActorPoolStrategy(size=actors),
                fn_constructor_kwargs=job.arguments)
            finished, last = len(failed), 0.0
            path = job.keys.path
            try:
                for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                    kinds = table.column(ERROR_KIND).to_pylist()
                    table = table.drop_columns([ERROR_KIND])
                    writer.add(table)
                    for message, kind in zip(table.column("error").to_pylist(), kinds,
                                             strict=True):
                        if message is not None:
                            messages.error(message)
                            errors.append(_failed(message, kind))
                    finished += len(set(table.column(path).to_pylist()))
                    if time.monotonic() - last >= PROGRESS_SECONDS or finished == total:
                        last = time.monotonic()
                        messages.note(f"ray: {finished}/{total} inputs")
            except ray.exceptions.RayError as exc:
                writer.publish()  # what came back is kept: a rerun resumes after it
                raise EngineError(f"the Ray job failed ({finished} of {total} inputs "
                                  f"written): {_last_line(exc)}") from None
        writer.publish()
    finally:
        writer.discard()
        if started_here:
            ray.shutdown()
        if created and not any(folder.iterdir()):  # stopped before its first shard
            folder.rmdir()
    if errors:
        messages.error(f"{len(errors)} of {plural(total, 'input')} failed")
    messages.note(f"wrote {plural(total, 'input')} to {folder} "
                  f"({plural(writer.shards, 'new shard')}; {len(shards.shard_files(folder))} "
                  "in all)")
    return combined_status(errors)


def _last_line(exc: Exception) -> str:
    """The last non-empty line of an error Ray reports (its cause, after the traceback)."""
    lines = [text.strip() for text in str(exc).splitlines() if text.strip()]
    return lines[-1] if lines else type(exc).__name__


def model_spec(model: str) -> str:
    """What the actors resolve: a local model folder or file as an absolute path (it must be
    on a file system every node shares), else the name or hub id (each node fetches it once)."""
    path = Path(model).expanduser()
    return str(path.absolute()) if path.exists() else model


def _failed(message: str, kind: str | None) -> AudioCliError:
    """An error row that came back from an actor, as an error of its kind again."""
    error = AudioCliError(message)
    error.kind = kind or "internal"
    return error


def _failure(item):
    from audio_cli.cli.outcomes import Outcome

    return Outcome(item.path, error=item.error)


def _start(ray, address: str | None) -> None:
    """Start (None) or join Ray; Ray's own log lines only for errors."""
    import logging
    import signal

    from audio_cli.cli.signals import CAUGHT_SIGNALS

    numbers = [getattr(signal, n) for n in CAUGHT_SIGNALS if hasattr(signal, n)]
    handlers = {n: signal.getsignal(n) for n in numbers}
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                 configure_logging=True)
    except (ImportError, ValueError) as exc:  # Ray Client's own check, if ours missed it
        if "ray[client]" not in str(exc) and "grpc" not in str(exc):
            raise
        raise UsageError(f"--ray {address}: Ray Client is not installed here ({CLIENT_HINT})"
                         ) from None
    for number, handler in handlers.items():  # Ray's core worker takes SIGTERM over
        if handler is not None:
            signal.signal(number, handler)
    logging.getLogger("ray.data").setLevel(logging.ERROR)

