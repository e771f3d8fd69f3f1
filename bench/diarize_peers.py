"""Diarization side by side on the same files: this project (`audio diarize`'s pipeline) and
senko 0.2.2, run from its own environment (a benchmark peer, not a dependency of this project).

    python -m bench.diarize_peers [--systems audio senko]
        [--senko-python /work/senko-env/bin/python] [--model CAMPPLUS]
        [--segmentation pytorch_model.bin] [--threads 2] [--step S]
        [--set NAME=DIR ...] [--out bench/out/diarize-peers] [--limit N]

A set is a folder with `<uri>.wav` files, `reference.rttm` and `reference.uem` (the layout of
../shared/data/diarization/ami-debug-train and of bench/conversations.py's output). Default
sets: `ami` (the ten shared AMI excerpts) and `sim` (bench/out/conversations, when built).

For each set and system, one process diarizes every file: senko's bench/senko_driver.py in
senko's environment, this project's bench/diarize_driver.py in this one (the same events).
Its start-up (process start, imports, building the diarizer with its models, for senko also
its warm-up: what a user waits for before the first file) is timed apart from each file's
processing, whose sum over the audio length is the real-time factor; the process's peak RSS
is its own ru_maxrss. Throughput ratio = senko's processing seconds / ours on the same
files. The hypothesis RTTMs are scored by this project's `audio eval-diarization` (or, with
--scorer pyannote, by pyannote.metrics through bench/der_pyannote.py in senko's
environment) in two conventions, overlap scored in both: DER "full" (no collar) and "fair"
(0.25 s each side of a reference boundary; pyannote.metrics' collar=0.5), per file and in
total (time-weighted: summed errors over summed reference speech), and the number of
speakers found against the reference.

Writes OUT/<system>/<set>/ (hyp/<uri>.rttm, hypothesis.rttm, events.jsonl, der.jsonl) and
the report OUT/diarize-peers.md (also printed on stdout; progress on stderr).

The AMI excerpts: AMI Meeting Corpus (AMI Consortium; Carletta et al., 2005), CC BY 4.0, as
packaged by pyannote.audio's tests (MIT). The simulated conversations: LibriSpeech (c) 2014
Vassil Panayotov, CC BY 4.0 (see bench/conversations.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from audio_cli.diarization.turns import read_rttm, read_uem

from .common import OUT_DIR, ROOT, cli_command, load_average, log

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "senko_driver.py"
SYSTEMS = ("audio", "senko")
CAMPPLUS = ROOT.parent / "shared" / "models" / "campplus-zh-en-common" / \
    "campplus_cn_en_common.pt"
SEGMENTATION = ROOT.parent / "shared" / "models" / "pyannote-segmentation-3.0" / \
    "pytorch_model.bin"
SCORER = HERE / "der_pyannote.py"
# senko's own environment (CONTRIBUTING.md, Diarization data and peers): $SENKO_PYTHON, else
# senko-env/ beside the checkout
SENKO_PYTHON = Path(os.environ.get("SENKO_PYTHON", ROOT.parent / "senko-env" / "bin" / "python"))
SCORERS = {"audio": "`audio eval-diarization`", "pyannote": "pyannote.metrics"}
AMI = ROOT.parent / "shared" / "data" / "diarization" / "ami-debug-train"
SIM = OUT_DIR / "conversations"
ATTRIBUTION = [
    "AMI excerpts: AMI Meeting Corpus (AMI Consortium; J. Carletta et al., 2005), licensed "
    "CC BY 4.0; the ten 30 s excerpts and their reference come from pyannote.audio's test data "
    "(MIT).",
    "Simulated conversations: built by bench/conversations.py from LibriSpeech (c) 2014 Vassil "
    "Panayotov, CC BY 4.0 (http://creativecommons.org/licenses/by/4.0/); V. Panayotov, G. "
    "Chen, D. Povey, S. Khudanpur, \"LibriSpeech: an ASR corpus based on public domain audio "
    "books\", ICASSP 2015; audio from LibriVox public-domain recordings."]


@dataclass(frozen=True)
class SetResult:
    system: str  # "audio" (this project) or "senko"
    name: str
    folder: Path
    files: list[dict]  # driver events, one per file, with "ref_speakers" and scores added
    total: dict  # der_pyannote's TOTAL row
    startup: float  # seconds from process start to a ready Diarizer
    ready: dict  # the driver's ready event
    done: dict  # the driver's done event
    wall: float  # the whole child process
    rounds: tuple[float, ...] = ()  # RTF (processing) of each round, when run more than once

    @property
    def rtf(self) -> float:
        return sum(f["seconds"] for f in self.files) / sum(f["audio_s"] for f in self.files)


def uris(folder: Path, limit: int | None) -> list[str]:
    """The set's recordings: the uris of its UEM that have a WAV, sorted."""
    found = sorted(uri for uri in read_uem(folder / "reference.uem")
                   if (folder / f"{uri}.wav").is_file())
    return found[:limit] if limit is not None else found


