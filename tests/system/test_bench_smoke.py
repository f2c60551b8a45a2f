"""The benchmarks run in their smoke mode (``--smoke``: the fewest steps and images that still
print every row), which proves each script and its table work. Their figures are not asserted:
speed is not a test here, and smoke sizes measure nothing; the real runs (full, or ``--quick``)
are for humans and docs/benchmarks.md's tables."""
from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from tests.conftest import QUIET_ENV, ROOT


@pytest.mark.slow
@pytest.mark.parametrize("bench, rows", [("bench_preprocess.py", 21), ("bench_train.py", 2),
                                         ("bench_step.py", 4),
                                         ("bench_models.py", 10),
                                         ("bench_faces.py", 4), ("scaling.py", 7),
                                         ("bench_loader.py", 10)])
def test_benchmark_runs_and_prints_its_table(bench, rows):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / bench), "--smoke"],
                          env=QUIET_ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout.split("benchmark")[-1].strip().splitlines()[1:]
    assert len(table) >= rows, proc.stdout
    for line in table:  # every figure has a finite ratio to a baseline that is not zero
        ratio = re.search(r"\s(\S+)x( \(lower is better\))?$", line.rstrip())
        assert ratio, line
        assert math.isfinite(float(ratio.group(1))) and float(ratio.group(1)) >= 0, line
