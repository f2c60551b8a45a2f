"""Horovod really runs data-parallel here: 2 Gloo ranks, Keras 3 model, identical weights."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import QUIET_ENV, ROOT

HELPER = ROOT / "tests" / "helpers" / "hvd_sync_check.py"


def _horovodrun() -> str:
    path = shutil.which("horovodrun", path=str(Path(sys.executable).parent))
    assert path, "horovodrun is missing: ./run setup installs Horovod"
    return path


def test_build_has_tensorflow_gloo_and_mpi():
    out = subprocess.run([_horovodrun(), "--check-build"], capture_output=True, text=True,
                         env=QUIET_ENV, check=True).stdout
    for line in ("[X] TensorFlow", "[X] Gloo", "[X] MPI"):
        assert line in out, out


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_allreduced_weights(tmp_path):
    subprocess.run([_horovodrun(), "-np", "2", "-H", "localhost:2", "--gloo",
                    sys.executable, str(HELPER), str(tmp_path)],
                   env=QUIET_ENV, check=True, timeout=300, capture_output=True)
    assert_synced_and_equal_to_one_process(tmp_path)


def assert_synced_and_equal_to_one_process(out_dir: Path) -> None:
    """The two ranks' weights in ``out_dir`` (written by HELPER) are identical, and equal to
    one process trained on both ranks' batches at once."""
    subprocess.run([sys.executable, str(HELPER), str(out_dir), "reference"], env=QUIET_ENV,
                   check=True, timeout=120, capture_output=True)
    rank0, rank1, ref = (np.load(out_dir / f"{n}.npz") for n in ("rank0", "rank1",
                                                                 "reference0"))
    assert int(rank0["size"]) == 2 and int(rank1["size"]) == 2
    weights = [k for k in rank0.files if k.startswith("arr_")]
    assert len(weights) == 4
    for key in weights:
        # the broadcast and every allreduce keep the ranks bit-identical ...
        np.testing.assert_array_equal(rank0[key], rank1[key])
        # ... and equal to one process training on both ranks' batches (mean gradient)
        np.testing.assert_allclose(rank0[key], ref[key], rtol=0, atol=1e-6)
    # rank 1 started from other weights; the broadcast replaced them with rank 0's
    assert not np.array_equal(rank1["init_local"], rank0["init_local"])
    np.testing.assert_array_equal(rank1["init"], rank0["init_local"])
    # and training moved them, so equality above is not two untouched copies of one init
    final = np.concatenate([rank0[k].ravel() for k in weights])
    assert np.abs(final - rank0["init"]).max() > 1e-3
