"""Simulated conversations for measuring `audio diarize`: real read speech taking turns.

    python -m bench.conversations --out bench/out/conversations [--count 10] [--hour]
        [--loop-hour N] [--seed 0]

Built from the shared LibriSpeech test-other readers (../shared/data/speech/
librispeech-test-other-10x10: 10 readers x 10 utterances, 5 F / 5 M). Each conversation has
2-6 distinct readers who take turns; a turn is a stretch of one utterance cut at its own
pauses. Between turns there is a pause, or the next speaker starts before the last one has
finished (overlapping speech); short back-channels (0.3-1 s of another reader) fall inside
some turns. Speakers talk at different levels, and background noise (pink, slowly swelling,
with a mains hum) is added at a moderate signal-to-noise ratio. Everything follows from the
seed: conversation i of seed s is the same whatever --count is.

Reference: the speech inside an utterance has short pauses of its own, so the reference does
not mark a whole utterance as speech. Each clean utterance is checked frame by frame with an
energy detector (`speech_frames`: 10 ms frames above a threshold set from the utterance's own
loud-speech level and noise floor, pauses under 0.3 s bridged, 20 ms margins); the reference
turns are exactly those speech stretches at the place where the builder put them (gaps under
0.3 s fall between words: no one expects a diarization to split a turn there). An energy
detector is used rather than Silero VAD so that the reference favours neither systems that
use Silero (senko, `--segmentation none`) nor those that do not. The share of overlapping
speech is steered while building: a turn change overlaps (and a back-channel is added) only
while the overlapped share of speech so far is under the conversation's target (drawn from
6-12 %), so each conversation ends within 5-15 %.

Material: the readers have 66-104 s of speech each, so a reader's utterances come back when
a conversation needs more of them (Reader hands them out in a shuffled order, all before any
again): at most 4 times in the default set, up to 15 in the hour (`max_uses` in
conversations.csv); a clustering can find such repeats, which real meetings do not have.

Outputs in OUT (existing files are kept unless --force): `<uri>.wav` (16 kHz mono PCM16),
`<uri>.rttm`, `<uri>.uem`, `<uri>.placements.csv` (each piece placed: reader, source
utterance, start, end, turn or back-channel), all files' `reference.rttm` and
`reference.uem` together (the same layout as ../shared/data/diarization/ami-debug-train),
`conversations.csv` (one row a
conversation: length, readers, speech, overlap, SNR) and README.md (how they were made and
the LibriSpeech attribution). With --hour, one conversation of one hour with 8 readers goes
into OUT/hour/ in the same layout (for issue 25); --loop-hour N plays that hour N times in
a row into OUT/hourxN/ (a long input for measuring memory).

Speech: LibriSpeech ASR corpus (c) 2014 Vassil Panayotov, CC BY 4.0
(http://creativecommons.org/licenses/by/4.0/); V. Panayotov, G. Chen, D. Povey,
S. Khudanpur, "LibriSpeech: an ASR corpus based on public domain audio books", ICASSP 2015.
The audio comes from LibriVox public-domain recordings.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from audio_cli.diarization.turns import Turn, read_rttm, rttm_line

RATE = 16000
HOP = 160  # samples per detector frame (10 ms)
SPEECH_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / \
    "librispeech-test-other-10x10"

ATTRIBUTION = (
    "Speech: LibriSpeech ASR corpus (c) 2014 Vassil Panayotov, licensed CC BY 4.0 "
    "(http://creativecommons.org/licenses/by/4.0/); V. Panayotov, G. Chen, D. Povey, "
    "S. Khudanpur, \"LibriSpeech: an ASR corpus based on public domain audio books\", "
    "ICASSP 2015. The audio comes from LibriVox public-domain recordings. The conversations "
    "are a derived work: utterances cut, placed, mixed at other levels and with noise.")

# Energy detector (10 ms frames)
FRAME = 400  # samples in the energy window (25 ms), centred on each 10 ms hop
BELOW_PEAK = 30.0  # dB under the loud-speech level (95th percentile) still counted as speech
ABOVE_FLOOR = 9.0  # dB over the noise floor (10th percentile) needed to count as speech
BRIDGE = 30  # frames: pauses shorter than this (0.3 s) belong to the speech around them
MIN_SPEECH = 8  # frames: shorter islands of energy (0.08 s) are clicks, not speech
MARGIN = 2  # frames added each side of a speech stretch (0.02 s)

# Cutting utterances into pieces
CUT_PAUSE = 0.3  # s: pauses at least this long are where an utterance may be cut

# Mixing
SPEECH_LEVEL = -26.0  # dBFS: mean power of each utterance's speech frames before the gain
SPEAKER_SPREAD = 5.0  # dB: each speaker's gain is drawn from +-this
TURN_JITTER = 1.0  # dB: and each turn's from +-this around it
SNR_RANGE = (10.0, 20.0)  # dB: speech level over the noise level, drawn per conversation
FADE = 0.01  # s: raised-cosine fade at a cut inside speech (back-channels)


@dataclass(frozen=True)
class Utterance:
    """A clean utterance and its speech stretches, in samples."""

    speaker: str
    name: str
    samples: np.ndarray
    regions: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Piece:
    """A stretch of one utterance between two cut points, with its speech inside it."""

    speaker: str
    samples: np.ndarray
    regions: tuple[tuple[int, int], ...]  # relative to the piece's first sample
    source: str = ""  # utterance@first sample, for the placements file

    @property
    def speech(self) -> int:
        return sum(e - s for s, e in self.regions)


@dataclass(frozen=True)
class Plan:
    """What one conversation is made of."""

    uri: str
    seconds: float
    speakers: int
    overlap_target: float = 0.0  # 0: drawn from 6-12 %


@dataclass
class Timeline:
    """Speech activity per 10 ms frame while building; counts speech and overlap on the way."""

    frames: int
    count: np.ndarray = field(init=False)
    speech: int = 0  # frames where at least one speaks
    overlap: int = 0  # frames where at least two speak

    def __post_init__(self) -> None:
        self.count = np.zeros(self.frames, dtype=np.int16)

    def add(self, start: int, end: int) -> None:
        """One speaker's speech over samples [start, end)."""
        a, b = start // HOP, min(-(-end // HOP), self.frames)
        part = self.count[a:b]
        self.speech += int(np.count_nonzero(part == 0))
        self.overlap += int(np.count_nonzero(part == 1))
        part += 1

    @property
    def overlap_share(self) -> float:
        return self.overlap / self.speech if self.speech else 0.0


