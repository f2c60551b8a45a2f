"""Atomic file writes: a reader (or a restarted job) sees the old file or the new one, never
half of one. Write to a temporary name in the same directory, fsync, then rename."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def temp_name(final: Path) -> Path:
    """Hidden, per-process temporary name beside ``final`` (same filesystem: rename is atomic).
    It never matches the final name's pattern, so a crashed writer leaves nothing valid. The
    pid alone is not unique on a shared filesystem (array tasks on several nodes, containers'
    own pid namespaces), so a random part follows it."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to ``final``."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(final: str | os.PathLike, text: str) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text)


def atomic_write_json(final: str | os.PathLike, data: Any) -> None:
    atomic_write_text(final, json.dumps(data, indent=2, sort_keys=False) + "\n")


def create_first(path: str | os.PathLike) -> bool:
    """Create the empty file ``path`` unless it exists: whether this call made it. One
    exclusive create (``O_EXCL``), so of processes racing on a shared filesystem exactly one
    wins; other errors are raised."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return True
    except FileExistsError:
        return False


def take_stale(marker: str | os.PathLike, stale_s: float) -> bool:
    """Take over ``marker`` if it is older than ``stale_s`` (its maker died): whether this
    call took it. It is removed and made anew with ``create_first``, so of processes racing
    for it one wins."""
    marker = Path(marker)
    try:
        if time.time() - marker.stat().st_mtime < stale_s:
            return False
        marker.unlink()
    except FileNotFoundError:
        pass
    return create_first(marker)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (weights files are 100 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wrong_checksum(path: str | os.PathLike, expected: str, where: str) -> str | None:
    """A message naming ``where`` when the file is missing or its SHA-256 is not ``expected``;
    None if it is the expected file."""
    if not Path(path).is_file():
        return (f"{where}.weights: {path} does not exist (or is not a file); nothing is "
                "downloaded for you: fetch it once and point the spec at it")
    actual = sha256_of(path)
    if actual == expected.lower():
        return None
    return (f"{where}.weights: {path} has SHA-256 {actual}, but {where}.sha256 says {expected}: "
            "a different or damaged file (fetch it again; nothing is downloaded for you)")


def remove_stale_temps(final: Path) -> list[Path]:
    """Delete temporaries left by killed writers of ``final``; returns what was removed."""
    stale = list(final.parent.glob(f".{final.name}.tmp-*"))
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return stale


# how "the filesystem is full" reaches Python: OSError from Python's own writes, a message
# from a library's C++ (TensorFlow's checkpoint writer raises ResourceExhaustedError)
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_MESSAGES = ("No space left on device", "Disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """Did ``exc`` come from a full filesystem or an exhausted quota (any library)?"""
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return True
    return any(message in str(exc) for message in FULL_MESSAGES)


def free_space(path: str | os.PathLike) -> str:
    """'N MB free of M MB' for the filesystem holding ``path`` (its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    return f"{usage.free / 2**20:.1f} MB free of {usage.total / 2**20:.1f} MB"


def why(exc: BaseException) -> str:
    """One line on an error: its type and the first line of its message (TensorFlow's and
    HDF5's run to many lines)."""
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def disk_full_message(folder: str | os.PathLike, exc: BaseException, kept: str) -> str:
    """The one line a job logs when its filesystem is full: where, how much is free, the
    error's first line, what is kept, and why it is not requeued."""
    named = getattr(exc, "filename", None)  # the file that did not fit, when Python knows
    folder = Path(named).parent if isinstance(named, str) and named else folder
    return (f"{folder}: the filesystem is full ({free_space(folder)}) [{why(exc)}]. {kept} "
            "Free space (or write elsewhere) first, then resubmit. Not requeued: it would "
            "only fail again.")


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows it (e.g. some NFS)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
