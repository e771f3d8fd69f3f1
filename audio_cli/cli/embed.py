"""`embed-speaker`'s run and its output: one Outcome per input, in order, sent to the sinks
(JSON Lines on stdout, a table, an --output file); failures reported on stderr, never fatal.
The one-file call prints a summary or one JSON object."""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TextIO

import numpy as np

from audio_cli.frontend.audio import (
    LIST_PREFIX,
    InputAudioWarning,
    source_name,
)
from audio_cli.pipeline.speaker import (
    EmbeddingResult,
    InputFailure,
    WeSpeaker,
    WindowEmbedding,
    check_window_lengths,
)
from engines.errors import (
    EXIT_INPUT,
    EXIT_OK,
    AudioCliError,
    EngineError,
    InputAudioError,
    UsageError,
)

if TYPE_CHECKING:
    from audio_cli.cli.inputs import InputItem

PROGRESS_GROUP_FILES = 4  # files embedded together while a progress bar is shown
PREVIEW_VALUES = 8  # values shown in the one-file summary


@dataclass(frozen=True)
class Outcome:
    """What became of one input: a whole-file result, its windows, or the error."""

    file: str  # the path as given, `stdin` for `-`
    result: EmbeddingResult | None = None
    windows: list[WindowEmbedding] | None = None
    error: AudioCliError | None = None

    @property
    def message(self) -> str:
        """The one-line error, starting with the file name."""
        text = str(self.error)
        return text if text.startswith(f"{self.file}:") else f"{self.file}: {text}"


class Sink(Protocol):
    """Somewhere outcomes go (stdout JSON Lines, a table, an output file)."""

    def add(self, outcome: Outcome) -> None: ...


def is_single_file(args: list[str]) -> bool:
    """True for the classic one-file call: one argument, neither a list nor a directory."""
    return (len(args) == 1 and not args[0].startswith(LIST_PREFIX)
            and not os.path.isdir(args[0]))


def check_windows(window: float | None, hop: float | None, min_duration: float
                  ) -> float | None:
    """Validate --window/--hop before any work; returns the hop (default: the window)."""
    if window is None:
        if hop is not None:
            raise UsageError("--hop needs --window")
        return None
    hop = window if hop is None else hop
    check_window_lengths(window, hop)
    if window < min_duration:
        raise UsageError(f"--window {window:g} s is shorter than --min-duration {min_duration:g} s")
    return hop


def report_unusable(items: list[InputItem], json_output: bool) -> int:
    """Report inputs that all failed before a model was needed; returns the exit status."""
    sinks: list[Sink] = [JsonLinesSink(sys.stdout, "", "")] if json_output else []
    return run((Outcome(source_name(i.path), error=i.error) for i in items), sinks,
               Reporter(len(items), show_progress=False))


def outcomes(speaker: WeSpeaker, items: list[InputItem], min_duration: float,
             window: float | None, hop: float | None, group_files: int | None = None,
             vad: bool = False) -> Iterator[Outcome]:
    """One Outcome per item, in order: whole-file embeddings, or windows if `window` is set
    (then `hop` is set too: see check_windows). `group_files` embeds the files that many at
    a time (smaller groups: a progress bar that moves more often). `vad`: speech only."""
    if window is not None:
        yield from _window_outcomes(speaker, items, min_duration, window, hop, vad)
        return
    paths = [i.path for i in items if i.error is None]
    step = group_files or max(len(paths), 1)
    results = (r for first in range(0, len(paths), step)
               for r in speaker.embed_sources(paths[first:first + step], min_duration, vad))
    for item in items:
        name = source_name(item.path)
        if item.error is not None:
            yield Outcome(name, error=item.error)
            continue
        produced = next(results)
        if isinstance(produced, InputFailure):
            yield Outcome(name, error=produced.error)
        else:
            yield Outcome(name, result=produced)


