"""Benchmark the engines: forward time, cold CLI start, corpus throughput, peak memory, many
files / one long input, and store scaling.

    python -m bench                 full run (make bench); ~6-10 min on an idle 2-core machine
    python -m bench --quick         a small model and few repeats: checks the code in ~1 min
    python -m bench --record        full run, then copies its report to bench/RESULTS.md
    python -m bench --record-file bench/out/<run>.md   record an earlier full run's report

`BENCH_QUICK=1` also selects the quick mode. Every run prints its markdown report to stdout
(progress on stderr) and writes it to bench/out/ (untracked): `<UTC time>-<mode>.md` and a
copy as `latest.md`. A run never touches bench/RESULTS.md unless asked to record it; quick
runs cannot be recorded. Every figure is a median or a sum measured beside its baseline in
the same run, interleaved, so ratios stay meaningful on a machine shared with other work;
absolute times do not.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .batch_rows import section_batch
from .bulk_load import section_bulk
from .common import CONVENTION, FULL, OUT_DIR, QUICK, ROOT, Plan, load_average, log
from .diarize_section import section_diarize
from .end_to_end import section_end_to_end
from .int8 import CAMPPLUS, section_int8
from .ort_sessions import DEFAULTS, ENGINE_AS_WRITTEN, describe, engine_spec
from .ray_local import section_ray
from .sections import section_cold, section_forward, section_memory
from .store_scaling import section_store
from .synthetic import write_model
from .throughput import section_corpus
from .vad_bench import section_vad

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
# Where the hand-written part of RESULTS.md begins (other measurements, each with its date and
# conditions); recording a run replaces what is above it and keeps it.
HAND_MARK = "<!-- other measurements, written by hand: kept when a run is recorded -->"
ENGINES = ("onnx", "mlx")
SECTIONS = "abcdefghijk"
FULL_MARK = "- mode: full"
QUICK_MARK = "- mode: QUICK (small model, few repeats; a check of the code, not a result)"



def measures(plan: Plan) -> list[str]:
    """What each section measures, in this plan's sizes."""
    sizes = ", ".join(label for label, _, _ in plan.forward_sizes)
    mlx = ", ".join(label for label, _, _ in plan.mlx_sizes)
    files = "all corpus files" if plan.corpus_limit is None else \
        f"the first {plan.corpus_limit} corpus files"
    long = "one-hour" if plan.long_seconds == 3600 else f"{plan.long_seconds} s"
    speech = "the 351 shared speech files" if plan.corpus_limit is None else \
        f"the first {plan.corpus_limit} shared speech files"
    return [
        f"(a) forward time: one `engine.embed` call on random features of {sizes}, warm, "
        "against bare onnxruntime sessions on the same .onnx (engine's options; defaults); "
        f"MLX on {mlx} against the same baselines.",
        "(b) cold start: wall time of a fresh `audio embed-speaker` process on a 3 s WAV "
        "against fresh bare onnxruntime processes (import, open session, one run).",
        f"(c) corpus throughput over {files}: files/s end to end (decode + fbank + network + "
        "head) against forward only on the same features, with the engine's session and two "
        "other option sets.",
        "(d) peak memory: ru_maxrss of the CLI on a 60 s clip against bare onnxruntime "
        "processes on 60 s of features.",
        f"(e) many files: {files} in one library call, one CLI call and a loop of one CLI "
        f"process per file; one {long} WAV through the CLI, its wall time and peak RSS.",
        "(f) store scaling: for N vectors with speaker structure, the vector file and HNSW "
        "graph (size, build time), the old SQLite -> numpy load, a cold search process (time, "
        "peak RSS), exact and approximate query times and recall@10 (no baseline).",
        f"(g) the whole path against the bare runtime, for ResNet34 and CAM++ (when its "
        f"weights are in ../shared): {files} through the Python API, the library's many-file "
        "call and one CLI call, against a bare onnxruntime session with default options on "
        "precomputed features; peak RSS of one CLI call on "
        f"{', '.join(map(str, plan.memory_counts))} files; CAM++ on "
        f"{', '.join(f'{s // 60} min' if s >= 60 else f'{s} s' for s in plan.campplus_long)}.",
        "(i) Ray: `embed-speaker --ray` on a local Ray of 2 CPUs (2 actors x 1 thread) "
        f"against one process with --threads 2, on {speech}, both into Parquet; throughput "
        "ratio (target >= 0.8).",
        "(j) voice-activity detection: the share of each utterance (and of its loud frames) "
        "that --vad keeps, before and after issue 27's rule, on the test-other and "
        "train-clean files clean and padded with silence and with noise; CAM++ EER, minDCF and "
        "mean scores with and without VAD (full runs only).",
        "(k) diarization: this project and senko 0.2.2 on the same files in one run (the AMI "
        "excerpts, the simulated conversations): start-up, real-time factor, peak RSS, DER; "
        "then this project alone on one simulated hour (and with --diarize-hours N, that hour "
        "played N times)" + (" (quick: 2 files a set, no hour)" if plan.quick else "") + ".",
    ]


