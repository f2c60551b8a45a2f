"""Shell scripts: shellcheck-clean, and the sbatch scripts plan refers to all exist."""
from __future__ import annotations

import shutil
import subprocess

from jobs.schema import WORK_SECTIONS
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
