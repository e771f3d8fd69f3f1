"""Run this project's diarization on WAV files the way bench/senko_driver.py runs senko, so
that the two are timed alike (started by bench/diarize_peers.py, in this project's
environment).

    python -m bench.diarize_driver EVENTS OUT_DIR --model M [--segmentation S]
        [--threads N] [--step SECONDS] WAV [WAV ...]

Appends one JSON object a line to EVENTS: {"event": "ready", "wall": ...} once the package
is imported and the Diarizer built (both models loaded: what a user waits for before the
first file), then one {"event": "file", ...} per input with the wall and CPU seconds of
opening and diarizing it (`Diarizer.diarize` of an AudioSource: decoding included, as for
senko), the audio length and the speakers found, and last {"event": "done",
"peak_rss_kib": ...}. Each file's turns go to OUT_DIR/<stem>.rttm.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def emit(events: str, record: dict) -> None:
    with open(events, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    parser = argparse.ArgumentParser(prog="python -m bench.diarize_driver")
    parser.add_argument("events")
    parser.add_argument("out_dir")
    parser.add_argument("wavs", nargs="+")
    parser.add_argument("--model", required=True)
    parser.add_argument("--segmentation", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--step", type=float, default=None)
    args = parser.parse_args(argv)
    from audio_cli.diarization.pipeline import DiarizeOptions, Diarizer
    from audio_cli.diarization.turns import rttm_line
    from audio_cli.frontend.audio import open_audio

    imported = time.time()
    extra = {} if args.step is None else {"step": args.step}
    diarizer = Diarizer(DiarizeOptions(model=args.model, engine="onnx", threads=args.threads,
                                       segmentation=args.segmentation, **extra))
    emit(args.events, {"event": "ready", "wall": time.time(), "in_process_s": time.time() - started,
                       "import_s": imported - started, "diarizer_s": time.time() - imported,
                       "threads": args.threads})
    os.makedirs(args.out_dir, exist_ok=True)
    for path in args.wavs:
        uri = os.path.splitext(os.path.basename(path))[0]
        start, cpu = time.perf_counter(), time.process_time()
        source = open_audio(path, diarizer.sample_rate, max_duration=None)
        turns = diarizer.diarize(source, uri).turns
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        with open(os.path.join(args.out_dir, f"{uri}.rttm"), "w", encoding="utf-8") as handle:
            handle.write("".join(rttm_line(t) for t in turns))
        emit(args.events, {"event": "file", "uri": uri, "path": path, "seconds": wall,
                           "cpu_s": cpu, "audio_s": source.duration,
                           "speakers": len({t.speaker for t in turns}), "segments": len(turns)})
    emit(args.events, {"event": "done", "wall": time.time(),
                       "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
    return 0


if __name__ == "__main__":
    sys.exit(main())
