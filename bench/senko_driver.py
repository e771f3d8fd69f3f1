"""Run senko (a diarization peer) on WAV files; started by bench/diarize_peers.py in senko's own
environment (CONTRIBUTING.md, Diarization data and peers). Imports nothing of this project.

    SENKO_PYTHON bench/senko_driver.py EVENTS OUT_DIR WAV [WAV ...]

Appends one JSON object a line to EVENTS: first {"event": "ready", "wall": ...} once senko is
imported and its Diarizer built and warmed up (what a user waits for before the first file),
then one {"event": "file", ...} per input with the wall seconds of `Diarizer.diarize` alone,
the audio length and the speakers found, and last {"event": "done", "peak_rss_kib": ...}.
Each file's turns (senko's merged segments) go to OUT_DIR/<stem>.rttm.

senko reads only 16 kHz mono 16-bit PCM WAV; other inputs (the AMI excerpts are float32) are
first written as such to a scratch file, outside the timed call.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time


def emit(events: str, record: dict) -> None:
    with open(events, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def pcm16_path(path: str, scratch: str) -> tuple[str, float, bool]:
    """A path senko accepts for this file, its length in seconds, and whether it was converted."""
    import soundfile as sf

    info = sf.info(path)
    seconds = info.frames / info.samplerate
    if info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16" \
            and info.format == "WAV":
        return path, seconds, False
    if info.samplerate != 16000:
        raise SystemExit(f"senko_driver: {path}: {info.samplerate} Hz; only 16 kHz is handled")
    samples, _ = sf.read(path, dtype="float32", always_2d=True)
    out = os.path.join(scratch, os.path.basename(path))
    sf.write(out, samples.mean(axis=1), 16000, subtype="PCM_16", format="WAV")
    return out, seconds, True


def main(argv: list[str]) -> int:
    events, out_dir, wavs = argv[0], argv[1], argv[2:]
    started = time.time()
    import senko
    import torch

    imported = time.time()
    diarizer = senko.Diarizer(device="cpu", warmup=True, quiet=True)
    emit(events, {"event": "ready", "wall": time.time(), "in_process_s": time.time() - started,
                  "import_s": imported - started, "diarizer_s": time.time() - imported,
                  "torch_threads": torch.get_num_threads(), "senko": senko.__version__
                  if hasattr(senko, "__version__") else "n/a"})
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="senko-driver-") as scratch:
        for path in wavs:
            source, seconds, converted = pcm16_path(path, scratch)
            uri = os.path.splitext(os.path.basename(path))[0]
            start = time.perf_counter()
            result = diarizer.diarize(source)
            wall = time.perf_counter() - start
            segments = (result or {}).get("merged_segments") or []
            with open(os.path.join(out_dir, f"{uri}.rttm"), "w", encoding="utf-8") as handle:
                for seg in segments:
                    handle.write(f"SPEAKER {uri} 1 {seg['start']:.3f} "
                                 f"{seg['end'] - seg['start']:.3f} <NA> <NA> "
                                 f"{seg['speaker']} <NA> <NA>\n")
            emit(events, {"event": "file", "uri": uri, "path": path, "seconds": wall,
                          "audio_s": seconds, "converted": converted,
                          "speakers": len({seg["speaker"] for seg in segments}),
                          "segments": len(segments)})
    emit(events, {"event": "done", "wall": time.time(),
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
