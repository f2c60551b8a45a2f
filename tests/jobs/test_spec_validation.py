"""The job-spec schema: strict keys, types, ranges, overrides, secrets, sweeps."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from jobs import cli
from jobs.core import exitcodes
from jobs.core.fields import parse_walltime, walltime_minutes
from jobs.core.loader import SpecError, check_paths, load_spec, parse_set_args
from jobs.core.schema import JobSpec
from jobs.kinds import deep_problems
from jobs.sweep import expand_points, point_name, point_spec, validate_points
from tests.conftest import ROOT

TRAIN = """\
kind: train
name: t1
train:
  data: {data}
  run_dir: {run}
  optimizer:
    learning_rate: 1e-4
"""


@pytest.fixture
def train_spec(write_spec, tmp_path):
    data = tmp_path / "faces.h5"
    data.write_bytes(b"")
    return write_spec(TRAIN.format(data=data, run=tmp_path / "run"))


def problems_of(path: Path, overrides=()) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides)
    return info.value.problems


def test_valid_spec_gets_defaults_and_yaml12_floats(train_spec):
    spec = load_spec(train_spec)
    assert isinstance(spec, JobSpec) and spec.kind == "train"
    assert spec.work.optimizer.learning_rate == pytest.approx(1e-4)  # "1e-4" is a float
    assert spec.work.optimizer.name == "adamax" and spec.work.epochs == 100
    assert spec.resources.time == "01:00:00"


def test_misspelt_key_names_file_key_and_nearest(write_spec, tmp_path):
    path = write_spec(TRAIN.format(data=tmp_path, run=tmp_path).replace("learning_rate",
                                                                         "lerning_rate"))
    (problem,) = problems_of(path)
    assert str(path) in problem
    assert "train.optimizer.lerning_rate" in problem
    assert "did you mean 'learning_rate'" in problem
    assert "Allowed keys: name, learning_rate" in problem


def test_all_problems_reported_at_once_with_field_names(write_spec, tmp_path):
    path = write_spec(f"""\
        kind: train
        name: bad
        resources: {{mem_gb: -2, time: "soon", nodes: 1.5}}
        train:
          data: {tmp_path}
          run_dir: {tmp_path}
          epochs: "ten"
          deterministic: 1
          optimizer: {{name: adamw}}
        """)
    text = "\n".join(problems_of(path))
    assert "resources.mem_gb: -2.0 is out of range: must be > 0" in text
    assert "resources.time: 'soon' is not a Slurm time" in text
    assert "resources.nodes: expected an integer, got 1.5" in text
    assert "train.epochs: expected an integer, got 'ten'" in text
    assert "train.deterministic: expected true/false, got 1" in text
    assert "train.optimizer.name: 'adamw' is not allowed (did you mean 'adam'?)" in text


def test_missing_required_and_unknown_kind(write_spec):
    assert "train.data: required key is missing" in "\n".join(
        problems_of(write_spec("kind: train\nname: x\ntrain: {run_dir: /tmp}\n")))
    (problem,) = problems_of(write_spec("kind: trian\nname: x\n"))
    assert "did you mean 'train'" in problem


def test_section_of_another_kind_is_rejected(write_spec, tmp_path):
    text = TRAIN.format(data=tmp_path, run=tmp_path) + "preprocess: {num_shards: 2}\n"
    (problem,) = problems_of(write_spec(text))
    assert "'preprocess:' is the section of kind preprocess" in problem


def test_duplicate_keys_and_unsafe_yaml_are_errors(write_spec, tmp_path):
    dup = write_spec(TRAIN.format(data=tmp_path, run=tmp_path) + "  epochs: 3\n  epochs: 4\n")
    assert "duplicate key 'epochs'" in problems_of(dup)[0]
    unsafe = write_spec("kind: !!python/object/apply:os.system ['touch /tmp/pwned']\n")
    assert "not valid YAML" in problems_of(unsafe)[0]


def test_set_overrides_are_typed_and_validated(train_spec):
    spec = load_spec(train_spec, parse_set_args(["train.epochs=7", "resources.time=90",
                                                 "train.model.generator_filters=[64, 32]"]))
    assert spec.work.epochs == 7 and spec.resources.time == "01:30:00"
    assert spec.work.model.generator_filters == [64, 32]
    (problem,) = problems_of(train_spec, parse_set_args(["train.epochz=7"]))
    assert "train.epochz" in problem and "did you mean 'epochs'" in problem
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        parse_set_args(["train.epochs"])


def test_cross_field_rules(train_spec):
    (problem,) = problems_of(train_spec, parse_set_args(["train.model.image_size=60"]))
    assert "train.model.image_size" in problem and "multiple of 2**3" in problem
    (problem,) = problems_of(train_spec,
                             parse_set_args(["train.latent.class_probabilities=[0.5, 0.4]"]))
    assert "sum to 1" in problem
    (problem,) = problems_of(train_spec, parse_set_args(["train.checkpoint.keep_best=kid"]))
    assert "train.checkpoint.keep_best" in problem and "train.metrics.every_epochs" in problem


def test_precision_and_its_older_alias(train_spec):
    assert load_spec(train_spec).work.precision == "float32"
    spec = load_spec(train_spec, parse_set_args(["train.mixed_precision=true"]))
    assert spec.work.precision == "bfloat16"  # the alias resolves in the loader, once
    assert load_spec(train_spec, parse_set_args(
        ["train.precision=float16"])).work.precision == "float16"
    (problem,) = problems_of(train_spec, parse_set_args(["train.mixed_precision=true",
                                                         "train.precision=float16"]))
    assert "train.mixed_precision" in problem and "set train.precision alone" in problem
    (problem,) = problems_of(train_spec, parse_set_args(["train.precision=fp8"]))
    assert "train.precision" in problem and "float16" in problem


def test_inception_weights_are_checked_before_anything_runs(train_spec, tmp_path):
    """Named field, exit 2 material: no weights file, no checksum, or the wrong file."""
    weights, sha_key = tmp_path / "inception.h5", "train.metrics.inception.sha256="
    (problem,) = deep_problems(load_spec(train_spec, parse_set_args(
        [f"train.metrics.inception.weights={weights}", sha_key + "a" * 64])))
    assert "train.metrics.inception.weights" in problem and "does not exist" in problem
    weights.write_bytes(b"not the weights")
    (problem,) = problems_of(train_spec, parse_set_args(
        [f"train.metrics.inception.weights={weights}"]))
    assert "train.metrics.inception" in problem and "sha256" in problem
    (problem,) = problems_of(train_spec, parse_set_args(["train.metrics.inception.sha256=xyz"]))
    assert "64 hexadecimal digits" in problem
    spec = load_spec(train_spec, parse_set_args(
        [f"train.metrics.inception.weights={weights}", sha_key + "A" * 64]))
    (problem,) = deep_problems(spec)
    assert "train.metrics.inception.weights" in problem and "different or damaged" in problem
    good = hashlib.sha256(b"not the weights").hexdigest()
    assert deep_problems(load_spec(train_spec, parse_set_args(
        [f"train.metrics.inception.weights={weights}",
         f"train.metrics.inception.sha256={good}"]))) == []


def fake_run(folder: Path, model: str = "cgan", checkpoints=(3, 7), best: bool = False) -> Path:
    """A run directory's files as the spec checks see them (no TensorFlow needed)."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "train_spec.yaml").write_text(f"model: {{name: {model}}}\n")
    if checkpoints:
        (folder / "checkpoints" / "checkpoint").write_text(
            f'model_checkpoint_path: "ckpt-{checkpoints[-1]}"\n')
    for n in checkpoints:
        (folder / "checkpoints" / f"ckpt-{n}.index").write_bytes(b"")
    if best:
        (folder / "best").mkdir()
        (folder / "best" / "best.json").write_text("{}")
    return folder