def driver_command(system: str, wavs: list[Path], out: Path,
                   options: argparse.Namespace) -> list[str]:
    """The process that diarizes `wavs` into out/hyp, appending to out/events.jsonl."""
    events, hyp = str(out / "events.jsonl"), str(out / "hyp")
    if system == "senko":
        return [str(options.senko_python), str(DRIVER), events, hyp, *map(str, wavs)]
    command = [sys.executable, "-m", "bench.diarize_driver", events, hyp,
               "--model", str(options.model)]
    for flag, value in (("--segmentation", options.segmentation),
                        ("--threads", options.threads), ("--step", options.step)):
        if value is not None:
            command += [flag, str(value)]
    return command + [*map(str, wavs)]


def run_driver(system: str, command: list[str], out: Path) -> tuple[float, float]:
    """One driver process; (start wall clock, whole process seconds)."""
    (out / "events.jsonl").unlink(missing_ok=True)
    started = time.time()
    clock = time.perf_counter()
    with open(out / f"{system}.stderr", "wb") as err:
        proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
    wall = time.perf_counter() - clock
    if proc.returncode != 0:
        tail = (out / f"{system}.stderr").read_text(errors="replace").strip().splitlines()[-3:]
        raise SystemExit(f"diarize_peers: {system} failed ({proc.returncode}): "
                         f"{' | '.join(tail)}")
    return started, wall


def score(scorer: str, python: Path, files: tuple[Path, Path, Path]) -> list[dict]:
    """Rows {"uri", "full": {...}, "fair": {...}} (the last one "TOTAL") by this project's
    `audio eval-diarization` or by pyannote.metrics (in senko's environment)."""
    reference, hypothesis, uem = map(str, files)
    if scorer == "audio":
        command = cli_command("eval-diarization", reference, hypothesis, "--uem", uem, "--json")
    else:
        command = [str(python), str(SCORER), reference, hypothesis, uem]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"diarize_peers: scoring failed: {proc.stderr.strip()[-400:]}")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if scorer == "audio":
        rows = [{"uri": "TOTAL" if r["total"] else r["file"],
                 **{name: {"total": r[name]["speech"], "missed": r[name]["missed"],
                           "false_alarm": r[name]["false_alarm"],
                           "confusion": r[name]["confusion"], "der": r[name]["der"]}
                    for name in ("full", "fair")}} for r in rows]
    return rows


def reference_speakers(folder: Path, names: list[str]) -> dict[str, int]:
    reference = read_rttm(folder / "reference.rttm")
    return {uri: len({t.speaker for t in reference.get(uri, [])}) for uri in names}


