"""Where NeMo speaker models come from: a local `.nemo` file, or a known one downloaded from the
Hugging Face hub; either way verified, converted (convert_nemo.py) into the user cache once and
reused afterwards, keyed by the file's SHA-256.

A download is checked against the SHA-256 the hub records for the file (its Git LFS object
id, read with the file's metadata), so a corrupt or substituted file is refused.
"""

from __future__ import annotations

from pathlib import Path

from engines.errors import ModelError
from engines.files import sha256_file
from engines.model import CONFIG_FILE, WEIGHTS_FILE

CACHE_KIND = "models"
LOCAL_HINT = "or pass --model FILE.nemo (a copy of the model on disk)"


def cached_model_dir(digest: str) -> Path:
    """The converted model directory for a `.nemo` file with this SHA-256, in the user cache."""
    from engines.files import user_cache_dir

    return user_cache_dir(CACHE_KIND) / f"nemo-{digest[:16]}"


def _digest(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None


def model_dir_from_nemo(path: Path, digest: str | None = None) -> Path:
    """The converted copy of a local `.nemo` file in the user cache (converted on first use)."""
    from audio_cli.models.campplus import convert_into_cache

    target = cached_model_dir(digest or _digest(path))
    if (target / CONFIG_FILE).is_file() and (target / WEIGHTS_FILE).is_file():
        return target
    return convert_into_cache(path, target)


def _hub_sha256(repo_id: str, filename: str) -> str:
    """The SHA-256 the Hugging Face hub records for a file (its LFS object id)."""
    from huggingface_hub import HfApi

    try:
        (info,) = HfApi().get_paths_info(repo_id, [filename])
    except Exception as exc:  # noqa: BLE001 - any hub failure is a one-line ModelError
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{repo_id}: cannot read {filename}'s hash from the Hugging Face hub "
                         f"({detail}); {LOCAL_HINT}") from None
    lfs = getattr(info, "lfs", None)
    if lfs is None or not getattr(lfs, "sha256", None):
        raise ModelError(f"{repo_id}: the hub records no SHA-256 for {filename}")
    return str(lfs.sha256)


def resolve_hub_nemo(repo_id: str, filename: str) -> Path:
    """Download (or reuse) a `.nemo` file from the hub, check its SHA-256, convert it."""
    from huggingface_hub import hf_hub_download

    expected = _hub_sha256(repo_id, filename)
    target = cached_model_dir(expected)
    if (target / CONFIG_FILE).is_file() and (target / WEIGHTS_FILE).is_file():
        return target
    try:
        path = Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as exc:  # noqa: BLE001 - any hub failure is a one-line ModelError
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{repo_id}: cannot download {filename} ({detail}); {LOCAL_HINT}"
                         ) from None
    digest = _digest(path)
    if digest != expected:
        raise ModelError(f"{path}: SHA-256 {digest[:16]}... is not the hub's {expected[:16]}... "
                         f"for {filename} (corrupt download)")
    return model_dir_from_nemo(path, digest)
