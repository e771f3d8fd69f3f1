"""Accuracy and speed of `audio diarize` on folders of recordings with reference RTTM.

    python -m bench.diarize DIR [DIR ...] --model CAMPPLUS [--segmentation S] \
        [--clustering auto ahc spectral] [--paths seg vad] [--step 2.0] [--threshold T]

Each DIR holds *.wav (or *.flac) recordings and `reference.rttm` (uri = the file's stem),
optionally `reference.uem`: ../shared/data/diarization/ami-debug-train/, or the simulated
conversations of bench/conversations.py. For every (path, clustering) pair it diarizes each
file and prints DER "full" (no collar, overlap scored) and "fair" (0.25 s collar each side
of reference boundaries, overlap scored), per file and total (time-weighted), the number of
speakers found against the reference's, and the real-time factor (diarization time over
audio time, models loaded beforehand) with the process's CPU time over audio time (user +
system, all threads: comparable between runs on a busy machine, unlike wall time). The
model may be a model folder or 3D-Speaker's CAM++ checkpoint (converted once to a temporary
folder).

DER comes from audio_cli.diarization.scoring (`audio eval-diarization`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from audio_cli.diarization.pipeline import STEP, DiarizeOptions, Diarizer
from audio_cli.diarization.turns import Turn, read_rttm, read_uem
from audio_cli.frontend.audio import load_audio


def der(reference: list[Turn], hypothesis: list[Turn], uem, collar: float) -> tuple:
    """(error seconds, reference speech seconds) of one file; `collar` each side."""
    from audio_cli.diarization.scoring import FAIR, FULL, score_recording

    score = score_recording(reference, hypothesis, uem, FULL if collar == 0 else FAIR)
    return score.errors, score.speech


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".wav", ".flac"))


def evaluate(diarizer: Diarizer, folder: Path, label: str) -> dict:
    reference = read_rttm(folder / "reference.rttm")
    uem_path = folder / "reference.uem"
    uems = read_uem(uem_path) if uem_path.exists() else {}
    rows, totals = [], {"full": [0.0, 0.0], "fair": [0.0, 0.0]}
    audio_seconds = elapsed = cpu = 0.0
    exact = 0
    for path in files_of(folder):
        uri = path.stem
        audio = load_audio(path, diarizer.sample_rate)
        start, start_cpu = time.perf_counter(), time.process_time()
        hyp = diarizer.diarize(audio, uri).turns
        elapsed += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        audio_seconds += audio.duration
        ref = reference.get(uri, [])
        row = {"file": uri}
        for name, collar in (("full", 0.0), ("fair", 0.25)):
            error, total = der(ref, hyp, uems.get(uri), collar)
            totals[name][0] += error
            totals[name][1] += total
            row[name] = error / total if total else float("nan")
        row["speakers"] = (len({t.speaker for t in hyp}), len({t.speaker for t in ref}))
        exact += row["speakers"][0] == row["speakers"][1]
        rows.append(row)
        print(f"  {label} {uri}: full {row['full']:.1%} fair {row['fair']:.1%} "
              f"speakers {row['speakers'][0]}/{row['speakers'][1]}", file=sys.stderr)
    return {"rows": rows, "full": totals["full"][0] / totals["full"][1],
            "fair": totals["fair"][0] / totals["fair"][1], "exact": exact,
            "files": len(rows), "rtf": elapsed / audio_seconds, "cpu": cpu / audio_seconds}


def model_folder(model: str, scratch: Path) -> str:
    """A model folder: `model` itself, or a CAM++ checkpoint converted once into
    scratch/model (later calls with the same scratch folder reuse it)."""
    if Path(model).is_file() and model.endswith(".pt"):
        from audio_cli.models.convert import convert_checkpoint

        target = scratch / "model"
        if (target / "config.json").is_file():
            return str(target)
        return str(convert_checkpoint(Path(model), target))
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--segmentation", default=None)
    parser.add_argument("--clustering", nargs="+", default=["auto", "ahc", "spectral"])
    parser.add_argument("--paths", nargs="+", default=["seg", "vad"], choices=["seg", "vad"])
    parser.add_argument("--step", type=float, default=STEP)
    parser.add_argument("--threshold", type=float, default=None,
                        help="AHC's threshold (default: the path's own)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        model = model_folder(args.model, Path(scratch))
        base = DiarizeOptions(model=model, engine="onnx", threads=args.threads,
                              segmentation=args.segmentation, step=args.step,
                              threshold=args.threshold)
        print("| data | path | clustering | step (s) | DER full | DER fair | speakers exact | "
              "RTF | CPU s / audio s |")
        print("|---|---|---|---|---|---|---|---|---|")
        per_file = []
        for path in args.paths:
            options = replace(base, segmentation="none") if path == "vad" else base
            diarizer = Diarizer(options)
            for method in args.clustering:
                diarizer.options = replace(options, clustering=method)
                for folder in args.folders:
                    label = f"{folder.name} {path} {method}"
                    result = evaluate(diarizer, folder, label)
                    print(f"| {folder.name} | {path} | {method} | {args.step:g} | "
                          f"{result['full']:.1%} | {result['fair']:.1%} | "
                          f"{result['exact']}/{result['files']} | {result['rtf']:.3f} | "
                          f"{result['cpu']:.3f} |", flush=True)
                    per_file.append((label, result["rows"]))
        print()
        for label, rows in per_file:
            cells = ", ".join(f"{r['file']} {r['full']:.1%}/{r['fair']:.1%} "
                              f"({r['speakers'][0]}/{r['speakers'][1]})" for r in rows)
            print(f"- {label}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
