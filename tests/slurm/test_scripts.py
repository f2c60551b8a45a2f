"""Shell scripts: shellcheck-clean, and the sbatch scripts plan refers to all exist."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from jobs.core.schema import WORK_SECTIONS
from tests.conftest import ROOT

SCRIPTS = [ROOT / "run", ROOT / ".ci/run", ROOT / "slurm/common.sh",
           *sorted((ROOT / "slurm").glob("*.sbatch"))]


def test_every_kind_has_an_sbatch_script():
    for kind in WORK_SECTIONS:  # a pipeline is a chain of the others (see `plan`)
        if kind != "pipeline":
            assert (ROOT / "slurm" / f"{kind}.sbatch").is_file(), kind
    assert (ROOT / "slurm" / "merge.sbatch").is_file()


def test_every_sbatch_script_runs_the_one_command_line():
    """Every route ends in the runner: each script's job is ``python -m jobs run`` (the merge
    as ``--merge``), never a second command line with checks of its own."""
    for script in sorted((ROOT / "slurm").glob("*.sbatch")):
        text = script.read_text()
        assert '"$FACEGAN_PYTHON" -m jobs run "$spec"' in text, script.name
        assert "-m preprocess" not in text, script.name


def test_shellcheck_passes():
    assert shutil.which("shellcheck"), "no shellcheck: ./run test installs it (root, Debian)"
    proc = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_python_code_passes_ruff():
    import sys
    from pathlib import Path

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff, "ruff is in requirements.txt"
    proc = subprocess.run([ruff, "check", "jobs", "gan", "preprocess", "bench", "tests"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_shell_scripts_agree_with_the_python_exit_codes_signals_and_defaults():
    """The batch shell acts on the Python job's exit codes and signals: the numbers and names
    written in slurm/common.sh and the sbatch headers are the ones jobs.core declares."""
    import re
    import signal

    from jobs.core import exitcodes, signals
    from jobs.core.schema import Resources
    from jobs.scheduler import SRUN_RANK_ARGS

    common = (ROOT / "slurm/common.sh").read_text()
    meaning, requeueable = (re.search(rf"^{name}\(\) {{\n(.*?)^}}", common, flags=re.M | re.S)
                            .group(1) for name in ("exit_meaning", "run_requeueable"))
    arms = {int(n) for n in re.findall(r"^\s+(\d+)\)", requeueable, flags=re.M)}
    assert arms == {exitcodes.OK, exitcodes.REQUEUE, exitcodes.GUARD_STOPPED,
                    exitcodes.EARLY_STOPPED}
    told = dict(re.findall(r'^\s+(\d+)\) echo "([^"]*)" ;;$', meaning, flags=re.M))
    assert told == {str(code): text for code, text in exitcodes.DESCRIPTIONS.items()}
    assert f"code={exitcodes.REQUEUE}  #" in common
    assert f'max="${{FACEGAN_MAX_REQUEUES:-{Resources().max_requeues}}}"' in common
    walltime = signal.Signals(signals.WALLTIME).name[3:]
    preemption = signal.Signals(signals.PREEMPTION).name[3:]
    assert re.search(rf"kill -{walltime} \$child.*\" {walltime}$", common, flags=re.M)
    assert re.search(rf"kill -{preemption} \$child.*\" {preemption}$", common, flags=re.M)
    for script in ("train.sbatch", "sweep.sbatch"):
        text = (ROOT / "slurm" / script).read_text()
        assert f"#SBATCH --signal=B:{walltime}@{Resources().signal_lead_s}\n" in text, script
    srun = re.search(r"exec srun (.*?) \\\n\s+(\S+) \"\$@\"", common)
    assert srun.group(1).replace('"${FACEGAN_SRUN_MPI:-pmix}"', "pmix").split() == \
        list(SRUN_RANK_ARGS)
    assert srun.group(2) == '${SLURM_CPUS_PER_TASK:+"--cpus-per-task=$SLURM_CPUS_PER_TASK"}'
    entry = (ROOT / "containers/entrypoint.sh").read_text()
    assert "exec" in entry  # the job is PID 1's child through tini: signals reach it


@pytest.mark.parametrize("restarts, code, requeued, said", [
    (2, 75, True, "checkpointed; requeueing 7 (restart 3)"),
    (3, 75, False, "the requeue limit 3 is reached: not requeueing"),
    (0, 3, False, "exit code 3 (cannot run here: inputs missing, disk full, ranks not "
                  "joined, or no GPU): not requeued"),
    (0, 79, False, "stopped by the mode-collapse guard: not requeueing"),
    (0, 80, False, "stopped early by the sweep's rule: not requeueing"),
    (0, 137, False, "exit code 137 (killed by signal 9; with several ranks srun ends the "
                    "others when one exits"),
])
def test_requeues_stop_at_the_limit_and_failures_are_never_requeued(tmp_path, restarts, code,
                                                                     requeued, said):
    """run_requeueable's decision alone (the real requeue is the Slurm tests' business): a
    job that checkpointed is requeued until ``max_requeues`` restarts, one that failed or
    cannot run never is, and the log says which and why. ``scontrol`` is a recorder here."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n')
    (fake / "scontrol").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "SLURM_JOB_ID": "7", "FACEGAN_ROOT": str(ROOT),
           "SLURM_RESTART_COUNT": str(restarts), "FACEGAN_MAX_REQUEUES": "3"}
    proc = subprocess.run(["bash", "-c", f'source slurm/common.sh; run_requeueable sh -c '
                           f'"exit {code}"'], cwd=ROOT, env=env, capture_output=True, text=True)
    assert said in proc.stdout, proc.stdout
    calls = (tmp_path / "calls").read_text() if (tmp_path / "calls").exists() else ""
    assert calls == ("requeue 7\n" if requeued else "")
    assert proc.returncode == (0 if requeued else code)


def fake_tools(folder, show_job: str = "ExcNodeList=(null)"):
    """scontrol and sinfo stand-ins that record their arguments, one call a line."""
    calls = folder / "calls"
    for tool, out in (("scontrol", f"JobId=7 {show_job}"), ("sinfo", "node1\nnode2")):
        script = folder / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\necho "{out}"\n')
        script.chmod(0o755)
    return calls


@pytest.mark.parametrize("verdict, code, wants", [
    ("retry node1", 137, ["scontrol requeuehold 7", "scontrol update JobId=7 "
                          "ExcNodeList=node0,node1", "scontrol release 7"]),
    ("retry -", 76, ["scontrol requeue 7"]),
    ("no", 76, []),
])
def test_a_stalled_job_is_retried_as_its_record_says_not_by_its_code(tmp_path, verdict, code,
                                                                     wants):
    """run_requeueable asks STALL_CHECK after a failed run, whatever the code (srun may
    report a killed peer's); 'retry NODES' requeues the job leaving them out, added to the
    job's own excluded nodes (held, updated, released), 'no' leaves it failed."""
    import os

    calls = fake_tools(tmp_path, "ExcNodeList=node0")
    script = (f'source "{ROOT}/slurm/common.sh"; STALL_CHECK=(echo "{verdict}"); '
              f'run_requeueable bash -c "exit {code}"')
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={
        **os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "SLURM_JOB_ID": "7"},
        timeout=60)
    made = [c for c in (calls.read_text().splitlines() if calls.exists() else [])
            if not c.startswith(("sinfo", "scontrol show"))]
    assert made == wants, proc.stdout
    if wants:
        assert proc.returncode == 0 and "the stall watchdog ended the job" in proc.stdout
    else:
        assert proc.returncode == code and "not requeued" in proc.stdout
