"""The rules beyond the schema run once per command: the CLI checks a spec, and the runner,
``submit`` and a sweep's points trust that mark instead of checking again."""
from __future__ import annotations

import pytest

from gan import families
from jobs import cli
from jobs.core import exitcodes
from jobs.core.loader import SpecError, load_spec
from jobs.kinds import ensure_checked


@pytest.fixture
def family_checks(monkeypatch) -> list:
    """Each call of the model family's rules (a train spec's own check), recorded."""
    calls, real = [], families.problems
    monkeypatch.setattr(families, "problems", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def spec_files(write_spec, tmp_path, points: int = 3):
    train = write_spec(f"""\
        kind: train
        name: t
        train: {{data: {tmp_path / 'missing.h5'}, run_dir: {tmp_path / 'run'}}}
        """, "train.yaml")
    sweep = write_spec(f"""\
        kind: sweep
        name: s
        sweep: {{base: {train}, run_root: {tmp_path / 'runs'},
                 grid: {{train.seed: {list(range(points))}}}}}
        """, "sweep.yaml")
    return train, sweep


def test_every_command_checks_a_train_spec_once(write_spec, tmp_path, family_checks):
    train, _ = spec_files(write_spec, tmp_path)
    expected = {"validate": exitcodes.OK, "plan": exitcodes.NOT_RUNNABLE,
                "run": exitcodes.NOT_RUNNABLE}  # the data does not exist: exit 3, checked
    for command, code in expected.items():
        family_checks.clear()
        assert cli.main([command, str(train)]) == code, command
        assert len(family_checks) == 1, command


def test_a_sweep_checks_each_point_once_per_command(write_spec, tmp_path, family_checks):
    _, sweep = spec_files(write_spec, tmp_path, points=3)
    for command in ("validate", "plan", "run"):
        family_checks.clear()
        cli.main([command, str(sweep)])
        assert len(family_checks) == 3, command


def test_a_checked_spec_is_not_checked_again_and_a_bad_one_never_marked(write_spec, tmp_path,
                                                                         family_checks):
    train, _ = spec_files(write_spec, tmp_path)
    spec = load_spec(train)
    ensure_checked(spec)
    ensure_checked(spec)
    assert spec.checked and len(family_checks) == 1
    assert not load_spec(train).checked  # a spec loaded afresh (on the node) is checked again
    bad = load_spec(train, [("train.model.name", "stylegan9")])
    for _ in range(2):
        with pytest.raises(SpecError, match="unknown model 'stylegan9'"):
            ensure_checked(bad)
    assert not bad.checked