def measure_set(system: str, name: str, folder: Path, out_root: Path,
                options: argparse.Namespace) -> SetResult:
    python = options.senko_python
    names = uris(folder, options.limit)
    if not names:
        raise SystemExit(f"diarize_peers: {folder}: no <uri>.wav named in reference.uem")
    out = out_root / system / name
    (out / "hyp").mkdir(parents=True, exist_ok=True)
    if options.score_only:
        try:
            run = json.loads((out / "run.json").read_text())
        except (OSError, ValueError):
            raise SystemExit(f"diarize_peers: {out}/run.json: no earlier run to score") from None
        started, wall, names = run["started"], run["wall"], run["uris"]
        log(f"{name}: scoring {system}'s earlier run on {len(names)} files")
    else:
        log(f"{name}: {system} on {len(names)} files of {folder}")
        command = driver_command(system, [folder / f"{uri}.wav" for uri in names], out, options)
        started, wall = run_driver(system, command, out)
        (out / "run.json").write_text(json.dumps({"started": started, "wall": wall,
                                                  "uris": names}) + "\n")
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    ready = next(e for e in events if e["event"] == "ready")
    done = next(e for e in events if e["event"] == "done")
    files = [e for e in events if e["event"] == "file"]
    hypothesis = out / "hypothesis.rttm"
    hypothesis.write_text("".join((out / "hyp" / f"{uri}.rttm").read_text() for uri in names))
    # the reference and UEM restricted to the files run (--limit)
    keep = set(names)
    for source, target in (("reference.rttm", "reference.rttm"), ("reference.uem", "uem")):
        lines = (folder / source).read_text().splitlines()
        index = 1 if source.endswith(".rttm") else 0
        (out / target).write_text("".join(f"{line}\n" for line in lines
                                          if len(line.split()) > index
                                          and line.split()[index] in keep))
    rows = score(options.scorer, python, (out / "reference.rttm", hypothesis, out / "uem"))
    (out / "der.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    by_uri = {r["uri"]: r for r in rows}
    counts = reference_speakers(folder, names)
    for f in files:
        f.update(by_uri[f["uri"]], ref_speakers=counts[f["uri"]])
    return SetResult(system, name, folder, files, by_uri["TOTAL"], ready["wall"] - started,
                     ready, done, wall)


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def set_table(result: SetResult) -> list[str]:
    who = "this project" if result.system == "audio" else result.system
    lines = [f"### {result.name}, {who}: {result.folder}", "",
             "| file | length (s) | speech (s) | speakers ref / found | DER full | missed | "
             "false alarm | confusion | DER fair | diarize (s) | RTF |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in result.files:
        full, fair = f["full"], f["fair"]
        total = full["total"] or 1.0
        lines.append(
            f"| {f['uri']} | {f['audio_s']:.1f} | {full['total']:.1f} | "
            f"{f['ref_speakers']} / {f['speakers']} | "
            f"{pct(full['der'])} | {pct(full['missed'] / total)} | "
            f"{pct(full['false_alarm'] / total)} | {pct(full['confusion'] / total)} | "
            f"{pct(fair['der'])} | {f['seconds']:.2f} | {f['seconds'] / f['audio_s']:.3f} |")
    full, fair = result.total["full"], result.total["fair"]
    audio = sum(f["audio_s"] for f in result.files)
    busy = sum(f["seconds"] for f in result.files)
    right = sum(f["ref_speakers"] == f["speakers"] for f in result.files)
    lines += [
        f"| **total** | {audio:.1f} | {full['total']:.1f} | exact {right}/{len(result.files)} | "
        f"**{pct(full['der'])}** | {pct(full['missed'] / full['total'])} | "
        f"{pct(full['false_alarm'] / full['total'])} | {pct(full['confusion'] / full['total'])} "
        f"| **{pct(fair['der'])}** | {busy:.1f} | {busy / audio:.3f} |", "",
        f"- start-up: {result.startup:.1f} s (process start to a ready Diarizer; imports "
        f"{result.ready.get('import_s', 0):.1f} s, Diarizer "
        f"{result.ready.get('diarizer_s', 0):.1f} s); threads "
        f"{result.ready.get('torch_threads', result.ready.get('threads'))}",
        f"- real-time factor: {busy / audio:.3f} (processing only), "
        f"{(busy + result.startup) / audio:.3f} with the start-up; whole process "
        f"{result.wall:.1f} s; peak RSS {result.done['peak_rss_kib'] / 1024 / 1024:.2f} GiB",
        f"- mean of the per-file DER (full): "
        f"{pct(sum(f['full']['der'] for f in result.files) / len(result.files))}", ""]
    return lines


def summary(results: list[SetResult]) -> list[str]:
    """One row per (set, system), and senko's processing time over ours on each set."""
    lines = ["| set | system | files | audio (s) | start-up (s) | RTF | RTF with start-up | "
             "peak RSS | DER full | DER fair | speakers exact |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    busy: dict[tuple[str, str], float] = {}
    for r in results:
        audio = sum(f["audio_s"] for f in r.files)
        busy[r.name, r.system] = sum(f["seconds"] for f in r.files)
        right = sum(f["ref_speakers"] == f["speakers"] for f in r.files)
        seconds = busy[r.name, r.system]
        lines.append(
            f"| {r.name} | {'this project' if r.system == 'audio' else r.system} | "
            f"{len(r.files)} | {audio:.0f} | {r.startup:.1f} | {seconds / audio:.4f} | "
            f"{(seconds + r.startup) / audio:.4f} | "
            f"{r.done['peak_rss_kib'] / 1024 / 1024:.2f} GiB | {pct(r.total['full']['der'])} | "
            f"{pct(r.total['fair']['der'])} | {right}/{len(r.files)} |")
    lines.append("")
    for r in results:
        if len(r.rounds) > 1:
            lines.append(f"- {r.name}, {'this project' if r.system == 'audio' else r.system}: "
                         f"RTF of the {len(r.rounds)} rounds "
                         f"{', '.join(f'{x:.4f}' for x in r.rounds)} (the row: the median "
                         "round)")
    for name in dict.fromkeys(r.name for r in results):
        if (name, "audio") in busy and (name, "senko") in busy:
            lines.append(f"- {name}: throughput, this project / senko (processing, start-up "
                         f"apart): {busy[name, 'senko'] / busy[name, 'audio']:.2f}x")
    return lines + [""]


def report(results: list[SetResult], load_start: str, argv: list[str], scorer: str) -> str:
    lines = ["# Diarization side by side: this project and senko 0.2.2", "",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"- load average (1/5/15 min) at the start: {load_start}; at the end: "
             f"{load_average()}",
             f"- command: `python -m bench.diarize_peers {' '.join(argv)}`".rstrip(), "",
             f"DER by {SCORERS[scorer]}, overlap scored: full = no collar; fair = 0.25 s collar "
             "each side of reference boundaries (pyannote.metrics collar=0.5). Total = "
             "time-weighted (errors summed over files / reference speech summed). Speech = "
             "reference speech (overlap counted per speaker). Missed, false alarm and "
             "confusion are shares of the reference speech (full). RTF = the seconds of each "
             "file's `diarize` call (decoding included) / audio seconds; the start-up is "
             "apart.", "", *summary(results)]
    for result in results:
        lines += set_table(result)
    lines += ["## Attribution", "", *[f"- {a}" for a in ATTRIBUTION], ""]
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.diarize_peers",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--senko-python", type=Path, default=SENKO_PYTHON,
                        help="python of senko's environment (with pyannote.metrics)")
    parser.add_argument("--model", default=str(CAMPPLUS),
                        help="this project's embedding model (folder or CAM++ checkpoint)")
    parser.add_argument("--segmentation", default=str(SEGMENTATION))
    parser.add_argument("--threads", type=int, default=2, help="this project's threads")
    parser.add_argument("--step", type=float, default=None, help="this project's chunk step")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=DIR",
                        help="a folder of WAVs with reference.rttm/.uem (default: ami, sim)")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "diarize-peers")
    parser.add_argument("--limit", type=int, help="only the first N files of each set")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every set and system this many times, in turn; the rows "
                             "give each one's median round")
    parser.add_argument("--scorer", choices=("audio", "pyannote"), default="audio",
                        help="DER by `audio eval-diarization` (default) or by pyannote.metrics "
                             "in senko's environment (bench/der_pyannote.py)")
    parser.add_argument("--score-only", action="store_true",
                        help="score and report the last run's hypotheses in OUT again, no senko")
    args = parser.parse_args(argv)
    if "senko" in args.systems and not args.senko_python.is_file():
        parser.error(f"{args.senko_python}: no such python (CONTRIBUTING.md, Diarization data "
                     "and peers: how to build senko's environment)")
    if any("=" not in s for s in args.set):
        parser.error("--set takes NAME=DIR")
    args.sets = [tuple(s.split("=", 1)) for s in args.set] if args.set else \
        [("ami", str(AMI))] + ([("sim", str(SIM))] if (SIM / "reference.uem").is_file() else [])
    return args


def measure(args: argparse.Namespace) -> list[SetResult]:
    """Every set, each system on it in turn (the order of --systems), --rounds times; for each
    set and system the round of median RTF, with every round's RTF."""
    args.out.mkdir(parents=True, exist_ok=True)
    if "audio" in args.systems and not args.score_only:
        from .diarize import model_folder

        args.model = model_folder(args.model, args.out)
    runs: dict[tuple[str, str], list[SetResult]] = {}
    for _ in range(1 if args.score_only else max(1, args.rounds)):
        for name, folder in args.sets:
            for system in args.systems:
                runs.setdefault((name, system), []).append(
                    measure_set(system, name, Path(folder), args.out, args))
    chosen = []
    for results in runs.values():
        ordered = sorted(results, key=lambda r: r.rtf)
        median = ordered[(len(ordered) - 1) // 2]
        chosen.append(dataclasses.replace(median, rounds=tuple(r.rtf for r in results)))
    return chosen


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    load_start = load_average()
    text = report(measure(args), load_start, argv, args.scorer)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-diarize-peers.md"
    path.write_text(text)
    (args.out / "diarize-peers.md").write_text(text)
    sys.stdout.write(text)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
