"""Atomic writes never leave half files, walltimes parse like Slurm's, stop signals are kept,
and a job's TensorFlow import skips what Keras imports only for helpers a job never uses."""
from __future__ import annotations

import inspect
import json
import logging
import os
import signal
import subprocess
import sys

import pytest

from jobs.core import exitcodes, runtime, signals
from jobs.core.fields import parse_walltime, walltime_minutes
from jobs.core.files import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
    temp_name,
)
from jobs.core.signals import StopSignals
from jobs.submit import SpecTask
from tests.conftest import QUIET_ENV, ROOT


# ---------------------------------------------------------------------------------------------
# jobs.core.files
# ---------------------------------------------------------------------------------------------
def test_atomic_write_creates_replaces_and_leaves_no_temp(tmp_path):
    final = tmp_path / "deep" / "er" / "manifest.json"  # parents are created
    atomic_write_text(final, "old")
    assert final.read_text() == "old"
    atomic_write_text(final, "new")
    assert final.read_text() == "new"
    assert [p.name for p in final.parent.iterdir()] == ["manifest.json"]


def test_atomic_write_json_round_trips(tmp_path):
    final = tmp_path / "report.json"
    atomic_write_json(final, {"b": [1, 2], "a": "x"})
    text = final.read_text()
    assert text.endswith("}\n") and json.loads(text) == {"b": [1, 2], "a": "x"}
    assert list(json.loads(text)) == ["b", "a"]  # keys keep their order
    assert os.listdir(tmp_path) == ["report.json"]


def test_temp_is_hidden_beside_the_final_and_never_matches_its_pattern(tmp_path):
    final = tmp_path / "shard-00001-of-00004.h5"
    tmp = temp_name(final)
    assert tmp.parent == final.parent and tmp.name.startswith(".")
    assert not tmp.name.endswith(".h5") and str(os.getpid()) in tmp.name
    assert temp_name(final) != tmp  # unique beyond the pid: other hosts, pid namespaces
    with atomic_path(final) as yielded:
        assert yielded.parent == tmp.parent
        assert yielded.name.startswith(f".{final.name}.tmp-{os.getpid()}-")
        yielded.write_text("data")
        assert not final.exists()  # nothing is visible before the rename
    assert final.read_text() == "data" and not tmp.exists()


def test_an_error_while_writing_keeps_the_old_file_and_removes_the_temp(tmp_path):
    final = tmp_path / "faces.h5"
    final.write_text("old")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(final) as tmp:
            tmp.write_text("half of the ne")
            raise RuntimeError("killed")
    assert final.read_text() == "old"
    assert os.listdir(tmp_path) == ["faces.h5"]


def test_an_error_before_the_first_write_leaves_nothing(tmp_path):
    final = tmp_path / "new.json"
    with pytest.raises(KeyError):
        with atomic_path(final) as tmp:
            tmp.write_text("{")
            raise KeyError("x")
    assert os.listdir(tmp_path) == []


def test_remove_stale_temps_removes_only_those_of_that_final_name(tmp_path):
    final = tmp_path / "faces.h5"
    mine = [tmp_path / ".faces.h5.tmp-123", tmp_path / ".faces.h5.tmp-45678"]
    others = [tmp_path / "faces.h5", tmp_path / ".faces.h5x.tmp-1", tmp_path / ".other.h5.tmp-1",
              tmp_path / ".faces.h5.json.tmp-1", tmp_path / "faces.h5.tmp-1",
              tmp_path / "sub" / ".faces.h5.tmp-9"]
    for path in mine + others:
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    removed = remove_stale_temps(final)
    assert sorted(removed) == sorted(mine)
    assert not any(p.exists() for p in mine)
    assert all(p.exists() for p in others)
    assert remove_stale_temps(final) == []


# ---------------------------------------------------------------------------------------------
# jobs.core.fields: walltimes (more cases in tests/jobs/test_spec_validation.py)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,minutes,normal", [
    ("  90  ", 90, "01:30:00"),            # surrounding blanks
    ("90:00", 90, "01:30:00"),             # one colon is MM:SS, as Slurm reads it
    ("1:30", 2, "00:02:00"),               # 1 min 30 s rounds up
    ("0:59", 1, "00:01:00"),
    ("01:00:01", 61, "01:01:00"),          # seconds round up
    ("2-12:00:00", 3600, "2-12:00:00"),
    ("1-02:30", 1590, "1-02:30:00"),       # days-hours:minutes
    ("0-00:45:00", 45, "00:45:00"),        # a zero day is dropped
    ("1500", 1500, "1-01:00:00"),          # minutes beyond a day
    (1440, 1440, "1-00:00:00"),
    ("23:59:59", 1440, "1-00:00:00"),
])
def test_walltime_edge_cases(value, minutes, normal):
    assert walltime_minutes(value) == minutes
    assert parse_walltime(value) == normal
    assert parse_walltime(normal) == normal  # the normal form is stable
    assert walltime_minutes(normal) == minutes


