"""Section (c): corpus throughput, end to end against forward only, measured interleaved.

Each file is decoded and embedded (`load_audio` + `embed_audio`: checks, fbank, network),
then its features go through the engine alone (`engine.embed`). Both figures therefore come
from the same moments, so a machine whose load changes during the run affects both alike.
The engine runs with the session it ships with (`session.force_spinning_stop`) and, for
comparison in the same process, with onnxruntime's defaults (intra-op threads keep spinning
after each run) and with spinning off; blocks of files rotate between the variants.
"""

from __future__ import annotations

import time

from .common import corpus_files, log

BLOCK = 10  # files per block; variants alternate block by block
# Sessions compared with the engine's own (which stops spinning after each run).
VARIANTS = {
    "onnxruntime defaults (threads spin on after each run)": {},
    "no spinning at all (`session.intra_op.allow_spinning` 0)":
        {"session.intra_op.allow_spinning": "0"},
}


def _session(model_path, entries: dict[str, str]):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(model_path), sess_options=options,
                                providers=["CPUExecutionProvider"])


def _measure(speaker, files) -> dict[str, float]:
    from audio_cli.frontend.audio import load_audio

    totals = dict(decode=0.0, e2e=0.0, forward=0.0, frontend_cpu=0.0, audio=0.0)
    for path in files:
        start = time.perf_counter()
        audio = load_audio(path)
        decoded = time.perf_counter()
        speaker.embed_audio(audio)
        totals["e2e"] += time.perf_counter() - start
        totals["decode"] += decoded - start
        cpu = time.thread_time()
        features = speaker.features(audio)[None]
        totals["frontend_cpu"] += time.thread_time() - cpu
        start = time.perf_counter()
        speaker.engine.embed(features)
        totals["forward"] += time.perf_counter() - start
        totals["audio"] += audio.duration
    return totals


def section_corpus(speaker, notes: list[str]) -> list[str]:
    """Files/s end to end and forward only, per session variant; the ratio is the target."""
    head = ["## (c) Corpus throughput (onnx, one process, model loaded once)", ""]
    files = corpus_files()
    if not files:
        notes.append("(c) skipped: the corpus ../shared/data/speech/... is absent")
        return head + ["Skipped: the corpus is absent."]
    engine = speaker.engine
    variants = {"as shipped": engine.session}
    if getattr(engine, "model_path", None) is not None:
        for name, entries in VARIANTS.items():
            variants[name] = _session(engine.model_path, entries)
    totals = {name: dict(decode=0.0, e2e=0.0, forward=0.0, frontend_cpu=0.0, audio=0.0)
              for name in variants}
    names = list(variants)
    log(f"corpus: {len(files)} files x {len(names)} session variants, warm-up first")
    for session in variants.values():
        engine.session = session
        _measure(speaker, files[:1])
    for block, first in enumerate(range(0, len(files), BLOCK)):
        order = names[block % len(names):] + names[:block % len(names)]
        for name in order:
            engine.session = variants[name]
            for key, value in _measure(speaker, files[first:first + BLOCK]).items():
                totals[name][key] += value
    engine.session = variants["as shipped"]
    n = len(files)
    lines = head + [
        f"{n} files, {totals[names[0]]['audio']:.1f} s of audio (`{files[0].parents[1].name}`), "
        f"blocks of {BLOCK} files alternating between the session variants.", "",
        "| session | end to end: files/s | RTF | forward only: files/s | end-to-end / forward "
        "| decode | fbank (CPU) |", "|---|---|---|---|---|---|---|"]
    for name, t in totals.items():
        lines.append(
            f"| {name} | {n / t['e2e']:.2f} | {t['audio'] / t['e2e']:.0f}x | "
            f"{n / t['forward']:.2f} | **{t['forward'] / t['e2e']:.3f}** | {t['decode']:.2f} s | "
            f"{t['frontend_cpu']:.2f} s |")
    lines += ["", "End to end = `load_audio` + `embed_audio` (checks, fbank, network) per file; "
              "forward only = `engine.embed` on the same features. Target: the ratio >= 0.85."]
    return lines
