"""Sections (a) forward time, (b) cold-process start and (d) peak memory of the benchmark.

Every section sets ours beside two bare onnxruntime baselines on the same cached .onnx file:
one built with the engine's own session and run options (read off the engine, see
`ort_sessions.engine_spec`), one with onnxruntime's defaults. The first isolates what the
engine adds around onnxruntime; the second shows what the engine's options cost or save.
"""

from __future__ import annotations

from pathlib import Path

from .children import peak_rss_kib, run_child
from .common import RATIO_HEADER, ROOT, Plan, cli_command, interleaved_times, log, median, ms, ratio
from .ort_sessions import DEFAULTS, child_command, open_session
from .synthetic import features, voice, write_wav

ENGINE_BASE = "bare ORT, engine's options"
DEFAULT_BASE = "bare ORT, defaults"


def section_forward(speakers: dict, onnx_path: Path | None, engine_opts: dict, plan: Plan,
                    notes: list[str]) -> list[str]:
    """(a) One forward pass on random features, warm, medians of interleaved runs."""
    lines = [
        "## (a) Forward time (random features, batch 1, warm)", "",
        "One untimed warm-up call each, then rounds in which ours and both baselines run once "
        "each, in an order rotating round by round, with a 0.1 s pause before every timed "
        "call; medians (for ours also min-max over the runs, a gauge of the machine's "
        "noise). Ours = `engine.embed(x)`: the engine's session plus the numpy pooling and "
        "projection head (float64), what the pipeline calls. `engine.encode` = the "
        "engine's session alone, through the engine's wrapper (onnx only). Baselines = "
        "`session.run` of the same cached .onnx file (trunk only: the head is not in the "
        "graph), built with the engine's options or with onnxruntime's defaults.", "",
        f"| engine | input | frames | runs | ours: `engine.embed` | `engine.encode` | "
        f"{ENGINE_BASE} | {DEFAULT_BASE} | {RATIO_HEADER}, engine's options | "
        f"{RATIO_HEADER}, defaults |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    baselines = {}
    if onnx_path is not None:
        baselines = {ENGINE_BASE: open_session(str(onnx_path), engine_opts),
                     DEFAULT_BASE: open_session(str(onnx_path), DEFAULTS)}
    else:
        notes.append("(a) no cached .onnx file: forward rows without baselines")
    for name, speaker in speakers.items():
        sizes = plan.mlx_sizes if name == "mlx" else plan.forward_sizes
        for label, frames, runs in sizes:
            x = features(frames)
            calls = {"ours": lambda x=x, e=speaker.engine: e.embed(x)}
            if name == "onnx":
                calls["encode"] = lambda x=x, e=speaker.engine: e.encode(x)
            calls.update({k: (lambda x=x, run=run: run(x)) for k, run in baselines.items()})
            log(f"forward {name} {label}: warm-up + {runs} interleaved rounds")
            times = interleaved_times(calls, runs)
            t = {k: median(v) for k, v in times.items()}
            ours = t["ours"]
            lines.append(
                f"| {name} | {label} | {frames} | {runs} | {ms(ours)} ({spread(times['ours'])}) | "
                f"{ms(t.get('encode'))} | "
                f"{ms(t.get(ENGINE_BASE))} | {ms(t.get(DEFAULT_BASE))} | "
                f"{ratio(t.get(ENGINE_BASE), ours, 3)} | {ratio(t.get(DEFAULT_BASE), ours, 3)} |")
    if "mlx" in speakers:
        sizes = ", ".join(label for label, _, _ in plan.mlx_sizes)
        notes.append(f"mlx: forward measured on {sizes} only (off Apple Silicon MLX runs on the "
                     "CPU, far slower than onnxruntime); sections (b)-(e) use the onnx engine.")
    return lines


def spread(values: list[float]) -> str:
    """`min-max` of times in ms."""
    return f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f}"


def _child_rows(rows: dict[str, list[float]], fmt) -> list[str]:
    return [f"| {name} | {fmt(median(v))} | {fmt(min(v))} | {fmt(max(v))} |"
            for name, v in rows.items()]


def section_cold(model_dir: Path, onnx_path: Path, engine_opts: dict, plan: Plan,
                 tmp: Path) -> list[str]:
    """(b) Fresh processes: the CLI on a 3 s clip against bare onnxruntime processes."""
    clip = write_wav(tmp / "clip3s.wav", voice(3.0))
    cli = cli_command("embed-speaker", str(clip), "--model", str(model_dir), "--engine", "onnx",
                      "--json")
    commands = {
        "ours: `python -m audio_cli embed-speaker clip.wav --model DIR --engine onnx --json`":
            cli,
        f"{ENGINE_BASE}: import onnxruntime, open the cached .onnx, 1 run on 298 frames":
            child_command(str(onnx_path), 298, engine_opts),
        f"{DEFAULT_BASE}: the same with onnxruntime's defaults":
            child_command(str(onnx_path), 298, DEFAULTS),
    }
    log(f"cold start: warm-up + {plan.cli_runs} interleaved rounds of 3 processes")
    times = interleaved_times({name: (lambda c=cmd: run_child(c, cwd=str(ROOT)))
                               for name, cmd in commands.items()}, plan.cli_runs, settle=0.0)
    names = list(commands)
    ours = median(times[names[0]])
    return ["## (b) Cold-process wall time (3 s clip, .onnx cache warm)", "",
            f"One untimed warm-up each (fills the page cache), then {plan.cli_runs} rounds of one "
            "fresh process each, order rotating. Ours also decodes the WAV, computes the "
            "filterbank, runs the head and prints JSON; the bare processes only import "
            "numpy and onnxruntime, open the session and run it once.", "",
            "| command | median | min | max |", "|---|---|---|---|",
            *_child_rows(times, ms), "",
            f"{RATIO_HEADER} (medians): engine's options {ratio(median(times[names[1]]), ours)}, "
            f"defaults {ratio(median(times[names[2]]), ours)} (< 1: the CLI takes longer)."]


def section_memory(model_dir: Path, onnx_path: Path, engine_opts: dict, tmp: Path) -> list[str]:
    """(d) Peak RSS of the CLI on 60 s against bare onnxruntime processes on as many frames."""
    clip = write_wav(tmp / "clip60s.wav", voice(60.0))
    cli = cli_command("embed-speaker", str(clip), "--model", str(model_dir), "--engine", "onnx",
                      "--json")
    rows = {}
    log("memory: CLI on a 60 s clip")
    rows["ours: CLI `embed-speaker` on a 60 s clip, onnx engine"] = peak_rss_kib(cli, str(ROOT))
    for label, spec in ((ENGINE_BASE, engine_opts), (DEFAULT_BASE, DEFAULTS)):
        log(f"memory: {label}, 5998 frames")
        rows[f"{label}: 1 run on 5998 frames (60 s)"] = peak_rss_kib(
            child_command(str(onnx_path), 5998, spec), str(ROOT))
    values = list(rows.values())
    return ["## (d) Peak resident memory (ru_maxrss of the child process)", "",
            "One process each, started from a tiny launcher (a child forked from this "
            "benchmark would inherit its RSS high-water mark).", "",
            "| process | peak RSS |", "|---|---|",
            *[f"| {name} | {kib / 1024:.1f} MiB |" for name, kib in rows.items()], "",
            f"{RATIO_HEADER}: engine's options {ratio(values[1], values[0])}, defaults "
            f"{ratio(values[2], values[0])} (< 1: the CLI uses more memory)."]
