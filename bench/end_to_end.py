"""Section (g): the whole path against the bare runtime, and peak memory by file count, for every
model the benchmark can load.

Throughput: per model, the corpus runs in blocks of files that rotate between
- the baseline, a bare onnxruntime session with default options on the same .onnx file, fed
  features computed beforehand (the network alone, as fast as the runtime runs it);
- the Python API one file at a time, `speaker.embed(audio_file=...)` (decode, checks, fbank,
  network, head);
- the library's many-file path, `speaker.embed_sources(block)` (what the CLI runs).
One CLI process over all the files is timed against one bare onnxruntime process (import,
session, every file's precomputed features): both pay their start-up.

Memory: peak RSS of one `audio embed-speaker @LIST --json` process for 1, 10, 100 and 250
files. The lists are nested and each begins with the longest file of the corpora, so the rows
show growth with the number of files, not with the longest clip (which a model that is not
time-local, like CAM++, follows: see its long-input rows).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np

from .children import peak_rss_kib, run_limited
from .common import (
    CORPUS,
    RATIO_HEADER,
    ROOT,
    SETTLE,
    Plan,
    cli_command,
    corpus_files,
    log,
    median,
)
from .ort_sessions import DEFAULTS, child_command, describe, open_session
from .synthetic import write_long_wav

SECOND_CORPUS = CORPUS.parent / "librispeech-train-clean-100-251x1"
CAMPPLUS_DIR = ROOT.parent / "shared" / "models" / "campplus-zh-en-common"
BLOCK = 10  # files per block; the variants alternate block by block
CLI_RUNS = 3  # CLI calls and bare processes, alternating
TARGET_SPEED = 0.9  # baseline ÷ ours, throughput
TARGET_GROWTH = 1 / 1.1  # peak RSS of 10 files ÷ peak RSS of N files
LONG_TIMEOUT = 900.0  # seconds
LONG_MEMORY_CAP = 16 << 30  # bytes of address space for a long-input child
CAMPPLUS_LONG_LIMIT_MIB = 1536  # the bound for one hour of CAM++


def _models(model_dir: Path, notes: list[str]) -> list[tuple[str, str]]:
    """(label, --model argument) of each model measured."""
    models = [("ResNet34 (bench's random weights)", str(model_dir))]
    if CAMPPLUS_DIR.is_dir():
        models.append(("CAM++ (3D-Speaker, real weights)", str(CAMPPLUS_DIR)))
    else:
        notes.append(f"(g) CAM++ rows skipped: {CAMPPLUS_DIR} is absent")
    return models


def _time_blocks(variants: dict, count: int) -> dict[str, float]:
    """Total seconds of each variant over all files, blocks rotating between the variants."""
    for run in variants.values():
        run(range(1))  # warm-up: sessions, caches, the masked graph
    totals = dict.fromkeys(variants, 0.0)
    names = list(variants)
    for block, first in enumerate(range(0, count, BLOCK)):
        indices = range(first, min(first + BLOCK, count))
        shift = block % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(SETTLE)
            start = time.perf_counter()
            variants[name](indices)
            totals[name] += time.perf_counter() - start
    return totals


def _throughput_rows(label: str, model: str, files: list[Path], tmp: Path) -> list[str]:
    from audio_cli import SpeakerEmbedder
    from audio_cli.frontend.audio import load_audio

    speaker = SpeakerEmbedder.from_pretrained(model, engine="onnx")
    bare = open_session(str(speaker.engine.model_path), DEFAULTS)
    features = [speaker.features(load_audio(f))[None] for f in files]
    variants = {
        "bare": lambda block: [bare(features[i]) for i in block],
        "api": lambda block: [speaker.embed(audio_file=files[i]) for i in block],
        "many": lambda block: list(speaker.embed_sources([files[i] for i in block])),
    }
    log(f"(g) {label}: {len(files)} files x {len(variants)} ways")
    totals = _time_blocks(variants, len(files))
    listing = tmp / "e2e-files.txt"
    listing.write_text("".join(f"{f}\n" for f in files))
    arrays = tmp / "e2e-features.npz"
    np.savez(arrays, **{f"f{i:04d}": x for i, x in enumerate(features)})
    cli_cmd = cli_command("embed-speaker", f"@{listing}", "--model", model, "--engine", "onnx",
                          "--json")
    bare_cmd = child_command(str(speaker.engine.model_path), 0, DEFAULTS, str(arrays))
    log(f"(g) {label}: one CLI call against one bare onnxruntime process, {CLI_RUNS} each")
    walls, cli_failure = {"bare": [], "cli": []}, None
    for round_ in range(CLI_RUNS):
        for name in (("bare", "cli") if round_ % 2 == 0 else ("cli", "bare")):
            time.sleep(SETTLE)
            start = time.perf_counter()
            proc = subprocess.run(cli_cmd if name == "cli" else bare_cmd, capture_output=True,
                                  check=False)
            walls[name].append(time.perf_counter() - start)
            if proc.returncode != 0:
                cli_failure = (name, proc.returncode,
                               (proc.stderr.decode(errors="replace").strip().splitlines()
                                or ["?"])[-1])
    n, bare_time = len(files), totals["bare"]
    rows = [f"| {label} | bare onnxruntime, defaults, precomputed features (baseline) | "
            f"{n / bare_time:.2f} | 1.00 |"]
    for name, how in (("api", "Python API, one file per call: `speaker.embed(audio_file=f)`"),
                      ("many", "library, many files per call: `speaker.embed_sources(files)`")):
        rows.append(f"| {label} | {how} | {n / totals[name]:.2f} | "
                    f"**{bare_time / totals[name]:.3f}** |")
    if cli_failure is None:
        cli, bare_process = median(walls["cli"]), median(walls["bare"])
        rows.append(f"| {label} | CLI, one call: `audio embed-speaker @LIST --json`, against "
                    f"one bare onnxruntime process on the precomputed features (both: start-up, "
                    f"model load; median of {CLI_RUNS}) | {n / cli:.2f} | "
                    f"**{bare_process / cli:.3f}** |")
    else:
        name, code, reason = cli_failure
        rows.append(f"| {label} | CLI, one call | n/a | FAILED ({name}, exit {code}: "
                    f"{reason[:100]}) |")
    return rows


def _memory_lists(counts: tuple[int, ...]) -> list[Path] | None:
    """The longest file of both corpora, then the rest in corpus order; None if too few."""
    import soundfile

    files = corpus_files() + (sorted(SECOND_CORPUS.rglob("*.flac"))
                              if SECOND_CORPUS.is_dir() else [])
    if len(files) < max(counts):
        return None
    longest = max(files, key=lambda f: soundfile.info(str(f)).frames)
    return [longest] + [f for f in files if f != longest]


def _memory_rows(label: str, model: str, files: list[Path], counts: tuple[int, ...],
                 tmp: Path) -> list[str]:
    peaks: dict[int, int | None] = {}
    for count in counts:
        listing = tmp / f"memory-{count}.txt"
        listing.write_text("".join(f"{f}\n" for f in files[:count]))
        log(f"(g) {label}: peak RSS of one call on {count} files")
        try:
            peaks[count] = peak_rss_kib(cli_command(
                "embed-speaker", f"@{listing}", "--model", model, "--engine", "onnx", "--json"))
        except RuntimeError as exc:
            peaks[count] = None
            log(f"(g) failed: {exc}")
    reference = peaks.get(10)
    rows = []
    for count, peak in peaks.items():
        if peak is None:
            rows.append(f"| {label} | {count} | FAILED | n/a |")
            continue
        growth = f"{reference / peak:.2f}" if reference else "n/a"
        rows.append(f"| {label} | {count} | {peak / 1024:.0f} MiB | {growth} |")
    return rows


def _long_rows(model: str, seconds_list: tuple[int, ...], tmp: Path) -> list[str]:
    rows = []
    for seconds in seconds_list:
        clip = write_long_wav(tmp / f"campplus-{seconds}.wav", seconds)
        log(f"(g) CAM++ on {seconds} s: limit {LONG_TIMEOUT:.0f} s, "
            f"{LONG_MEMORY_CAP >> 30} GiB address space")
        run = run_limited(cli_command("embed-speaker", str(clip), "--model", model, "--engine",
                                      "onnx", "--json"),
                          LONG_TIMEOUT, LONG_MEMORY_CAP, str(tmp / "campplus-long.err"))
        clip.unlink()
        status = "ok" if run.code == 0 else ("timed out" if run.code is None else
                                             f"FAILED (exit {run.code}: {run.stderr_tail[:100]})")
        rows.append(f"| CAM++ | {seconds / 60:g} min | {run.wall:.1f} s | "
                    f"{run.peak_kib / 1024:.0f} MiB | {status} |")
    return rows


def section_end_to_end(model_dir: Path, plan: Plan, tmp: Path, notes: list[str]) -> list[str]:
    """Throughput against the bare runtime, and memory by file count, for each model."""
    lines = ["## (g) The whole path against the bare runtime, and memory, for every model", ""]
    files = corpus_files(plan.corpus_limit)
    if not files:
        notes.append("(g) skipped: the corpus is absent")
        return lines + ["Skipped: the corpus is absent."]
    models = _models(model_dir, notes)
    lines += [f"{len(files)} corpus files in blocks of {BLOCK} rotating between the ways. "
              f"Baseline: a bare onnxruntime session ({describe(DEFAULTS)}) on the same .onnx "
              "file, fed features computed before the timing. "
              f"{RATIO_HEADER} = baseline time ÷ our time for the same files "
              f"(target >= {TARGET_SPEED}).", "",
              "| model | how | files/s | baseline ÷ ours |", "|---|---|---|---|"]
    for label, model in models:
        lines += _throughput_rows(label, model, files, tmp)
    counts = plan.memory_counts
    ordered = _memory_lists(counts)
    if ordered is None:
        notes.append("(g) memory rows skipped: fewer corpus files than "
                     f"{max(counts)} (both corpora are needed)")
    else:
        lines += ["", f"Peak RSS of one CLI call by number of files ({ordered[0].name}, the "
                  "longest, first; nested lists). Baseline ÷ ours = peak of 10 files ÷ peak of "
                  f"N files (target >= {TARGET_GROWTH:.2f}: within 10 %).", "",
                  "| model | files | peak RSS | 10 files ÷ N files |", "|---|---|---|---|"]
        for label, model in models:
            lines += _memory_rows(label.split(" (")[0], model, ordered, counts, tmp)
    if CAMPPLUS_DIR.is_dir():
        lines += ["", "CAM++ on one long voice-like WAV (the CLI; past 60 s CAM++ runs stage "
                  "by stage, keeping about one dense block per hour of audio; bound for one "
                  f"hour: {CAMPPLUS_LONG_LIMIT_MIB} MiB).", "",
                  "| model | length | wall | peak RSS | status |", "|---|---|---|---|---|"]
        lines += _long_rows(str(CAMPPLUS_DIR), plan.campplus_long, tmp)
    return lines
