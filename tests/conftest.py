"""Shared test helpers: write specs to temp files and run the CLI as a user would."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_TESTS = ROOT / "tests" / "system"
QUIET_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
# the project's caches (./run's Horovod wheels, the GPU flavour, Docker's layers), where ./run
# puts them: XDG_CACHE_HOME pointed at an empty folder gives a cold run
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facegan-hpc"
# where ./run put the suite's own Horovod build
WHEEL_CACHE = Path(os.environ.get("FACEGAN_WHEEL_CACHE") or CACHE / "wheels")


def set_args(sets) -> list[str]:
    """``--set KEY=VALUE`` for each item: how the CLI takes spec overrides."""
    return [arg for item in sets for arg in ("--set", item)]


def record_run(run_dir: str | Path, code: int | None, job: str = "77") -> None:
    """A run directory's record of one job that started training and, unless ``code`` is
    None (killed outright), ended with ``code``: the events the trainer and runner write."""
    from jobs.core import events, exitcodes

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    events.emit(run_dir, "job_started", job=job, kind="train", ranks=1, device="device: CPU",
                link="0:0", restart=0, spec={})
    if code is not None:
        events.emit(run_dir, "outcome", job=job, kind="train", exit=code,
                    meaning=exitcodes.DESCRIPTIONS.get(code, "unknown"))


def record_epoch(run_dir: str | Path, epoch: int, figures: dict | None = None,
                 **metrics: float) -> None:
    """A trainer's events for one finished epoch (and its quality figures, if measured)."""
    from jobs.core import events

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    if figures:
        events.emit(run_dir, "quality", epoch=epoch, kimg=epoch * 1.0, figures=figures,
                    seconds=1.0)
    events.emit(run_dir, "epoch_done", epoch=epoch, epochs=40, step=28 * epoch, metrics={
        "d_real": 0.5, "d_fake": 0.7, "g": 0.6, "rollbacks": 0, "secs": 1.0, **metrics})


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m jobs ARGS`` in a subprocess, the way a user (or sbatch) calls it; ``env``
    adds to the quiet environment."""
    return subprocess.run([sys.executable, "-m", "jobs", *args], cwd=cwd,
                          env={**QUIET_ENV, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


# What each system test file costs, in minutes of one worker (the sum of its tests), measured
# with 4 workers on a 2-core AVX-512 machine, caches warm (at 8e7badf). ``./run test`` hands
# them to its workers in this order, longest first, so that no long one starts last; the
# in-process files follow.
SYSTEM_MINUTES = {
    "test_multinode.py": 15, "test_bench_smoke.py": 13, "test_train_models.py": 14,
    "test_train.py": 9, "test_learning_cgan.py": 8.5, "test_slurm.py": 8,
    "test_image.py": 2, "test_preprocess.py": 4.5, "test_generate.py": 4,
    "test_learning_aeacgan.py": 4, "test_demo.py": 3, "test_train_faces.py": 3,
    "test_learning_dcgan.py": 2.5, "test_horovod.py": 2.5, "test_gpu_flavour.py": 2,
    "test_slurm_faults.py": 1.5, "test_slurm_sweeps.py": 3, "test_watchdog.py": 1.5,
    "test_tracking.py": 3, "test_python312.py": 2,
}
OTHER_MINUTES = {"test_run.py": 5}  # outside tests/system, but slow: a whole ./run setup


def expected_minutes(path: Path) -> float:
    return SYSTEM_MINUTES.get(path.name, 0) if SYSTEM_TESTS in path.parents else \
        OTHER_MINUTES.get(path.name, 0)


# Files whose tests share no module fixture (each trains its own runs): pytest-xdist hands
# out their tests one by one; every other file goes to one worker whole (its clusters,
# daemons and module fixtures made once).
SPREAD_FILES = {"test_train_models.py", "test_bench_smoke.py"}


class FilesOrTests(LoadScopeScheduling):
    """``--dist loadfile``, but the tests of SPREAD_FILES are units of their own. (xdist's
    ``loadgroup`` would say the same with markers, but it renames ``item._nodeid``, which
    pytest 9 no longer reads: its groups are silently ignored.)"""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return nodeid if Path(path).name in SPREAD_FILES else path


def pytest_xdist_make_scheduler(config, log):
    return FilesOrTests(config, log) if config.getvalue("dist") == "loadfile" else None


def pytest_collection_modifyitems(items) -> None:
    """Everything under tests/system trains in subprocesses or starts Slurm or Docker: it is
    ``slow``, and ``-m "not slow"`` (the fast lane) leaves it out. The longest files first
    (a stable sort: the tests of a file keep their order)."""
    for item in items:
        if SYSTEM_TESTS in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: -expected_minutes(Path(item.fspath)))


def cpu_seconds() -> float:
    """This process's CPU time and that of its children it has waited for (what subprocess.run
    starts; not what slurmd or dockerd start for a test)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    item.stash[CPU_AT_SETUP] = cpu_seconds()
    item.stash[STARTED_AT] = time.time()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each test's CPU seconds, set-up to teardown, as the property ``cpu_s`` of its junit
    record: the suite is CPU-bound on 2 cores, so this, not the wall time its workers share,
    says which test to trim (docs/testing.md)."""
    if call.when == "teardown" and CPU_AT_SETUP in item.stash:
        item.user_properties.append(("cpu_s", round(cpu_seconds() - item.stash[CPU_AT_SETUP], 1)))
        # when it started (epoch seconds): which tests ran beside which, for the schedule
        item.user_properties.append(("started", round(item.stash[STARTED_AT], 1)))
    yield


CPU_AT_SETUP = pytest.StashKey[float]()
STARTED_AT = pytest.StashKey[float]()


@pytest.fixture
def write_spec(tmp_path: Path):
    """write_spec(yaml_text, name='spec.yaml') -> path of a dedented spec file in tmp_path."""
    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path
    return write


def run_test_cluster(folder: Path, nodes: int = 1):
    """Start slurm/testcluster/start.sh in ``folder``; yield its dir and the environment its
    clients need (env.sh's SLURM_CONF, and for several nodes the PATH of the wrappers that
    enter the head namespace); stop it by PID afterwards."""
    start = subprocess.run([str(ROOT / "slurm/testcluster/start.sh"), str(folder),
                            "--nodes", str(nodes)], capture_output=True, text=True, timeout=600)
    if start.returncode != 0:  # stop what did start (munged before a failed MariaDB install)
        subprocess.run([str(ROOT / "slurm/testcluster/stop.sh"), str(folder)],
                       capture_output=True, timeout=120)
    assert start.returncode == 0, start.stderr[-3000:]
    # The nodes share this machine's cores: Open MPI's setting for oversubscribed nodes. A rank
    # waiting in a collective (on a held or frozen peer, on rank 0's checkpoint) yields its
    # core rather than spinning on it, which had cost the suite minutes of the other tests' CPU
    env = {**QUIET_ENV, "SLURM_CONF": str(folder / "etc/slurm.conf"),
           "FACEGAN_PYTHON": sys.executable, "OMPI_MCA_mpi_yield_when_idle": "1"}
    if nodes > 1:
        env["PATH"] = f"{folder / 'bin'}:{env.get('PATH', os.environ['PATH'])}"
    try:
        yield {"dir": folder, "env": env}
    finally:
        subprocess.run([str(ROOT / "slurm/testcluster/stop.sh"), str(folder)],
                       capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real single-node Slurm cluster (slurmctld, slurmd, munge, slurmdbd + MariaDB) started
    by slurm/testcluster/start.sh for this test session and stopped by PID afterwards."""
    yield from run_test_cluster(tmp_path_factory.mktemp("slurm"))


@pytest.fixture(scope="module")
def two_node_cluster(tmp_path_factory):
    """Two slurmd nodes (node1, node2), each in its own network, UTS and mount namespace, and
    the controller in a head namespace: ``start.sh --nodes 2``."""
    yield from run_test_cluster(tmp_path_factory.mktemp("slurm2"), nodes=2)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 MB tmpfs of the test's own, resized by the test (root), unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount)],
                   check=True)

    def resize(size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)
    try:
        yield mount, resize
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
