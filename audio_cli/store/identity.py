"""A loaded model plus the identity the store records with each of its vectors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from audio_cli.models.registry import resolve_model
from audio_cli.pipeline.speaker import (
    DEFAULT_MIN_DURATION,
    EmbeddingResult,
    InputFailure,
    WeSpeaker,
)
from engines.errors import InputAudioError
from engines.files import hash_file

# Files whose bytes define a model: its config and any weights file beside it.
_IDENTITY_SUFFIXES = (".json", ".safetensors", ".pt", ".bin", ".onnx", ".npz")


def model_digest(directory: Path) -> str:
    """SHA-256 (first 16 hex digits) over the config and weights files of a model directory."""
    sha = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in _IDENTITY_SUFFIXES:
            sha.update(path.name.encode() + b"\0")
            hash_file(sha, path)
    return sha.hexdigest()[:16]


@dataclass
class Embedder:
    """A WeSpeaker model and its identity: name, weights digest, dimension, front-end."""

    speaker: WeSpeaker
    name: str
    digest: str
    dim: int
    frontend: str  # the front-end options as JSON

    @classmethod
    def load(cls, model: str, engine: str = "auto", threads: int | None = None) -> Embedder:
        """Load a model (hub id, known name or directory) and fingerprint its files."""
        model_id, directory = resolve_model(model, engine)
        speaker = WeSpeaker.from_directory(directory, model_id, engine, threads)
        config = speaker.config
        name = config.model_id or (str(directory.resolve()) if Path(model_id).is_dir()
                                   else model_id)
        frontend = json.dumps(dataclasses.asdict(config.frontend), sort_keys=True)
        return cls(speaker, name, model_digest(directory), config.embedding_dim, frontend)

    @property
    def engine(self) -> str:
        """The engine actually running."""
        return self.speaker.engine_name

    def embed_all(self, sources: list[str], min_duration: float = DEFAULT_MIN_DURATION
                  ) -> list[EmbeddingResult]:
        """Embed every source or raise: all failures are listed in one InputAudioError."""
        results, failures = [], []
        for item in self.speaker.embed_sources(sources, min_duration):
            (failures if isinstance(item, InputFailure) else results).append(item)
        if failures:
            detail = "; ".join(f.message for f in failures)
            raise InputAudioError(detail if len(failures) == 1 else
                                  f"{len(failures)} inputs failed: {detail}")
        return results
