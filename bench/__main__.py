"""Benchmark the engines: forward time, cold CLI start, corpus throughput, peak memory, and
many files / one hour of audio (issue 5).

Run from the project root with `make bench` (`python -m bench`). Prints a markdown report to
stdout (progress on stderr) and writes the same report, with the machine's description, to
bench/RESULTS.md. Every figure is a median or a sum measured beside its baseline in the same
run, so ratios stay meaningful on a machine shared with other work; absolute times do not.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .batch_rows import section_batch
from .common import ROOT, log
from .sections import section_cold, section_forward, section_memory
from .throughput import section_corpus

OUT_FILE = Path(__file__).resolve().parent / "RESULTS.md"
FIXTURE = ROOT.parent / "shared" / "fixtures" / "wespeaker-random" / "pytorch_model.bin"
ENGINES = ("onnx", "mlx")


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
        f"- memory: {memory_total()}",
        f"- load average (1/5/15 min) at the start: {load_average()}",
    ]


def memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "n/a"


def make_model(tmp: Path) -> tuple[Path, str]:
    """A full-size random-weight model directory; (path, description)."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from model_factory import write_model

        from engines.model import ModelConfig

        directory = tmp / "model"
        write_model(directory, ModelConfig())
        return directory, "random weights from tests/model_factory.py, ModelConfig() (full size)"
    except Exception as exc:  # fall back to the converted fixture checkpoint
        if not FIXTURE.is_file():
            raise
        log(f"model factory failed ({exc}); converting {FIXTURE}")
        from audio_cli.models.convert import convert_checkpoint

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


def load_average() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


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
                            lambda: section_memory(model_dir, onnx_path, tmp),
                            lambda: section_batch(onnx, model_dir, tmp, notes)):
                try:
                    report += section() + [""]
                except Exception as exc:
                    notes.append(f"a section failed: {type(exc).__name__}: {exc}")
                    log(notes[-1])
    report += ["## Notes", ""] + [f"- {n}" for n in notes]
    report.append(f"- load average at the end: {load_average()}")
    report.append(f"- total benchmark time: {time.perf_counter() - started:.0f} s")
    text = "\n".join(report) + "\n"
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(text)
    sys.stdout.write(text)
    log(f"wrote {OUT_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
