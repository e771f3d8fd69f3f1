"""Where CAM++ comes from: ModelScope's original checkpoint, verified, converted and cached.

`--model campplus` downloads 3D-Speaker's `campplus_cn_en_common.pt` on first use (plain
HTTPS, progress on stderr; $AUDIO_CAMPPLUS_URL names a mirror), checks its SHA-256, converts
it (`audio convert`) into the user cache and reuses that afterwards. `--model DIR` with the
original checkpoint in DIR (and no `config.json`) verifies and converts it the same way,
leaving DIR untouched.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from engines.errors import ModelError
from engines.files import scratch_dir, scratch_file, sha256_file
from engines.model import CONFIG_FILE, WEIGHTS_FILE

CHECKPOINT_FILE = "campplus_cn_en_common.pt"
CHECKPOINT_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
MODELSCOPE_MODEL = "iic/speech_campplus_sv_zh_en_16k-common_advanced"
MODELSCOPE_REVISION = "v1.0.0"
CHECKPOINT_URL = (f"https://modelscope.cn/api/v1/models/{MODELSCOPE_MODEL}/repo"
                  f"?Revision={MODELSCOPE_REVISION}&FilePath={CHECKPOINT_FILE}")
URL_ENV = "AUDIO_CAMPPLUS_URL"  # overrides CHECKPOINT_URL (a mirror); the hash is still checked
CACHE_KIND = "models"
TIMEOUT = 60  # seconds without data before a download gives up
BLOCK = 1 << 20  # bytes per read
LOCAL_HINT = f"or pass --model DIR where DIR holds a copy of {CHECKPOINT_FILE}"


def verify_checkpoint(path: Path) -> str:
    """The checkpoint's SHA-256; ModelError when it is not the published one."""
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if digest != CHECKPOINT_SHA256:
        raise ModelError(f"{path}: SHA-256 {digest[:16]}... is not the published "
                         f"{CHECKPOINT_SHA256[:16]}... of {CHECKPOINT_FILE} "
                         "(corrupt or a different file)")
    return digest


def cached_model_dir(digest: str = CHECKPOINT_SHA256) -> Path:
    """The converted model directory for a checkpoint with this SHA-256, in the user cache."""
    from engines.files import user_cache_dir

    return user_cache_dir(CACHE_KIND) / f"campplus-{digest[:16]}"


def _is_complete(directory: Path) -> bool:
    return (directory / CONFIG_FILE).is_file() and (directory / WEIGHTS_FILE).is_file()


def convert_into_cache(checkpoint: Path, target: Path) -> Path:
    """Convert `checkpoint` into a scratch directory beside `target`, then rename it there."""
    from audio_cli.models.convert import convert_checkpoint

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with scratch_dir(target.parent, f".{target.name}.") as scratch:
            convert_checkpoint(checkpoint, scratch / "model")
            os.replace(scratch / "model", target)
    except OSError as exc:
        if not _is_complete(target):  # not another process finishing first
            raise ModelError(f"{target}: cannot store the converted model "
                             f"({exc.strerror or exc})") from None
    return target


def model_dir_from_checkpoint(checkpoint: Path) -> Path:
    """Verify a local original checkpoint and return its converted copy in the user cache."""
    target = cached_model_dir(verify_checkpoint(checkpoint))
    return target if _is_complete(target) else convert_into_cache(checkpoint, target)


def _progress(done: int, total: int | None) -> None:
    if not sys.stderr.isatty():
        return
    size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
    sys.stderr.write(f"\raudio: downloading {CHECKPOINT_FILE}: {size}")
    sys.stderr.flush()


def download(url: str, destination: Path) -> None:
    """Stream `url` into `destination`; ModelError (one line) when it cannot be fetched."""
    sys.stderr.write(f"audio: downloading {CHECKPOINT_FILE} from ModelScope "
                     f"({MODELSCOPE_MODEL}, {MODELSCOPE_REVISION})\n")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response, \
                open(destination, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while block := response.read(BLOCK):
                out.write(block)
                done += len(block)
                _progress(done, total)
    except urllib.error.URLError as exc:  # includes HTTPError
        reason = getattr(exc, "reason", exc)
        raise ModelError(f"cannot download {CHECKPOINT_FILE} from ModelScope ({reason}); "
                         f"check the network, {LOCAL_HINT}") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"download of {CHECKPOINT_FILE} failed ({exc}); {LOCAL_HINT}") from None
    finally:
        if sys.stderr.isatty():
            sys.stderr.write("\n")


def resolve_campplus() -> Path:
    """The converted CAM++ directory: from the cache, else downloaded, verified, converted."""
    target = cached_model_dir()
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = scratch_file(target.parent / CHECKPOINT_FILE)
    try:
        download(os.environ.get(URL_ENV) or CHECKPOINT_URL, partial)
        verify_checkpoint(partial)
        return convert_into_cache(partial, target)
    finally:
        partial.unlink(missing_ok=True)
