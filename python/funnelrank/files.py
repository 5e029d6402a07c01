"""funnelrank's on-disk cache (exported models, cached corpus embeddings) and atomic file writing.

The cache lives in ``$FUNNELRANK_CACHE`` when set, else ``$XDG_CACHE_HOME/funnelrank``, else
``~/.cache/funnelrank``. Everything in it can be rebuilt: deleting it costs time, never data.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "CACHE_ENV",
    "atomic_directory",
    "atomic_writer",
    "atomic_writer_leftovers",
    "cache_dir",
    "file_sha256",
    "hash_file",
]

CACHE_ENV = "FUNNELRANK_CACHE"
"""Environment variable overriding the cache directory."""


def cache_dir(*parts: str) -> Path:
    """The cache directory (or a sub-path of it, ``cache_dir("models", name)``); not created here."""
    root = os.environ.get(CACHE_ENV)
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "funnelrank"
    return base.joinpath(*parts)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a temporary file next to `path` for binary writing; on a clean exit it is flushed, fsynced
    and renamed over `path` (so readers see the old file or the whole new one, never a partial one).
    On an exception the temporary file is removed and `path` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)  # mkstemp makes it owner-only; these are ordinary readable files
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the platform allows it
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _writer_temp_pattern(name: str) -> re.Pattern[str]:
    """What :func:`atomic_writer`'s temporary files for a target called `name` are called: ``.{name}.`` +
    :func:`tempfile.mkstemp`'s random part (8 of ``[a-z0-9_]``) + ``.tmp``."""
    return re.compile(re.escape(f".{name}.") + r"[a-z0-9_]{8}" + re.escape(".tmp"))


def atomic_writer_leftovers(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary files that :func:`atomic_writer` for `path` left next to it (a process killed mid-write
    leaves its temporary file behind; nothing else has these names). Only the caller can know that no
    writer is still busy with one (e.g. it holds a lock all writers take); removing them is its call."""
    target = Path(path)
    pattern = _writer_temp_pattern(target.name)
    try:
        entries = list(target.parent.iterdir())
    except FileNotFoundError:
        return []
    return sorted(p for p in entries if pattern.fullmatch(p.name) and p.is_file() and not p.is_symlink())


def hash_file(digest: Any, path: str | os.PathLike[str]) -> Any:
    """Feed a file's bytes into `digest` (a hashlib object) in 1 MiB blocks; returns `digest`."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    return str(hash_file(hashlib.sha256(), path).hexdigest())


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask would set it for every thread)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc (not Linux): the brief set-and-restore is the only portable way
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh staging directory next to `path`; on a clean exit its files are fsynced and it is
    renamed to `path` (replacing an existing one only when `overwrite`), so `path` is either absent, the
    old directory, or the whole new one. On an exception the staging directory is removed."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists (pass overwrite to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o777 & ~_current_umask())  # mkdtemp makes it private; model directories are meant to be shared
    try:
        yield staging
        for f in staging.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
