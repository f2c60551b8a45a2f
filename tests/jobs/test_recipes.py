"""``train.recipe``: one word fills a coherent set of fields, a field the spec sets wins, the
resolved values are what the run saves, and a value the run cannot honour names the field
and the recipe it came from."""
from __future__ import annotations

import pytest
import yaml

from jobs.core.loader import SpecError, load_spec, parse_set_args, parse_spec
from jobs.core.overrides import spec_key
from jobs.core.recipes import RECIPES
from jobs.schema_doc import render

SPEC = """\
kind: train
name: r
train:
  data: {data}
  run_dir: {run}
  recipe: modern
  optimizer:
    learning_rate: 1.0e-4
  loss:
    r1_gamma: 2.0
"""


@pytest.fixture
def modern(write_spec, tmp_path):
    data = tmp_path / "faces.h5"
    data.write_bytes(b"")
    return write_spec(SPEC.format(data=data, run=tmp_path / "run"))


def value(work, dotted: str):
    for key in dotted.split("."):
        work = getattr(work, key)
    return work


def test_the_recipe_fills_what_the_spec_leaves_out_and_the_spec_wins(modern):
    work = load_spec(modern).work
    for dotted, expected in RECIPES["modern"].items():
        if dotted not in ("loss.r1_gamma", "optimizer.learning_rate"):  # the spec sets them
            assert value(work, dotted) == expected, dotted
    assert work.loss.r1_gamma == 2.0 and work.optimizer.learning_rate == 1e-4  # the spec's
    assert load_spec(modern, parse_set_args(["train.model.architecture=classic"])
                     ).work.model.architecture == "classic"  # --set (and sweeps) win too
    classic = load_spec(modern, parse_set_args(["train.recipe=classic"])).work
    assert classic.model.architecture == "classic" and classic.loss.name == "non_saturating"


def test_the_saved_spec_holds_the_resolved_values_and_reads_back_the_same(modern):
    """train_spec.yaml (what resume, generate and the sampler read) is the resolved spec."""
    spec = load_spec(modern)
    saved = yaml.safe_load(yaml.safe_dump(spec.to_dict()["train"]))
    again = parse_spec({"kind": "train", "name": "r", "train": saved}, "saved").work
    assert again == spec.work


def test_a_value_the_run_cannot_honour_names_the_field_and_the_recipe(modern, monkeypatch):
    """A problem with a field the recipe filled says so, and how to choose otherwise; one the
    spec set is the spec's alone; an unknown recipe names the choices."""
    monkeypatch.setitem(RECIPES, "modern", {**RECIPES["modern"], "schedule.kimg": 5.0,
                                            "schedule.ema_half_life_kimg": [1.0, 10.0]})
    with pytest.raises(SpecError) as info:
        load_spec(modern, parse_set_args(["train.ema.enabled=false"]))
    (problem,) = info.value.problems
    assert "train.schedule.ema_half_life_kimg: needs train.ema.enabled" in problem, problem
    assert "(the value of train.recipe: modern; set train.schedule.ema_half_life_kimg in " \
           "the spec to choose another)" in problem, problem
    with pytest.raises(SpecError) as info:
        load_spec(modern, parse_set_args(["train.loss.r1_interval=0"]))
    (problem,) = info.value.problems
    assert "train.loss.r1_interval" in problem and "train.recipe" not in problem
    with pytest.raises(SpecError) as info:
        load_spec(modern, parse_set_args(["train.recipe=modrn"]))
    (problem,) = info.value.problems
    assert "train.recipe" in problem and "'modern'" in problem, problem


def test_the_spec_reference_lists_every_recipe_field_by_field():
    text = render(markdown=True)
    table = text[text.index("#### train.recipe"):]
    for name, fields in RECIPES.items():
        assert f"{name}:" in table
        for dotted, expected in fields.items():
            row = next(line for line in table.splitlines()  # as a spec writes it
                       if line.startswith(f"| `{spec_key('train.' + dotted)}` |"))
            assert repr(expected) in row, row
