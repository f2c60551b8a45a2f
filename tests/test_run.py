"""``./run setup`` as a cluster user runs it: no root, tools from PATH (what ``module load``
gives), a clear message naming what is missing. A user is created for it (the suite runs as
root); the checkout is copied so the user owns its ``.venv``."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, WHEEL_CACHE
from tests.helpers.checkout import copy_checkout

USER = "facegan-user"


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    if subprocess.run(["id", USER], capture_output=True).returncode:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", USER], check=True)
    return pwd.getpwnam(USER)


def checkout_for(user: pwd.struct_passwd, folder: Path) -> Path:
    """The committed files of this checkout (plus the working tree's edits), owned by user."""
    copy_checkout(folder)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    folder.chmod(0o755)
    return folder


@pytest.fixture
def user_tmp():
    """A folder the user can reach. Not under pytest's: those are root's 0700, and pytest
    sets them back to 0700 whenever another pytest session starts."""
    folder = Path(tempfile.mkdtemp(prefix="facegan-user-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


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


def test_setup_without_cmake_names_it_and_what_to_load(user, user_tmp):
    """Not root, no sudo, cmake not on PATH: exit 1 before anything is installed, naming
    cmake and `module load`, no traceback."""
    checkout = checkout_for(user, user_tmp / "checkout")
    proc = as_user(user, [str(checkout / "run"), "setup"], path_without(user_tmp, "cmake"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cmake >= 3.13 (found: none; e.g. module load cmake)" in proc.stderr
    assert "module load gcc cmake openmpi" in proc.stderr and "Traceback" not in proc.stderr
    assert not (checkout / ".venv").exists()


@pytest.mark.slow
def test_setup_as_a_normal_user_with_the_tools_on_path(user, user_tmp):
    """A normal user, the tools on PATH, Horovod's wheel from a shared, read-only wheel cache
    (FACEGAN_WHEEL_CACHE: what one build on a shared filesystem gives every user): setup
    completes with no root and no apt, and Horovod has TensorFlow, Gloo and MPI."""
    key = sourced_run("horovod_key cpu").stdout.strip()
    source = WHEEL_CACHE / key
    assert any(source.glob("horovod-*.whl")), f"no Horovod wheel in {source}"
    shared = user_tmp / "shared-wheels"
    shared.mkdir()  # only the finished build: never another worker's build in progress
    shutil.copytree(source, shared / key, symlinks=True)
    for folder in (shared, shared / key):
        folder.chmod(0o755)
    checkout = checkout_for(user, user_tmp / "checkout")
    proc = as_user(user, [str(checkout / "run"), "setup"], "/usr/local/bin:/usr/bin:/bin",
                   FACEGAN_WHEEL_CACHE=str(shared))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "installing Debian packages" not in proc.stderr and "compiling" not in proc.stderr
    build = as_user(user, [str(checkout / ".venv/bin/horovodrun"), "--check-build"],
                    "/usr/local/bin:/usr/bin:/bin")
    for line in ("[X] TensorFlow", "[X] Gloo", "[X] MPI"):
        assert line in build.stdout, build.stdout
    assert (checkout / ".venv").stat().st_uid == user.pw_uid


def sourced_run(script: str, **env: str) -> subprocess.CompletedProcess:
    """``script`` in a bash that sourced ./run (its functions, not its main)."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("FACEGAN_", "HOROVOD_", "CUDA_"))}
    return subprocess.run(["bash", "-c", f'source "{ROOT / "run"}"; {script}'],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("option, variable, kept, wants", [
    ("", "", "", "cpu"),            # a new venv
    ("", "", "gpu", "gpu"),         # ./run python ... keeps what setup --gpu made
    ("--cpu", "", "gpu", "cpu"),    # switching back is asked for, never implied
    ("", "1", "", "gpu"),
    ("", "0", "gpu", "cpu"),
    ("--gpu", "0", "", "gpu"),      # the command line wins
])
def test_the_flavour_is_kept_unless_asked_for(tmp_path, option, variable, kept, wants):
    if kept:
        (tmp_path / ".facegan-flavour").write_text(kept + "\n")
    proc = sourced_run(f"chosen_flavour {option}", FACEGAN_VENV=str(tmp_path),
                       FACEGAN_GPU=variable)
    assert proc.returncode == 0 and proc.stdout.strip() == wants, proc.stderr


def test_a_flavour_run_does_not_know_is_refused_with_one_line(tmp_path):
    proc = sourced_run("chosen_flavour", FACEGAN_VENV=str(tmp_path), FACEGAN_GPU="maybe")
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "[run] error: FACEGAN_GPU is 'maybe': 1 for the GPU flavour, 0 for the CPU one")


def fake_cuda(folder: Path, release: str) -> Path:
    """A CUDA home whose nvcc says ``release`` (what `module load cuda/X` would put first)."""
    (folder / "bin").mkdir(parents=True)
    (folder / "bin/nvcc").write_text(
        f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.1'\n")
    (folder / "bin/nvcc").chmod(0o755)
    return folder


def test_the_wheel_cache_keys_the_gpu_build_by_its_cuda(tmp_path):
    """CPU and GPU builds never share a cache entry, nor builds for CUDA 12 and 13."""
    cuda = fake_cuda(tmp_path / "cuda", "12.4")
    cpu = sourced_run("horovod_key cpu").stdout.strip()
    gpu = sourced_run("horovod_key gpu", HOROVOD_CUDA_HOME=str(cuda)).stdout.strip()
    py = "py{}{}".format(*sys.version_info[:2])  # the suite's venv's Python
    assert cpu.startswith(f"horovod-0.28.1-tf-2.18.1-{py}-") and "nccl" not in cpu
    assert gpu == f"{cpu}-nccl-cuda12"
    assert sourced_run("cuda_arches 12").stdout.strip() == "60,70,75,80,86,89,90"
    assert sourced_run("cuda_arches 13").stdout.strip() == "75,80,86,89,90,100,120"


def test_gpu_setup_without_nvcc_stops_before_installing_anything(tmp_path):
    """No nvcc (HOROVOD_CUDA_HOME, CUDA_HOME, PATH) and no cached GPU build: one line naming
    what is missing and what to load, before a venv or a download."""
    checkout = copy_checkout(tmp_path / "checkout")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("FACEGAN_", "HOROVOD_", "CUDA_"))}
    proc = subprocess.run([str(checkout / "run"), "setup", "--gpu"], cwd=checkout,
                          env={**clean, "PATH": path_without(tmp_path, "nvcc"),
                               "FACEGAN_WHEEL_CACHE": str(tmp_path / "no-wheels")},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "[run] error: the GPU flavour compiles Horovod's NCCL operations with nvcc, and none "
        "was found (HOROVOD_CUDA_HOME, CUDA_HOME, PATH): module load cuda, then rerun")
    assert not (checkout / ".venv").exists()


def test_the_second_setup_on_a_fresh_machine_installs_nothing(tmp_path):
    """A fresh Debian machine: setup installs Open MPI (a stand-in mpicc appears on PATH
    during the first setup). The stamp records the environment setup leaves, so the second
    run, README's second command, skips setup."""
    tools = tmp_path / "tools"
    tools.mkdir()
    script = f"""
ensure_build_tools() {{ echo ENSURE; for t in mpicc mpirun; do
  printf '#!/bin/sh\\n' > {tools}/$t; chmod +x {tools}/$t; done; }}
install_environment() {{ mkdir -p "$VENV"; echo "INSTALL $1"; }}
setup; echo NEXT; setup"""
    proc = sourced_run(script, FACEGAN_VENV=str(tmp_path / "venv"),
                       PATH=f"{tools}:{path_without(tmp_path, 'mpicc', 'mpirun')}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ENSURE", "INSTALL", "cpu", "NEXT"], proc.stdout
    assert proc.stderr.count("setup complete (cpu flavour)") == 1, proc.stderr
    path = f"{tools}:{tmp_path / 'bin'}"  # the shim without the machine's own MPI
    assert sourced_run("horovod_flavour", PATH=path).stdout.strip() == "gloo-mpi"
    (tools / "mpicc").unlink()  # MPI gone again: the stamp no longer holds
    again = sourced_run(script.replace("setup; echo NEXT; setup", "setup"),
                        FACEGAN_VENV=str(tmp_path / "venv"), PATH=path)
    assert again.stdout.split() == ["ENSURE", "INSTALL", "cpu"], again.stdout


def test_gpu_setup_with_a_cuda_home_of_bare_pip_wheels_stops_before_installing(tmp_path):
    """nvcc found, but its home has libcudart.so.13 and no libcudart.so (pip's wheels as
    they come): one line naming containers/cuda-toolkit.sh, before a venv or a download,
    not CMake's "missing: CUDA_CUDART" minutes later."""
    cuda = fake_cuda(tmp_path / "cuda13", "13.0")
    (cuda / "lib").mkdir()
    (cuda / "lib/libcudart.so.13").write_bytes(b"")
    checkout = copy_checkout(tmp_path / "checkout")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("FACEGAN_", "HOROVOD_", "CUDA_"))}
    proc = subprocess.run([str(checkout / "run"), "setup", "--gpu"], cwd=checkout,
                          env={**clean, "HOROVOD_CUDA_HOME": str(cuda),
                               "FACEGAN_WHEEL_CACHE": str(tmp_path / "no-wheels")},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"[run] error: {cuda} has libcudart.so.N but no libcudart.so, which CMake's "
        "FindCUDAToolkit needs (pip's CUDA wheels): make the CUDA home with "
        "containers/cuda-toolkit.sh DEST instead")
    assert not (checkout / ".venv").exists()


def plant_builds(wheels: Path, key: str) -> Path:
    """A good GPU build beside what failed ones leave, each holding a wheel but one."""
    for name in (f"{key}-nccl-cuda12", f"{key}-nccl-cuda13.tmp.4242",  # an older ./run's
                 f".building-{key}-nccl-cuda14.node7.4243", f"{key}-nccl-cuda15"):
        (wheels / name).mkdir(parents=True)
        if not name.endswith("cuda15"):  # an empty folder: no wheel, no build
            (wheels / name / "horovod-0.28.1-cp311-cp311-linux_x86_64.whl").write_bytes(b"x")
    return wheels / f"{key}-nccl-cuda12"


def test_readers_of_the_wheel_cache_take_only_a_complete_build(tmp_path):
    """./run's lookup with no nvcc (the cached GPU build names the CUDA) skips a failed
    build's folder, even one holding a wheel that sorts last. (Every other reader takes the
    one folder its exact key names.)"""
    key = sourced_run("horovod_key cpu").stdout.strip()
    good = plant_builds(tmp_path / "wheels", key)
    proc = sourced_run(f"cuda_tag {key}; complete_builds {key}-nccl-cuda",
                       FACEGAN_WHEEL_CACHE=str(tmp_path / "wheels"),
                       PATH=path_without(tmp_path, "nvcc"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["cuda12", str(good)]


def fake_venv(folder: Path) -> Path:
    """A venv whose ``python -m pip wheel -w DIR`` writes half a wheel into DIR, then fails
    (HANG unset) or waits to be killed (HANG=1)."""
    (folder / "bin").mkdir(parents=True)
    (folder / "bin/python").write_text("""#!/bin/bash
while [[ $# -gt 0 && "$1" != -w ]]; do shift; done
[[ "$1" == -w ]] || exit 0
printf 'PK' > "$2/horovod-0.28.1-cp311-cp311-linux_x86_64.whl"
if [[ -n "${HANG:-}" ]]; then touch "$2/../started"; exec sleep 120; fi
exit 1
""")
    (folder / "bin/python").chmod(0o755)
    return folder


@pytest.mark.parametrize("how", ["fails", "is interrupted"])
def test_a_build_that_fails_or_is_interrupted_leaves_nothing_readable(tmp_path, how):
    """The build's scratch folder goes when pip fails or the job is signalled (Slurm's
    SIGTERM to the process group); a dead build's leftover on this host goes too."""
    wheels = tmp_path / "wheels"
    key = sourced_run("horovod_key cpu").stdout.strip()
    dead = wheels / f".building-{key}.{os.uname().nodename}.999999999"  # no such pid
    dead.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEGAN_", "HOROVOD_"))}
    env.update(FACEGAN_VENV=str(fake_venv(tmp_path / "venv")), FACEGAN_WHEEL_CACHE=str(wheels),
               HANG="1" if how == "is interrupted" else "")
    build = subprocess.Popen(["bash", "-c", f'source "{ROOT / "run"}"; install_horovod cpu'],
                             env=env, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    if how == "is interrupted":
        for _ in range(600):  # a hang guard, not a speed limit: polls until the build starts
            if (wheels / "started").exists() or build.poll() is not None:
                break
            time.sleep(0.1)
        assert build.poll() is None, build.communicate()[1]  # it must still be building
        os.killpg(build.pid, signal.SIGTERM)
    _, stderr = build.communicate(timeout=60)
    assert build.returncode == (143 if how == "is interrupted" else 1), stderr
    assert "compiling Horovod 0.28.1" in stderr
    assert sorted(p.name for p in wheels.iterdir()) == (
        ["started"] if how == "is interrupted" else []), stderr