# -- finding speech in a clean utterance ------------------------------------------------------


def frame_levels(samples: np.ndarray) -> np.ndarray:
    """Power in dB of 25 ms windows centred on each 10 ms hop."""
    x = np.asarray(samples, dtype=np.float64)
    n = -(-len(x) // HOP)
    padded = np.concatenate([np.zeros(FRAME // 2), x, np.zeros(FRAME)])
    cumulative = np.concatenate([[0.0], np.cumsum(padded * padded)])
    starts = np.arange(n) * HOP
    power = (cumulative[starts + FRAME] - cumulative[starts]) / FRAME
    return 10 * np.log10(power + 1e-12)


def speech_frames(samples: np.ndarray) -> list[tuple[int, int]]:
    """Speech stretches of a clean utterance as [start, end) sample ranges (10 ms steps)."""
    levels = frame_levels(samples)
    if not len(levels):
        return []
    peak, floor = np.percentile(levels, 95), np.percentile(levels, 10)
    threshold = max(peak - BELOW_PEAK, min(floor + ABOVE_FLOOR, peak - 10.0))
    active = levels > threshold
    stretches = _runs(active)
    merged: list[list[int]] = []
    for s, e in stretches:
        if merged and s - merged[-1][1] < BRIDGE:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    n = len(levels)
    out = []
    for s, e in merged:
        if e - s < MIN_SPEECH:
            continue
        s, e = max(0, s - MARGIN), min(n, e + MARGIN)
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return [(s * HOP, min(e * HOP, len(samples))) for s, e in out]


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges where flags is true."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(),
                    strict=True))


# -- material ---------------------------------------------------------------------------------


def load_readers(folder: Path = SPEECH_DIR) -> dict[str, list[Utterance]]:
    """Every reader's utterances (sorted by file name), level-normalised, with speech found."""
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise SystemExit(f"conversations: {manifest} not found (the shared LibriSpeech data)")
    readers: dict[str, list[Utterance]] = {}
    with open(manifest, newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: r["file"])
    for row in rows:
        samples, rate = sf.read(str(folder / row["file"]), dtype="float32")
        if rate != RATE or samples.ndim != 1:
            raise SystemExit(f"conversations: {row['file']}: expected 16 kHz mono")
        readers.setdefault(row["speaker"], []).append(
            utterance(row["speaker"], Path(row["file"]).stem, samples))
    return readers


def utterance(speaker: str, name: str, samples: np.ndarray) -> Utterance:
    """An utterance scaled so its speech frames have SPEECH_LEVEL mean power."""
    regions = speech_frames(samples)
    speech = np.concatenate([samples[s:e] for s, e in regions]) if regions else samples
    power = float(np.mean(np.square(speech, dtype=np.float64))) + 1e-12
    gain = 10 ** ((SPEECH_LEVEL - 10 * np.log10(power)) / 20)
    return Utterance(speaker, name, (samples * gain).astype(np.float32), tuple(regions))


def pieces(utt: Utterance) -> list[Piece]:
    """The utterance cut in the middle of each pause of at least CUT_PAUSE; leading and trailing
    silence trimmed to at most half of CUT_PAUSE."""
    if not utt.regions:
        return []
    keep = int(CUT_PAUSE * RATE / 2)
    groups: list[list[tuple[int, int]]] = [[utt.regions[0]]]
    for s, e in utt.regions[1:]:
        if s - groups[-1][-1][1] >= CUT_PAUSE * RATE:
            groups.append([(s, e)])
        else:
            groups[-1].append((s, e))
    out = []
    for group in groups:
        a = max(0, group[0][0] - keep)
        b = min(len(utt.samples), group[-1][1] + keep)
        out.append(Piece(utt.speaker, utt.samples[a:b],
                         tuple((s - a, e - a) for s, e in group), f"{utt.name}@{a}"))
    return out


class Reader:
    """One speaker's material, handed out turn by turn without repeats until it runs out."""

    def __init__(self, utterances: list[Utterance], rng: np.random.Generator) -> None:
        self.rng = rng
        self.utterances = [p for p in (pieces(u) for u in utterances) if p]
        self.order: list[int] = []
        self.speaker = utterances[0].speaker

    def _next_utterance(self) -> list[Piece]:
        if not self.order:
            self.order = self.rng.permutation(len(self.utterances)).tolist()
        return self.utterances[self.order.pop()]

    def turn(self, seconds: float) -> Piece:
        """Consecutive pieces of one utterance adding up to about `seconds` of audio."""
        parts = self._next_utterance()
        first = int(self.rng.integers(len(parts)))
        last = first
        length = len(parts[first].samples)
        while last + 1 < len(parts) and length < seconds * RATE:
            last += 1
            length += len(parts[last].samples)
        return join(parts[first:last + 1])

    def backchannel(self) -> Piece:
        """0.3-1 s of this speaker's speech: a short piece if one exists, else a faded cut."""
        short = [p for parts in self.utterances for p in parts
                 if 0.3 * RATE <= p.speech <= 1.0 * RATE]
        if short:
            return short[int(self.rng.integers(len(short)))]
        parts = self._next_utterance()
        piece = parts[int(self.rng.integers(len(parts)))]
        s, e = max(piece.regions, key=lambda r: r[1] - r[0])
        length = min(e - s, int(self.rng.uniform(0.3, 1.0) * RATE))
        start = s + int(self.rng.integers(0, e - s - length + 1))
        samples = piece.samples[start:start + length].copy()
        fade = int(FADE * RATE)
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade))
        samples[:fade] *= ramp
        samples[-fade:] *= ramp[::-1]
        return Piece(self.speaker, samples, ((0, length),), f"{piece.source}+{start}")


