"""`embed-speaker --ray ADDRESS --output DIR.parquet`: the same embedding code on a Ray cluster.

The driver (this process) lists the inputs, reads what an earlier run already wrote
(cli/shards.py), and hands Ray Data the rest, sorted by file size so that a batch holds
recordings of similar length. Actors (`EmbedBatch`, a callable class for `map_batches`) each
load the model once, with onnxruntime on as many threads as the actor has CPUs, and decode and
embed their batches with the one-machine code (cli/embed.py `outcomes`). A failed input comes
back as an error row. The driver writes the rows it receives into Parquet shards, published
one at a time, so a killed run loses at most the shard being written and a rerun resumes.

Input paths must name the same files on every node (a shared file system).
Ray is an optional extra: `pip install 'audio-speaker[ray]'`.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from pathlib import Path

from audio_cli.cli import messages
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


class EmbedBatch:
    """A Ray Data actor: loads the model once, then turns batches of inputs into rows."""

    def __init__(self, options: EmbedOptions, name: str, digest: str,
                 windows: tuple[float, float] | None):
        from audio_cli.pipeline.handle import open_model
        from audio_cli.pipeline.speaker import SpeakerEmbedder

        model = open_model(options.model, options.engine)
        if model.digest != digest:  # another copy of the model on this node
            raise ModelError(f"{options.model} on node {os.uname().nodename} has other weights "
                             f"than on the driver ({model.digest}, not {digest})")
        model.name = name
        self.speaker = SpeakerEmbedder(model, options.engine, options.threads, options.precision,
                                       max_duration=options.max_duration)
        self.options, self.digest, self.windows = options, digest, windows

    def __call__(self, batch):
        from audio_cli.cli.errors import internal_message
        from audio_cli.cli.inputs import InputItem
        from audio_cli.cli.outcomes import Outcome, outcomes
        from audio_cli.cli.writers import outcome_rows
        from audio_cli.pipeline.parquet import to_table

        given, files = batch.column("path").to_pylist(), batch.column("file").to_pylist()
        sizes, mtimes = batch.column("size").to_pylist(), batch.column("mtime_ns").to_pylist()
        speaker = self.speaker

        def run(indices):
            items = [InputItem(files[i]) for i in indices]
            return list(outcomes(speaker, items, self.options, self.windows))

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
            for row in outcome_rows(outcome, speaker.model_id, speaker.engine_name,
                                    self.digest, (sizes[i], mtimes[i])):
                rows.append({**row, "path": given[i]})
                kinds.append(None if outcome.error is None else outcome.error.kind)
        table = to_table(rows, speaker.config.embedding_dim)
        return table.append_column(ERROR_KIND, _strings(kinds))


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


def embed_on_ray(address: str, files: list[str], options: EmbedOptions, *, output: str | None,
                 force: bool, windows: tuple[float, float] | None, json_output: bool) -> int:
    """Run `embed-speaker` on Ray into a folder of Parquet shards (`windows`: the checked
    --window and --hop, or None); returns the exit status."""
    from audio_cli.cli import shards
    from audio_cli.cli.messages import plural
    from audio_cli.cli.writers import outcome_rows
    from audio_cli.pipeline.handle import open_model
    from audio_cli.pipeline.parquet import require_pyarrow, to_table

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
    model = open_model(options.model, options.engine)  # on the driver: no engine is built
    model.check_min_duration(options.min_duration)  # before Ray starts
    digest, dim, name = model.digest, model.dim, model.name
    created = shards.prepare_folder(folder, force)
    wanted = {r["path"]: (r["size"], r["mtime_ns"]) for r in todo}
    wanted.update({i.path: None for i in failed})
    done = shards.done_inputs(folder, digest, wanted)
    todo = [r for r in todo if (r["path"], r["size"], r["mtime_ns"]) not in done.keys]
    todo.sort(key=lambda r: r["size"])  # similar durations share a batch
    total = len(todo) + len(failed)
    if done.keys:
        messages.note(f"{plural(len(done.keys), 'input')} already in {folder}; "
                      f"{plural(total, 'input')} to embed")
    if not total:
        return EXIT_OK
    writer = shards.ShardWriter(folder, dim)
    threads = options.threads or 1
    errors: list[AudioCliError] = []
    started_here = False
    try:
        rows = [row for item in failed for row in outcome_rows(
            _failure(item), name, options.engine, digest, (None, None))]
        for row in rows:
            messages.error(row["error"])
        errors += [item.error for item in failed]
        writer.add(to_table(rows, dim))
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
            actors = max(1, min(cpus // threads, -(-len(todo) // BATCH_FILES)))
            messages.note(f"ray: {plural(len(todo), 'input')} on {plural(actors, 'actor')} x "
                          f"{plural(threads, 'thread')}")
            dataset = ray.data.from_items(todo).map_batches(
                EmbedBatch, batch_size=BATCH_FILES, batch_format="pyarrow",
                num_cpus=threads, compute=ray.data.ActorPoolStrategy(size=actors),
                fn_constructor_kwargs={
                    "options": dataclasses.replace(options, model=_model_spec(options.model),
                                                   threads=threads),
                    "name": name, "digest": digest, "windows": windows})
            finished, last = len(failed), 0.0
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
                    finished += len(set(table.column("path").to_pylist()))
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


def _model_spec(model: str) -> str:
    """What the actors resolve: a local model folder as an absolute path (it must be on a
    file system every node shares), else the name or hub id (each node fetches it once)."""
    path = Path(model).expanduser()
    return str(path.absolute()) if path.is_dir() else model


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