def _window_outcomes(speaker: WeSpeaker, items: Iterable[InputItem], min_duration: float,
                     window: float, hop: float, vad: bool) -> Iterator[Outcome]:
    for item in items:
        name = source_name(item.path)
        if item.error is not None:
            yield Outcome(name, error=item.error)
            continue
        try:
            outcome = Outcome(name, windows=speaker.embed_file_windows(item.path, window, hop,
                                                                       min_duration, vad))
        except (InputAudioError, EngineError) as exc:
            outcome = Outcome(name, error=exc)
        yield outcome


def exit_status(codes: set[int]) -> int:
    """0 if nothing failed, the failures' status if they agree, else 3 (bad input)."""
    if not codes:
        return EXIT_OK
    return next(iter(codes)) if len(codes) == 1 else EXIT_INPUT


class Reporter:
    """stderr during a run: one `audio: error:` line per failed input, and a progress bar."""

    def __init__(self, total: int, show_progress: bool):
        self.failed = 0
        self._progress = None
        if show_progress:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn())
            self._progress = Progress(*columns, console=Console(stderr=True), transient=True,
                                      redirect_stdout=False, redirect_stderr=False)
            self._task = self._progress.add_task("embedding", total=total)
            self._progress.start()

    def outcome(self, outcome: Outcome) -> None:
        """Report one finished input."""
        if outcome.error is not None:
            self.failed += 1
            self.line(f"audio: error: {outcome.message}")
        if self._progress is not None:
            self._progress.advance(self._task)

    def line(self, text: str) -> None:
        """One line on stderr (above the progress bar when there is one)."""
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def close(self) -> None:
        """Remove the progress bar."""
        if self._progress is not None:
            self._progress.stop()


