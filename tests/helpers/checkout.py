"""A copy of this checkout as a user would clone it: the committed files plus the working
tree's edits, nothing untracked (no .venv, no caches)."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import ROOT


def copy_checkout(folder: Path) -> Path:
    """Copy the tracked files into ``folder`` (made if missing); returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    return folder


def kept_checkout_environment(**extra: str) -> dict[str, str]:
    """This process's environment without what points at this checkout's venv, as a user of
    a kept checkout (tests/helpers/gpu_flavour.py, other_python.py) has it; ``extra`` on
    top."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "FACEGAN_VENV", "FACEGAN_GPU")}
    return {**env, **extra}


def refresh_and_run(home: Path, argv: list[str], env: dict[str, str], refresh: bool = True,
                    timeout: float = 3600) -> subprocess.CompletedProcess:
    """A checkout kept in ``home/checkout`` with its venv (a GPU flavour, another Python):
    its files replaced by this checkout's (unless not ``refresh``), then ``argv`` run in it,
    one test process at a time. Under the lock even without a refresh: a ``./run`` that read
    its stamp's files while another worker's refresh replaced them saw a changed stamp and
    installed again."""
    checkout = home / "checkout"
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if refresh:
            for entry in checkout.iterdir() if checkout.exists() else ():
                if entry.name != ".venv":
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            copy_checkout(checkout)
        return subprocess.run(argv, env=env, cwd=checkout, capture_output=True, text=True,
                              timeout=timeout)
