"""A loaded model plus the identity the store records with each of its vectors."""

from __future__ import annotations

import json
from dataclasses import dataclass

from audio_cli.models.registry import resolve_model
from audio_cli.pipeline.speaker import (
    DEFAULT_MIN_DURATION,
    EmbeddingResult,
    InputFailure,
    WeSpeaker,
)
from audio_cli.store.settings import Made
from engines.errors import InputAudioError
from engines.files import model_digest


@dataclass
class Embedder:
    """A WeSpeaker model and its identity: name, weights digest, dimension, front-end."""

    speaker: WeSpeaker
    name: str
    digest: str
    dim: int
    frontend: str  # the front-end options as JSON
    precision: str = "float32"  # of the network; recorded with each vector (store.settings)

    @classmethod
    def load(cls, model: str, engine: str = "auto", threads: int | None = None,
             name: str | None = None, precision: str = "float32") -> Embedder:
        """Load a model (hub id, known name or directory) and fingerprint its files; `name`
        is what messages and JSON call it (default: the model's resolved id). `precision`:
        float32 or int8, recorded with each vector the store keeps (store.settings)."""
        model_id, directory = resolve_model(model, engine)
        name = name or model_id
        speaker = WeSpeaker.from_directory(directory, name, engine, threads, precision)
        config = speaker.config
        frontend = json.dumps(config.frontend.identity(), sort_keys=True)
        return cls(speaker, name, model_digest(directory), config.embedding_dim, frontend,
                   precision)

    @property
    def engine(self) -> str:
        """The engine actually running."""
        return self.speaker.engine_name

    def made(self, vad: bool = False) -> Made:
        """How this embedder's vectors are made, with or without `vad`."""
        return Made(vad, self.precision)

    def embed_all(self, sources: list[str], min_duration: float = DEFAULT_MIN_DURATION,
                  vad: bool = False) -> list[EmbeddingResult]:
        """Embed every source or raise: all failures are listed in one InputAudioError.
        `vad`: only the speech of each (pipeline.speaker.WeSpeaker.embed_sources)."""
        results, failures = [], []
        for item in self.speaker.embed_sources(sources, min_duration, vad):
            (failures if isinstance(item, InputFailure) else results).append(item)
        if failures:
            detail = "; ".join(f.message for f in failures)
            raise InputAudioError(detail if len(failures) == 1 else
                                  f"{len(failures)} inputs failed: {detail}")
        return results