def test_init_from_is_checked_before_anything_runs(train_spec, tmp_path, monkeypatch):
    """Exit 2 naming train.init_from and the path: no such run, no checkpoint, no ckpt-N,
    no best, another family, a bad suffix; nothing is read once the run has its own."""
    source = fake_run(tmp_path / "a")
    monkeypatch.chdir(tmp_path)

    def problems(value: str, *sets: str) -> list[str]:
        return deep_problems(load_spec(train_spec, parse_set_args(
            [f"train.init_from={value}", *sets])))

    fake_run(tmp_path / "b", best=True)
    assert problems("a") == problems(f"{source}:ckpt-7") == problems("b:best") == []
    assert load_spec(train_spec, parse_set_args(["train.init_from=a"])).work.init_from == \
        f"{source}:latest"  # absolute, as every path field
    for value, words in [("gone", ["'" + str(tmp_path / "gone") + "' does not exist"]),
                         ("a:ckpt-5", [f"{source} has no ckpt-5", "keeps ckpt-3, ckpt-7"]),
                         ("a:best", [f"{source} has no best/best.json", "keep_best"])]:
        (problem,) = problems(value)
        assert "train.init_from: " in problem and all(w in problem for w in words), problem
    (problem,) = problems("a", "train.model.name=dcgan")
    assert "train.init_from" in problem and "trained train.model.name cgan" in problem
    (problem,) = problems(str(fake_run(tmp_path / "empty", checkpoints=())))
    assert "train.init_from" in problem and "holds no checkpoint" in problem
    (problem,) = problems_of(train_spec, parse_set_args(["train.init_from=a:newest"]))
    assert "train.init_from" in problem and "unknown checkpoint suffix 'newest'" in problem
    fake_run(tmp_path / "run")  # the run has a checkpoint of its own: it resumes from it
    assert problems("gone") == []
    bad = tmp_path / "bad.yaml"
    bad.write_text(TRAIN.format(data=tmp_path / "faces.h5", run=tmp_path / "new").replace(
        "  run_dir:", "  init_from: gone\n  run_dir:"))
    assert cli.main(["validate", str(bad)]) == exitcodes.INVALID_SPEC


