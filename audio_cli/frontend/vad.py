"""Voice-activity detection: find the speech in decoded 16 kHz audio and keep only that.

The detector is Silero VAD v6.2 (MIT licence, silero_vad.LICENSE beside this file): its
16 kHz ONNX model (silero_vad_16k.onnx, 1.3 MB, from the silero-vad 6.2.3 wheel) ships in
this package and runs with onnxruntime on one thread; nothing is downloaded, torch is not
needed. It gives a speech probability for each 512-sample (32 ms) frame, seeing the 64
samples before it and carrying a state from frame to frame; `speech_regions` turns the
probabilities into sample ranges with a Rule in the manner of Silero's own
`get_speech_timestamps` (enter at `threshold`, leave after `min_silence` below
`neg_threshold`, drop regions under `min_speech`, pad by `pad` and join what then meets).

An AudioSource is read in blocks, so an hour of audio needs only its probabilities (31 a
second) in memory; `SpeechSource` then streams the speech samples of the same source, one
region after another, through the unchanged front-end (two more passes for a long input).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio_cli.frontend.audio import Audio, AudioSource
from engines.errors import EngineError, InputAudioError, ModelError

MODEL_FILE = Path(__file__).with_name("silero_vad_16k.onnx")
MODEL_SHA256 = "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49"

SAMPLE_RATE = 16000  # Hz; the only rate the detector takes
FRAME_SAMPLES = 512  # samples per probability (32 ms)
CONTEXT_SAMPLES = 64  # samples of the previous frame the model sees with each frame
READ_FRAMES = 256  # frames decoded at a time (8 s)


@dataclass(frozen=True)
class Rule:
    """How frame probabilities become speech regions (all durations in seconds)."""

    threshold: float  # probability at which speech starts (onset)
    neg_threshold: float  # speech ends after `min_silence` below this (offset)
    min_silence: float  # time below `neg_threshold` that ends a region
    min_speech: float  # regions shorter than this (before padding) are dropped
    pad: float  # added on each side of a region; padded regions that meet are joined


# Silero's own get_speech_timestamps defaults: the rule of RULE_VERSION 1.
SILERO_RULE = Rule(threshold=0.5, neg_threshold=0.35, min_silence=0.1, min_speech=0.25,
                   pad=0.03)
# The rule `--vad` uses: Silero's, but 0.5 s of padding on each side. Silero's probability
# rises a frame or more after a word's quiet onset and falls before its ending, so its own 30 ms
# padding dropped a fifth of the utterance (bench/vad_kept.py; README, "Voice-activity rule").
RULE = Rule(threshold=0.5, neg_threshold=0.35, min_silence=0.1, min_speech=0.25, pad=0.5)
# Which rule made a speech region, recorded with every stored vector made with --vad
# (store/settings.py): 1 = SILERO_RULE (up to this change), 2 = RULE.
RULE_VERSION = 2

Regions = list[tuple[int, int]]  # [start, end) sample ranges, sorted, not overlapping


def no_speech(name: str) -> InputAudioError:
    """The error for an input in which the detector finds no speech."""
    return InputAudioError(f"{name}: no speech found")


def too_little_speech(name: str, seconds: float, min_duration: float) -> InputAudioError:
    """The too-short error, naming how much speech the detector kept."""
    return InputAudioError(
        f"{name}: too short ({seconds:.3f} s of speech after voice-activity detection); "
        f"at least {min_duration:g} s is needed (--min-duration)")


_session = None  # the onnxruntime session, made on first use and kept


def _load_session():
    global _session
    if _session is None:
        import onnxruntime as ort

        try:
            data = MODEL_FILE.read_bytes()
        except OSError as exc:
            raise ModelError(f"{MODEL_FILE}: the voice-activity model is missing "
                             f"({exc.strerror}); reinstall audio-speaker") from None
        if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
            raise ModelError(f"{MODEL_FILE}: the voice-activity model is damaged (its "
                             "SHA-256 differs); reinstall audio-speaker")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 3
        _session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return _session


class Detector:
    """Silero VAD over a stream of samples: one probability per FRAME_SAMPLES."""

    def __init__(self) -> None:
        self._session = _load_session()

    def probabilities(self, blocks: Iterator[np.ndarray]) -> np.ndarray:
        """(ceil(N / FRAME_SAMPLES),) float32 probabilities of N samples given in blocks;
        the last frame is completed with zeros."""
        return self.scan(blocks).probs

    def scan(self, blocks: Iterator[np.ndarray]) -> Scan:
        """The probabilities of N samples given in blocks, and where each frame's sound is."""
        state = np.zeros((2, 1, 128), dtype=np.float32)
        context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        rate = np.array(SAMPLE_RATE, dtype=np.int64)
        out: list[float] = []
        sound: list[tuple[int, int]] = []
        rest = np.zeros(0, dtype=np.float32)
        for block in _padded(blocks):
            data = np.concatenate([rest, block]) if len(rest) else block
            whole = len(data) // FRAME_SAMPLES * FRAME_SAMPLES
            for start in range(0, whole, FRAME_SAMPLES):
                frame = data[max(start - CONTEXT_SAMPLES, 0):start + FRAME_SAMPLES]
                if start == 0:
                    frame = np.concatenate([context, frame])
                prob, state = self._session.run(
                    None, {"input": frame[None], "state": state, "sr": rate})
                out.append(float(prob[0, 0]))
                nonzero = np.flatnonzero(data[start:start + FRAME_SAMPLES])
                sound.append((nonzero[0], nonzero[-1]) if len(nonzero) else (-1, -1))
            context = data[whole - CONTEXT_SAMPLES:whole] if whole else context
            rest = data[whole:]
        first, last = np.asarray(sound, dtype=np.int64).reshape(-1, 2).T
        return Scan(np.asarray(out, dtype=np.float32), first, last)


