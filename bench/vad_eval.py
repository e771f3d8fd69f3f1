"""Speaker-verification accuracy with and without voice-activity detection, per region rule.

    python -m bench.vad_eval DATASET IMPOSTORS [--model DIR] [--cache DIR] [--rules R,R]

DATASET holds one sub-folder per speaker (the shared test-other, or a padded copy of it made by
bench/vad_padding.py), IMPOSTORS one file per speaker (train-clean, padded the same way). Every
file is embedded once per rule: `none` embeds every sample (`--no-vad`), `silero` only the
regions of Silero's own default rule (what `--vad` used before), `shipped` those of the rule
`--vad` uses now (audio_cli.frontend.vad.RULE, found by find_speech as `--vad` finds them,
digital silence trimmed from their ends). The `silero` regions come from the frame
probabilities bench/vad_kept.py computes (cached with `--cache`), the vectors from the same
front-end and network as `audio eval --vad`. Printed: EER, minDCF (p = 0.01), mean target
and non-target cosine over every pair (as `audio eval DATASET --impostors IMPOSTORS`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from audio_cli.frontend.audio import Audio
from audio_cli.frontend.vad import RULE, SILERO_RULE, cut, find_speech, speech_regions

from .vad_kept import RATE, _files, load

CAMPPLUS = Path(__file__).resolve().parents[2] / "shared" / "models" / "campplus-zh-en-common"
RULES = {"none": None, "silero": SILERO_RULE, "shipped": RULE}
HEADER = ["| set | VAD rule | EER | minDCF (p=0.01) | mean target | mean non-target |",
          "|---|---|---|---|---|---|"]


def vectors(speaker, folder: Path, cache: Path | None, rules: list[str]) -> dict:
    """{rule: (N, D) vectors} of the folder's audio files, in vad_kept's file order."""
    probe = load(folder, cache)

    files = [rel for rel, _, _ in _files(folder)]
    out: dict[str, list[np.ndarray]] = {r: [] for r in rules}
    for rel, probs, n in zip(files, probe.probs, probe.lengths, strict=True):
        x, _ = sf.read(str(folder / rel), dtype="float32")
        for name in rules:
            rule = RULES[name]
            if rule is RULE:  # what --vad does: the detector again, digital silence trimmed
                y = cut(x, find_speech(x))
            else:
                y = x if rule is None else cut(x, speech_regions(probs, int(n), RATE, rule))
            out[name].append(speaker.embed_audio(Audio(y, RATE, RATE, 1, rel)).embedding)
    return {name: np.stack(v) for name, v in out.items()}, [Path(f).parts[0] for f in files]


def rows(dataset: Path, impostors: Path, model: str, cache: Path | None,
         rules: list[str]) -> list[str]:
    from audio_cli.evaluation.metrics import evaluate, trial_scores
    from audio_cli.pipeline.speaker import SpeakerEmbedder

    speaker = SpeakerEmbedder.from_pretrained(model, engine="onnx")
    test, labels = vectors(speaker, dataset, cache, rules)
    extra, _ = vectors(speaker, impostors, cache, rules)
    out = []
    for name in rules:
        m = evaluate(trial_scores(test[name], labels, extra[name]))
        out.append(f"| {dataset.name} | {name} | {100 * m.eer:.3f} % | {m.min_dcf:.4f} | "
                   f"{m.mean_target:.3f} | {m.mean_nontarget:.3f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("impostors", type=Path)
    parser.add_argument("--model", default=str(CAMPPLUS))
    parser.add_argument("--cache", type=Path, help="folder of bench/vad_kept.py's .npz files")
    parser.add_argument("--rules", default="none,silero,shipped")
    parser.add_argument("--no-header", action="store_true")
    args = parser.parse_args(argv)
    rules = args.rules.split(",")
    if unknown := set(rules) - set(RULES):
        parser.error(f"unknown rules: {', '.join(sorted(unknown))}")
    lines = rows(args.dataset, args.impostors, args.model, args.cache, rules)
    print("\n".join(lines if args.no_header else HEADER + lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
