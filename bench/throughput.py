"""Section (c): corpus throughput, end to end against forward only, measured interleaved.

Each file is decoded and embedded (`load_audio` + `embed_audio`: checks, fbank, network),
then its features go through the engine alone (`engine.embed`). Both figures therefore come
from the same moments, so a machine whose load changes during the run affects both alike.
The engine runs with its own session and run options and, in the same process, with sessions
built from other option sets swapped in; blocks of files rotate between the variants.
"""

from __future__ import annotations

import time

from .common import RATIO_HEADER, corpus_files, log
from .ort_sessions import DEFAULTS, describe, run_options, session_options, with_entries

BLOCK = 10  # files per block; variants alternate block by block
SHIPPED = "engine as shipped (engine's options)"


def _variants(engine_opts: dict) -> dict[str, dict | None]:
    """Name -> spec of the session swapped into the engine (None: the engine's own)."""
    return {SHIPPED: None,
            "onnxruntime defaults (threads spin on after each run)": DEFAULTS,
            "engine's options + `session.intra_op.allow_spinning=0` (no spinning at all)":
                with_entries(engine_opts, "no spinning", {"session.intra_op.allow_spinning": "0"})}


def _measure(speaker, files) -> dict[str, float]:
    from audio_cli.frontend.audio import load_audio
    from audio_cli.pipeline.batching import one_blas_thread

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
        with one_blas_thread():  # as the pipeline runs the engine (its head uses numpy)
            speaker.engine.embed(features)
        totals["forward"] += time.perf_counter() - start
        totals["audio"] += audio.duration
    return totals


def section_corpus(speaker, engine_opts: dict, limit: int | None, notes: list[str]) -> list[str]:
    """Files/s end to end and forward only, per session variant."""
    import onnxruntime as ort

    head = ["## (c) Corpus throughput (onnx, one process, model loaded once)", ""]
    files = corpus_files(limit)
    if not files:
        notes.append("(c) skipped: the corpus ../shared/data/speech/... is absent")
        return head + ["Skipped: the corpus is absent."]
    engine = speaker.engine
    swaps_run_options = hasattr(engine, "_run_options")
    shipped = (engine.session, getattr(engine, "_run_options", None))
    sessions, described = {}, {}
    for name, spec in _variants(engine_opts).items():
        if spec is None:
            sessions[name], described[name] = shipped, describe(engine_opts)
        elif getattr(engine, "model_path", None) is not None:
            sessions[name] = (ort.InferenceSession(str(engine.model_path),
                                                   sess_options=session_options(spec),
                                                   providers=spec["providers"]),
                              run_options(spec) if swaps_run_options else shipped[1])
            described[name] = describe(spec)
    if not swaps_run_options:
        notes.append("(c) the engine has no `_run_options`: every variant runs with the "
                     "engine's run options")
    totals = {name: dict(decode=0.0, e2e=0.0, forward=0.0, frontend_cpu=0.0, audio=0.0)
              for name in sessions}
    names = list(sessions)

    def use(name: str) -> None:
        engine.session = sessions[name][0]
        if swaps_run_options:
            engine._run_options = sessions[name][1] or ort.RunOptions()

    log(f"corpus: {len(files)} files x {len(names)} session variants, warm-up first")
    try:
        for name in names:
            use(name)
            _measure(speaker, files[:1])
        for block, first in enumerate(range(0, len(files), BLOCK)):
            order = names[block % len(names):] + names[:block % len(names)]
            for name in order:
                use(name)
                for key, value in _measure(speaker, files[first:first + BLOCK]).items():
                    totals[name][key] += value
    finally:
        use(SHIPPED)
    n = len(files)
    lines = head + [
        f"{n} files, {totals[names[0]]['audio']:.1f} s of audio (`{files[0].parents[1].name}`), "
        f"blocks of {BLOCK} files rotating between the session variants (one untimed file "
        "each first).", "",
        "End to end = `load_audio` + `embed_audio` (checks, fbank, network, head) per file; "
        "forward only = `engine.embed` on the same features right after. "
        f"{RATIO_HEADER} here = forward-only time ÷ end-to-end time (the baseline is the "
        "network alone; target >= 0.85).", "",
        f"| session swapped into the engine | end to end: files/s | RTF | forward only: files/s "
        f"| {RATIO_HEADER} (forward only ÷ end to end) | decode | fbank (CPU) |",
        "|---|---|---|---|---|---|---|"]
    for name, t in totals.items():
        lines.append(
            f"| {name} | {n / t['e2e']:.2f} | {t['audio'] / t['e2e']:.0f}x | "
            f"{n / t['forward']:.2f} | **{t['forward'] / t['e2e']:.3f}** | {t['decode']:.2f} s | "
            f"{t['frontend_cpu']:.2f} s |")
    lines += ["", "Options of each variant (beyond onnxruntime's defaults):", ""]
    lines += [f"- {name}: {described[name]}" for name in names]
    return lines