def test_freeze_d_counts_ds_blocks(train_spec):
    assert load_spec(train_spec, parse_set_args(["train.freeze_d=3"])).work.freeze_d == 3
    for value, words in [("4", "more than D's 3 blocks"), ("-1", "must be >= 0")]:
        (problem,) = problems_of(train_spec, parse_set_args([f"train.freeze_d={value}"]))
        assert "train.freeze_d" in problem and words in problem, problem


def test_schedules_name_each_field_they_cannot_honour(train_spec):
    """train.schedule: [start, end] pairs in range, a length, and the fields each sets."""
    ok = load_spec(train_spec, parse_set_args([
        "train.schedule.kimg=5", "train.schedule.learning_rate=[2.0e-4, 5.0e-5]",
        "train.schedule.beta_2=[0.9, 0.99]"])).work.schedule
    assert ok.learning_rate == [2e-4, 5e-5] and ok.beta_2 == [0.9, 0.99]
    for sets, field, words in [
        (["train.schedule.beta_2=[0.9, 0.99]"], "train.schedule.kimg", "must be above 0"),
        (["train.schedule.kimg=1", "train.schedule.beta_2=[0.9, 1.0]"],
         "train.schedule.beta_2", "in [0, 1)"),
        (["train.schedule.kimg=1", "train.schedule.learning_rate=[0.001]"],
         "train.schedule.learning_rate", "expected [start, end], two numbers"),
        (["train.schedule.kimg=1", "train.schedule.gamma=[2.0, 0.2]"],
         "train.schedule.gamma", "needs train.loss.r1_gamma or r2_gamma above 0"),
        (["train.schedule.kimg=1", "train.schedule.ema_half_life_kimg=[0, 10]"],
         "train.schedule.ema_half_life_kimg", "needs train.ema.enabled"),
        (["train.schedule.kimg=1", "train.schedule.augment_probability=[0, 0.2]",
          "train.augment.policy=[translation]", "train.augment.adaptive=true"],
         "train.schedule.augment_probability", "ADA sets the probability itself"),
    ]:
        (problem,) = problems_of(train_spec, parse_set_args(sets))
        assert problem.startswith(f"{field}:") or f" {field}:" in problem, problem
        assert words in problem, problem


