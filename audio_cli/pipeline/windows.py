"""`--window`: one embedding per window of a recording, streamed from the decoder.

A file is read block by block, never whole: with voice-activity detection, one pass gives the
detector's probabilities (31 a second) and so the speech regions; the pass that embeds keeps
only the samples from the current window's start on (one window plus one decoded block) and
featurises each window as soon as its last sample is read. Windows are embedded in groups of
at most WINDOWS_PER_BATCH windows or GROUP_FRAMES feature frames, so an hour of audio needs
its windows' vectors and a few groups' features, not its samples.

With VAD a window's speech samples (its parts of the regions, one after another) are
embedded and its `speech` seconds reported; a window with less than --min-duration of speech
is kept, with no embedding (None), so every window of the recording is listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from audio_cli.frontend.audio import Audio, AudioSource, check_usable
from audio_cli.frontend.checks import SILENCE_PEAK, check_duration, check_level, check_peak
from audio_cli.frontend.fbank import fbank
from audio_cli.pipeline.batching import one_blas_thread
from audio_cli.pipeline.results import WindowEmbedding
from engines.errors import InputAudioError, UsageError

WINDOWS_PER_BATCH = 64  # windows featurised and embedded together, at most ...
GROUP_FRAMES = 24000  # ... and at most this many feature frames (4 min of audio)
READ_BLOCK = 1 << 17  # samples decoded at a time (8.2 s at 16 kHz)


def check_window_lengths(window: float, hop: float) -> None:
    """UsageError unless both the window and the hop are positive."""
    if window <= 0 or hop <= 0:
        raise UsageError("--window and --hop must be positive")


def window_bounds(num_samples: int, sample_rate: int, window: float, hop: float
                  ) -> list[tuple[int, int]]:
    """Sample ranges [start, end) of windows of `window` s every `hop` s.

    Windows start at 0, hop, 2*hop, ... while they fit; if audio is left after the last one,
    one more window of the same length ends exactly at the last sample. Audio shorter than one
    window is a single window over all of it. Nothing is padded.
    """
    check_window_lengths(window, hop)
    length = int(round(window * sample_rate))
    step = int(round(hop * sample_rate))
    if min(length, step) < 1:
        raise UsageError(f"--window and --hop must each last at least one sample "
                         f"({1 / sample_rate:g} s at {sample_rate} Hz)")
    if num_samples <= length:
        return [(0, num_samples)]
    bounds = [(s, s + length) for s in range(0, num_samples - length + 1, step)]
    if bounds[-1][1] < num_samples:
        bounds.append((num_samples - length, num_samples))
    return bounds


def embed_audio_windows(speaker, audio: Audio, window: float, hop: float,
                        min_duration: float, vad: bool) -> list[WindowEmbedding]:
    """The windows of decoded audio (pipeline.speaker.WeSpeaker.embed_windows)."""
    speaker.check_min_duration(min_duration)
    if vad:  # the detector says "no speech found" of silence, as of noise
        check_duration(audio.source, audio.duration, min_duration)
    else:  # and of digital silence, a constant level
        check_usable(audio, min_duration)
    regions = None
    if vad:
        from audio_cli.frontend.vad import find_speech, no_speech

        regions = find_speech(audio.samples, audio.sample_rate, audio.source)
        if not regions:
            raise no_speech(audio.source)
    return list(_windows(speaker, iter([audio.samples]), len(audio.samples),
                         audio.sample_rate, audio.source, window=window, hop=hop,
                         min_duration=min_duration, regions=regions))


def embed_source_windows(speaker, source: AudioSource, window: float, hop: float,
                         min_duration: float, vad: bool) -> list[WindowEmbedding]:
    """The windows of an opened file, decoded in blocks: first the detector's pass (with
    `vad`) or a look for sound (without: it stops at the first block that is not digital
    silence), then the windows'."""
    speaker.check_min_duration(min_duration)
    check_duration(source.name, source.duration, min_duration)
    regions = None
    if vad:
        from audio_cli.frontend.vad import detect_regions, no_speech

        regions = detect_regions(source)
        if not regions:
            raise no_speech(source.name)
    else:  # digital silence: the decoder stops at the first block that is not
        peak = 0.0
        for block in source.blocks(READ_BLOCK):
            peak = max(peak, float(np.max(np.abs(block))))
            if peak >= SILENCE_PEAK:
                break
        check_peak(source.name, peak)
    found = list(_windows(speaker, source.blocks(READ_BLOCK), source.num_samples,
                          source.sample_rate, source.name, window=window, hop=hop,
                          min_duration=min_duration, regions=regions))
    if not vad:  # a constant level: known once the windows' pass has read every sample
        check_level(source.name, source.spread)
    return found


