"""The benchmarks still run (quick sizes); their figures are not asserted: speed is not a
test here, it is measured and reported by bench/."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import QUIET_ENV, ROOT


@pytest.mark.slow
@pytest.mark.parametrize("bench", ["bench_preprocess.py", "bench_train.py", "bench_models.py"])
def test_benchmark_runs_and_prints_its_table(bench):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / bench), "--quick"],
                          env=QUIET_ENV, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout.split("benchmark")[-1].strip().splitlines()[1:]
    assert len(table) >= 3 and all(line.rstrip().endswith(("x", "(lower is better)"))
                                   for line in table)