@pytest.mark.parametrize("value", ["0", "00:00:00", 0, -5, "0:00"])
def test_walltime_below_a_minute_is_rejected(value):
    with pytest.raises(ValueError, match="at least 1 minute"):
        parse_walltime(value)


@pytest.mark.parametrize("value", ["", "abc", "1h", "1.5", 1.5, "1:2:3:4", "-5", "1-", "01:00:",
                                   "1--2", True, False])
def test_walltime_not_a_slurm_time(value):
    with pytest.raises(ValueError):
        walltime_minutes(value)
    with pytest.raises(ValueError):
        parse_walltime(value)


def test_walltime_boolean_is_named():
    with pytest.raises(ValueError, match="boolean"):
        walltime_minutes(True)


def test_walltime_days_hours():
    """Slurm reads 'days-hours' (1-02 = 1 day 2 hours), not minutes after the dash."""
    assert parse_walltime("1-02") == "1-02:00:00"
    assert parse_walltime("1-2:3:4") == "1-02:04:00"


# ---------------------------------------------------------------------------------------------
# jobs.core.signals and jobs.core.runtime
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def handlers():
    """The process's handlers of the four stop signals, put back after the test."""
    saved = {s: signal.getsignal(s) for s in signals.ALL}
    yield saved
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_early_stop_signals_are_remembered_not_fatal(handlers, caplog):
    stop = StopSignals().catch_early()
    assert not stop.requested and stop.signum is None
    assert signal.getsignal(signal.SIGTERM) == handlers[signal.SIGTERM]  # only USR1/USR2
    signal.raise_signal(signal.SIGUSR1)  # the handler runs before raise_signal returns
    assert stop.requested and stop.signum == signal.SIGUSR1
    signal.raise_signal(signal.SIGUSR2)
    assert stop.signum == signal.SIGUSR2
    assert not caplog.records  # quiet: logging is not configured this early
    stop.restore()  # nothing was armed: the early catcher stays (a late signal is not fatal)
    assert signal.getsignal(signal.SIGUSR1) == stop._remember


def test_armed_signals_request_a_checkpoint_and_say_so(handlers, caplog):
    stop = StopSignals().catch_early()
    signal.raise_signal(signal.SIGUSR1)
    with caplog.at_level(logging.WARNING, logger="jobs.core.signals"):
        stop.arm()  # the early signal is announced now
        assert f"SIGUSR1 (pid {os.getpid()}, before training started)" in caplog.text
        assert all(signal.getsignal(s) == stop._handle for s in signals.ALL)
        signal.raise_signal(signal.SIGTERM)
    assert stop.signum == signal.SIGTERM
    assert f"exit {exitcodes.REQUEUE}" in caplog.text
    stop.restore()  # back to what arm() replaced: the early catcher for USR1/USR2
    assert all(signal.getsignal(s) == stop._remember for s in signals.EARLY)
    assert all(signal.getsignal(s) == handlers[s] for s in set(signals.ALL) - set(signals.EARLY))


def test_restore_gives_a_library_its_own_handlers_back(handlers):
    """submitit installs its own USR2 handler: after training it must be submitit's again."""
    def library(signum, frame):
        pass

    signal.signal(signal.SIGUSR2, library)
    stop = StopSignals().arm()
    assert signal.getsignal(signal.SIGUSR2) == stop._handle
    stop.restore()
    assert signal.getsignal(signal.SIGUSR2) is library


def test_a_second_ctrl_c_stops_at_once(handlers):
    stop = StopSignals().arm()
    try:
        signal.raise_signal(signal.SIGINT)  # the first asks for a checkpoint
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        stop.restore()


@pytest.mark.parametrize("value,index", [("3", 3), ("0", 0), ("", None), ("12", 12),
                                         ("1_2", None), ("-1", None), (None, None)])
def test_array_index_from_env(monkeypatch, value, index):
    if value is None:
        unset(monkeypatch, "SLURM_ARRAY_TASK_ID")
    else:
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", value)
    assert runtime.array_index_from_env() == index


