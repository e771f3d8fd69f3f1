"""Kaldi log-mel filterbank front-end (Kaldi `compute-fbank-feats`, as WeSpeaker and 3D-Speaker
call it), vectorised numpy, float64 inside.

`fbank` = `log_mel` (framing, DC removal, pre-emphasis, window, 512-point power spectrum,
mel triangles from frontend/mel.py, log floor) followed by `apply_cmn`. Matches
kaldi-native-fbank / torchaudio's `compliance.kaldi.fbank` with dither 0, snip_edges on, no
energy column.

NeMo's AudioToMelSpectrogramPreprocessor is this pipeline with other FrontendConfig options:
`framing="centered"` (torch.stft(center=True) frames, T = N // shift; pre-emphasis over the
whole signal), `hann`, `slaney` mel triangles (librosa's), `log_guard="add"` and `std_norm`
(per_feature: (x - mean) / (unbiased std + std_floor)). NeMo dithers only in training, and
every later step masks its pad_to padding, so neither is an option here.

Too-short input: fewer samples than one frame gives an empty `(0, num_mel_bins)` array, not an
error; callers decide whether that is acceptable.

Streaming (`log_mel_stats`, `feature_spans`): a long source's features with global CMN in two
passes over an AudioSource, in bounded memory. Pass 1 gives the CMN mean over all frames and
the peak; pass 2 yields the features of increasing frame spans. Both compute the same
FRAME_BLOCK frame blocks as `fbank`, so the rows are bit-identical to slicing
`fbank(load_audio(...).samples)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from audio_cli.frontend.audio import AudioSource
from audio_cli.frontend.mel import mel_matrix
from engines.model import FrontendConfig

# Fixed by the Kaldi definition, not configurable here.
HAMMING_ALPHA = 0.54  # hamming: alpha - (1 - alpha) * cos(2*pi*n / (N - 1))
POVEY_POWER = 0.85  # povey: hann(n) ** POVEY_POWER, symmetric hann over N - 1

DEFAULT_CONFIG = FrontendConfig()
FRAME_BLOCK = 512  # frames computed together (about 5 s); fixes the float grouping for streaming


def frame_length(config: FrontendConfig) -> int:
    """Samples per analysis window (400 at 16 kHz / 25 ms)."""
    return int(round(config.sample_rate * config.frame_length_ms / 1000.0))


def frame_shift(config: FrontendConfig) -> int:
    """Samples between frame starts (160 at 16 kHz / 10 ms)."""
    return int(round(config.sample_rate * config.frame_shift_ms / 1000.0))


def fft_size(config: FrontendConfig) -> int:
    """FFT length: config.fft_size, else the frame length rounded up to a power of two."""
    if config.fft_size:
        return config.fft_size
    return 1 << (frame_length(config) - 1).bit_length()


def num_frames(num_samples: int, config: FrontendConfig = DEFAULT_CONFIG) -> int:
    """Frames Kaldi's snip_edges framing yields: 1 + (N - length) // shift, or 0 if N < length;
    centred framing: N // shift."""
    if config.framing == "centered":
        return num_samples // frame_shift(config)
    length = frame_length(config)
    if num_samples < length:
        return 0
    return 1 + (num_samples - length) // frame_shift(config)


def min_samples(frames: int, config: FrontendConfig = DEFAULT_CONFIG) -> int:
    """Fewest samples that give at least `frames` frames (0 for frames <= 0)."""
    if frames <= 0:
        return 0
    if config.framing == "centered":
        return frames * frame_shift(config)
    return frame_length(config) + (frames - 1) * frame_shift(config)


@lru_cache(maxsize=16)
def _window(kind: str, length: int) -> np.ndarray:
    """(length,) float64 symmetric window, read-only (cached)."""
    phase = 2.0 * np.pi * np.arange(length) / (length - 1)
    if kind == "hamming":
        window = HAMMING_ALPHA - (1.0 - HAMMING_ALPHA) * np.cos(phase)
    elif kind == "povey":
        window = (0.5 - 0.5 * np.cos(phase)) ** POVEY_POWER
    elif kind == "hann":
        window = 0.5 - 0.5 * np.cos(phase)
    else:
        raise ValueError(f"unknown window {kind!r} (expected 'hamming', 'povey' or 'hann')")
    window.setflags(write=False)
    return window


