"""(h) int8 against float32: accuracy on real speech, throughput, model size.

XX
random-weight ResNet34). For each model, both precisions embed the shared test-other files
(10 speakers x 10) and the train-clean impostors (251 one-file speakers) from the same
features; accuracy is EER and minDCF over every pair (4,950 trials + 25,100 impostor trials)
and the per-file cosine between the two vectors. Throughput: the network alone
(`embed_features`) on the test-other features, in blocks alternating between the two
precisions; ratio = float32 time / int8 time (> 1: int8 faster).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from .common import CORPUS, ROOT, log, median

IMPOSTORS = ROOT.parent / "shared" / "data" / "speech" / "librispeech-train-clean-100-251x1"
CAMPPLUS = ROOT.parent / "shared" / "models" / "campplus-zh-en-common"
ROUNDS = 5


def _features(speaker, files: list[Path]) -> list[np.ndarray]:
    from audio_cli.frontend.audio import load_audio

    return [speaker.features(load_audio(f)) for f in files]


def _vectors(speaker, clips: list[np.ndarray]) -> np.ndarray:
    return np.stack([speaker.embed_features(c) for c in clips])


def _throughput(speakers: dict, clips: list[np.ndarray]) -> dict[str, float]:
    """Median seconds per pass over `clips` for each precision, in alternating rounds."""
    times: dict[str, list[float]] = {name: [] for name in speakers}
    for round_ in range(ROUNDS):
        order = list(speakers) if round_ % 2 == 0 else list(reversed(speakers))
        for name in order:
            start = time.perf_counter()
            for clip in clips:
                speakers[name].embed_features(clip)
            times[name].append(time.perf_counter() - start)
    return {name: median(values) for name, values in times.items()}


def measure(model: str) -> list[str]:
    """Table rows for one model (a --model argument)."""
    from audio_cli.evaluation.metrics import evaluate, trial_scores
    from audio_cli.pipeline.speaker import SpeakerEmbedder

    speakers = {p: SpeakerEmbedder.from_pretrained(model, engine="onnx", precision=p)
                for p in ("float32", "int8")}
    test = sorted(CORPUS.glob("*/*.flac"))
    impostors = sorted(IMPOSTORS.glob("*.flac"))
    labels = [f.parent.name for f in test]
    log(f"(h) {model}: features of {len(test)} + {len(impostors)} files")
    clips = _features(speakers["float32"], test)
    extra = _features(speakers["float32"], impostors)
    rows, vectors = [], {}
    for name, speaker in speakers.items():
        vectors[name] = (_vectors(speaker, clips), _vectors(speaker, extra))
        metrics = evaluate(trial_scores(vectors[name][0], labels, vectors[name][1]))
        size = speaker.engine.model_path.stat().st_size / 2**20
        rows.append((name, metrics, size))
    cosines = np.concatenate([np.sum(vectors["float32"][i] * vectors["int8"][i], axis=1)
                              for i in (0, 1)])
    seconds = _throughput(speakers, clips)
    speed = seconds["float32"] / seconds["int8"]
    label = Path(model).name
    lines = []
    for name, metrics, size in rows:
        same = ("1.00" if name == "float32" else
                f"{np.median(cosines):.4f} / {np.percentile(cosines, 1):.4f}")
        lines.append(f"| {label} | {name} | {metrics.eer * 100:.2f} % | {metrics.min_dcf:.3f} | "
                     f"{same} | {seconds[name]:.2f} s | "
                     f"{'1.00' if name == 'float32' else f'{speed:.2f}'} | {size:.1f} MB |")
    return lines


def section_int8(models: list[str], notes: list[str]) -> list[str]:
    lines = ["## (h) int8 against float32 (real speech)", "",
             "Shared test-other (10 speakers x 10 files) plus the 251 train-clean impostors, "
             "the same features for both precisions. Cosine = per-file cosine between the "
             "int8 and float32 vectors (median / 1st percentile over the 351 files). Time = "
             f"the network on the 100 test-other clips, median of {ROUNDS} alternating "
             "rounds; speed = float32 time ÷ int8 time.", "",
             "| model | precision | EER | minDCF (0.01) | cosine to float32 | time | speed | "
             "model file |", "|---|---|---|---|---|---|---|---|"]
    if not CORPUS.is_dir() or not IMPOSTORS.is_dir():
        notes.append("(h) skipped: the shared speech is absent")
        return lines + ["Skipped: the shared speech is absent."]
    for model in models:
        lines += measure(model)
    return lines


def main(argv: list[str]) -> None:
    models = argv or [str(CAMPPLUS)]
    notes: list[str] = []
    print("\n".join(section_int8(models, notes)))
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main(sys.argv[1:])
