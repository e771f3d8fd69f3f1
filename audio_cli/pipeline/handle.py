"""Opening a model: find its folder, read its config, and know its identity (name, digest,
dimension, front-end, shortest usable input) before, and without, building an engine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from audio_cli.frontend.fbank import min_samples
from audio_cli.models.registry import display_name, resolve_model
from engines import build_graph
from engines.errors import ModelError, UsageError
from engines.files import model_digests
from engines.graph import Graph
from engines.model import (
    SEGMENTATION_MODEL_TYPE,
    WEIGHTS_FILE,
    ModelConfig,
    Weights,
    check_weights,
)


@dataclass
class ModelHandle:
    """A model found on disk: its name, folder and config; its network and digest, each made
    once, on first use."""

    name: str  # what messages, JSON and the store call it
    directory: Path  # the hub layout: config.json + model.safetensors
    config: ModelConfig
    source: str = ""  # where it came from: the hub repo id, known name or path resolved

    @cached_property
    def graph(self) -> Graph:
        """The network the config describes (one for every engine built from this handle)."""
        return build_graph(self.config)

    @cached_property
    def _hashes(self) -> tuple[str, dict[str, str]]:
        """The model digest and each file's SHA-256, from one read of each file."""
        return model_digests(self.directory)

    @property
    def digest(self) -> str:
        """The model's identity (engines.files.model_digest), computed on first use."""
        return self._hashes[0]

    @property
    def dim(self) -> int:
        """Values in each vector."""
        return self.config.embedding_dim

    @property
    def frontend(self) -> str:
        """The front-end options as JSON (the store keeps them with the model)."""
        return json.dumps(self.config.frontend.identity(), sort_keys=True)

    @property
    def min_duration(self) -> float:
        """Shortest input (seconds) the network can pool over."""
        frontend = self.config.frontend
        return min_samples(self.graph.min_frames(), frontend) / frontend.sample_rate

    def check_min_duration(self, seconds: float) -> None:
        """UsageError if `seconds` (--min-duration) is below what the network needs."""
        shortest = self.min_duration
        if seconds < shortest:
            raise UsageError(f"--min-duration must be at least {shortest:.3f} s (the network "
                             "needs that much audio)")

    def weights(self) -> Weights:
        """The weights, read when an engine needs them; their SHA-256 (an engine's cache key)
        comes from the same pass as the model's digest: one read of the file per run."""

        def sha256() -> str | None:
            return self._hashes[1].get(WEIGHTS_FILE)

        return Weights(self.directory / WEIGHTS_FILE, digest=sha256)


def open_model(model: str, engine: str = "auto") -> ModelHandle:
    """A hub repo id, known name, model folder or .nemo file, resolved (downloaded on first
    use) and its config read. A wrong `engine` name, or one that cannot run a known model, is
    refused first (before any download)."""
    source, directory = resolve_model(model, engine)
    config = ModelConfig.load(directory)  # checked against the schema
    if config.model_type == SEGMENTATION_MODEL_TYPE:
        raise ModelError(f"{model}: a speaker-segmentation model (pyannote), not a "
                         "speaker-embedding model; it is for diarization's segmentation")
    check_weights(config, directory)  # ... and against the weights' final layer
    return ModelHandle(display_name(model), directory, config, source)