def stderr_line(text: str) -> None:
    """One line on stderr, at once."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


@contextmanager
def input_warnings(line: Callable[[str], None]) -> Iterator[None]:
    """Show each InputAudioWarning issued meanwhile as one `audio: warning:` line via `line`."""
    with warnings.catch_warnings():
        warnings.simplefilter("default", InputAudioWarning)  # once per message, never an error
        show_other = warnings.showwarning

        def show(message, category, *args, **kwargs):
            if issubclass(category, InputAudioWarning):
                line(f"audio: warning: {message}")
            else:
                show_other(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 embedding`, `2 embeddings` (or the given plural)."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def run(stream: Iterable[Outcome], sinks: list[Sink], reporter: Reporter) -> int:
    """Send every outcome to every sink, report it; returns the exit status."""
    codes: set[int] = set()
    total = 0
    try:
        for outcome in stream:
            total += 1
            if outcome.error is not None:
                codes.add(outcome.error.exit_code)
            for sink in sinks:
                sink.add(outcome)
            reporter.outcome(outcome)
    finally:
        reporter.close()
    if reporter.failed:
        reporter.line(f"audio: error: {reporter.failed} of {plural(total, 'input')} failed")
    return exit_status(codes)


def embed_one(speaker: WeSpeaker, file: str, min_duration: float, json_output: bool,
              out: Sink | None, digest: str = "", vad: bool = False) -> int:
    """The one-file call: a summary (or one JSON object); an error stops it. Returns 0."""
    with input_warnings(stderr_line):
        result = speaker.embed_source(file, min_duration, vad)
    if json_output:
        sys.stdout.write(result_to_json(result, digest) + "\n")
    elif out is None:
        render_summary(result, sys.stdout)
    if out is not None:
        out.add(Outcome(source_name(file), result=result))
    return EXIT_OK


def embed_many(speaker: WeSpeaker, items: list[InputItem], min_duration: float,
               window: float | None, hop: float | None, json_output: bool,
               out: Sink | None, digest: str = "", vad: bool = False) -> int:
    """Many inputs (or windows) to JSON Lines, a table and/or `out`; returns the status."""
    from audio_cli.cli.table import TableSink

    sinks: list[Sink] = [out] if out is not None else []
    table = None
    if json_output:
        sinks.append(JsonLinesSink(sys.stdout, speaker.model_id, speaker.engine_name, digest))
    elif out is None:
        table = TableSink(windows=window is not None)
        sinks.append(table)
    streaming_to_terminal = json_output and sys.stdout.isatty()
    progress = sys.stderr.isatty() and not streaming_to_terminal
    reporter = Reporter(len(items), progress)
    group = PROGRESS_GROUP_FILES if progress else None
    with input_warnings(reporter.line):
        status = run(outcomes(speaker, items, min_duration, window, hop, group, vad), sinks,
                     reporter)
    if table is not None:
        table.render(sys.stdout)
    return status


def result_to_dict(result: EmbeddingResult, digest: str = "") -> dict:
    """The `--json` payload: the full vector and how it was made (`model_digest`: the
    model's identity, as the store records it; `speech`: seconds embedded, with VAD)."""
    speech = {} if result.speech is None else {"speech": round(result.speech, 6)}
    return {
        "embedding": [float(v) for v in result.embedding],
        "dimension": result.dimension,
        "elapsed": round(result.elapsed, 6),
        "file": result.file,
        "duration": round(result.duration, 6),
        "sample_rate": result.sample_rate,
        "model": result.model,
        "model_digest": digest,
        "engine": result.engine,
        **speech,
    }


def result_to_json(result: EmbeddingResult, digest: str = "") -> str:
    """One line of JSON for a result."""
    return json.dumps(result_to_dict(result, digest), separators=(",", ":"))


def render_summary(result: EmbeddingResult, stream: TextIO) -> None:
    """Print a short human-readable summary of one embedding (plain lines: a long path is
    never cut, piped or not)."""
    v = result.embedding
    preview = ", ".join(f"{x:+.4f}" for x in v[:PREVIEW_VALUES])
    rows = [
        ("file", result.file),
        ("duration", f"{result.duration:.2f} s ({result.sample_rate} Hz)"),
        *([] if result.speech is None else [("speech", f"{result.speech:.2f} s")]),
        ("dimension", str(result.dimension)),
        ("L2 norm", f"{float(np.linalg.norm(v)):.6f}"),
        ("range", f"[{float(v.min()):+.4f}, {float(v.max()):+.4f}]"),
        (f"first {min(PREVIEW_VALUES, len(v))}", f"[{preview}]"),
        ("engine", result.engine),
        ("model", result.model),
        ("time", f"{result.elapsed * 1000:.1f} ms"),
    ]
    width = max(len(label) for label, _ in rows)
    stream.write("".join(f"{label:<{width}}  {value}\n" for label, value in rows))


def window_to_dict(window: WindowEmbedding, model: str, engine: str, digest: str = "") -> dict:
    """One JSON Lines record of `--window`: the window's times and vector. With VAD, also
    its `speech` seconds; a window with too little speech has `embedding` null."""
    v = window.embedding
    speech = {} if window.speech is None else {"speech": round(window.speech, 6)}
    return {
        "file": window.file,
        "start": round(window.start, 6),
        "end": round(window.end, 6),
        **speech,
        "embedding": None if v is None else [float(x) for x in v],
        "dimension": None if v is None else int(v.shape[0]),
        "model": model,
        "model_digest": digest,
        "engine": engine,
    }


def outcome_records(outcome: Outcome, model: str, engine: str, digest: str = "") -> list[dict]:
    """The JSON Lines records of one input: its result, one per window, or its error."""
    if outcome.error is not None:
        return [{"file": outcome.file, "error": outcome.message}]
    if outcome.windows is not None:
        return [{**window_to_dict(w, model, engine, digest), "file": outcome.file}
                for w in outcome.windows]
    return [{**result_to_dict(outcome.result, digest), "file": outcome.file}]


def json_lines(outcome: Outcome, model: str, engine: str, digest: str = "") -> str:
    """The input's records as JSON Lines (compact, one record a line)."""
    return "".join(json.dumps(record, separators=(",", ":")) + "\n"
                   for record in outcome_records(outcome, model, engine, digest))


class JsonLinesSink:
    """JSON Lines on a stream (stdout), flushed after each input so pipes see it at once."""

    def __init__(self, stream: TextIO, model: str, engine: str, digest: str = ""):
        self.stream, self.model, self.engine, self.digest = stream, model, engine, digest

    def add(self, outcome: Outcome) -> None:
        """Write the input's records."""
        self.stream.write(json_lines(outcome, self.model, self.engine, self.digest))
        self.stream.flush()
