"""Run a speaker-verification evaluation: embed a dataset once, score every trial."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio_cli.evaluation.datasets import Dataset
from audio_cli.evaluation.metrics import Metrics, Trials, evaluate, trial_counts, trial_scores
from audio_cli.pipeline.options import EmbedOptions
from audio_cli.pipeline.results import InputFailure
from audio_cli.pipeline.speaker import SpeakerEmbedder
from engines.errors import InputAudioError


@dataclass(frozen=True)
class EvalReport:
    """The metrics of one evaluation and what they were computed from."""

    metrics: Metrics
    dataset: Dataset
    speakers: int  # speakers with at least one embedded file
    files: int  # dataset files asked for
    impostor_files: int  # impostor files asked for
    failures: list[InputFailure]
    model: str
    engine: str
    elapsed: float  # seconds spent decoding and embedding
    trials: Trials  # every trial's score (what the metrics were computed from)


def check_trials(labels: list[str], impostors: int, after: str = "") -> None:
    """Refuse labels that give no target or no non-target trial."""
    target, nontarget = trial_counts(labels, impostors)
    if target == 0:
        raise InputAudioError(f"no target trials{after}: every speaker has a single file "
                              "(a speaker needs two or more)")
    if nontarget == 0:
        raise InputAudioError(f"no non-target trials{after}: only one speaker "
                              "(give two or more, or add --impostors)")


def run_evaluation(speaker: SpeakerEmbedder, dataset: Dataset, impostors: list[Path],
                   options: EmbedOptions,
                   on_result: Callable[[InputFailure | None], None] | None = None
                   ) -> EvalReport:
    """Embed every file once through `embed_sources`, drop failures, score and evaluate.

    `options`: the minimum duration and VAD of each file (the model is `speaker`'s).
    `on_result(failure)` is called after each file, in input order (None on success).
    """
    labels = [u.speaker for u in dataset.utterances]
    check_trials(labels, len(impostors))
    sources = [u.path for u in dataset.utterances] + list(impostors)
    vectors: list[np.ndarray | None] = []
    failures: list[InputFailure] = []
    start = time.perf_counter()
    for result in speaker.embed_sources(sources, options.min_duration, options.vad):
        failure = result if isinstance(result, InputFailure) else None
        vectors.append(None if failure else result.embedding)
        if failure:
            failures.append(failure)
        if on_result:
            on_result(failure)
    elapsed = time.perf_counter() - start
    if failures and len(failures) == len(sources) and len({type(f.error) for f in failures}) == 1:
        # nothing embedded, all for one reason (an engine that fails every file, say): that
        # reason, not "no trials"
        raise type(failures[0].error)(f"no file could be embedded: {failures[0].message}")
    n = len(labels)
    kept = [i for i in range(n) if vectors[i] is not None]
    kept_labels = [labels[i] for i in kept]
    impostor_vectors = [v for v in vectors[n:] if v is not None]
    after = f" after leaving out {len(failures)} files that failed" if failures else ""
    check_trials(kept_labels, len(impostor_vectors), after)
    trials = trial_scores(np.stack([vectors[i] for i in kept]), kept_labels,
                          np.stack(impostor_vectors) if impostor_vectors else None)
    return EvalReport(metrics=evaluate(trials), dataset=dataset,
                      speakers=len(set(kept_labels)), files=n, impostor_files=len(impostors),
                      failures=failures, model=speaker.model_id, engine=speaker.engine_name,
                      elapsed=elapsed, trials=trials)
