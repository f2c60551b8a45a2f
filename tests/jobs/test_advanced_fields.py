"""Fields almost no one sets live in their section's ``advanced:``: a spec sets them there,
the old place still loads with one warning naming the new one, a problem names the key as
the spec wrote it, and ``python -m jobs schema`` lists the others first."""
from __future__ import annotations

import logging

import pytest

from jobs.core import exitcodes
from jobs.core.fields import to_plain
from jobs.core.loader import SpecError, load_spec, parse_set_args, parse_spec
from jobs.schema_doc import counts, render
from jobs.sweep import point_spec
from tests.conftest import ROOT, run_cli

TRAIN = """\
kind: train
name: t
resources: {{{resources}}}
train:
  data: /x.h5
  run_dir: /r
{extra}"""


def spec(write_spec, extra: str = "", resources: str = ""):
    return write_spec(TRAIN.format(extra=extra, resources=resources))


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_the_shipped_examples_load_without_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        for path in sorted((ROOT / "jobs/examples").glob("*.yaml")):
            load_spec(path)
    assert warnings_of(caplog) == []


def test_an_advanced_field_loads_from_its_new_place_and_its_old_one(write_spec, caplog):
    new = load_spec(spec(write_spec, "  guard: {advanced: {d_bounds: [0.01, 3.0]}}\n"
                                     "  advanced: {jit_compile: true}\n",
                         "advanced: {signal_lead_s: 300}"))
    assert warnings_of(caplog) == []
    old = load_spec(spec(write_spec, "  guard: {d_bounds: [0.01, 3.0]}\n  jit_compile: true\n",
                         "signal_lead_s: 300"))
    assert (old.work.guard.d_bounds, old.work.jit_compile, old.resources.signal_lead_s) == \
        (new.work.guard.d_bounds, new.work.jit_compile, new.resources.signal_lead_s) == \
        ([0.01, 3.0], True, 300)
    said = warnings_of(caplog)
    assert len(said) == 3 and any(
        "train.guard.d_bounds: moved to train.guard.advanced.d_bounds; read from its old "
        "place for now" in line for line in said), said
    assert any("resources.signal_lead_s: moved to resources.advanced.signal_lead_s" in line
               for line in said), said


def test_set_and_sweep_keys_reach_either_place(write_spec, tmp_path, caplog):
    base = spec(write_spec)
    for key in ("train.guard.advanced.g_bounds", "train.guard.g_bounds"):
        loaded = load_spec(base, parse_set_args([f"{key}=[0.5,9]"]))
        assert loaded.work.guard.g_bounds == [0.5, 9.0]
    assert len(warnings_of(caplog)) == 1  # the old key only
    sweep = load_spec(write_spec(f"""\
        kind: sweep
        name: s
        sweep:
          base: {base}
          run_root: {tmp_path / 'runs'}
          grid: {{train.model.dropout: [0.1, 0.3]}}
        """, "sweep.yaml"))
    assert point_spec(sweep, 1).work.model.dropout == 0.3


@pytest.mark.parametrize("extra, words", [
    ("  guard: {d_bounds: [1, 2], advanced: {d_bounds: [1, 3]}}\n",
     "train.guard.advanced.d_bounds: also given as train.guard.d_bounds: keep one"),
    ("  guard: {advanced: {enabled: false}}\n",
     "train.guard.advanced.enabled: not an advanced field: set it as train.guard.enabled"),
    ("  guard: {advanced: {d_bound: [1, 2]}}\n",
     "train.guard.advanced.d_bound: unknown key (did you mean 'd_bounds'?)"),
    ("  guard: {advanced: [1]}\n", "train.guard.advanced: expected a mapping of"),
    ("  guard: {advanced: {d_bounds: [3, 2]}}\n",
     "train.guard.advanced.d_bounds: expected [low, high] with low < high"),
    ("  guard: {d_bounds: [3, 2]}\n",  # named where it was written
     "train.guard.d_bounds: expected [low, high] with low < high"),
])
def test_a_problem_names_the_key_as_the_spec_wrote_it(write_spec, extra, words):
    with pytest.raises(SpecError) as caught:
        load_spec(spec(write_spec, extra))
    assert any(words in p for p in caught.value.problems), caught.value.problems


def test_the_old_name_of_a_setting_loads_with_a_warning(write_spec, caplog):
    loaded = load_spec(spec(write_spec, "  mixed_precision: true\n"))
    assert loaded.work.precision == "bfloat16"
    assert warnings_of(caplog) == [
        f"{loaded.source}: train.mixed_precision: the older name of train.precision: "
        "bfloat16; set that instead"]


def test_a_runs_resolved_spec_and_a_false_old_name_load_without_a_warning(write_spec,
                                                                         caplog):
    """train_spec.yaml holds every field at the code's place (generate reads it): no
    warnings there; mixed_precision: false asks nothing of the old name."""
    loaded = load_spec(spec(write_spec, "  mixed_precision: false\n"))
    resolved = to_plain(loaded.work)
    parse_spec({"kind": "train", "name": "s", "train": resolved}, "train_spec.yaml",
               resolved=True)
    assert warnings_of(caplog) == []


def test_the_cli_warns_in_one_line_and_still_validates(write_spec):
    proc = run_cli("validate", str(spec(write_spec, "  guard: {g_bounds: [0.5, 9]}\n")))
    assert proc.returncode == exitcodes.OK, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert len(lines) == 1 and "train.guard.advanced.g_bounds" in lines[0]


def test_the_schema_shows_the_ordinary_fields_and_counts_the_advanced():
    shown, hidden = counts()
    # 151 fields before they moved, train.watchdog's 7 since (2 shown, 5 advanced),
    # train.tracking's 3 (shown) and sweep.startup_trials (advanced)
    assert shown + hidden == 162 and hidden >= 46
    plain, everything = render(everything=False), render()
    assert "train.guard.enabled" in plain and "train.guard.advanced.d_bounds" not in plain
    assert f"(and {hidden} advanced fields" in plain
    assert "train.guard.advanced.d_bounds" in everything
    proc = run_cli("schema", "--all")
    assert proc.returncode == 0 and "train.advanced.jit_compile" in proc.stdout
