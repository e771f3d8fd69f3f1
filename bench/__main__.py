"""Benchmark the engines: forward time, cold CLI start, corpus throughput, peak memory.

Run from the project root with `python -m bench`. Prints a markdown report to stdout (progress
to stderr) and writes the same report to bench/out/latest.md.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .children import bare_ort_command, peak_rss_kib, run_child

ROOT = Path(__file__).resolve().parent.parent
OUT_FILE = Path(__file__).resolve().parent / "out" / "latest.md"
FIXTURE = Path("/work/shared/fixtures/wespeaker-random/pytorch_model.bin")
CORPUS = Path("/work/shared/data/speech/librispeech-test-other-10x10")
# (label, frames, runs)
SIZES = [("3 s", 298, 5), ("10 s", 998, 5), ("60 s", 5998, 3)]
ENGINES = ("onnx", "mlx")
CLI_RUNS = 5


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def median_time(fn, runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_lines() -> list[str]:
    import onnxruntime

    return [
        f"- platform: {platform.platform()}",
        f"- CPU: {cpu_model()} ({platform.machine()})",
        f"- nproc: {os.cpu_count()}",
        f"- python: {platform.python_version()} ({sys.executable})",
        f"- onnxruntime: {onnxruntime.__version__}",
        f"- numpy: {np.__version__}",
    ]


def make_model(tmp: Path) -> tuple[Path, str]:
    """A full-size random-weight model directory; (path, description)."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from model_factory import write_model

        from audio_cli.config import ModelConfig

        directory = tmp / "model"
        write_model(directory, ModelConfig())
        return directory, "random weights from tests/model_factory.py, ModelConfig() (full size)"
    except Exception as exc:  # fall back to the converted fixture checkpoint
        if not FIXTURE.is_file():
            raise
        log(f"model factory failed ({exc}); converting {FIXTURE}")
        from audio_cli.convert import convert_checkpoint

        directory = tmp / "converted"
        convert_checkpoint(FIXTURE, directory)
        return directory, f"converted from {FIXTURE}"


def available_engines(model_dir: Path) -> tuple[dict, list[str]]:
    from audio_cli import WeSpeaker

    loaded, notes = {}, []
    for name in ENGINES:
        try:
            log(f"loading engine {name}")
            start = time.perf_counter()
            loaded[name] = WeSpeaker.from_pretrained(model_dir, engine=name)
            log(f"  {name} loaded in {time.perf_counter() - start:.1f} s")
        except Exception as exc:
            notes.append(f"engine `{name}` unavailable: {type(exc).__name__}: {exc}")
            log(notes[-1])
    return loaded, notes


def bare_session(model_path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model_path), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def section_forward(speakers: dict, onnx_path: Path | None, notes: list[str]) -> list[str]:
    rng = np.random.default_rng(0)
    feats = {frames: rng.standard_normal((frames, 80)).astype(np.float32)
             for _, frames, _ in SIZES}
    baseline = bare_session(onnx_path) if onnx_path is not None else None
    lines = ["## (a) Forward time (random features, batch 1)", "",
             "Median after one warm-up; ratio = baseline time / engine time "
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
            log(f"forward {name} {label}: {runs} runs")
            t = median_time(lambda x=x, e=speaker.engine: e.embed(x), runs)
            base = median_time(lambda x=x: baseline(x), runs) if baseline else None
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
    cli = [sys.executable, "-m", "audio_cli", "embed-speaker", str(clip), "--model",
           str(model_dir), "--engine", "onnx", "--json"]
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


def section_corpus(speaker, notes: list[str]) -> list[str]:
    head = ["## (c) Corpus throughput (onnx, one process, model loaded once)", ""]
    if not CORPUS.is_dir():
        notes.append(f"(c) skipped: {CORPUS} is absent")
        return head + [f"Skipped: {CORPUS} is absent."]
    from audio_cli.audio_io import load_audio

    files = sorted(CORPUS.rglob("*.flac"))
    log(f"corpus: {len(files)} files, warm-up on the first")
    speaker.embed_audio(load_audio(files[0]))
    audio_seconds = 0.0
    start = time.perf_counter()
    for path in files:
        audio = load_audio(path)
        audio_seconds += audio.duration
        speaker.embed_audio(audio)
    wall = time.perf_counter() - start
    log("corpus: forward-only pass on the same features")
    feats = [speaker.features(load_audio(p)) for p in files]
    forward = 0.0
    for f in feats:
        t0 = time.perf_counter()
        speaker.engine.embed(f[None].astype(np.float32))
        forward += time.perf_counter() - t0
    return head + [
        f"{len(files)} files, {audio_seconds:.1f} s of audio "
        f"(`{CORPUS.name}`, recursive *.flac).", "",
        "| measure | wall | files/s | real-time factor (audio s / wall s) |",
        "|---|---|---|---|",
        f"| load_audio + embed_audio per file | {wall:.2f} s | {len(files) / wall:.2f} | "
        f"{audio_seconds / wall:.1f}x |",
        f"| forward only (sum of engine.embed) | {forward:.2f} s | {len(files) / forward:.2f} | "
        f"{audio_seconds / forward:.1f}x |",
        "", f"End-to-end throughput / forward-only throughput = {forward / wall:.3f} "
        f"(decode + features + checks cost {100 * (wall - forward) / wall:.1f}% of the wall time)"]


def section_memory(model_dir: Path, onnx_path: Path, tmp: Path) -> list[str]:
    from signals import voiced, write_wav

    clip = write_wav(tmp / "clip60s.wav", voiced(60.0))
    cli = [sys.executable, "-m", "audio_cli", "embed-speaker", str(clip), "--model",
           str(model_dir), "--engine", "onnx", "--json"]
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


def main() -> int:
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    started = time.perf_counter()
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="audio-bench-") as tmp_name:
        tmp = Path(tmp_name)
        log("writing the model")
        model_dir, model_note = make_model(tmp)
        speakers, load_notes = available_engines(model_dir)
        notes += load_notes
        onnx = speakers.get("onnx")
        onnx_path = getattr(onnx.engine, "model_path", None) if onnx else None
        report = ["# Speaker-embedding benchmark", "", *machine_lines(),
                  f"- model: {model_note}",
                  f"- cached ONNX file: `{onnx_path.name if onnx_path else 'n/a'}`", ""]
        report += section_forward(speakers, onnx_path, notes) + [""]
        if onnx is None or onnx_path is None:
            notes.append("(b)-(d) skipped: the onnx engine or its cached .onnx file is missing")
        else:
            for section in (lambda: section_cold(model_dir, onnx_path, tmp),
                            lambda: section_corpus(onnx, notes),
                            lambda: section_memory(model_dir, onnx_path, tmp)):
                try:
                    report += section() + [""]
                except Exception as exc:
                    notes.append(f"a section failed: {type(exc).__name__}: {exc}")
                    log(notes[-1])
    report += ["## Notes", ""] + [f"- {n}" for n in notes]
    report.append(f"- total benchmark time: {time.perf_counter() - started:.0f} s")
    text = "\n".join(report) + "\n"
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(text)
    sys.stdout.write(text)
    log(f"wrote {OUT_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
