"""Build padded variants of a speech dataset, to measure what long pauses and noise do to the
speaker vectors (and what voice-activity detection gives back).

    python -m bench.vad_padding SOURCE OUT [--kind silence|noise] [--speech 0.25] [--snr 15]

Every audio file below SOURCE (any depth; `manifest.csv` and other text files are copied as
they are) is written to the same relative path below OUT, as 16-bit FLAC at its own rate:
the speech is kept whole and padding is added before and after it so that the speech is
`--speech` of the result (default 25 %). The padding is split at a seeded random point
between the start and the end, so that files differ. It is

- `silence`: digital zeros;
- `noise`: pink (1/f power) noise whose RMS is `--snr` dB (default 15) below the RMS of the
  file's speech (the RMS over its 32 ms frames louder than -50 dBFS, so pauses inside the
  utterance do not lower it).

`OUT/padding.csv` records, for each file, where its speech starts and ends (seconds), which
is the ground truth a VAD is scored against. The same SOURCE, kind and seed always give the
same files.

Example (the measurement in bench/RESULTS.md, Voice-activity detection):
    python -m bench.vad_padding ../shared/data/speech/librispeech-test-other-10x10 /tmp/pad/sil
    python -m bench.vad_padding ../shared/data/speech/librispeech-train-clean-100-251x1 \
        /tmp/pad/sil-imp
    audio eval /tmp/pad/sil --impostors /tmp/pad/sil-imp --model DIR --vad
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

AUDIO = {".flac", ".wav", ".ogg", ".mp3", ".aiff", ".aif"}
FRAME = 0.032  # seconds, for the speech RMS
ACTIVE_DB = -50.0  # dBFS; frames above this count towards the speech RMS


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS pink noise (power falls as 1/f), shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(f), n)
    return noise / np.sqrt(np.mean(noise**2))


def speech_rms(x: np.ndarray, rate: int) -> float:
    """RMS over the frames louder than ACTIVE_DB (all frames if none is)."""
    size = max(1, int(FRAME * rate))
    frames = x[: len(x) // size * size].reshape(-1, size) if len(x) >= size else x[None]
    power = np.mean(frames.astype(np.float64) ** 2, axis=1)
    active = power[power > 10 ** (ACTIVE_DB / 10)]
    return float(np.sqrt(np.mean(active if len(active) else power)))


def pad(x: np.ndarray, rate: int, kind: str, speech: float, snr: float,
        rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(padded signal, index of the first speech sample)."""
    total = int(round(len(x) / speech))
    extra = total - len(x)
    before = int(rng.integers(0, extra + 1))
    if kind == "silence":
        padding = np.zeros(extra)
    else:
        padding = pink_noise(extra, rng) * speech_rms(x, rate) * 10 ** (-snr / 20)
    out = np.concatenate([padding[:before], x, padding[before:]])
    return np.clip(out, -1.0, 32767 / 32768), before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--kind", choices=("silence", "noise"), default="silence")
    parser.add_argument("--speech", type=float, default=0.25,
                        help="fraction of the result that is the original file")
    parser.add_argument("--snr", type=float, default=15.0, help="dB, speech over noise")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 < args.speech <= 1:
        parser.error("--speech must be in (0, 1]")
    rows = []
    files = sorted(p for p in args.source.rglob("*") if p.is_file())
    for path in files:
        rel = path.relative_to(args.source)
        target = args.out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() not in AUDIO:
            shutil.copyfile(path, target)
            continue
        x, rate = sf.read(str(path), dtype="float64", always_2d=True)
        x = x.mean(axis=1)
        rng = np.random.default_rng([args.seed, zlib.crc32(str(rel).encode())])
        y, start = pad(x, rate, args.kind, args.speech, args.snr, rng)
        sf.write(str(target.with_suffix(path.suffix)), y, rate, subtype="PCM_16",
                 format="FLAC" if path.suffix.lower() == ".flac" else None)
        rows.append((str(rel), f"{start / rate:.4f}", f"{(start + len(x)) / rate:.4f}",
                     f"{len(y) / rate:.4f}"))
    with open(args.out / "padding.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("file", "speech_start", "speech_end", "duration"))
        writer.writerows(rows)
    print(f"{len(rows)} files padded ({args.kind}) into {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