RECORD_HEADER = """\
> **Recorded run.** This file changes only when a run is recorded on purpose:
> `python -m bench --record` (runs the full benchmark, then copies its report here) or
> `python -m bench --record-file bench/out/<run>.md` (copies an earlier full run's report).
> `make bench` / `python -m bench` write only to `bench/out/` (untracked); quick runs cannot
> be recorded. Do not edit the recorded run's figures by hand. The part from
> "Other measurements" on is written by hand and kept when a run is recorded.
>
> Ratio convention: **baseline ÷ ours** everywhere (1.00 = the same, > 1 = ours faster or
> smaller, < 1 = ours slower or larger).
"""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "n/a"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "n/a"
    return f"{rev}{' (with uncommitted changes)' if dirty else ''}"


def machine_lines(plan: Plan) -> list[str]:
    import onnxruntime

    return [
        QUICK_MARK if plan.quick else FULL_MARK,
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {git_revision()}",
        f"- platform: {platform.platform()}",
        f"- CPU: {cpu_model()} ({platform.machine()}), nproc {os.cpu_count()}, "
        f"memory {memory_total()}",
        f"- python: {platform.python_version()} ({sys.executable})",
        f"- onnxruntime: {onnxruntime.__version__}, numpy: {np.__version__}",
        f"- load average (1/5/15 min) at the start: {load_average()}",
    ]


def available_engines(model_dir: Path) -> tuple[dict, list[str]]:
    from audio_cli import SpeakerEmbedder

    loaded, notes = {}, []
    for name in ENGINES:
        try:
            log(f"loading engine {name}")
            start = time.perf_counter()
            loaded[name] = SpeakerEmbedder.from_pretrained(model_dir, engine=name)
            log(f"  {name} loaded in {time.perf_counter() - start:.1f} s")
        except Exception as exc:
            notes.append(f"engine `{name}` unavailable: {type(exc).__name__}: {exc}")
            log(notes[-1])
    return loaded, notes


def reading_guide(plan: Plan, engine_opts: dict, providers_note: str) -> list[str]:
    return ["## How to read this report", "", CONVENTION, "",
            "What each section measures:", "", *[f"- {m}" for m in measures(plan)], "",
            "The two bare onnxruntime baselines (same cached .onnx file as the engine):", "",
            f"- **bare ORT, engine's options**: {describe(engine_opts)}; read off the loaded "
            "engine at run time (its SessionOptions, RunOptions and providers). Everything "
            "else is onnxruntime's default, as in the engine: sequential execution, "
            "`ORT_ENABLE_ALL`, intra-op threads 0 (onnxruntime's choice: one per core)."
            f"{providers_note}",
            f"- **bare ORT, defaults**: {describe(DEFAULTS)}. The gap between the two baselines "
            "is what the engine's options cost (or save) on their own.", ""]


