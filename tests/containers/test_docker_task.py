"""containers/docker-task.sh, the Docker route of a Slurm task: it runs on the node as the task
starts, so it alone knows the GPUs Slurm gave the task. Run here with a stand-in ``docker`` that
prints the arguments it was given."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from jobs.core import exitcodes
from tests.conftest import ROOT

SCRIPT = ROOT / "containers" / "docker-task.sh"


def run_task(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "docker").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    (fake / "docker").chmod(0o755)
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True,
                          env={"PATH": f"{fake}:/usr/bin:/bin", **env})


def test_the_task_gets_its_own_gpus_renumbered_every_slurm_variable_and_host_ipc(tmp_path):
    cache = tmp_path / "cache" / "facegan-hpc" / "cuda"
    proc = run_task(tmp_path, "--gpus", "--rm", "facegan-hpc:gpu", "run", "spec.yaml",
                    CUDA_VISIBLE_DEVICES="2,3", SLURM_JOB_ID="7", SLURM_PROCID="1",
                    SLURM_RESTART_COUNT="2", OTHER="x", XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.splitlines()
    assert argv[:2] == ["run", "--ipc=host"]
    assert argv[2:6] == ["--gpus", '"device=2,3"', "-e", "CUDA_VISIBLE_DEVICES=0,1"]
    assert argv[6:10] == ["-v", f"{cache}:{cache}", "-e", f"CUDA_CACHE_PATH={cache}"]
    assert cache.is_dir()  # the kernel cache outlives the --rm container
    forwarded = {argv[i + 1] for i, a in enumerate(argv) if a == "-e"}
    assert {"SLURM_JOB_ID", "SLURM_PROCID", "SLURM_RESTART_COUNT"} <= forwarded
    assert "OTHER" not in forwarded
    assert argv[-4:] == ["--rm", "facegan-hpc:gpu", "run", "spec.yaml"]


def test_slurms_node_numbers_win_over_the_cgroups_renumbered_ones(tmp_path):
    """With ConstrainDevices the task sees its GPUs as 0,1; the Docker daemon, outside the
    job's cgroup, needs the node's numbers, which Slurm gives in SLURM_STEP_GPUS."""
    proc = run_task(tmp_path, "--gpus", "img", CUDA_VISIBLE_DEVICES="0,1",
                    SLURM_STEP_GPUS="4,5", SLURM_JOB_GPUS="4,5,6,7", HOME=str(tmp_path))
    assert proc.stdout.splitlines()[2:6] == ["--gpus", '"device=4,5"', "-e",
                                              "CUDA_VISIBLE_DEVICES=0,1"]
    proc = run_task(tmp_path, "--gpus", "img", CUDA_VISIBLE_DEVICES="0", SLURM_JOB_GPUS="6",
                    HOME=str(tmp_path))  # the batch step: the job's
    assert proc.stdout.splitlines()[3] == '"device=6"'


def test_a_cpu_task_gets_no_gpu_option(tmp_path):
    proc = run_task(tmp_path, "--rm", "img", "run", CUDA_VISIBLE_DEVICES="0", SLURM_JOB_ID="7")
    assert proc.returncode == 0 and "--gpus" not in proc.stdout.splitlines()


@pytest.mark.parametrize("visible", [None, "", "NoDevFiles"])
def test_a_gpu_task_slurm_gave_no_gpu_stops_with_one_line(tmp_path, visible):
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    proc = run_task(tmp_path, "--gpus", "--rm", "img", "run", HOME=str(tmp_path), **env)
    assert proc.returncode == exitcodes.NOT_RUNNABLE and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "Slurm gave this task none" in line and "--gres=gpu:N" in line


def test_its_exit_code_is_the_projects():
    assert re.search(r"^NOT_RUNNABLE=(\d+)", SCRIPT.read_text(), re.M).group(1) == \
        str(exitcodes.NOT_RUNNABLE)