@dataclass(frozen=True)
class Scan:
    """A detector's pass: per frame, the speech probability and the offsets of its first
    and last sample that is not digital silence (exactly 0; -1 if there is none)."""

    probs: np.ndarray
    first: np.ndarray
    last: np.ndarray

    def trim(self, regions: Regions) -> Regions:
        """The regions without the digital silence at their two ends (a region of nothing
        else is dropped). Padding reaches into quiet speech, never into exact zeros: a
        recording's gated or padded silence would otherwise be embedded (on the shared
        test-other set padded with zeros, CAM++'s EER was 0.084 % with it, 0.010 % without)."""
        out: Regions = []
        for s, e in regions:
            frame = s // FRAME_SAMPLES
            while s < e:
                if self.first[frame] >= 0 and frame * FRAME_SAMPLES + self.last[frame] >= s:
                    s = max(s, frame * FRAME_SAMPLES + int(self.first[frame]))
                    break
                frame += 1
                s = max(s, frame * FRAME_SAMPLES)
            frame = (e - 1) // FRAME_SAMPLES
            while e > s:
                if self.first[frame] >= 0 and frame * FRAME_SAMPLES + self.first[frame] < e:
                    e = min(e, frame * FRAME_SAMPLES + int(self.last[frame]) + 1)
                    break
                e = min(e, frame * FRAME_SAMPLES)
                frame -= 1
            if s < e:
                out.append((s, e))
        return out


