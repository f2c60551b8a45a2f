"""A copy of this checkout as a user would clone it: the committed files plus the working
tree's edits, nothing untracked (no .venv, no caches)."""
from __future__ import annotations

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
