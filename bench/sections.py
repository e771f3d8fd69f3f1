"""Sections (a) forward time, (b) cold-process start and (d) peak memory of the benchmark."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .children import bare_ort_command, peak_rss_kib, run_child
from .common import ROOT, cli_command, log, median_time, ms

# (label, frames, runs)
SIZES = [("3 s", 298, 11), ("10 s", 998, 7), ("60 s", 5998, 3)]
CLI_RUNS = 5


def bare_session(model_path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model_path), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def paired_medians(fn, baseline, runs: int) -> tuple[float, float | None]:
    """Median seconds of `fn` and of `baseline` (None: not run), their runs alternating so a
    change in the machine's load hits both alike."""
    fn()
    if baseline is not None:
        baseline()
    times: list[float] = []
    base: list[float] = []
    for _ in range(runs):
        for call, out in ((fn, times), (baseline, base)):
            if call is not None:
                start = time.perf_counter()
                call()
                out.append(time.perf_counter() - start)
    return statistics.median(times), statistics.median(base) if base else None


def section_forward(speakers: dict, onnx_path: Path | None, notes: list[str]) -> list[str]:
    rng = np.random.default_rng(0)
    feats = {frames: rng.standard_normal((frames, 80)).astype(np.float32)
             for _, frames, _ in SIZES}
    baseline = bare_session(onnx_path) if onnx_path is not None else None
    lines = ["## (a) Forward time (random features, batch 1)", "",
             "Medians after one warm-up, engine and baseline runs alternating; "
             "ratio = baseline time / engine time "
             "(>1: engine faster than bare onnxruntime).", "",
             "| engine | input | frames | runs | engine | bare ORT baseline | ratio |",
             "|---|---|---|---|---|---|---|"]
    for name, speaker in speakers.items():
        for label, frames, runs in SIZES:
            x = feats[frames][None]
            if name == "mlx":
                if frames != 298:
                    continue
                log(f"forward {name} {label}: 1 run, no warm-up")
                start = time.perf_counter()
                speaker.engine.embed(x)
                t = time.perf_counter() - start
                base = median_time(lambda x=x: baseline(x), 5) if baseline else None
                ratio = f"{base / t:.3f}" if base else "n/a"
                lines.append(f"| {name} | {label} | {frames} | 1 (no warm-up) | {ms(t)} | "
                             f"{ms(base)} | {ratio} |")
                continue
            log(f"forward {name} {label}: {runs} runs, alternating with the baseline")
            t, base = paired_medians(lambda x=x, e=speaker.engine: e.embed(x),
                                     (lambda x=x: baseline(x)) if baseline else None, runs)
            ratio = f"{base / t:.2f}" if base else "n/a"
            lines.append(f"| {name} | {label} | {frames} | {runs} | {ms(t)} | {ms(base)} | "
                         f"{ratio} |")
    if "mlx" in speakers:
        notes.append("mlx: only the 3 s forward is measured (1 run, no warm-up; MLX on Linux is "
                     "~100x slower); sections (b)-(d) skipped for mlx.")
    return lines


def section_cold(model_dir: Path, onnx_path: Path, tmp: Path) -> list[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from signals import voiced, write_wav

    clip = write_wav(tmp / "clip3s.wav", voiced(3.0))
    cli = cli_command("embed-speaker", str(clip), "--model", str(model_dir), "--engine", "onnx",
                      "--json")
    bare = bare_ort_command(str(onnx_path), 298)
    log("cold CLI: warm-up run")
    run_child(cli, cwd=str(ROOT))
    run_child(bare, cwd=str(ROOT))
    cli_times, bare_times = [], []
    for i in range(CLI_RUNS):
        log(f"cold CLI run {i + 1}/{CLI_RUNS}")
        cli_times.append(run_child(cli, cwd=str(ROOT))[0])
        bare_times.append(run_child(bare, cwd=str(ROOT))[0])
    c, b = statistics.median(cli_times), statistics.median(bare_times)
    return ["## (b) Cold-process wall time (3 s clip, model cache warm)", "",
            f"Median of {CLI_RUNS} fresh processes.", "",
            "| command | median | min | max |", "|---|---|---|---|",
            f"| `python -m audio_cli embed-speaker clip.wav --model DIR --engine onnx --json` | "
            f"{ms(c)} | {ms(min(cli_times))} | {ms(max(cli_times))} |",
            f"| bare: `python -c` import onnxruntime + session on cached .onnx + 1 run | "
            f"{ms(b)} | {ms(min(bare_times))} | {ms(max(bare_times))} |",
            "", f"CLI / bare = {c / b:.2f}x"]


def section_memory(model_dir: Path, onnx_path: Path, tmp: Path) -> list[str]:
    from signals import voiced, write_wav

    clip = write_wav(tmp / "clip60s.wav", voiced(60.0))
    cli = cli_command("embed-speaker", str(clip), "--model", str(model_dir), "--engine", "onnx",
                      "--json")
    log("memory: CLI on 60 s clip")
    cli_rss = peak_rss_kib(cli, cwd=str(ROOT))
    log("memory: bare ORT on 5998 frames")
    bare_rss = peak_rss_kib(bare_ort_command(str(onnx_path), 5998), cwd=str(ROOT))
    return ["## (d) Peak resident memory (ru_maxrss of the child process)", "",
            "Children are started from a tiny launcher: a child forked from this benchmark "
            "would inherit its RSS high-water mark.", "",
            "| process | peak RSS |", "|---|---|",
            f"| CLI `embed-speaker` on a 60 s clip, onnx engine | {cli_rss / 1024:.1f} MiB |",
            f"| bare ORT child, 5998 frames | {bare_rss / 1024:.1f} MiB |",
            "", f"CLI / bare = {cli_rss / bare_rss:.2f}x"]