def _padded(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """float32 blocks, then zeros completing the last frame."""
    count = 0
    for block in blocks:
        count += len(block)
        yield np.asarray(block, dtype=np.float32)
    if count % FRAME_SAMPLES:
        yield np.zeros(FRAME_SAMPLES - count % FRAME_SAMPLES, dtype=np.float32)


def speech_regions(probs: np.ndarray, num_samples: int, rate: int = SAMPLE_RATE,
                   rule: Rule = RULE) -> Regions:
    """Sample ranges of speech in a signal of `num_samples`, from its frame probabilities."""
    min_silence = int(rule.min_silence * rate)
    min_speech = int(rule.min_speech * rate)
    pad = int(rule.pad * rate)
    raw: Regions = []
    start = None  # first sample of the region being followed
    quiet = None  # first sample of the current stretch below neg_threshold inside it
    for index, p in enumerate(np.asarray(probs, dtype=np.float64)):
        at = index * FRAME_SAMPLES
        if p >= rule.threshold:
            quiet = None
            if start is None:
                start = at
        elif start is not None and p < rule.neg_threshold:
            quiet = at if quiet is None else quiet
            if at + FRAME_SAMPLES - quiet >= min_silence:
                raw.append((start, quiet))
                start = quiet = None
    if start is not None:
        raw.append((start, num_samples))
    regions: Regions = []
    for s, e in raw:
        if e - s < min_speech:
            continue
        s, e = max(0, s - pad), min(num_samples, e + pad)
        if regions and s <= regions[-1][1]:
            regions[-1] = (regions[-1][0], e)
        else:
            regions.append((s, e))
    return regions


def _check_rate(rate: int, name: str) -> None:
    if rate != SAMPLE_RATE:
        raise EngineError(f"{name}: voice-activity detection needs {SAMPLE_RATE} Hz samples, "
                          f"the model's front-end runs at {rate} Hz")


def find_speech(samples: np.ndarray, rate: int = SAMPLE_RATE, name: str = "<samples>",
                rule: Rule = RULE) -> Regions:
    """Speech regions of in-memory samples at 16 kHz."""
    _check_rate(rate, name)
    scan = Detector().scan(iter([np.asarray(samples, dtype=np.float32)]))
    return scan.trim(speech_regions(scan.probs, len(samples), rate, rule))


def total(regions: Regions) -> int:
    """Samples inside the regions."""
    return sum(e - s for s, e in regions)


def overlap(regions: Regions, start: int, end: int) -> Regions:
    """The parts of the regions inside [start, end)."""
    return [(max(s, start), min(e, end)) for s, e in regions if s < end and e > start]


def cut(samples: np.ndarray, regions: Regions) -> np.ndarray:
    """The samples of the regions, one after another."""
    if not regions:
        return np.zeros(0, dtype=samples.dtype)
    return np.concatenate([samples[s:e] for s, e in regions])


def speech_audio(audio: Audio, min_duration: float) -> Audio:
    """Only the speech of decoded audio, or InputAudioError (none found, or too little)."""
    regions = find_speech(audio.samples, audio.sample_rate, audio.source)
    return _speech_audio(audio, regions, min_duration)


def _speech_audio(audio: Audio, regions: Regions, min_duration: float) -> Audio:
    if not regions:
        raise no_speech(audio.source)
    seconds = total(regions) / audio.sample_rate
    if seconds < min_duration:
        raise too_little_speech(audio.source, seconds, min_duration)
    return Audio(cut(audio.samples, regions), audio.sample_rate, audio.source_rate,
                 audio.channels, audio.source)


@dataclass(frozen=True)
class SpeechSource:
    """The speech regions of an AudioSource, read like one (the same attributes and methods
    the front-end uses), decoding the source again each time."""

    source: AudioSource
    regions: Regions

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def source_rate(self) -> int:
        return self.source.source_rate

    @property
    def channels(self) -> int:
        return self.source.channels

    @property
    def sample_rate(self) -> int:
        return self.source.sample_rate

    @property
    def num_samples(self) -> int:
        """Samples of speech."""
        return total(self.regions)

    @property
    def duration(self) -> float:
        """Seconds of speech."""
        return self.num_samples / self.sample_rate

    @property
    def recording_duration(self) -> float:
        """Seconds of the whole input, speech and the rest."""
        return self.source.duration

    def blocks(self, block_samples: int = 1 << 16) -> Iterator[np.ndarray]:
        """The speech samples in fresh blocks of `block_samples` (the last may be shorter)."""
        buffer: list[np.ndarray] = []
        filled = 0
        for piece in self._pieces():
            while len(piece):
                take = min(block_samples - filled, len(piece))
                buffer.append(piece[:take])
                filled += take
                piece = piece[take:]
                if filled == block_samples:
                    yield np.concatenate(buffer)
                    buffer, filled = [], 0
        if filled:
            yield np.concatenate(buffer)

    def _pieces(self) -> Iterator[np.ndarray]:
        offset = 0
        for block in self.source.blocks(READ_FRAMES * FRAME_SAMPLES):
            for s, e in overlap(self.regions, offset, offset + len(block)):
                yield block[s - offset:e - offset]
            offset += len(block)

    def read_all(self) -> np.ndarray:
        """All speech samples, (num_samples,) float32."""
        parts = list(self._pieces())
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def read_audio(self) -> Audio:
        """The speech as decoded Audio."""
        return Audio(self.read_all(), self.sample_rate, self.source_rate, self.channels,
                     self.name)


def detect_regions(source: AudioSource) -> Regions:
    """The speech regions of a source, the detector run over it block by block."""
    _check_rate(source.sample_rate, source.name)
    scan = Detector().scan(source.blocks(READ_FRAMES * FRAME_SAMPLES))
    return scan.trim(speech_regions(scan.probs, source.num_samples, source.sample_rate))


def detect_source(source: AudioSource, min_duration: float) -> SpeechSource:
    """Run the detector over a source block by block -> its speech, or InputAudioError (no
    speech found, or less than `min_duration` seconds of it)."""
    regions = detect_regions(source)
    if not regions:
        raise no_speech(source.name)
    speech = SpeechSource(source, regions)
    if speech.duration < min_duration:
        raise too_little_speech(source.name, speech.duration, min_duration)
    return speech
