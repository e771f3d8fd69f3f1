"""Named speakers (`audio diarize --db STORE`) on conversations of LibriSpeech readers.

    python -m bench.named_speakers --model CAMPPLUS [--segmentation S] [--out DIR] [--no-vad]

For each set of four readers (A, B, C, D) of ../shared/data/speech/librispeech-test-other-10x10
it builds a conversation of nine turns, A B C B A C A C B (utterances 2-4 of each, 0.8 s
pauses), enrolls A and B from two other utterances each (5 and 6) and D, who does not speak,
from utterances 0 and 1, with the real CLI (`audio enroll --vad`, or without --vad with
--no-vad), then runs `audio diarize --db` on both paths (segmentation, and `--segmentation
none`). It prints, per reader, the share of the reader's speech (an energy detector's,
bench/conversations.speech_frames, as in the simulated conversations' reference) that
carries the reader's name, and the share of the diarized time inside that speech that does;
for C (not enrolled) the share an enrolled name takes; whether D appears; and the scores.

The model may be a model folder or 3D-Speaker's CAM++ checkpoint (converted once).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.conversations import SPEECH_DIR, speech_frames
from bench.diarize import model_folder

# (A, B: enrolled and speaking; C: speaking, not enrolled; D: enrolled, absent); both sexes
# (F: 367, 533, 1998, 3080, 3331; M: 1688, 2033, 2414, 2609, 3005), C and D often alike.
READER_SETS = (("1688", "3080", "2033", "2414"), ("367", "533", "1998", "3331"),
               ("2609", "3005", "2414", "2033"), ("3331", "2609", "367", "1998"))
ORDER = "ABCBACACB"
PAUSE = 0.8


def utterances(folder: Path, reader: str) -> list[Path]:
    return sorted((folder / reader).glob("*.flac"))


def build(folder: Path, readers: tuple[str, ...], path: Path) -> dict[str, list]:
    """Write the conversation to `path`; returns {reader: [(start, end)] of speech}."""
    roles = dict(zip("ABCD", readers, strict=True))
    left = {role: iter(utterances(folder, roles[role])[2:5]) for role in "ABC"}
    pieces, speech, at = [], {}, 0.0
    for role in ORDER:
        samples, rate = sf.read(next(left[role]), dtype="float32")
        pieces += [samples, np.zeros(int(PAUSE * rate), np.float32)]
        speech.setdefault(roles[role], []).extend(
            (at + a / rate, at + b / rate) for a, b in speech_frames(samples))
        at += len(samples) / rate + PAUSE
    sf.write(path, np.concatenate(pieces), 16000, subtype="PCM_16")
    return speech


def run(argv: list[str]) -> str:
    """`audio ARGV` in a child process, as a user runs it; its stdout (stderr passes through)."""
    done = subprocess.run([sys.executable, "-m", "audio_cli", *argv], stdout=subprocess.PIPE,
                          text=True, check=False)
    if done.returncode:
        raise SystemExit(f"audio {argv[0]} failed (exit {done.returncode})")
    return done.stdout


def seconds(turns: list[dict], regions: list[tuple[float, float]]) -> dict[str, float]:
    time: dict[str, float] = {}
    for t in turns:
        for start, end in regions:
            inside = min(end, t["end"]) - max(start, t["start"])
            if inside > 0:
                time[t["speaker"]] = time.get(t["speaker"], 0.0) + inside
    return time


def measure(folder: Path, readers: tuple[str, ...], model: str, segmentation: str | None,
            scratch: Path, vad: bool) -> None:
    tag = "-".join(readers)
    wav = scratch / f"{tag}.wav"
    speech = build(folder, readers, wav)
    db = scratch / f"{tag}.db"
    a, b, c, d = readers
    for reader, files in ((a, utterances(folder, a)[5:7]), (b, utterances(folder, b)[5:7]),
                          (d, utterances(folder, d)[:2])):
        run(["enroll", f"r{reader}", *map(str, files), "--model", model, "--db", str(db),
             *(["--vad"] if vad else [])])
    for path in ("segmentation", "vad"):
        seg = segmentation if path == "segmentation" else "none"
        out = run(["diarize", str(wav), "--model", model, "--db", str(db), "--json",
                   *(["--segmentation", seg] if seg else [])])
        turns = [json.loads(line) for line in out.splitlines()]
        scores = {t["speaker"]: t["score"] for t in turns}
        cells = []
        for reader in (a, b, c):
            total = sum(e - s for s, e in speech[reader])
            time = seconds(turns, speech[reader])
            if reader == c:
                taken = sum(v for k, v in time.items() if k.startswith("r"))
                cells.append(f"{c} (unknown): an enrolled name on {taken / total:.1%}")
            else:
                named = time.get(f"r{reader}", 0.0)
                found = sum(time.values())
                cells.append(f"{reader}: {named / total:.1%} named ({named / found:.1%} of "
                             "the diarized)")
        absent = "APPEARS" if f"r{d}" in scores else "never appears"
        shown = {k: (round(v, 3) if v is not None else None) for k, v in scores.items()}
        print(f"{tag} {path:12s} {'; '.join(cells)}; {d} (absent) {absent}; scores {shown}",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="CAM++ model folder or checkpoint")
    parser.add_argument("--segmentation", help="segmentation-3.0 pytorch_model.bin or folder")
    parser.add_argument("--speech", type=Path, default=SPEECH_DIR)
    parser.add_argument("--no-vad", action="store_true", help="enroll without --vad")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        model = model_folder(args.model, Path(scratch))
        for readers in READER_SETS:
            measure(args.speech, readers, model, args.segmentation, Path(scratch),
                    not args.no_vad)
    return 0


if __name__ == "__main__":
    sys.exit(main())
