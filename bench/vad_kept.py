"""How much of each utterance voice-activity detection keeps, and how much padding it removes.

    python -m bench.vad_kept DIR [DIR ...] [--cache DIR] [--sweep]

Each DIR is either a folder of trimmed LibriSpeech utterances (nearly every sample is speech:
the whole file is the utterance) or a padded copy made by bench/vad_padding.py (its
`padding.csv` says where the utterance lies). For every file the detector's frame
probabilities are computed once (kept in `--cache` as one .npz per folder); a rule
(audio_cli.frontend.vad.Rule) then turns them into regions. Per folder and rule:

- kept: the share of the utterance inside the regions, per file: median, 5th percentile and
  minimum, over all files and over the short ones (utterance < SHORT seconds) apart. The
  utterances are not all speech: most hold 0.2-0.6 s of silence before the first word and
  after the last, and some of the train-clean ones pauses of 2-5 s (a chapter title, then
  silence), which a detector should drop;
- words kept: the same, of the utterance's loud 10 ms frames only: those above both the
  utterance's 95th-percentile frame level minus WORDS_DB and its 10th-percentile level (the
  noise floor) plus FLOOR_DB, an energy reference that does not depend on the detector;
- removed: the share of the added padding outside the regions (padded folders only), over
  the whole folder.

`--sweep` prints these for a grid of rules (the measurements the chosen rule was picked
from); without it, for the Silero defaults and the shipped rule. The regions are those of
speech_regions, before `--vad` cuts digital silence from their ends (vad.Scan.trim), which
only removes more of a zero padding.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from audio_cli.frontend.vad import RULE, SILERO_RULE, Detector, Rule, speech_regions

RATE = 16000
SHORT = 3.0  # seconds: utterances shorter than this are reported apart
WORD_FRAME = 160  # samples (10 ms) per frame of the energy reference
WORDS_DB = 35.0  # dB below the utterance's loud level that still counts as a word
FLOOR_DB = 10.0  # dB above the utterance's noise floor that a word must reach
AUDIO = {".flac", ".wav"}


@dataclass
class Folder:
    """A folder's probabilities and, per file, where the utterance lies (samples)."""

    name: str
    probs: list[np.ndarray]
    lengths: np.ndarray  # samples per file
    starts: np.ndarray  # first sample of the utterance
    ends: np.ndarray  # one past its last sample
    words: list[np.ndarray]  # per file, the utterance's word frames (WORD_FRAME samples each)


