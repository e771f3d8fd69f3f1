"""(j) Voice-activity detection: how much of each utterance `--vad` keeps, and what it does to
speaker verification on padded speech (issue 27).

The shared test-other set and the train-clean impostors are padded with digital silence and
with pink noise 15 dB below the speech (bench/vad_padding.py, speech 25 % of each file). For
the rule `--vad` uses and for Silero's own defaults (the rule before issue 27): the share of
each utterance kept and of its loud frames ("words", bench/vad_kept.py), and with CAM++
(when its weights are in ../shared) EER, minDCF and mean scores with and without VAD
(bench/vad_eval.py). A quick run measures the kept shares on the first corpus files only.
"""

from __future__ import annotations

from pathlib import Path

from audio_cli.frontend.vad import RULE, SILERO_RULE

from . import vad_eval, vad_kept, vad_padding
from .common import CORPUS, log
from .int8 import CAMPPLUS, IMPOSTORS

VARIANTS = (("silence", ["--kind", "silence"]), ("noise-15dB", ["--kind", "noise", "--snr", "15"]))


def _subset(source: Path, out: Path, limit: int | None) -> Path:
    """`source`, or a folder of links to its first `limit` audio files (a quick run)."""
    if limit is None:
        return source
    for path in sorted(source.rglob("*.flac"))[:limit]:
        target = out / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path)
    return out


def section_vad(limit: int | None, tmp: Path, notes: list[str]) -> list[str]:
    test = _subset(CORPUS, tmp / "vad-test", limit)
    impostors = _subset(IMPOSTORS, tmp / "vad-imp", limit)
    sets = [(test, impostors)]
    for name, args in VARIANTS:
        log(f"(j) padding the sets: {name}")
        padded = (tmp / f"vad-{name}", tmp / f"vad-{name}-imp")
        vad_padding.main([str(test), str(padded[0]), *args])
        vad_padding.main([str(impostors), str(padded[1]), *args])
        sets.append(padded)
    rules = {"Silero defaults (before)": SILERO_RULE, f"shipped ({vad_kept.rule_text(RULE)})": RULE}
    lines = ["## (j) Voice-activity detection: speech kept, accuracy on padded speech", "",
             "Kept: share of each utterance inside the regions (median / 5th percentile / "
             "minimum over files, short = under 3 s); words: the same of its loud 10 ms "
             "frames (an energy reference, bench/vad_kept.py); padding removed: share of the "
             "added padding outside the regions.", "", *vad_kept.HEADER]
    cache = tmp / "vad-probs"
    for folders in sets:
        for folder in folders:
            log(f"(j) detector over {folder.name}")
            lines += vad_kept.rows([vad_kept.load(folder, cache)], rules)
    if limit is not None:
        notes.append(f"(j) quick: kept shares on the first {limit} files; accuracy not measured")
        return lines
    if not CAMPPLUS.is_dir():
        notes.append(f"(j) {CAMPPLUS} is missing: accuracy not measured")
        return lines
    lines += ["", "CAM++ (onnx), every pair of the test-other files and each against every "
              "impostor; VAD rule `none` embeds every sample.", "", *vad_eval.HEADER]
    for folder, extra in sets:
        log(f"(j) CAM++ over {folder.name}")
        lines += vad_eval.rows(folder, extra, str(CAMPPLUS), cache, list(vad_eval.RULES))
    return lines
