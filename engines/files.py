"""Files on disk: written safely (built under a scratch name beside the target, then published
in one step), hashed, and the cache folders for files derived from a model's weights."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engines.errors import DiskError

HASH_BLOCK = 1 << 20  # bytes read at a time while hashing


class TargetExists(FileExistsError):
    """The target appeared (or was there) and replacing it was not asked for."""


# OSError numbers that are the file system's condition, not a bug: no space left, over quota,
# a failing device, a read-only file system, no permission.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES,
                         errno.EPERM})


def disk_error(exc: OSError, path: os.PathLike | str | None = None) -> DiskError | None:
    """A one-line DiskError (`PATH: no space left on device`) for an OSError of DISK_ERRNOS,
    naming `path` (else the file the error names); None for any other error."""
    if exc.errno not in DISK_ERRNOS:
        return None
    where = path if path is not None else exc.filename
    reason = os.strerror(exc.errno).lower()
    return DiskError(f"{where}: {reason}" if where is not None else reason)


@contextmanager
def disk_errors(path: os.PathLike | str) -> Iterator[None]:
    """Turn an OSError of DISK_ERRNOS raised inside into a DiskError naming `path`."""
    try:
        yield
    except OSError as exc:
        error = disk_error(exc, path)
        if error is None:
            raise
        raise error from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def scratch_file(target: Path, mode: int | None = None) -> Path:
    """A new empty file beside `target` (same file system), with a normal mode by default."""
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        os.close(handle)
        os.chmod(name, (0o666 & ~_umask()) if mode is None else mode)  # mkstemp's is private
        return Path(name)
    except BaseException:  # failed or interrupted (a signal): no orphan scratch file
        os.unlink(name)
        raise


def publish(scratch: Path, target: Path, replace: bool) -> None:
    """Move a finished scratch file to `target`; without `replace`, never over an existing file.

    Raises TargetExists (and removes the scratch file) when `target` exists and `replace` is
    False. Hard-linking makes the check and the move one atomic step where links exist.
    """
    if replace:
        os.replace(scratch, target)
        return
    try:
        os.link(scratch, target)  # fails if the target appeared meanwhile
    except FileExistsError:
        scratch.unlink(missing_ok=True)
        raise TargetExists(str(target)) from None
    except OSError:  # file systems without hard links
        if target.exists():
            scratch.unlink(missing_ok=True)
            raise TargetExists(str(target)) from None
        os.replace(scratch, target)
        return
    scratch.unlink()


class Draft:
    """The scratch file `new_file` hands out: write to `path`; `abandon()` keeps the block's
    end from publishing it."""

    def __init__(self, path: Path):
        self.path = path
        self.abandoned = False

    def abandon(self) -> None:
        self.abandoned = True


@contextmanager
def new_file(target: Path, replace: bool = False, mode: int | None = None
             ) -> Iterator[Draft]:
    """A scratch file beside `target`, published to `target` (see `publish` for `replace`)
    when the block ends normally and was not abandoned; removed in every other case."""
    draft = Draft(scratch_file(target, mode))
    try:
        yield draft
        if not draft.abandoned:
            publish(draft.path, target, replace)
    finally:
        draft.path.unlink(missing_ok=True)


def write_new(target: Path, data: bytes | str, replace: bool = False,
              mode: int | None = None) -> None:
    """Write a whole file via a scratch file; see `publish` for `replace`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with new_file(target, replace, mode) as draft:
        if isinstance(data, str):
            draft.path.write_text(data, encoding="utf-8")
        else:
            draft.path.write_bytes(data)


def hash_file(sha, path: Path) -> None:
    """Feed a file's bytes to a hashlib object, a block at a time."""
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            sha.update(block)


# Files whose bytes define a model: its config and any weights file beside it.
MODEL_IDENTITY_SUFFIXES = (".json", ".safetensors", ".pt", ".bin", ".onnx", ".npz")


def model_digest(directory: Path) -> str:
    """A model's identity: SHA-256 (first 16 hex digits) over the config and weights files of
    its directory. The store records it with every vector; JSON output reports it."""
    return model_digests(directory)[0]


def model_digests(directory: Path) -> tuple[str, dict[str, str]]:
    """`model_digest`, and the SHA-256 (hex) of each file it covers, from one read of each."""
    whole = hashlib.sha256()
    each = {}
    for path in sorted(Path(directory).iterdir()):
        if path.is_file() and path.suffix in MODEL_IDENTITY_SUFFIXES:
            whole.update(path.name.encode() + b"\0")
            sha = hashlib.sha256()
            with open(path, "rb") as handle:
                while block := handle.read(HASH_BLOCK):
                    whole.update(block)
                    sha.update(block)
            each[path.name] = sha.hexdigest()
    return whole.hexdigest()[:16], each


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    sha = hashlib.sha256()
    hash_file(sha, path)
    return sha.hexdigest()


# ---------------------------------------------------------------- caches

APP_CACHE = "audio-speaker"


def user_cache_dir(kind: str) -> Path:
    """`$XDG_CACHE_HOME/audio-speaker/KIND`, or `~/.cache/audio-speaker/KIND`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / APP_CACHE / kind


def cache_dirs(model_dir: Path | None, kind: str, cache_dir: Path | None = None) -> list[Path]:
    """Directories to look in and write to, best first: `cache_dir`, else `model_dir/KIND`
    (beside the weights), then the user cache."""
    if cache_dir is not None:
        return [Path(cache_dir)]
    beside = [Path(model_dir) / kind] if model_dir is not None else []
    return beside + [user_cache_dir(kind)]


@contextmanager
def scratch_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A new private directory in `parent` (the target's file system), removed on exit with
    whatever is still in it: build a directory or several files there, then move them out."""
    scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