def word_frames(x: np.ndarray) -> np.ndarray:
    """(len(x) // WORD_FRAME,) bool: the 10 ms frames of an utterance loud enough to be words."""
    frames = x[: len(x) // WORD_FRAME * WORD_FRAME].astype(np.float64).reshape(-1, WORD_FRAME)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    floor = max(np.percentile(level, 95) - WORDS_DB, np.percentile(level, 10) + FLOOR_DB)
    return level > floor


def _files(folder: Path) -> list[tuple[str, float | None, float | None]]:
    """(relative path, utterance start s, end s) per file; None: the whole file."""
    table = folder / "padding.csv"
    if table.exists():
        with open(table) as handle:
            return [(r["file"], float(r["speech_start"]), float(r["speech_end"]))
                    for r in csv.DictReader(handle)]
    return [(str(p.relative_to(folder)), None, None) for p in sorted(folder.rglob("*"))
            if p.suffix.lower() in AUDIO]


def load(folder: Path, cache: Path | None) -> Folder:
    """The folder's probabilities (from `cache` when there) and utterance bounds."""
    files = _files(folder)
    stored = cache / f"{folder.name}.npz" if cache else None
    if stored and stored.exists():
        data = np.load(stored)
        probs = [data[f"p{i}"] for i in range(len(files))]
        words = [data[f"w{i}"] for i in range(len(files))]
        lengths = data["lengths"]
    else:
        detector = Detector()
        probs, words, lengths = [], [], []
        for rel, a, b in files:
            x, rate = sf.read(str(folder / rel), dtype="float32")
            if rate != RATE or x.ndim != 1:
                raise SystemExit(f"{folder / rel}: needs 16 kHz mono")
            probs.append(detector.probabilities(iter([x])))
            words.append(word_frames(x[_bounds(a, b, len(x))[0]:_bounds(a, b, len(x))[1]]))
            lengths.append(len(x))
        lengths = np.asarray(lengths)
        if stored:
            stored.parent.mkdir(parents=True, exist_ok=True)
            np.savez(stored, lengths=lengths, **{f"p{i}": p for i, p in enumerate(probs)},
                     **{f"w{i}": w for i, w in enumerate(words)})
    bounds = [_bounds(a, b, n) for (_, a, b), n in zip(files, lengths, strict=True)]
    return Folder(folder.name, probs, lengths, np.array([a for a, _ in bounds]),
                  np.array([b for _, b in bounds]), words)


def _bounds(start: float | None, end: float | None, n: int) -> tuple[int, int]:
    """The utterance's first sample and one past its last."""
    return (0 if start is None else round(start * RATE),
            n if end is None else min(n, round(end * RATE)))


@dataclass(frozen=True)
class Kept:
    """One folder under one rule."""

    kept: np.ndarray  # per file, share of the utterance inside the regions
    short: np.ndarray  # the same for utterances under SHORT seconds
    words: np.ndarray  # per file, share of the utterance's word frames inside the regions
    short_words: np.ndarray
    removed: float | None  # share of the padding outside the regions (None: no padding)

    @staticmethod
    def stats(values: np.ndarray) -> str:
        if not len(values):
            return "- / - / -"
        return (f"{100 * np.median(values):.1f} / {100 * np.percentile(values, 5):.1f} / "
                f"{100 * values.min():.1f}")


def measure(folder: Folder, rule: Rule) -> Kept:
    kept, words, removed, padding = [], [], 0, 0
    for probs, n, a, b, loud in zip(folder.probs, folder.lengths, folder.starts, folder.ends,
                                    folder.words, strict=True):
        inside = outside = 0
        mask = np.zeros(b - a, dtype=bool)
        for s, e in speech_regions(probs, int(n), RATE, rule):
            inside += max(0, min(e, b) - max(s, a))
            outside += (e - s) - max(0, min(e, b) - max(s, a))
            mask[max(s, a) - a:max(0, min(e, b) - a)] = True
        kept.append(inside / (b - a))
        frames = mask[: len(loud) * WORD_FRAME].reshape(-1, WORD_FRAME).all(axis=1)
        words.append(frames[loud].mean() if loud.any() else 1.0)
        removed += (n - (b - a)) - outside
        padding += n - (b - a)
    kept, words = np.asarray(kept), np.asarray(words)
    short = (folder.ends - folder.starts) / RATE < SHORT
    return Kept(kept, kept[short], words, words[short],
                removed / padding if padding else None)


def rule_text(rule: Rule) -> str:
    return (f"{rule.threshold:g}/{rule.neg_threshold:g}, silence {rule.min_silence:g}, "
            f"speech {rule.min_speech:g}, pad {rule.pad:g}")


def rows(folders: list[Folder], rules: dict[str, Rule]) -> list[str]:
    """Markdown rows: folder, rule, kept (median / 5th pct / min), short, removed."""
    out = []
    for folder in folders:
        for name, rule in rules.items():
            k = measure(folder, rule)
            removed = "-" if k.removed is None else f"{100 * k.removed:.1f} %"
            out.append(f"| {folder.name} | {name} | {len(k.kept)} | {Kept.stats(k.kept)} | "
                       f"{Kept.stats(k.words)} | {len(k.short)} | {Kept.stats(k.short)} | "
                       f"{Kept.stats(k.short_words)} | {removed} |")
    return out


HEADER = ["| set | rule | files | kept % (median / 5th pct / min) | words kept % | "
          "short (< 3 s) | short: kept % | short: words kept % | padding removed |",
          "|---|---|---|---|---|---|---|---|---|"]


def sweep() -> dict[str, Rule]:
    """The grid the shipped rule was chosen from."""
    rules = {"silero": SILERO_RULE}
    for on, off in ((0.5, 0.35), (0.4, 0.25), (0.3, 0.15)):
        for silence in (0.1, 0.5, 1.0):
            for pad in (0.03, 0.2, 0.3, 0.4, 0.5, 0.6):
                rule = replace(SILERO_RULE, threshold=on, neg_threshold=off,
                               min_silence=silence, pad=pad)
                rules[rule_text(rule)] = rule
    return rules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--cache", type=Path, help="folder for the probabilities (.npz)")
    parser.add_argument("--sweep", action="store_true", help="a grid of rules")
    args = parser.parse_args(argv)
    rules = sweep() if args.sweep else {"silero (before)": SILERO_RULE,
                                        f"shipped ({rule_text(RULE)})": RULE}
    print("\n".join(HEADER), flush=True)
    for folder in args.dirs:
        print("\n".join(rows([load(folder, args.cache)], rules)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