def run(plan: Plan, only: str, store_sizes: tuple[int, ...], hours: int = 1) -> str:
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    started = time.perf_counter()
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="audio-bench-") as tmp_name:
        tmp = Path(tmp_name)
        log("writing the model")
        model_dir, model_note = write_model(tmp / "model", quick=plan.quick)
        speakers, load_notes = available_engines(model_dir)
        notes += load_notes
        onnx = speakers.get("onnx")
        onnx_path = getattr(onnx.engine, "model_path", None) if onnx else None
        if onnx is not None:
            engine_opts, spec_notes = engine_spec(onnx.engine)
            notes += spec_notes
        else:
            engine_opts = dict(ENGINE_AS_WRITTEN)
            notes.append("the onnx engine did not load: the 'engine's options' baseline uses "
                         "bench's copy of them")
        providers_note = ""
        if onnx is not None and onnx.engine.providers != ["CPUExecutionProvider"]:
            providers_note = f" Engine providers: {', '.join(onnx.engine.providers)}."
        report = [f"# Speaker-embedding benchmark{' (QUICK check)' if plan.quick else ''}", "",
                  *machine_lines(plan), f"- model: {model_note}",
                  f"- cached ONNX file: `{onnx_path.name if onnx_path else 'n/a'}`", "",
                  *reading_guide(plan, engine_opts, providers_note)]
        needs_onnx = onnx is not None and onnx_path is not None
        sections = {
            "a": lambda: section_forward(speakers, onnx_path, engine_opts, plan, notes),
            "b": lambda: section_cold(model_dir, onnx_path, engine_opts, plan, tmp),
            "c": lambda: section_corpus(onnx, engine_opts, plan.corpus_limit, notes),
            "d": lambda: section_memory(model_dir, onnx_path, engine_opts, tmp),
            "e": lambda: section_batch(onnx, model_dir, plan, tmp, notes),
            "f": lambda: section_store(store_sizes, log) + [""] + section_bulk(store_sizes),
            "g": lambda: section_end_to_end(model_dir, plan, tmp, notes),
            "h": lambda: section_int8([str(CAMPPLUS), str(model_dir)], notes),
            "i": lambda: section_ray(model_dir, plan, tmp, notes),
            "j": lambda: section_vad(plan.corpus_limit, tmp, notes),
            "k": lambda: section_diarize(plan, hours, notes),
        }
        for key, section in sections.items():
            if key not in only:
                continue
            if key in "bcde" and not needs_onnx:
                notes.append(f"({key}) skipped: the onnx engine or its cached .onnx is missing")
                continue
            notes.append(f"({key}) load average (1/5/15 min) at its start: {load_average()}")
            log(f"section ({key})")
            try:
                report += section() + [""]
            except Exception as exc:
                notes.append(f"({key}) failed: {type(exc).__name__}: {exc}")
                log(notes[-1])
    skipped = [k for k in SECTIONS if k not in only]
    if skipped:
        notes.append(f"sections not run (--only): {', '.join(skipped)}")
    report += ["## Notes", ""] + [f"- {n}" for n in notes]
    report.append(f"- load average at the end: {load_average()}")
    report.append(f"- total benchmark time: {time.perf_counter() - started:.0f} s")
    return "\n".join(report) + "\n"


def save(text: str, out_dir: Path, quick: bool) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = out_dir / f"{stamp}-{'quick' if quick else 'full'}.md"
    path.write_text(text)
    shutil.copyfile(path, out_dir / "latest.md")
    return path


def record(report: str, source: str) -> None:
    """Write a full run's report to bench/RESULTS.md with the recording header."""
    if FULL_MARK not in report.splitlines():
        raise SystemExit(f"bench: {source} is not a full run's report (quick runs, partial "
                         "runs and other files cannot be recorded)")
    title, _, body = report.partition("\n")
    old = RESULTS.read_text() if RESULTS.exists() else ""
    hand = old[old.index(HAND_MARK):] if HAND_MARK in old else ""
    text = f"{title}\n\n{RECORD_HEADER}\n{body.lstrip()}"
    RESULTS.write_text(f"{text.rstrip()}\n\n{hand}" if hand else text)
    log(f"recorded {source} in {RESULTS.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
                        help="small model, few repeats, corpus subset (also BENCH_QUICK=1)")
    parser.add_argument("--only", default=SECTIONS, metavar="LETTERS",
                        help="run only these sections, e.g. `--only ab` (default: all)")
    parser.add_argument("--store-sizes", metavar="N,N,...",
                        help="vector counts of section (f) (default: 10000,100000,1000000; "
                             "quick: 2000)")
    parser.add_argument("--diarize-hours", type=int, default=1, metavar="N",
                        help="section (k): also the simulated hour played N times (4: about "
                             "15 min more on 2 cores); default 1, the hour alone")
    parser.add_argument("--out", type=Path, default=OUT_DIR,
                        help="folder for the run's report (default: bench/out, untracked)")
    parser.add_argument("--record", action="store_true",
                        help="after a full run of every section, copy its report to "
                             "bench/RESULTS.md")
    parser.add_argument("--record-file", type=Path, metavar="REPORT",
                        help="copy an earlier full run's report to bench/RESULTS.md; no run")
    args = parser.parse_args(argv)
    if args.record_file is not None:
        record(args.record_file.read_text(), str(args.record_file))
        return 0
    plan = QUICK if args.quick else FULL
    only = "".join(k for k in SECTIONS if k in args.only.lower())
    if args.record and (plan.quick or only != SECTIONS or args.store_sizes):
        parser.error("--record needs a full run of every section with the default sizes")
    sizes = plan.store_sizes
    if args.store_sizes:
        sizes = tuple(int(n) for n in args.store_sizes.split(",") if n.strip())
    text = run(plan, only, sizes, args.diarize_hours)
    if only != SECTIONS or sizes != plan.store_sizes:
        text = text.replace(FULL_MARK + "\n", "- mode: full, partial (--only / --store-sizes)\n")
    sys.stdout.write(text)
    path = save(text, args.out, plan.quick)
    log(f"wrote {path} (and {path.parent / 'latest.md'})")
    if args.record:
        record(text, str(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
