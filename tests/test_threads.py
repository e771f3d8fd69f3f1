"""numpy's BLAS runs on one thread while the project embeds, and is restored afterwards.

OpenBLAS's idle threads busy-wait after each product on the cores onnxruntime needs next
(see one_blas_thread); the limit must hold inside every stage that calls numpy and be undone
for the caller's own code.
"""

from __future__ import annotations

import numpy as np
import pytest
import threadpoolctl

from audio_cli import WeSpeaker
from audio_cli.frontend.audio import from_samples


def blas_threads() -> list[int]:
    return [info["num_threads"] for info in threadpoolctl.threadpool_info()
            if info["user_api"] == "blas"]


@pytest.fixture()
def speaker(small_model_dir):
    return WeSpeaker.from_pretrained(small_model_dir, engine="onnx")


def test_blas_runs_on_one_thread_inside_and_is_restored(speaker, monkeypatch, tmp_path):
    import soundfile

    if not blas_threads():
        pytest.skip("numpy reports no BLAS library to threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        seen = []
        fbank = speaker.features.__func__.__globals__["fbank"]

        def spying(samples, config):
            seen.append(blas_threads())
            return fbank(samples, config)

        monkeypatch.setitem(speaker.features.__func__.__globals__, "fbank", spying)
        head = speaker.engine.head

        def spying_head(pooled):
            seen.append(blas_threads())
            return head(pooled)

        monkeypatch.setattr(speaker.engine, "head", spying_head)
        samples = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.1
        path = tmp_path / "clip.wav"
        soundfile.write(path, samples, 16000)
        speaker.embed(audio_file=path)  # the many-file path (decode, features, engine, head)
        speaker.embed_audio(from_samples(samples, 16000, 16000))
        speaker.embed_windows(from_samples(samples, 16000, 16000), window=1.0, hop=0.5)
        assert seen and all(threads == [1] * len(before) for threads in seen), seen
        assert blas_threads() == before  # the caller's setting is back


@pytest.mark.parametrize("segmentation", ["none", "model"])
def test_diarizing_on_two_workers_holds_blas_to_one_thread_and_restores_it(
        segmentation, shared_dir, small_model_dir):
    """The diarizer's two workers embed at once: inside them BLAS runs on one thread, and
    the caller's setting is back afterwards (both paths)."""
    import soundfile

    from audio_cli.diarization.pipeline import DiarizeOptions, Diarizer

    if not blas_threads():
        pytest.skip("numpy reports no BLAS library to threadpoolctl")
    model = None
    if segmentation == "model":
        model = shared_dir / "models/pyannote-segmentation-3.0/pytorch_model.bin"
        if not model.is_file():
            pytest.skip(f"{model} is not present")
    folder = shared_dir / "data/speech/librispeech-test-other-10x10"
    samples = np.concatenate([soundfile.read(path, dtype="float32")[0] for reader in
                              ("1688", "3080") for path in sorted((folder / reader).glob(
                                  "*.flac"))[:1]])
    diarizer = Diarizer(DiarizeOptions(model=str(small_model_dir), engine="onnx", threads=2,
                                       segmentation=str(model) if model else "none"))
    assert diarizer.workers.count == 2
    seen = []
    head = diarizer.speaker.engine.head

    def spying_head(pooled):
        seen.append(blas_threads())
        return head(pooled)

    diarizer.speaker.engine.head = spying_head
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        diarizer.diarize(from_samples(samples, 16000, 16000), "talk")
        assert len(seen) > 2 and all(threads == [1] * len(before) for threads in seen), seen
        assert blas_threads() == before
