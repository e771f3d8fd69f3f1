"""Find a model's directory: a known name, a Hugging Face hub repo id, or a local directory."""

from __future__ import annotations

from pathlib import Path

from .config import CONFIG_FILE, WEIGHTS_FILE
from .errors import ModelError

DEFAULT_MODEL = "aufklarer/WeSpeaker-ResNet34-LM-MLX"
# Short names users may type instead of a hub id.
KNOWN_MODELS = {
    "wespeaker-resnet34-lm": DEFAULT_MODEL,
}
COMPILED_SUFFIX = ".mlmodelc"  # a compiled Core ML model: a directory
# What a download fetches: weights, or a compiled Core ML model (a Core ML-only repo such as
# aufklarer/WeSpeaker-ResNet34-LM-CoreML holds `wespeaker.mlmodelc/` and no weights).
HUB_FILES = [WEIGHTS_FILE, CONFIG_FILE, "*.md", "LICENSE*", f"*{COMPILED_SUFFIX}/*"]
LOCAL_HINT = (
    "pass a local model directory with --model DIR "
    "(make one from a pyannote/wespeaker checkpoint with `audio convert`)"
)


def compiled_models(directory: Path) -> list[Path]:
    """The compiled Core ML models (`*.mlmodelc` directories) in a model directory, sorted."""
    return sorted(p for p in Path(directory).glob(f"*{COMPILED_SUFFIX}") if p.is_dir())


def check_model_dir(directory: Path) -> Path:
    """Return the directory if it holds a config and weights in the hub layout.

    A config beside a compiled Core ML model (`*.mlmodelc`) without weights is accepted too;
    only the coreml engine on macOS can run it (engines.create_engine says so otherwise).
    """
    if not directory.is_dir():
        raise ModelError(f"{directory}: no such model directory")
    required = (CONFIG_FILE,) if compiled_models(directory) else (CONFIG_FILE, WEIGHTS_FILE)
    missing = [f for f in required if not (directory / f).is_file()]
    if missing:
        raise ModelError(f"{directory}: not a model directory (missing {', '.join(missing)})")
    return directory


def _is_hub_id(model: str) -> bool:
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "~"))


def download_from_hub(repo_id: str) -> Path:
    """Fetch (or reuse from huggingface_hub's cache) a model repo; progress goes to stderr."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ModelError(f"huggingface_hub is needed to download {repo_id} ({exc})") from None
    try:
        return Path(snapshot_download(repo_id=repo_id, allow_patterns=HUB_FILES))
    except RepositoryNotFoundError:
        raise ModelError(f"{repo_id}: no such model on the Hugging Face hub; {LOCAL_HINT}"
                         ) from None
    except GatedRepoError:
        raise ModelError(f"{repo_id}: the model is gated; log in with `hf auth login`") from None
    except LocalEntryNotFoundError:
        raise ModelError(
            f"{repo_id}: not in the local cache and the hub cannot be reached "
            f"(offline or HF_HUB_OFFLINE=1); {LOCAL_HINT}"
        ) from None
    except (OSError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{repo_id}: download failed ({detail}); {LOCAL_HINT}") from None


def resolve_model(model: str) -> tuple[str, Path]:
    """Return (model id, directory in the hub layout) for a name, hub id or local directory."""
    from . import campplus_source

    path = Path(model).expanduser()
    if path.is_dir():
        checkpoint = path / campplus_source.CHECKPOINT_FILE
        if not (path / CONFIG_FILE).exists() and checkpoint.is_file():
            return str(path), campplus_source.model_dir_from_checkpoint(checkpoint)
        return str(path), check_model_dir(path)
    if model.lower() == campplus_source.NAME:
        return campplus_source.NAME, campplus_source.resolve_campplus()
    repo_id = KNOWN_MODELS.get(model.lower(), model)
    if path.exists() or not _is_hub_id(repo_id):
        known = ", ".join(sorted([*KNOWN_MODELS, campplus_source.NAME]))
        raise ModelError(
            f"unknown model {model!r}: not a directory, not a hub id (owner/name), "
            f"not a known name ({known})"
        )
    return repo_id, check_model_dir(download_from_hub(repo_id))
