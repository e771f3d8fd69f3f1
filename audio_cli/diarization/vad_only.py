"""Diarization without the segmentation model (`--segmentation none`): Silero VAD finds the
speech (frontend/vad.py), windows of WINDOW seconds every HOP seconds inside each speech
region are embedded and clustered, and every 10 ms frame of speech takes the label of the
window whose centre is nearest. One speaker at a time: overlapping speech is not found.
"""

from __future__ import annotations

import numpy as np

from audio_cli.diarization import activity
from audio_cli.diarization.clustering import AHC_THRESHOLD, cluster
from audio_cli.diarization.result import Diarization, label_means, labelled
from audio_cli.frontend.audio import Audio
from audio_cli.frontend.fbank import fbank
from audio_cli.frontend.vad import Rule, find_speech
from audio_cli.pipeline.windows import window_bounds

WINDOW = 1.5  # seconds of speech per embedding
HOP = 0.75  # seconds between window starts
MIN_WINDOW = 0.5  # a region shorter than this gets no window of its own
GRID = activity.FrameGrid(0.01, 0.01)  # the output's frames
# Silero's thresholds with 0.15 s of padding a side: `--vad`'s 0.5 s (frontend/vad.py, to
# keep every word of an utterance) marks the pauses between turns as speech. Padding
# 0.03/0.15/0.3/0.5 s gave DER full/fair 18.0/10.2, 19.2/7.1, 21.2/7.5, 23.6/9.7 % on the
# simulated conversations and 41.4/31.3, 36.7/26.0, 34.7/22.7, 35.3/22.5 % on the AMI
# excerpts (docs/diarize.md).
SPEECH_RULE = Rule(threshold=0.5, neg_threshold=0.35, min_silence=0.1, min_speech=0.25,
                   pad=0.15)


def windows(regions: list[tuple[int, int]], rate: int) -> list[tuple[int, int]]:
    """[start, end) sample ranges of the windows inside the speech regions, as --window cuts
    a recording (pipeline.windows.window_bounds: WINDOW long every HOP, the last ending at
    the region's end, a shorter region one window); a region under MIN_WINDOW gets none."""
    return [(s + a, s + b) for s, e in regions if e - s >= MIN_WINDOW * rate
            for a, b in window_bounds(e - s, rate, WINDOW, HOP)]


def nearest(times: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the centre nearest to each time (the first on a tie); `centres` ascending.
    Memory grows with the times and the centres, not with their product."""
    right = np.clip(np.searchsorted(centres, times, side="left"), 1, len(centres) - 1)
    left = right - 1
    if len(centres) == 1:
        return np.zeros(len(times), dtype=np.int64)
    closer_left = np.abs(times - centres[left]) <= np.abs(centres[right] - times)
    return np.where(closer_left, left, right)


def diarize_vad(diarizer, audio: Audio, uri: str) -> Diarization:
    """The turns of decoded audio by the VAD-only path (see the module docstring); called
    by Diarizer.diarize, which holds numpy's BLAS to one thread around it."""
    rate = audio.sample_rate
    regions = find_speech(audio.samples, rate, audio.source, rule=SPEECH_RULE)
    if not regions:
        return Diarization([])
    bounds = windows(regions, rate)
    total = int(np.ceil(audio.duration / GRID.step))
    speech = np.zeros(total, dtype=bool)
    for s, e in regions:
        speech[int(s / rate / GRID.step):int(np.ceil(e / rate / GRID.step))] = True
    if not bounds:  # only very short bursts: one speaker
        return labelled(speech[:, None], GRID, uri, audio.duration, np.zeros((0, 0)))
    speaker = diarizer.speaker
    clips = [fbank(audio.samples[s:e], speaker.config.frontend) for s, e in bounds]
    # batched by length inside (pipeline/batching.py), a share of the clips on each worker
    n = diarizer.workers.count
    shares = [clips[i * len(clips) // n:(i + 1) * len(clips) // n] for i in range(n)]
    vectors = np.concatenate(diarizer.workers.map(speaker.embed_features,
                                                  [share for share in shares if share]))
    options = diarizer.options
    labels = cluster(vectors, options.count, options.clustering,
                     options.threshold or AHC_THRESHOLD)
    centres = np.array([(s + e) / 2 / rate for s, e in bounds])
    frame_times = GRID.centre(np.arange(total))
    closest = nearest(frame_times, centres)
    k = int(labels.max()) + 1
    active = np.zeros((total, k), dtype=bool)
    active[np.arange(total), labels[closest]] = True
    active &= speech[:, None]
    return labelled(active, GRID, uri, audio.duration, label_means(vectors, labels, k))