def _frames(samples: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """(T, frame_length) read-only strided view of 1-D samples, snip_edges framing."""
    length, shift = frame_length(config), frame_shift(config)
    count = num_frames(samples.shape[0], config)
    return np.lib.stride_tricks.as_strided(
        samples, shape=(count, length),
        strides=(shift * samples.strides[0], samples.strides[0]), writeable=False,
    )


def log_mel(samples: np.ndarray, config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
    """(N,) samples in [-1, 1] at config.sample_rate -> (T, bins) float64 log-mel, no CMN.

    Computed FRAME_BLOCK frames at a time (see frame_blocks), so the streaming front-end,
    which computes the same blocks, gets bit-identical rows.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected 1-D samples, got shape {x.shape}")
    total = num_frames(x.shape[0], config)
    if config.framing == "centered":
        return _centered_log_mel(x, total, config)
    if total == 0:
        return log_mel_block(x, config)  # checks the config, gives (0, bins)
    out = np.empty((total, config.num_mel_bins), dtype=np.float64)
    for first, count, lo, hi in frame_blocks(total, config):
        out[first : first + count] = log_mel_block(x[lo:hi], config)
    return out


def frame_blocks(total: int, config: FrontendConfig = DEFAULT_CONFIG
                 ) -> Iterator[tuple[int, int, int, int]]:
    """(first frame, frame count, first sample, end sample) of each FRAME_BLOCK of `total`."""
    length, shift = frame_length(config), frame_shift(config)
    for first in range(0, total, FRAME_BLOCK):
        count = min(FRAME_BLOCK, total - first)
        yield first, count, first * shift, (first + count - 1) * shift + length


def log_mel_block(samples: np.ndarray, config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
    """log_mel of one frame block: (N,) samples -> (num_frames(N), bins) float64."""
    x = np.asarray(samples, dtype=np.float64)
    length = frame_length(config)
    window = _window(config.window, length)
    mel = mel_matrix(config.num_mel_bins, fft_size(config), config.sample_rate,
                      float(config.low_freq), float(config.high_freq))
    if x.shape[0] < length:
        return np.zeros((0, config.num_mel_bins), dtype=np.float64)
    frames = _frames(np.ascontiguousarray(x * config.input_scale), config)
    if config.remove_dc_offset:
        frames = frames - frames.mean(axis=1, keepdims=True)
    if config.preemphasis != 0.0:
        emphasised = np.empty_like(frames)
        emphasised[:, 1:] = frames[:, 1:] - config.preemphasis * frames[:, :-1]
        emphasised[:, 0] = frames[:, 0] * (1.0 - config.preemphasis)
        frames = emphasised
    return _log_energies(frames * window, mel, config)


def _log_energies(windowed: np.ndarray, mel: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """(T, frame) windowed frames -> (T, bins) log mel energies of the power spectrum."""
    spectrum = np.fft.rfft(windowed, n=fft_size(config), axis=1)  # (T, n_fft/2 + 1)
    power = spectrum.real**2 + spectrum.imag**2
    energies = power[:, : mel.shape[0]] @ mel  # Nyquist bin has zero weight
    if config.log_guard == "add":
        return np.log(energies + config.log_floor)
    return np.log(np.maximum(energies, config.log_floor))


def _centered_log_mel(x: np.ndarray, total: int, config: FrontendConfig) -> np.ndarray:
    """Centred framing (NeMo): pre-emphasis over the signal, n_fft/2 zeros on both sides, frame
    t = samples [t*shift, t*shift + n_fft) of that, the window centred in the FFT frame."""
    n_fft, length = fft_size(config), frame_length(config)
    mel = mel_matrix(config.num_mel_bins, n_fft, config.sample_rate, float(config.low_freq),
                      float(config.high_freq), config.mel_scale)
    if length > n_fft:
        raise ValueError(f"frames of {length} samples do not fit an FFT of {n_fft}")
    window = np.zeros(n_fft)
    left = (n_fft - length) // 2
    window[left : left + length] = _window(config.window, length)
    if config.preemphasis != 0.0 and x.shape[0] > 1:
        x = np.concatenate([x[:1], x[1:] - config.preemphasis * x[:-1]])
    padded = np.pad(x * config.input_scale, n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[:: frame_shift(config)]
    out = np.empty((total, config.num_mel_bins), dtype=np.float64)
    for first in range(0, total, FRAME_BLOCK):
        rows = frames[first : min(first + FRAME_BLOCK, total)]
        out[first : first + len(rows)] = _log_energies(rows * window, mel, config)
    return out


def block_mean(features: np.ndarray) -> np.ndarray:
    """(T, bins) -> (bins,) float64 mean, summed FRAME_BLOCK rows at a time (T must be > 0).

    The streaming front-end sums the same blocks in the same order, so both means are equal.
    """
    total = np.zeros(features.shape[1], dtype=np.float64)
    for first in range(0, features.shape[0], FRAME_BLOCK):
        total += features[first : first + FRAME_BLOCK].sum(axis=0)
    return total / features.shape[0]


def apply_cmn(features: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """(T, bins) -> (T, bins) minus `mean` (bins,), by default each bin's mean over T."""
    if mean is None:
        if features.shape[0] == 0:
            return features
        mean = block_mean(features)
    return features - mean


def fbank(samples: np.ndarray, config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
    """(N,) samples in [-1, 1] -> (T, num_mel_bins) float32 log-mel, CMN when config.cmn.

    T = num_frames(N); fewer than one frame of samples gives an empty (0, bins) array.
    """
    features = log_mel(samples, config)
    if config.cmn:
        features = apply_cmn(features)
    if config.std_norm and features.shape[0] > 0:
        std = features.std(axis=0, ddof=1) if features.shape[0] > 1 else 0.0
        features = features / (std + config.std_floor)
    return features.astype(np.float32)


def streams(config: FrontendConfig) -> bool:
    """True when the two streaming passes below compute this front-end (Kaldi framing, CMN
    at most); otherwise a long input is featurised whole."""
    return config.framing == "kaldi" and not config.std_norm


# ---------------------------------------------------------------- streaming, two passes

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
    peak: float  # largest |sample| of the whole signal, for frontend.checks.check_peak


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


def feature_spans(source: AudioSource, config: FrontendConfig, spans: Iterable[tuple[int, int]],
                  mean: np.ndarray | None) -> Iterator[np.ndarray]:
    """Pass 2: for each (lo, hi) frame span, (hi - lo, bins) float32 log-mel minus `mean`.

    Spans may overlap but their starts must not decrease, and 0 <= lo < hi <= the source's
    frame count. `mean` None skips the subtraction (fbank with cmn off). Equal to
    `fbank(samples, config)[lo:hi]` when `mean` is `log_mel_stats(source, config).mean`.
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
