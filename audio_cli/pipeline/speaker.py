"""The public speaker-embedding API: load a model once, embed files or sample arrays."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from audio_cli.frontend.audio import Audio, from_samples
from audio_cli.frontend.checks import check_duration
from audio_cli.frontend.fbank import fbank
from audio_cli.models.registry import DEFAULT_MODEL
from audio_cli.pipeline.batching import Inference, one_blas_thread
from audio_cli.pipeline.handle import ModelHandle, open_model
from audio_cli.pipeline.options import (
    DEFAULT_MAX_DURATION,
    DEFAULT_MIN_DURATION,
    EmbedOptions,
)
from audio_cli.pipeline.results import EmbeddingResult, InputFailure, WindowEmbedding
from engines.errors import InputAudioError, UsageError


def check_usable(audio: Audio, min_duration: float, vad: bool) -> None:
    """frontend.audio.check_usable; with `vad` only the length (the detector then says
    "no speech found" of silence, as it does of noise)."""
    if vad:
        check_duration(audio.source, audio.duration, min_duration)
    else:
        from audio_cli.frontend.audio import check_usable as usable

        usable(audio, min_duration)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors, in [-1, 1]."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"vectors differ in dimension: {a.shape[0]} vs {b.shape[0]}")
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if denom == 0.0:
        raise ValueError("cosine similarity of a zero vector is undefined")
    return float(np.dot(a, b) / denom)


class SpeakerEmbedder:
    """A speaker-embedding model (ResNet34-LM, CAM++, NeMo's) loaded on one engine."""

    def __init__(self, model: ModelHandle, engine: str = "auto", threads: int | None = None,
                 precision: str = "float32", calibration_dir: Path | None = None, *,
                 max_duration: float | None = DEFAULT_MAX_DURATION):
        from engines import create_engine

        self.max_duration = max_duration  # seconds: longer inputs are refused (None: no limit)
        self.model = model
        self.config = model.config
        self.model_id = model.name
        self.precision = precision
        graph = model.graph
        calibration = None
        if precision == "int8":  # an int8 trunk, built once from the float32 one (cached)
            from audio_cli.pipeline.calibration import calibration as calibration_set

            calibration = calibration_set(self.config.frontend, calibration_dir)
        self.engine = create_engine(engine, self.config, model.weights(), threads=threads,
                                    graph=graph, precision=precision, calibration=calibration)
        self.min_frames = graph.min_frames()
        self.inference = Inference(self.engine, graph)

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike = DEFAULT_MODEL, engine: str = "auto",
                        threads: int | None = None, precision: str = "float32"
                        ) -> SpeakerEmbedder:
        """Load a hub repo id, known name, local model folder (the hub layout, or 3D-Speaker's
        CAM++ checkpoint) or NeMo .nemo file; a hub model downloads on first use.
        `precision="int8"` runs an int8 version of the network (onnx, coreml)."""
        return cls(open_model(str(model), engine), engine, threads, precision)

    @classmethod
    def from_options(cls, options: EmbedOptions) -> SpeakerEmbedder:
        """Load the model `options` names, as they say to run it; their minimum duration is
        checked against the network before the engine is built."""
        model = open_model(options.model, options.engine)
        model.check_min_duration(options.min_duration)
        return cls(model, options.engine, options.threads, options.precision,
                   max_duration=options.max_duration)

    load_from_hub = from_pretrained  # the name of earlier releases

    @property
    def engine_name(self) -> str:
        """The engine actually running (never `auto`)."""
        return self.engine.name

    @property
    def min_duration(self) -> float:
        """Shortest input (seconds) the network can pool over."""
        return self.model.min_duration

    def check_min_duration(self, min_duration: float) -> None:
        """UsageError if `min_duration` is below what the network can pool over."""
        self.model.check_min_duration(min_duration)

    def features(self, audio: Audio) -> np.ndarray:
        """(T, n_mels) float32 features of decoded audio, in this model's front-end."""
        with one_blas_thread():
            return fbank(audio.samples, self.config.frontend)

    def embed_features(self, features: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """(T, n_mels) features -> (dim,); (B, T, n_mels) or a list of (T_i, n_mels) -> (B, dim).

        Clips of different lengths run in masked batches, long clips in exact chunks.
        """
        single = isinstance(features, np.ndarray) and features.ndim == 2
        clips = [features] if single else list(features)
        for clip in clips:
            if len(clip) < self.min_frames:
                raise InputAudioError(
                    f"too few feature frames ({len(clip)}); the network needs {self.min_frames}"
                )
        with one_blas_thread():
            vectors = self.inference.embed_clips([np.asarray(c, dtype=np.float32)
                                                  for c in clips])
        return vectors[0] if single else vectors

    def embed_audio(self, audio: Audio, min_duration: float = DEFAULT_MIN_DURATION,
                    vad: bool = False) -> EmbeddingResult:
        """Embed decoded audio, refusing it if shorter than `min_duration` or silent. With
        `vad`, only its speech (frontend.vad), which must last `min_duration`."""
        self.check_min_duration(min_duration)
        check_usable(audio, min_duration, vad)
        whole = audio
        if vad:
            from audio_cli.frontend.vad import speech_audio

            audio = speech_audio(audio, min_duration)
        start = time.perf_counter()
        vector = self.embed_features(self.features(audio))
        elapsed = time.perf_counter() - start
        return EmbeddingResult(embedding=vector, file=audio.source, duration=whole.duration,
                               sample_rate=audio.source_rate, model=self.model_id,
                               engine=self.engine_name, elapsed=elapsed,
                               speech=audio.duration if vad else None)

    def embed(self, audio_file: str | os.PathLike | None = None, *,
              samples: np.ndarray | None = None, sample_rate: int | None = None,
              min_duration: float = DEFAULT_MIN_DURATION, vad: bool = False) -> np.ndarray:
        """Embed a file, or samples at `sample_rate`; returns a (dim,) float32 unit vector.
        With `vad`, only the speech that voice-activity detection finds is embedded."""
        if (audio_file is None) == (samples is None):
            raise UsageError("pass exactly one of audio_file or samples")
        if audio_file is not None:
            (result,) = self.embed_sources([audio_file], min_duration, vad)
            if isinstance(result, InputFailure):
                raise result.error
            return result.embedding
        if sample_rate is None:
            raise UsageError("samples need a sample_rate")
        audio = from_samples(samples, sample_rate, self.config.sample_rate)
        return self.embed_audio(audio, min_duration, vad).embedding

    def embed_sources(self, sources: Iterable[str | os.PathLike],
                      min_duration: float = DEFAULT_MIN_DURATION, vad: bool = False
                      ) -> Iterator[EmbeddingResult | InputFailure]:
        """Embed many files (or `-`), yielding one result per input, in input order.

        An input that cannot be embedded yields an InputFailure and the others go on;
        a wrong `min_duration` is a UsageError raised before any input is read. With `vad`,
        each input's speech regions are embedded as one utterance.
        """
        from audio_cli.pipeline.batching import embed_sources

        self.check_min_duration(min_duration)
        yield from embed_sources(self, sources, min_duration, vad)

    def embed_windows(self, audio: Audio | str | os.PathLike, window: float, hop: float,
                      min_duration: float = DEFAULT_MIN_DURATION, vad: bool = False
                      ) -> list[WindowEmbedding]:
        """One embedding per window (see `window_bounds`) of decoded audio or of a file (or
        `-`), each window embedded on its own. A file is decoded block by block
        (pipeline.windows), never whole: an hour needs its windows' vectors in memory, not
        its samples.

        With `vad`, a window's speech samples are embedded and its `speech` seconds set; a
        window with less than `min_duration` of speech has no embedding (None).
        """
        from audio_cli.pipeline import windows

        if isinstance(audio, Audio):
            return windows.embed_audio_windows(self, audio, window, hop, min_duration, vad)
        from audio_cli.frontend.audio import open_audio

        source = open_audio(audio, self.config.sample_rate, self.max_duration)
        return windows.embed_source_windows(self, source, window, hop, min_duration, vad)


WeSpeaker = SpeakerEmbedder  # the name of earlier releases
