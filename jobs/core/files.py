"""Atomic file writes: a reader (or a restarted job) sees the old file or the new one, never
half of one. Write to a temporary name in the same directory, fsync, then rename."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator


def temp_name(final: Path) -> Path:
    """Hidden, per-process temporary name beside ``final`` (same filesystem: rename is atomic).
    It never matches the final name's pattern, so a crashed writer leaves nothing valid."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


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


def remove_stale_temps(final: Path) -> list[Path]:
    """Delete temporaries left by killed writers of ``final``; returns what was removed."""
    stale = list(final.parent.glob(f".{final.name}.tmp-*"))
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return stale


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows it (e.g. some NFS)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
