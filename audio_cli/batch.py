"""Many inputs in one call: one Outcome per input, in order; failures reported, never fatal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .audio_io import STDIN, load_audio
from .errors import EXIT_INPUT, EXIT_OK, AudioCliError, EngineError, InputAudioError, UsageError
from .speaker import (
    EmbeddingResult,
    InputFailure,
    WeSpeaker,
    WindowEmbedding,
    check_window_lengths,
)

if TYPE_CHECKING:
    from .inputs import InputItem
    from .writers import OutputFile

TABLE_WIDTH_PIPED = 4000  # characters; wide enough that piped table rows never wrap


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


def display_name(path: str) -> str:
    """How an input is named in outputs: its path as given, `stdin` for `-`."""
    return "stdin" if path == STDIN else path


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


def outcomes(speaker: WeSpeaker, items: list[InputItem], min_duration: float,
             window: float | None = None, hop: float | None = None) -> Iterator[Outcome]:
    """One Outcome per item, in order: whole-file embeddings, or windows if `window` is set."""
    if window is not None:
        yield from _window_outcomes(speaker, items, min_duration, window, hop or window)
        return
    results = speaker.embed_sources([i.path for i in items if i.error is None], min_duration)
    for item in items:
        name = display_name(item.path)
        if item.error is not None:
            yield Outcome(name, error=item.error)
            continue
        produced = next(results)
        if isinstance(produced, InputFailure):
            yield Outcome(name, error=produced.error)
        else:
            yield Outcome(name, result=produced)


def _window_outcomes(speaker: WeSpeaker, items: Iterable[InputItem], min_duration: float,
                     window: float, hop: float) -> Iterator[Outcome]:
    for item in items:
        name = display_name(item.path)
        if item.error is not None:
            yield Outcome(name, error=item.error)
            continue
        try:
            audio = load_audio(item.path, speaker.config.sample_rate)
            outcome = Outcome(name, windows=speaker.embed_windows(audio, window, hop,
                                                                  min_duration))
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
        reporter.line(f"audio: error: {reporter.failed} of {total} inputs failed")
    return exit_status(codes)


def embed_one(speaker: WeSpeaker, file: str, min_duration: float, json_output: bool,
              out: OutputFile | None) -> int:
    """The one-file call: a summary (or one JSON object); an error stops it. Returns 0."""
    from .output import render_summary, result_to_json

    result = speaker.embed_source(file, min_duration)
    if json_output:
        sys.stdout.write(result_to_json(result) + "\n")
    elif out is None:
        from rich.console import Console

        render_summary(result, Console())
    if out is not None:
        out.add(Outcome(display_name(file), result=result))
    return EXIT_OK


def embed_many(speaker: WeSpeaker, items: list[InputItem], min_duration: float,
               window: float | None, hop: float | None, json_output: bool,
               out: OutputFile | None) -> int:
    """Many inputs (or windows) to JSON Lines, a table and/or `out`; returns the status."""
    from .output import JsonLinesSink, TableSink

    sinks: list[Sink] = [out] if out is not None else []
    table = None
    if json_output:
        sinks.append(JsonLinesSink(sys.stdout, speaker.model_id, speaker.engine_name))
    elif out is None:
        table = TableSink(windows=window is not None)
        sinks.append(table)
    streaming_to_terminal = json_output and sys.stdout.isatty()
    reporter = Reporter(len(items), sys.stderr.isatty() and not streaming_to_terminal)
    status = run(outcomes(speaker, items, min_duration, window, hop), sinks, reporter)
    if table is not None:
        from rich.console import Console

        # In a terminal the table fits the window; piped, rows stay whole (one line each).
        table.render(Console() if sys.stdout.isatty() else Console(width=TABLE_WIDTH_PIPED))
    return status
