"""``./run setup`` as a cluster user runs it: no root, tools from PATH (what ``module load``
gives), a clear message naming what is missing. A user is created for it (the suite runs as
root); the checkout is copied so the user owns its ``.venv``."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

USER = "facegan-user"


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    if subprocess.run(["id", USER], capture_output=True).returncode:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", USER], check=True)
    return pwd.getpwnam(USER)


def checkout_for(user: pwd.struct_passwd, folder: Path) -> Path:
    """The committed files of this checkout (plus the working tree's edits), owned by user."""
    folder.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    folder.chmod(0o755)
    for parent in folder.parents:  # the user must reach it (pytest's folders are root's 0700)
        if parent.stat().st_uid == 0 and parent != Path("/"):
            parent.chmod(parent.stat().st_mode | 0o011)
    return folder


def as_user(user: pwd.struct_passwd, argv: list[str], path: str, **env: str
            ) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                           "--init-groups", "env", "-i", f"HOME={user.pw_dir}", f"PATH={path}",
                           *[f"{k}={v}" for k, v in env.items()], *argv],
                          cwd="/", capture_output=True, text=True, timeout=1800)


def path_without(tmp_path: Path, *hidden: str) -> str:
    """A PATH with every command of /usr/local/bin, /usr/bin and /bin but ``hidden``."""
    shim = tmp_path / "bin"
    shim.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in Path(folder).iterdir():
            if entry.name not in hidden and not (shim / entry.name).exists():
                (shim / entry.name).symlink_to(entry)
    shim.chmod(0o755)
    return str(shim)


def test_setup_without_cmake_names_it_and_what_to_load(user, tmp_path):
    """Not root, no sudo, cmake not on PATH: exit 1 before anything is installed, naming
    cmake and `module load`, no traceback."""
    checkout = checkout_for(user, tmp_path / "checkout")
    proc = as_user(user, [str(checkout / "run"), "setup"], path_without(tmp_path, "cmake"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cmake >= 3.13 (found: none; e.g. module load cmake)" in proc.stderr
    assert "module load gcc cmake openmpi" in proc.stderr and "Traceback" not in proc.stderr
    assert not (checkout / ".venv").exists()


@pytest.mark.slow
def test_setup_as_a_normal_user_with_the_tools_on_path(user, tmp_path):
    """A normal user, the tools on PATH, Horovod's wheel from a shared, read-only wheel cache
    (FACEGAN_WHEEL_CACHE: what one build on a shared filesystem gives every user): setup
    completes with no root and no apt, and Horovod has TensorFlow, Gloo and MPI."""
    source = Path(os.environ.get("FACEGAN_WHEEL_CACHE") or
                  Path.home() / ".cache" / "facegan-hpc" / "wheels")
    assert any(source.glob("*/horovod-*.whl")), f"no Horovod wheel in {source}"
    shared = tmp_path / "shared-wheels"
    shutil.copytree(source, shared)
    os.chmod(shared, 0o755)
    checkout = checkout_for(user, tmp_path / "checkout")
    proc = as_user(user, [str(checkout / "run"), "setup"], "/usr/local/bin:/usr/bin:/bin",
                   FACEGAN_WHEEL_CACHE=str(shared))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "installing Debian packages" not in proc.stderr and "compiling" not in proc.stderr
    build = as_user(user, [str(checkout / ".venv/bin/horovodrun"), "--check-build"],
                    "/usr/local/bin:/usr/bin:/bin")
    for line in ("[X] TensorFlow", "[X] Gloo", "[X] MPI"):
        assert line in build.stdout, build.stdout
    assert (checkout / ".venv").stat().st_uid == user.pw_uid