def test_precision_recall_fields_are_typed_ranged_and_need_enough_images(train_spec,
                                                                          write_spec, tmp_path):
    """Each of the four fields named; k-NN balls need more than 2k images (two halves of the
    real ones are the yardstick)."""
    text = "\n".join(problems_of(train_spec, parse_set_args(
        ["train.metrics.precision_recall=often", "train.metrics.nearest_k=0"])))
    assert "train.metrics.precision_recall: expected true/false, got 'often'" in text
    assert "train.metrics.nearest_k: 0 is out of range: must be >= 1" in text
    generate = write_spec(f"""\
        kind: generate
        name: g
        generate: {{run_dir: {tmp_path}, output_dir: {tmp_path / 'out'}, task: metrics}}
        """, "generate.yaml")
    text = "\n".join(problems_of(generate, parse_set_args(
        ["generate.precision_recall=1", "generate.nearest_k=-1"])))
    assert "generate.precision_recall: expected true/false, got 1" in text
    assert "generate.nearest_k: -1 is out of range: must be >= 1" in text
    (problem,) = problems_of(generate, parse_set_args(
        ["generate.precision_recall=true", "generate.nearest_k=20", "generate.count=40"]))
    assert "generate.nearest_k: 20 needs generate.count above 40 (it is 40)" in problem
    (problem,) = problems_of(train_spec, parse_set_args(
        ["train.metrics.precision_recall=true", "train.metrics.count=20",
         "train.metrics.nearest_k=10"]))
    assert "train.metrics.nearest_k: 10 needs train.metrics.count above 20" in problem
    assert load_spec(generate, parse_set_args(["generate.precision_recall=true",
                                               "generate.count=11"])).work.nearest_k == 5


def test_horovod_ranks_inside_docker_are_refused_apptainer_and_one_rank_are_not(train_spec):
    """Ranks srun starts inside Docker cannot join one world (exit 2 before submitting)."""
    def problems(*sets: str) -> list[str]:
        return deep_problems(load_spec(train_spec, parse_set_args(
            ["resources.container.image=facegan-hpc:gpu", *sets])))

    (problem,) = problems("resources.container.runtime=docker", "resources.tasks_per_node=4",
                          "resources.gpus_per_node=4")
    assert "resources.container.runtime is docker with 4 Horovod ranks" in problem
    assert "resources.container.runtime: apptainer" in problem
    (problem,) = problems("resources.container.runtime=docker", "resources.nodes=2")
    assert "with 2 Horovod ranks" in problem
    assert problems("resources.container.runtime=docker") == []  # one rank
    assert problems("resources.container.runtime=apptainer", "resources.nodes=2") == []


def test_a_docker_sweep_with_ranks_is_refused_once_naming_the_sweep(write_spec, train_spec,
                                                                   tmp_path):
    sweep = write_spec(f"""\
        kind: sweep
        name: s
        resources: {{tasks_per_node: 2, container: {{runtime: docker, image: img}}}}
        sweep: {{base: {train_spec}, run_root: {tmp_path / 'runs'},
                 grid: {{train.batch_size: [8, 16, 32]}}}}
        """, "sweep.yaml")
    (problem,) = deep_problems(load_spec(sweep))
    assert problem.startswith(f"{sweep}: resources.container.runtime is docker with 2 ")


