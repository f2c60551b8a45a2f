"""Shell scripts: shellcheck-clean, and the sbatch scripts plan refers to all exist."""
from __future__ import annotations

import shutil
import subprocess

from jobs.core.schema import WORK_SECTIONS
from tests.conftest import ROOT

SCRIPTS = [ROOT / "run", ROOT / ".ci/run", ROOT / "slurm/common.sh",
           *sorted((ROOT / "slurm").glob("*.sbatch"))]


def test_every_kind_has_an_sbatch_script():
    for kind in WORK_SECTIONS:  # a pipeline is a chain of the others (see `plan`)
        if kind != "pipeline":
            assert (ROOT / "slurm" / f"{kind}.sbatch").is_file(), kind
    assert (ROOT / "slurm" / "merge.sbatch").is_file()


def test_shellcheck_passes():
    assert shutil.which("shellcheck"), "shellcheck missing: ./run setup installs it"
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
    from jobs.submission import SRUN_RANK_ARGS

    common = (ROOT / "slurm/common.sh").read_text()
    arms = {int(n) for n in re.findall(r"^\s+(\d+)\)", common, flags=re.M)}
    assert arms == {exitcodes.OK, exitcodes.REQUEUE, exitcodes.GUARD_STOPPED}
    assert f"code={exitcodes.REQUEUE}  #" in common
    assert f'max="${{FACEGAN_MAX_REQUEUES:-{Resources().max_requeues}}}"' in common
    walltime = signal.Signals(signals.WALLTIME).name[3:]
    preemption = signal.Signals(signals.PREEMPTION).name[3:]
    assert re.search(rf"kill -{walltime} \$child.*\" {walltime}$", common, flags=re.M)
    assert re.search(rf"kill -{preemption} \$child.*\" {preemption}$", common, flags=re.M)
    for script in ("train.sbatch", "sweep.sbatch"):
        text = (ROOT / "slurm" / script).read_text()
        assert f"#SBATCH --signal=B:{walltime}@{Resources().signal_lead_s}\n" in text, script
    srun = re.search(r"exec srun (.*) \"\$@\"", common).group(1)
    assert srun.replace('"${FACEGAN_SRUN_MPI:-pmix}"', "pmix").split() == list(SRUN_RANK_ARGS)
    entry = (ROOT / "containers/entrypoint.sh").read_text()
    assert "exec" in entry  # the job is PID 1's child through tini: signals reach it
