"""The Docker image built from containers/Dockerfile (with a private Docker daemon): it runs
preprocessing, 2-rank Horovod training and the signal/requeue path."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from jobs.core import exitcodes
from tests.conftest import CACHE, QUIET_ENV, ROOT, WHEEL_CACHE
from tests.helpers import gpu_flavour

pytestmark = pytest.mark.slow
CONTAINERS = ROOT / "containers"
IMAGE = "facegan-hpc:test"
GPU_IMAGE = "facegan-hpc:gpu-test"


# ------------------------------------------------------------------------------ the image
def docker_bin() -> str:
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


@pytest.fixture(scope="session")
def docker(tmp_path_factory):
    """A private dockerd (layers cached in ~/.cache/facegan-hpc/docker), stopped by PID."""
    folder = tmp_path_factory.mktemp("docker")
    start = subprocess.run([str(CONTAINERS / "ci/dockerd.sh"), "start", str(folder)],
                           env={**os.environ, "DATA_ROOT": str(CACHE / "docker")},
                           capture_output=True, text=True, timeout=600)
    assert start.returncode == 0, start.stderr
    env = {**QUIET_ENV, "DOCKER_HOST": f"unix://{folder}/docker.sock"}
    try:
        yield env
    finally:
        subprocess.run([str(CONTAINERS / "ci/dockerd.sh"), "stop", str(folder)], timeout=120)


def build_image(docker: dict, flavour: str, tag: str, wheels: list[Path]) -> str:
    """``docker build --build-arg FLAVOR=...`` on the local bookworm base, with the Horovod
    builds ./run cached here (same Debian, Python, TensorFlow) in its wheel cache: the image
    installs them instead of compiling again, and ./run setup still checks their flags."""
    base = subprocess.run([str(CONTAINERS / "ci/base-image.sh"), "local/bookworm:ci",
                           str(CACHE / "rootfs")], env=docker, capture_output=True, text=True,
                          timeout=900)
    assert base.returncode == 0, base.stderr
    for old in (CONTAINERS / "wheels").iterdir():  # only this flavour's: a stable layer
        if old.is_dir():
            shutil.rmtree(old)
    for folder in wheels:
        shutil.copytree(folder, CONTAINERS / "wheels" / folder.name)
    build = subprocess.run([docker_bin(), "build", "--network", "host", "--build-arg",
                            "BASE_IMAGE=local/bookworm:ci", "--build-arg", f"FLAVOR={flavour}",
                            "-f", "containers/Dockerfile", "-t", tag, "."], env=docker,
                           cwd=ROOT, capture_output=True, text=True, timeout=2400)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    # the images this tag replaced: gigabytes each in the kept layer cache
    subprocess.run([docker_bin(), "image", "prune", "-f"], env=docker, capture_output=True,
                   timeout=600)
    return tag


@pytest.fixture(scope="session")
def image(docker) -> str:
    cached = WHEEL_CACHE / gpu_flavour.build_key("cpu")  # the image has MPI: gloo-mpi
    return build_image(docker, "cpu", IMAGE, [cached] if cached.name.endswith("-gloo-mpi")
                       and any(cached.glob("horovod-*.whl")) else [])


@pytest.fixture(scope="session")
def gpu_image(docker, image) -> str:
    """The GPU flavour's image (after the CPU one: one build at a time), with the NCCL build
    that ./run setup --gpu made (tests/helpers/gpu_flavour.py)."""
    setup = gpu_flavour.set_up()
    assert setup.returncode == 0, setup.stderr[-4000:]
    return build_image(docker, "gpu", GPU_IMAGE, [gpu_flavour.gpu_wheel_folder()])


def docker_run(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([docker_bin(), "run", "--rm", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Path:
    """A folder the image's non-root user (uid 1000) can write, with the face set in it."""
    from preprocess.fixture import build

    folder = tmp_path_factory.mktemp("shared")
    build(folder / "celeba", lfw_faces=30, lfw_negatives=2)
    (folder / "pre.yaml").write_text(f"""\
kind: preprocess
name: pre
preprocess:
  input_dir: {folder / 'celeba'}
  output_dir: {folder / 'faces'}
  num_shards: 2
""")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    return folder