def join(parts: list[Piece]) -> Piece:
    """Pieces of one utterance side by side (they were cut from one pause each)."""
    samples, regions, offset = [], [], 0
    for part in parts:
        samples.append(part.samples)
        regions += [(s + offset, e + offset) for s, e in part.regions]
        offset += len(part.samples)
    return Piece(parts[0].speaker, np.concatenate(samples), tuple(regions),
                 f"{parts[0].source}x{len(parts)}")


# -- building a conversation ------------------------------------------------------------------


@dataclass
class Conversation:
    uri: str
    audio: np.ndarray
    turns: list[Turn]
    speakers: list[str]
    snr: float
    overlap_target: float
    stems: dict[str, np.ndarray] = field(default_factory=dict)  # speaker -> speech alone
    # (speaker, source utterance@sample[xpieces], start s, end s, "turn" or "backchannel")
    placements: list[tuple[str, str, float, float, str]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE

    def speech_and_overlap(self) -> tuple[float, float]:
        """Seconds with at least one speaker, and with at least two, from the reference."""
        timeline = Timeline(len(self.audio) // HOP + 1)
        for turn in self.turns:
            timeline.add(round(turn.start * RATE), round(turn.end * RATE))
        return timeline.speech * HOP / RATE, timeline.overlap * HOP / RATE


def build(plan: Plan, readers: dict[str, list[Utterance]], rng: np.random.Generator,
          keep_stems: bool = False) -> Conversation:
    """One conversation of about plan.seconds with plan.speakers distinct readers; with
    keep_stems, each speaker's placed speech alone too (before noise and the final gain)."""
    if plan.speakers > len(readers):
        raise SystemExit(f"conversations: {plan.speakers} speakers asked, {len(readers)} exist")
    chosen = sorted(rng.choice(sorted(readers), size=plan.speakers, replace=False).tolist())
    material = {s: Reader(readers[s], rng) for s in chosen}
    # how much each talks: a floor so that everyone is heard, the rest unevenly shared
    share = 0.4 / plan.speakers + 0.6 * rng.dirichlet(np.full(plan.speakers, 1.5))
    gain_db = {s: rng.uniform(-SPEAKER_SPREAD, SPEAKER_SPREAD) for s in chosen}
    target = plan.overlap_target or rng.uniform(0.06, 0.12)
    total = int(plan.seconds * RATE)
    room = total + 30 * RATE  # the last turn may run past the planned length
    audio = np.zeros(room, dtype=np.float32)
    timeline = Timeline(room // HOP + 1)
    regions: list[tuple[str, int, int]] = []
    stems = {s: np.zeros(room, dtype=np.float32) for s in chosen} if keep_stems else {}
    placements: list[tuple[str, str, float, float, str]] = []

    def place(piece: Piece, at: int, db: float, kind: str = "turn") -> int:
        end = min(at + len(piece.samples), room)
        placements.append((piece.speaker, piece.source, at / RATE, end / RATE, kind))
        audio[at:end] += piece.samples[:end - at] * 10 ** (db / 20)
        if keep_stems:
            stems[piece.speaker][at:end] += piece.samples[:end - at] * 10 ** (db / 20)
        for s, e in piece.regions:
            s, e = at + s, min(at + e, end)
            if e > s:
                regions.append((piece.speaker, s, e))
                timeline.add(s, e)
        return at + (piece.regions[-1][1] if piece.regions else 0)

    at = int(rng.uniform(0.3, 1.5) * RATE)
    current = None
    while at < total:
        others = [s for s in chosen if s != current]
        weights = np.array([share[chosen.index(s)] for s in others])
        speaker = others[int(rng.choice(len(others), p=weights / weights.sum()))]
        piece = material[speaker].turn(float(rng.uniform(2.0, 12.0)))
        db = gain_db[speaker] + rng.uniform(-TURN_JITTER, TURN_JITTER)
        first_speech = piece.regions[0][0]
        end = place(piece, max(0, at - first_speech), db)
        turn_start = max(0, at - first_speech) + first_speech
        # a back-channel of someone else inside a long enough turn
        if len(chosen) > 1 and end - turn_start > 3 * RATE and rng.random() < 0.35 \
                and timeline.overlap_share < target:
            listener = [s for s in chosen if s != speaker][int(rng.integers(len(chosen) - 1))]
            bc = material[listener].backchannel()
            where = turn_start + int(rng.uniform(0.25, 0.75) * (end - turn_start))
            place(bc, max(0, where - bc.regions[0][0]), gain_db[listener], "backchannel")
        current = speaker
        if timeline.overlap_share < target and rng.random() < 0.8:
            # the next speaker starts before this one has finished
            at = end - int(min(rng.uniform(0.3, 2.0), 0.5 * (end - turn_start) / RATE) * RATE)
        else:
            at = end + int(rng.exponential(0.5) * RATE + 0.15 * RATE)
    length = max(total, max(e for _, _, e in regions) + int(rng.uniform(0.3, 1.0) * RATE))
    length = min(length, room)
    mix = audio[:length]
    snr = float(rng.uniform(*SNR_RANGE))
    add_background(mix, SPEECH_LEVEL - snr, rng)
    peak = np.abs(mix).max()
    if peak > 0.97:  # one gain for everything: the reference does not move
        mix *= 0.97 / peak
    turns = merged_turns(plan.uri, regions)
    return Conversation(plan.uri, mix, turns, chosen, snr, target,
                        {s: stem[:length] for s, stem in stems.items()}, placements)


def merged_turns(uri: str, regions: list[tuple[str, int, int]]) -> list[Turn]:
    """One Turn per speech stretch, a speaker's touching stretches joined, sorted by start."""
    by_speaker: dict[str, list[tuple[int, int]]] = {}
    for speaker, s, e in regions:
        by_speaker.setdefault(speaker, []).append((s, e))
    turns = []
    for speaker, spans in by_speaker.items():
        spans.sort()
        joined = [list(spans[0])]
        for s, e in spans[1:]:
            if s <= joined[-1][1]:
                joined[-1][1] = max(joined[-1][1], e)
            else:
                joined.append([s, e])
        turns += [Turn(uri, s / RATE, e / RATE, speaker) for s, e in joined]
    return sorted(turns)


def add_background(mix: np.ndarray, level_db: float, rng: np.random.Generator) -> None:
    """Add room-like noise of mean power level_db (dBFS) to mix in place: pink noise swelling
    slowly (+-3 dB) with a faint 50 Hz hum, made block by block so an hour stays small."""
    pink = pink_noise(len(mix), rng)
    period, phase, hum_phase = rng.uniform(20, 60), rng.uniform(0, 6.3), rng.uniform(0, 6.3)
    power = 0.0
    for start in range(0, len(mix), PINK_FFT):
        t = np.arange(start, min(start + PINK_FFT, len(mix))) / RATE
        swell = 10 ** (3 * np.sin(2 * np.pi * t / period + phase) / 20)
        pink[start:start + len(t)] *= swell
        pink[start:start + len(t)] += 0.1 * np.sin(2 * np.pi * 50 * t + hum_phase)
        power += float(np.sum(np.square(pink[start:start + len(t)], dtype=np.float64)))
    pink *= 10 ** (level_db / 20) / np.sqrt(power / len(mix))
    mix += pink


PINK_TAPS = 4096  # FIR length of the pink-noise filter
PINK_FFT = 1 << 17  # block FFT size of the overlap-add convolution


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """n float32 samples of unit-power noise whose power falls as 1/f above 20 Hz: white noise
    through a linear-phase FIR filter, convolved block by block (overlap-add)."""
    freqs = np.fft.rfftfreq(PINK_TAPS, 1 / RATE)
    gain = 1 / np.sqrt(np.maximum(freqs, 20.0))
    taps = np.roll(np.fft.irfft(gain, PINK_TAPS), PINK_TAPS // 2) * np.hanning(PINK_TAPS)
    response = np.fft.rfft(taps, PINK_FFT)
    block = PINK_FFT - PINK_TAPS + 1
    out = np.zeros(n + PINK_FFT, dtype=np.float32)
    tail = np.zeros(PINK_TAPS - 1)
    # white noise from PINK_TAPS samples before the start, so the filter is settled at 0
    for start in range(-PINK_TAPS, n, block):
        chunk = np.fft.irfft(np.fft.rfft(rng.standard_normal(block), PINK_FFT) * response,
                             PINK_FFT)[:block + PINK_TAPS - 1]
        chunk[:PINK_TAPS - 1] += tail
        tail = chunk[block:].copy()
        if start + block > 0:
            lo = max(start, 0)
            out[lo:start + block] = chunk[lo - start:block]
    pink = out[:n]
    return pink / np.float32(np.sqrt(np.mean(np.square(pink, dtype=np.float64))))


# -- the set and its files --------------------------------------------------------------------


def default_plans(count: int, rng: np.random.Generator) -> list[Plan]:
    """`count` conversations, 2-6 speakers in turn (2, 3, 4, 5, 6, 2, ...), 2-5 min each."""
    return [Plan(f"conv{i:02d}", float(rng.uniform(120, 300)), 2 + i % 5) for i in range(count)]


HOUR = Plan("hour00", 3600.0, 8)


def write_set(conversations: list[Conversation], out: Path, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for conv in conversations:
        write_atomic(out / f"{conv.uri}.wav", lambda p, c=conv: sf.write(
            str(p), c.audio, RATE, subtype="PCM_16", format="WAV"))
        rttm = "".join(rttm_line(t) for t in conv.turns)
        uem = f"{conv.uri} 1 0.000 {conv.seconds:.3f}\n"
        write_text(out / f"{conv.uri}.rttm", rttm)
        write_text(out / f"{conv.uri}.uem", uem)
        write_text(out / f"{conv.uri}.placements.csv", "speaker,source,start,end,kind\n" + "".join(
            f"{sp},{src},{a:.3f},{b:.3f},{kind}\n" for sp, src, a, b, kind in conv.placements))
        speech, overlap = conv.speech_and_overlap()
        uses = Counter(src.split("@")[0] for _, src, _, _, kind in conv.placements
                       if kind == "turn")
        rows.append({"uri": conv.uri, "seconds": f"{conv.seconds:.2f}",
                     "speakers": len(conv.speakers), "readers": " ".join(conv.speakers),
                     "speech_s": f"{speech:.2f}", "overlap_s": f"{overlap:.2f}",
                     "overlap_pct": f"{100 * overlap / speech:.1f}",
                     "snr_db": f"{conv.snr:.1f}", "turns": len(conv.turns),
                     # how often the most used source utterance is heard in turns
                     "max_uses": max(uses.values())})
    write_text(out / "reference.rttm",
               "".join(rttm_line(t) for c in conversations for t in c.turns))
    write_text(out / "reference.uem",
               "".join(f"{c.uri} 1 0.000 {c.seconds:.3f}\n" for c in conversations))
    header = list(rows[0])
    write_text(out / "conversations.csv", ",".join(header) + "\n" + "".join(
        ",".join(str(r[k]) for k in header) + "\n" for r in rows))
    write_text(out / "README.md", readme(rows, seed))


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_atomic(path: Path, writer) -> None:
    scratch = path.with_name(f".{path.name}.partial")
    writer(scratch)
    os.replace(scratch, path)


def readme(rows: list[dict], seed: int) -> str:
    table = ["| uri | length (s) | speakers | readers | speech (s) | overlap | SNR (dB) | "
             "most uses of one utterance |", "|---|---|---|---|---|---|---|---|"]
    table += [f"| {r['uri']} | {r['seconds']} | {r['speakers']} | {r['readers']} | "
              f"{r['speech_s']} | {r['overlap_pct']} % | {r['snr_db']} | {r['max_uses']} |"
              for r in rows]
    return "\n".join([
        "# Simulated conversations (built by bench/conversations.py)", "",
        f"Seed {seed}. Rebuild: `python -m bench.conversations --out OUT --seed {seed}` "
        "(see that module's docstring for how they are made). Overlap = share of the speech "
        "time (at least one speaker) during which at least two speak.", "", *table, "",
        "## Licence and attribution", "", ATTRIBUTION, ""])


def loop_hour(hour: Path, times: int, out: Path) -> Path:
    """The hour (OUT/hour, built by --hour) played `times` times in a row as one recording,
    `hour00x<times>`, with its reference shifted for each repeat, written to `out` block by
    block (four hours are 460 MB of PCM16): a long input for measuring memory. The same 8
    readers speak in every repeat."""
    source = hour / "hour00.wav"
    uri = f"hour00x{times}"
    info = sf.info(str(source))
    seconds = info.frames / info.samplerate
    out.mkdir(parents=True, exist_ok=True)

    def write(path: Path) -> None:
        with sf.SoundFile(str(path), "w", info.samplerate, 1, "PCM_16", format="WAV") as sink:
            for _ in range(times):
                for block in sf.blocks(str(source), blocksize=1 << 20, dtype="int16"):
                    sink.write(block)

    write_atomic(out / f"{uri}.wav", write)
    turns = read_rttm(hour / "hour00.rttm")["hour00"]
    rttm = "".join(rttm_line(Turn(uri, t.start + r * seconds, t.end + r * seconds, t.speaker))
                   for r in range(times) for t in turns)
    uem = f"{uri} 1 0.000 {times * seconds:.3f}\n"
    for name, text in ((f"{uri}.rttm", rttm), ("reference.rttm", rttm), (f"{uri}.uem", uem),
                       ("reference.uem", uem)):
        write_text(out / name, text)
    return out / f"{uri}.wav"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.conversations",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/conversations"))
    parser.add_argument("--count", type=int, default=10, help="2-5 min conversations (10)")
    parser.add_argument("--hour", action="store_true",
                        help="also one conversation of one hour with 8 readers, in OUT/hour/")
    parser.add_argument("--loop-hour", type=int, metavar="N", default=0,
                        help="also OUT/hourxN/hour00xN.wav: the hour played N times (needs "
                             "--hour, now or before)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speech", type=Path, default=SPEECH_DIR,
                        help="the LibriSpeech folder (manifest.csv, one folder per reader)")
    parser.add_argument("--force", action="store_true", help="replace existing outputs")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("--count must be 0 or more")
    targets = ([args.out] if args.count else []) + ([args.out / "hour"] if args.hour else [])
    for folder in targets:
        if (folder / "reference.rttm").exists() and not args.force:
            print(f"conversations: {folder} already holds a set; --force replaces it",
                  file=sys.stderr)
            return 1
    readers = load_readers(args.speech)
    plans = default_plans(args.count, np.random.default_rng([args.seed, 0]))
    if plans:
        convs = []
        for i, plan in enumerate(plans):
            convs.append(build(plan, readers, np.random.default_rng([args.seed, 1, i])))
            print(f"built {plan.uri}: {convs[-1].seconds:.0f} s, {plan.speakers} speakers",
                  file=sys.stderr)
        write_set(convs, args.out, args.seed)
    if args.hour:
        conv = build(HOUR, readers, np.random.default_rng([args.seed, 2]))
        print(f"built {HOUR.uri}: {conv.seconds:.0f} s, {HOUR.speakers} speakers",
              file=sys.stderr)
        write_set([conv], args.out / "hour", args.seed)
    if args.loop_hour:
        if not (args.out / "hour" / "hour00.wav").is_file():
            parser.error(f"--loop-hour: {args.out / 'hour'} holds no hour; add --hour")
        targets.append(loop_hour(args.out / "hour", args.loop_hour,
                                 args.out / f"hourx{args.loop_hour}").parent)
    print(f"wrote {', '.join(str(t) for t in targets)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