def _windows(speaker, blocks: Iterable[np.ndarray], num_samples: int, rate: int, name: str, *,
             window: float, hop: float, min_duration: float, regions
             ) -> Iterator[WindowEmbedding]:
    """WindowEmbedding of each window, in order, from the samples given in blocks;
    `regions` (speech sample ranges) or None to embed every sample."""
    from audio_cli.frontend.vad import overlap, total

    bounds = window_bounds(num_samples, rate, window, hop)
    start, end = bounds[0]  # all windows have this length (or it is the whole audio)
    if (end - start) / rate < min_duration:
        raise InputAudioError(f"{name}: window {start / rate:.2f}-{end / rate:.2f} s is "
                              f"shorter than --min-duration {min_duration:g} s")
    cuts = None if regions is None else [overlap(regions, s, e) for s, e in bounds]
    kept = [e - s for s, e in bounds] if cuts is None else [total(c) for c in cuts]
    if max(kept) / rate < min_duration:  # only with vad: without it every window is long enough
        raise InputAudioError(f"{name}: no window holds --min-duration {min_duration:g} s of "
                              f"speech (at most {max(kept) / rate:.3f} s)")
    group: list[tuple[int, np.ndarray | None]] = []
    frames = 0
    held = np.zeros(0, dtype=np.float32)  # the samples just before read_end
    read_end = 0  # samples read so far
    following = 0  # the next window to cut
    for block in blocks:
        read_end += len(block)
        held = np.concatenate([held, block]) if len(held) else np.asarray(block, np.float32)
        held_start = read_end - len(held)
        while following < len(bounds) and bounds[following][1] <= read_end:
            s, e = bounds[following]
            features = None
            if kept[following] / rate >= min_duration:
                parts = [(s, e)] if cuts is None else cuts[following]
                piece = np.concatenate([held[a - held_start:b - held_start] for a, b in parts])
                with one_blas_thread():
                    features = fbank(piece, speaker.config.frontend)
                frames += len(features)
            group.append((following, features))
            following += 1
            if len(group) >= WINDOWS_PER_BATCH or frames >= GROUP_FRAMES:
                yield from _embed_group(speaker, group, bounds, rate, name, cuts)
                group, frames = [], 0
        keep_from = bounds[following][0] if following < len(bounds) else read_end
        held = held[min(max(keep_from - held_start, 0), len(held)):]
    if following < len(bounds):
        raise InputAudioError(f"{name}: the audio ended after {read_end} of {num_samples} "
                              "samples")
    yield from _embed_group(speaker, group, bounds, rate, name, cuts)


def _embed_group(speaker, group: list[tuple[int, np.ndarray | None]], bounds, rate: int,
                 name: str, cuts) -> Iterator[WindowEmbedding]:
    from audio_cli.frontend.vad import total

    usable = [features for _, features in group if features is not None]
    vectors = iter(speaker.embed_features(usable) if usable else [])
    for index, features in group:
        s, e = bounds[index]
        speech = None if cuts is None else total(cuts[index]) / rate
        yield WindowEmbedding(None if features is None else next(vectors), name, s / rate,
                              e / rate, speech)