def test_image_runs_preprocessing(docker, image, shared):
    proc = docker_run(docker, "-v", f"{shared}:{shared}", image, "run",
                      str(shared / "pre.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (shared / "faces" / "faces.h5").exists()
    assert "merged 2 shards" in proc.stderr


def test_image_trains_with_two_horovod_ranks(docker, image, shared):
    if not (shared / "faces" / "faces.h5").exists():
        test_image_runs_preprocessing(docker, image, shared)
    net = "facegan-test-net"
    subprocess.run([docker_bin(), "network", "create", net], env=docker, capture_output=True)
    proc = docker_run(docker, "--network", net, "-v", f"{shared}:{shared}", image,
                      "horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", "python", "-m",
                      "jobs", "run", str(ROOT / "jobs/examples/train_cgan_faces.yaml").replace(
                          str(ROOT), "/opt/facegan"),
                      "--set", f"train.data={shared / 'faces/faces.h5'}",
                      "--set", f"train.run_dir={shared / 'cgan2'}", "--set", "train.epochs=1",
                      "--set", "train.batch_size=8", timeout=900)
    subprocess.run([docker_bin(), "network", "rm", net], env=docker, capture_output=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = (shared / "cgan2" / "ranks.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and rows[0].split(",")[2] == rows[1].split(",")[2]  # same weights


def test_docker_kill_usr1_checkpoints_and_exits_75(docker, image, shared):
    """USR1 sent to the container at a logged mid-epoch step (never at an epoch's end, where
    the stop and the epoch checkpoint would coincide) reaches the training through tini."""
    from gan.quality.digits import write_digits

    write_digits(shared / "digits.h5")
    (shared / "digits.h5").chmod(0o666)
    name = f"facegan-signal-{os.getpid()}"
    run_dir = shared / "sig"
    subprocess.run([docker_bin(), "run", "-d", "--name", name, "-v", f"{shared}:{shared}",
                    image, "run", "/opt/facegan/jobs/examples/train_cgan_digits.yaml",
                    "--set", f"train.data={shared / 'digits.h5'}",
                    "--set", f"train.run_dir={run_dir}", "--set", "train.epochs=500",
                    # read every 4 steps: step 7's line comes at step 8, the stop at step 12
                    "--set", "train.log_every_steps=7", "--set", "train.read_every_steps=4"],
                   env=docker, check=True, capture_output=True)
    follow = subprocess.Popen([docker_bin(), "logs", "-f", name], env=docker,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in follow.stderr:  # 7 steps into epoch 2: 21 steps before its end
            if "epoch 2/500 it 7/28" in line:
                subprocess.run([docker_bin(), "kill", "--signal", "USR1", name], env=docker,
                               check=True)
                break
        else:
            raise AssertionError("the container never logged step 7 of epoch 2")
        code = subprocess.run([docker_bin(), "wait", name], env=docker, capture_output=True,
                              text=True, timeout=900).stdout.strip()
        logs = subprocess.run([docker_bin(), "logs", name], env=docker, capture_output=True,
                              text=True).stderr
    finally:
        follow.kill()
        subprocess.run([docker_bin(), "rm", "-f", name], env=docker, capture_output=True)
    assert int(code) == exitcodes.REQUEUE, logs[-3000:]
    assert "received SIGUSR1" in logs
    steps = [int(re.search(r"ckpt-(\d+)", p.name).group(1))
             for p in (run_dir / "checkpoints").glob("ckpt-*.index")]
    assert max(steps) >= 28 + 7 and max(steps) % 28, f"not a mid-epoch stop: {steps}"
    assert f"stopped at epoch 2 step {max(steps) - 28}/28" in logs


def test_gpu_image_has_nccl_infiniband_and_never_trains_on_the_cpu_silently(docker, gpu_image,
                                                                           shared):
    """The GPU image: TensorFlow's CUDA build, Horovod with NCCL, libibverbs for NCCL's
    InfiniBand transport; with no GPU (this machine) a training stops with the one line."""
    build = docker_run(docker, gpu_image, "horovodrun", "--check-build")
    for line in ("[X] TensorFlow", "[X] NCCL", "[X] Gloo", "[X] MPI"):
        assert line in build.stdout, build.stdout + build.stderr[-2000:]
    facts = docker_run(docker, gpu_image, "bash", "-c", "cat /opt/venv/.facegan-flavour; "
                       "ldconfig -p | grep -c 'libibverbs.so.1 '; pip list | grep -ci "
                       "'^tensorflow-cpu ' || true")
    assert facts.stdout.split() == ["gpu", "1", "0"], facts.stdout + facts.stderr
    from gan.quality.digits import write_digits

    if not (shared / "digits.h5").exists():
        write_digits(shared / "digits.h5")
        (shared / "digits.h5").chmod(0o666)
    proc = docker_run(docker, "-v", f"{shared}:{shared}", gpu_image, "run",
                      "/opt/facegan/jobs/examples/train_cgan_digits.yaml",
                      "--set", f"train.data={shared / 'digits.h5'}",
                      "--set", f"train.run_dir={shared / 'gpu-refused'}")
    assert proc.returncode == exitcodes.NOT_RUNNABLE, proc.stderr[-3000:]
    assert "this environment is the GPU flavour (./run setup --gpu), but TensorFlow sees no " \
           "GPU" in proc.stderr and "the CUDA 12.5.1 build" in proc.stderr, proc.stderr[-3000:]
    assert not (shared / "gpu-refused").exists()
