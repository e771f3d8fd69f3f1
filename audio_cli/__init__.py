"""Speaker embeddings: `from audio_cli import SpeakerEmbedder`.

    model = SpeakerEmbedder.from_pretrained("campplus")   # hub id, known name or folder
    vector = model.embed("voice.wav")                      # (dim,) float32, unit norm
"""

from __future__ import annotations

__version__ = "0.1.0"

_PUBLIC = {
    "SpeakerEmbedder": "audio_cli.pipeline.speaker",
    "WeSpeaker": "audio_cli.pipeline.speaker",  # the name of earlier releases
    "cosine_similarity": "audio_cli.pipeline.speaker",
    "EmbedOptions": "audio_cli.pipeline.options",
    "EmbeddingResult": "audio_cli.pipeline.results",
    "InputFailure": "audio_cli.pipeline.results",
    "WindowEmbedding": "audio_cli.pipeline.results",
    "Diarizer": "audio_cli.diarization.pipeline",
    "DiarizeOptions": "audio_cli.diarization.pipeline",
    "SpeakerCount": "audio_cli.diarization.clustering",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    """Import the heavy parts on first use, so `audio --help` starts fast."""
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'audio_cli' has no attribute {name!r}")
