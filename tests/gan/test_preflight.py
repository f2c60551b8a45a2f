"""The preflight's verdict names the first failed check and its rank, and its report says what
each rank measured (the checks themselves run in tests/system/test_multinode.py)."""
from __future__ import annotations

from gan.preflight import RankReport, describe, verdict
from jobs.core import exitcodes


def test_the_verdict_names_the_failed_check_and_its_rank():
    good = RankReport(0, "node1", "CPU", "Horovod MPI+Gloo",
                      figures={"allreduce_busbw_gb_s": 1.5, "data_img_s": 9000.0})
    bad = RankReport(1, "node2", "CPU", "Horovod MPI+Gloo",
                     failed={"data": "/d/faces.h5: FileNotFoundError: no such file"})
    good.failed["step"] = "skipped: rank 1 failed data"  # a consequence, never the verdict
    code, line = verdict([good, bad])
    assert code == exitcodes.NOT_RUNNABLE
    assert line == "preflight failed: data on rank 1 (node2): /d/faces.h5: FileNotFoundError: " \
                   "no such file"
    assert verdict([RankReport(0, "a"), RankReport(1, "b")]) == (
        exitcodes.OK, "preflight passed on 2 ranks")
    lines = describe([good, bad])
    assert lines[0].startswith("preflight rank 0 on node1: CPU, Horovod MPI+Gloo; allreduce ok "
                               "1.50 GB/s bus; data 9,000 img/s")
    assert lines[1].startswith("preflight rank 1 on node2")
