"""Streaming Kaldi fbank with global CMN, in two passes over an AudioSource, bounded memory.

Pass 1 (`log_mel_stats` / `log_mel_mean`) gives the CMN mean over all frames and the peak;
pass 2 (`feature_spans`) yields the features of any increasing frame spans. Both compute the
same FRAME_BLOCK frame blocks as `features.fbank`, so the rows are bit-identical to slicing
`fbank(load_audio(...).samples)`.
Only one frame block of samples (plus one decoded block) and the rows of the current span are
held at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .audio_stream import AudioSource
from .config import FrontendConfig
from .features import DEFAULT_CONFIG, frame_blocks, log_mel_block, num_frames

READ_SAMPLES = 1 << 15  # samples pulled from the source at a time


def source_frames(source: AudioSource, config: FrontendConfig = DEFAULT_CONFIG) -> int:
    """Frames fbank gives for the whole source (num_frames of its sample count)."""
    _check_rate(source, config)
    return num_frames(source.num_samples, config)


def log_mel_blocks(source: AudioSource, config: FrontendConfig = DEFAULT_CONFIG
                   ) -> Iterator[np.ndarray]:
    """The source's log-mel (no CMN) as consecutive (<= FRAME_BLOCK, bins) float64 blocks."""
    return _log_mel_blocks(source.blocks(READ_SAMPLES), source_frames(source, config), config)


def _log_mel_blocks(blocks: Iterator[np.ndarray], total: int, config: FrontendConfig
                    ) -> Iterator[np.ndarray]:
    """Log-mel of the first `total` frames of a stream of sample blocks, block by block."""
    buffer, start = np.zeros(0, dtype=np.float32), 0  # buffer holds samples start.. onward
    for _, _, lo, hi in frame_blocks(total, config):
        buffer, start = buffer[lo - start :], lo
        pending = [buffer]
        have = len(buffer)
        while have < hi - lo:
            block = next(blocks)
            pending.append(block)
            have += len(block)
        buffer = np.concatenate(pending) if len(pending) > 1 else buffer
        yield log_mel_block(buffer[: hi - lo], config)


@dataclass(frozen=True)
class LogMelStats:
    """What pass 1 learns about a whole source."""

    mean: np.ndarray  # (bins,) float64 mean log-mel over all frames: fbank's CMN mean
    frames: int  # frames fbank gives (> 0)
    peak: float  # largest |sample| of the whole signal, for audio_io.check_peak


def log_mel_stats(source: AudioSource, config: FrontendConfig = DEFAULT_CONFIG) -> LogMelStats:
    """Pass 1: decode the whole source once (so every decoding error surfaces) -> LogMelStats.

    Raises ValueError when the source is shorter than one frame (check the duration first).
    """
    peak = 0.0

    def tracked() -> Iterator[np.ndarray]:
        nonlocal peak
        for block in source.blocks(READ_SAMPLES):
            peak = max(peak, float(np.max(np.abs(block))))
            yield block

    blocks = tracked()
    total = np.zeros(config.num_mel_bins, dtype=np.float64)
    count = 0
    for rows in _log_mel_blocks(blocks, source_frames(source, config), config):
        total += rows.sum(axis=0)
        count += rows.shape[0]
    for _ in blocks:  # the samples after the last frame: peak, and errors at the end
        pass
    if count == 0:
        raise ValueError(f"{source.name}: shorter than one frame, no mean to take")
    return LogMelStats(total / count, count, peak)


def log_mel_mean(source: AudioSource, config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Pass 1: (bins,) float64 mean log-mel over all frames, equal to fbank's CMN mean."""
    return log_mel_stats(source, config).mean


def feature_spans(source: AudioSource, config: FrontendConfig, spans: Iterable[tuple[int, int]],
                  mean: np.ndarray | None) -> Iterator[np.ndarray]:
    """Pass 2: for each (lo, hi) frame span, (hi - lo, bins) float32 log-mel minus `mean`.

    Spans may overlap but their starts must not decrease, and 0 <= lo < hi <= the source's
    frame count. `mean` None skips the subtraction (fbank with cmn off). Equal to
    `fbank(samples, config)[lo:hi]` when `mean` is `log_mel_mean(source, config)`.
    """
    total = source_frames(source, config)
    blocks = log_mel_blocks(source, config)
    cached: list[tuple[int, np.ndarray]] = []  # (first frame, rows), consecutive
    end, previous = 0, 0  # frames computed so far; start of the previous span
    for lo, hi in spans:
        if not 0 <= lo < hi <= total or lo < previous:
            raise ValueError(f"bad frame span ({lo}, {hi}) after a span starting at "
                             f"{previous}, for {total} frames")
        previous = lo
        cached = [(first, rows) for first, rows in cached if first + len(rows) > lo]
        while end < hi:
            rows = next(blocks)
            cached.append((end, rows))
            end += len(rows)
        parts = [rows[max(lo - first, 0) : hi - first] for first, rows in cached
                 if first < hi]
        features = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if mean is not None:
            features = features - mean
        yield features.astype(np.float32)


def _check_rate(source: AudioSource, config: FrontendConfig) -> None:
    """The source must already be at the front-end's sample rate."""
    if source.sample_rate != config.sample_rate:
        raise ValueError(f"{source.name}: samples at {source.sample_rate} Hz, the front-end "
                         f"expects {config.sample_rate} Hz")
