"""Speaker embeddings with WeSpeaker ResNet34-LM: `from audio_cli import WeSpeaker`."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["WeSpeaker", "EmbeddingResult", "InputFailure", "cosine_similarity", "__version__"]


def __getattr__(name: str):
    """Import the heavy parts on first use, so `audio --help` starts fast."""
    if name in ("WeSpeaker", "EmbeddingResult", "InputFailure", "cosine_similarity"):
        from audio_cli.pipeline import speaker

        return getattr(speaker, name)
    raise AttributeError(f"module 'audio_cli' has no attribute {name!r}")
