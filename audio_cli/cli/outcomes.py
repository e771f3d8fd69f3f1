"""A run over many inputs: one Outcome per input, in order, sent to the sinks (JSON Lines on
stdout, a table, an --output file); failures reported on stderr, never fatal; and the JSON
and text forms of a result."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TextIO

import numpy as np

from audio_cli.cli import messages
from audio_cli.cli.errors import combined_status
from audio_cli.cli.messages import plural
from audio_cli.frontend.inputs import source_name
from audio_cli.pipeline.options import EmbedOptions
from audio_cli.pipeline.results import EmbeddingResult, InputFailure, WindowEmbedding
from engines.errors import AudioCliError, EngineError, InputAudioError

if TYPE_CHECKING:
    from audio_cli.cli.inputs import InputItem
    from audio_cli.pipeline.speaker import SpeakerEmbedder

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


def outcomes(speaker: SpeakerEmbedder, items: list[InputItem], options: EmbedOptions,
             windows: tuple[float, float] | None = None, group_files: int | None = None
             ) -> Iterator[Outcome]:
    """One Outcome per item, in order: whole-file embeddings, or with `windows` (window,
    hop: see check_windows) one per window. `group_files` embeds the files that many at a
    time (smaller groups: a progress bar that moves more often)."""
    if windows is not None:
        yield from _window_outcomes(speaker, items, options, *windows)
        return
    paths = [i.path for i in items if i.error is None]
    step = group_files or max(len(paths), 1)
    results = (r for first in range(0, len(paths), step)
               for r in speaker.embed_sources(paths[first:first + step], options.min_duration,
                                              options.vad))
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


def _window_outcomes(speaker: SpeakerEmbedder, items: Iterable[InputItem], options: EmbedOptions,
                     window: float, hop: float) -> Iterator[Outcome]:
    for item in items:
        name = source_name(item.path)
        if item.error is not None:
            yield Outcome(name, error=item.error)
            continue
        try:
            outcome = Outcome(name, windows=speaker.embed_windows(
                item.path, window, hop, options.min_duration, options.vad))
        except (InputAudioError, EngineError) as exc:
            outcome = Outcome(name, error=exc)
        yield outcome


class Reporter:
    """stderr during a run: one `audio: error:` line per failed input, and a progress bar."""

    def __init__(self, total: int, show_progress: bool, label: str = "embedding"):
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

            columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn())
            self._progress = Progress(*columns, console=Console(stderr=True), transient=True,
                                      redirect_stdout=False, redirect_stderr=False)
            self._task = self._progress.add_task(label, total=total)
            self._progress.start()

    def outcome(self, outcome: Outcome) -> None:
        """Report one finished input."""
        if outcome.error is not None:
            self.failed += 1
            messages.error(outcome.message, self.line)
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
    errors: list[Exception] = []
    total = 0
    try:
        for outcome in stream:
            total += 1
            if outcome.error is not None:
                errors.append(outcome.error)
            for sink in sinks:
                sink.add(outcome)
            reporter.outcome(outcome)
    finally:
        reporter.close()
    if reporter.failed and total > 1:  # one input: its own error line says it all
        messages.error(f"{reporter.failed} of {plural(total, 'input')} failed", reporter.line)
    return combined_status(errors)


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
