"""The table of job kinds: every kind a spec can name has an entry, every entry's sbatch
script exists, and what the table says is what Slurm is asked for."""
from __future__ import annotations

from jobs import kinds
from jobs.core import exitcodes
from jobs.core.loader import load_spec, parse_set_args
from jobs.core.schema import WORK_SECTIONS
from jobs.core.stages import merge_spec
from jobs.scheduler import array_size, requeues_itself, sbatch_argv, slurm_options
from tests.conftest import ROOT, run_cli

EXAMPLES = ROOT / "jobs/examples"


def test_every_kind_a_spec_can_name_has_an_entry_and_its_script():
    # a pipeline's merge and a train spec's preflight are kinds made from another spec
    assert set(WORK_SECTIONS) | {"merge", "preflight"} == set(kinds.KINDS)
    for kind in kinds.KINDS.values():
        assert kind.sbatch == "" or (ROOT / "slurm" / kind.sbatch).is_file(), kind.name
    assert kinds.KINDS["pipeline"].sbatch == ""  # submitted as its stages (jobs/pipeline.py)


def test_the_table_decides_the_array_the_requeue_and_the_script(tmp_path):
    pre = load_spec(EXAMPLES / "preprocess_faces.yaml",
                    parse_set_args([f"preprocess.output_dir={tmp_path}"]))
    train = load_spec(EXAMPLES / "train_cgan_digits.yaml")
    assert array_size(pre) == pre.work.num_shards and array_size(train) is None
    assert requeues_itself(train) and not requeues_itself(pre)
    assert "signal" in slurm_options(train) and "signal" not in slurm_options(pre)
    assert sbatch_argv(pre)[-2].endswith("slurm/preprocess.sbatch")


def test_a_pipelines_merge_is_a_job_of_its_own_kind(tmp_path):
    pre = load_spec(EXAMPLES / "preprocess_faces.yaml",
                    parse_set_args([f"preprocess.output_dir={tmp_path}"]))
    merge = merge_spec(pre)
    assert (merge.kind, merge.name, merge.work) == ("merge", f"{pre.name}-merge", pre.work)
    assert array_size(merge) is None and not requeues_itself(merge)
    assert sbatch_argv(merge)[-2].endswith("slurm/merge.sbatch")
    assert merge.work_dir == pre.work_dir  # its logs and records beside the shards'


def test_trainings_are_what_plan_warns_about():
    train = load_spec(EXAMPLES / "train_cgan_digits.yaml")
    assert kinds.of(train).trainings(train) == [("", train)]
    pipeline = load_spec(EXAMPLES / "pipeline_demo.yaml")
    [(label, stage)] = kinds.of(pipeline).trainings(pipeline)
    assert label == "" and stage.kind == "train"
    sweep = load_spec(EXAMPLES / "sweep_cgan_lr.yaml")
    labels = [label for label, _ in kinds.of(sweep).trainings(sweep)]
    assert labels == [f"sweep point {i}" for i in range(len(labels))] and labels


def test_a_misspelt_kind_fails_loudly():
    train = load_spec(EXAMPLES / "train_cgan_digits.yaml")
    assert kinds.is_(train, "train") and not kinds.is_(train, "sweep")
    try:
        kinds.is_(train, "trian")
    except KeyError as exc:
        assert "no job kind 'trian'" in str(exc)
    else:
        raise AssertionError("a misspelt kind was accepted")


def test_a_preflight_is_the_train_spec_on_its_resources_with_logs_beside_the_run(tmp_path):
    train = load_spec(EXAMPLES / "train_cgan_faces.yaml", parse_set_args(
        [f"train.data={__file__}", f"train.run_dir={tmp_path / 'run'}",
         "resources.nodes=2", "resources.tasks_per_node=4"]))
    spec = kinds.preflight_spec(train)
    assert spec.kind == "preflight" and kinds.of(spec).horovod
    assert spec.resources.nodes == 2 and spec.resources.tasks_per_node == 4
    assert spec.resources.time == kinds.PREFLIGHT_TIME and spec.resources.max_requeues == 0
    assert spec.work_dir == f"{tmp_path / 'run'}.preflight" and spec.work.data == __file__


def test_only_a_train_spec_has_a_preflight():
    proc = run_cli("preflight", str(EXAMPLES / "preprocess_faces.yaml"))
    assert proc.returncode == exitcodes.INVALID_SPEC
    assert "preflight checks a train spec" in proc.stderr and "Traceback" not in proc.stderr