def unset(monkeypatch, name: str) -> None:
    """Remove ``name`` from the environment and have it restored (or removed) afterwards."""
    monkeypatch.setenv(name, "")
    monkeypatch.delenv(name)


@pytest.fixture
def restore_logging():
    """configure() reconfigures the root logger: put back what pytest had (within the test)."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level,
             {n: logging.getLogger(n).level for n in ("tensorflow", "absl", "h5py",
                                                        "matplotlib", "PIL")})

    def restore():
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
    return restore


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_configure_verbose(monkeypatch, restore_logging, how):
    unset(monkeypatch, "FACEGAN_VERBOSE")
    unset(monkeypatch, "TF_CPP_MIN_LOG_LEVEL")
    if how == "environment":
        monkeypatch.setenv("FACEGAN_VERBOSE", "1")
    try:
        runtime.configure(verbose=how == "argument")
        assert logging.getLogger().level == logging.DEBUG
        assert os.environ["FACEGAN_VERBOSE"] == "1"  # inherited by ranks and array tasks
        assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    finally:
        restore_logging()


def test_configure_quiet_silences_noisy_libraries(monkeypatch, restore_logging):
    unset(monkeypatch, "FACEGAN_VERBOSE")
    unset(monkeypatch, "TF_CPP_MIN_LOG_LEVEL")
    try:
        runtime.configure()
        root = logging.getLogger()
        assert root.level == logging.INFO
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
        assert "FACEGAN_VERBOSE" not in os.environ
        assert logging.getLogger("tensorflow").level == logging.ERROR
        assert logging.getLogger("h5py").level == logging.ERROR
        assert any(getattr(h, "stream", None) is sys.stderr for h in root.handlers)
    finally:
        restore_logging()


def test_configure_keeps_a_users_tf_log_level(monkeypatch, restore_logging):
    unset(monkeypatch, "FACEGAN_VERBOSE")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    try:
        runtime.configure()
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    finally:
        restore_logging()


@pytest.mark.parametrize("before, after", [("3", "1"), ("2", "1"), ("x", "1"), ("1", "1"),
                                           ("0", "0"), (None, "1")])
def test_a_gpu_job_keeps_tensorflows_warnings(monkeypatch, restore_logging, before, after):
    """A lost GPU shows only in TensorFlow's warnings: a GPU job lowers the quiet default (3)
    to warnings (1), and keeps a level that already shows them."""
    unset(monkeypatch, "TF_CPP_MIN_LOG_LEVEL")
    if before is not None:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", before)
    try:
        runtime.configure()
        runtime.show_tf_warnings()
        assert os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") == after
        assert logging.getLogger("tensorflow").level == logging.WARNING
    finally:
        restore_logging()


@pytest.mark.parametrize("tty", [True, False])
def test_progress_bars_only_on_a_terminal(monkeypatch, tty):
    class Stream:
        def isatty(self) -> bool:
            return tty
    monkeypatch.setattr(sys, "stderr", Stream())
    assert runtime.show_progress() is tty


KERAS_PROBE = """
import sys
from jobs.core import runtime
runtime.skip_keras_extras()
import tensorflow as tf
skipped = [m for m in ("sklearn", "scipy.stats", "matplotlib") if m in sys.modules]
layer = tf.keras.layers.Dense(2)
assert layer(tf.ones((1, 3))).shape == (1, 2)  # Keras itself works
import matplotlib.pyplot  # the report pages' own imports still work
from sklearn.neural_network import MLPClassifier
print("loaded by Keras:", skipped)
"""


def test_keras_is_imported_without_its_optional_helpers():
    """A job's TensorFlow import leaves out scikit-learn, SciPy's statistics and matplotlib
    (Keras's sklearn wrappers and plotting helpers), which the job's own code still imports
    when it needs them."""
    proc = subprocess.run([sys.executable, "-c", KERAS_PROBE], cwd=ROOT, env=QUIET_ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded by Keras: []" in proc.stdout, proc.stdout


def test_both_entry_points_skip_kerass_helpers_before_tensorflow():
    """``python -m jobs`` installs the finder before it imports the command line (and with it
    anything that imports TensorFlow); submitit's task, which its own entry point runs on
    the node, before it runs the job."""
    main = (ROOT / "jobs" / "__main__.py").read_text()
    assert main.index("runtime.skip_keras_extras()") < main.index("from jobs.cli import")
    task = inspect.getsource(SpecTask.__call__)
    assert task.index("runtime.skip_keras_extras()") < task.index("kinds.run(")