def test_generate_checkpoint_is_a_number_or_best(write_spec, tmp_path):
    text = f"""\
        kind: generate
        name: g
        generate: {{run_dir: {tmp_path}, output_dir: {tmp_path / 'out'}, checkpoint: %s}}
        """
    assert load_spec(write_spec(text % "best")).work.checkpoint == "best"
    assert load_spec(write_spec(text % "12")).work.checkpoint == 12
    for bad in ("-1", "latest", "true"):
        (problem,) = problems_of(write_spec(text % bad))
        assert "generate.checkpoint" in problem and "'best'" in problem


def test_class_rules_check_attribute_names(write_spec, tmp_path):
    path = write_spec(f"""\
        kind: preprocess
        name: p
        preprocess:
          input_dir: {tmp_path}
          output_dir: {tmp_path}/out
          classes:
            - {{name: smile, all: [Smilng]}}
        """)
    (problem,) = problems_of(path)
    assert "preprocess.classes[0].all" in problem and "did you mean 'Smiling'" in problem


def test_paths_are_absolute_and_checked_at_plan_time(write_spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_spec(TRAIN.format(data="missing.h5", run="runs/r"))
    spec = load_spec(path)  # validation alone does not need the data
    assert spec.work.data == str(tmp_path / "missing.h5")
    assert spec.work.run_dir == str(tmp_path / "runs" / "r")
    (problem,) = check_paths(spec)
    assert "train.data" in problem and "does not exist" in problem


def test_secrets_are_redacted(write_spec, tmp_path):
    path = write_spec(TRAIN.format(data=tmp_path, run=tmp_path)
                      + "env:\n  WANDB_API_KEY: s3cr3t\n  OMP_NUM_THREADS: '2'\n")
    spec = load_spec(path)
    shown = spec.to_dict(redact=True)
    assert shown["env"] == {"WANDB_API_KEY": "***", "OMP_NUM_THREADS": "2"}
    assert spec.env["WANDB_API_KEY"] == "s3cr3t"  # the job itself still gets it


@pytest.mark.parametrize("text,minutes,normal", [
    ("90", 90, "01:30:00"), ("30:00", 30, "00:30:00"), ("02:00:00", 120, "02:00:00"),
    ("1-00:00:00", 1440, "1-00:00:00"), ("00:00:30", 1, "00:01:00"), (45, 45, "00:45:00")])
def test_walltime_formats(text, minutes, normal):
    assert walltime_minutes(text) == minutes
    assert parse_walltime(text) == normal


def test_sweep_points_named_validated_and_typo_reported(write_spec, train_spec, tmp_path):
    sweep = write_spec(f"""\
        kind: sweep
        name: s
        resources: {{array_throttle: 2}}
        sweep:
          base: {train_spec}
          run_root: {tmp_path}/sweep
          grid:
            train.optimizer.learning_rate: [1.0e-4, 2.0e-4]
            train.batch_size: [32, 64]
          points:
            - {{train.seed: 5}}
        """, "sweep.yaml")
    spec = load_spec(sweep)
    points = expand_points(spec.work)
    assert len(points) == 5 and points[4] == {"train.seed": 5}
    third = point_spec(spec, 2)
    assert third.work.optimizer.learning_rate == pytest.approx(2e-4)
    assert third.work.batch_size == 32
    assert third.work.run_dir == str(tmp_path / "sweep" / point_name(points[2]))
    assert third.resources.array_throttle == 2
    assert len({point_name(p) for p in points}) == 5
    assert validate_points(spec) == []
    bad = load_spec(sweep, parse_set_args(["sweep.points=[{train.sed: 5}]"]))
    (problem,) = validate_points(bad)
    assert "train.sed" in problem and "did you mean 'seed'" in problem and "point 4" in problem


def test_example_specs_validate():
    examples = sorted((ROOT / "jobs" / "examples").glob("*.yaml"))
    assert {load_spec(p).kind for p in examples} == {"preprocess", "train", "sweep", "generate",
                                                     "pipeline"}
