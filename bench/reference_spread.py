"""How far apart two plausible references of the simulated conversations are.

    python -m bench.reference_spread [--count 10] [--seed 0]

The conversations' reference (bench/conversations.py) marks speech with an energy detector
run on each clean utterance. A second, independent reference is made here from the same
conversations: Silero VAD (audio_cli/frontend/vad.py) run on each speaker's placed speech
alone (the conversation's stems, before noise), with the true speaker labels and every
overlap exact. The DER of one reference against the other (full: no collar; fair: 0.25 s
collar) is what no system can be sure to beat: it is the disagreement about where speech
starts and ends, with no speaker error at all.

Speech: LibriSpeech ASR corpus (c) 2014 Vassil Panayotov, CC BY 4.0
(http://creativecommons.org/licenses/by/4.0/).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from audio_cli.diarization.scoring import FAIR, FULL, score_recording
from audio_cli.diarization.turns import Turn
from audio_cli.frontend.vad import SILERO_RULE, find_speech
from bench.conversations import RATE, build, default_plans, load_readers


def stem_turns(uri: str, stems: dict[str, np.ndarray]) -> list[Turn]:
    """Silero VAD's speech regions of each speaker's stem, as that speaker's turns: Silero's
    own rule (30 ms of padding), not `--vad`'s, which pads 0.5 s to keep every word."""
    return sorted(Turn(uri, s / RATE, e / RATE, speaker) for speaker, stem in stems.items()
                  for s, e in find_speech(stem, RATE, rule=SILERO_RULE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    readers = load_readers()
    totals = {FULL.name: None, FAIR.name: None}
    print("| uri | DER full | DER fair |\n|---|---|---|")
    for i, plan in enumerate(default_plans(args.count, np.random.default_rng([args.seed, 0]))):
        conv = build(plan, readers, np.random.default_rng([args.seed, 1, i]), keep_stems=True)
        other = stem_turns(plan.uri, conv.stems)
        row = []
        for convention in (FULL, FAIR):
            score = score_recording(conv.turns, other, None, convention)
            total = totals[convention.name]
            totals[convention.name] = score if total is None else total + score
            row.append(f"{score.errors / score.speech:.1%}")
        print(f"| {plan.uri} | {row[0]} | {row[1]} |", flush=True)
    for name, score in totals.items():
        print(f"total {name}: DER {score.errors / score.speech:.1%} (missed "
              f"{score.missed / score.speech:.1%}, false alarm "
              f"{score.false_alarm / score.speech:.1%}, confusion "
              f"{score.confusion / score.speech:.1%})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
