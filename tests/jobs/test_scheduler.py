"""Specs become the same Slurm allocation through sbatch options and submitit parameters."""
from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest

from jobs.core import exitcodes
from jobs.core.fields import walltime_minutes
from jobs.core.loader import load_spec, parse_set_args
from jobs.core.schema import MANAGED_SBATCH_OPTIONS
from jobs.scheduler import (
    PROJECT_ROOT,
    SLURM_DIR,
    SRUN_RANK_ARGS,
    dependency_options,
    render_plan,
    sbatch_argv,
    slurm_options,
    submitit_executor_args,
    submitit_parameters,
)
from jobs.submit import make_executor
from tests.conftest import ROOT, run_cli

EXAMPLES = ROOT / "jobs" / "examples"
TRAIN = EXAMPLES / "train_cgan_faces.yaml"          # 1 node x 2 tasks, 02:00:00, 20 requeues
PREPROCESS = EXAMPLES / "preprocess_faces.yaml"     # 3 shards, array_throttle 3
EXPORT_KEYS = {"FACEGAN_ROOT", "FACEGAN_MAX_REQUEUES", "FACEGAN_CONTAINER", "FACEGAN_PYTHON"}


@pytest.fixture
def train(tmp_path):
    data = tmp_path / "faces.h5"
    data.write_bytes(b"")

    def load(*sets: str):
        return load_spec(TRAIN, parse_set_args([f"train.data={data}",
                                                f"train.run_dir={tmp_path / 'run'}", *sets]))
    return load


@pytest.fixture
def preprocess(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()

    def load(*sets: str):
        return load_spec(PREPROCESS, parse_set_args([
            f"preprocess.input_dir={photos}", f"preprocess.output_dir={tmp_path / 'faces'}",
            *sets]))
    return load


def options_of(argv: list[str]) -> dict[str, str | None]:
    """``--key=value`` / ``--flag`` arguments of an sbatch command line (before the script)."""
    out = {}
    for arg in argv[1:]:
        if not arg.startswith("--"):
            break
        key, sep, value = arg[2:].partition("=")
        out[key] = value if sep else None
    return out


def export_items(argv: list[str]) -> dict[str, str]:
    (export,) = [a for a in argv if a.startswith("--export=")]
    first, *items = export.removeprefix("--export=").split(",")
    assert first == "ALL"
    pairs = [item.partition("=") for item in items]
    assert all(sep == "=" and key in EXPORT_KEYS for key, sep, _ in pairs), items
    return {key: value for key, _, value in pairs}


def test_train_spec_asks_to_be_signalled_and_requeued(train, tmp_path):
    spec = train("resources.signal_lead_s=300", "resources.time=90", "resources.mem_gb=1.5")
    opts = slurm_options(spec)
    assert opts["signal"] == "B:USR1@300"
    assert "requeue" in opts and opts["requeue"] is None
    assert opts["open-mode"] == "append"  # a requeued job appends to its log
    assert opts["time"] == "01:30:00"
    assert opts["mem"] == "1536M"
    assert opts["cpus-per-task"] == "1" and opts["ntasks-per-node"] == "2"
    assert opts["nodes"] == "1" and opts["job-name"] == "cgan-faces"
    assert "gres" not in opts and "array" not in opts
    assert opts["output"] == str(tmp_path / "run" / "logs" / "%x-%j.out")
    argv = sbatch_argv(spec)
    assert "--requeue" in argv and "--signal=B:USR1@300" in argv and "--time=01:30:00" in argv
    assert options_of(argv) == {**opts, "export": argv[len(opts) + 1].split("=", 1)[1]}


def test_gres_only_with_gpus_and_optional_scheduler_fields(train):
    spec = train("resources.gpus_per_node=4", "resources.partition=gpu",
                 "resources.account=proj1", "resources.qos=high", "resources.mem_gb=8")
    opts = slurm_options(spec)
    assert opts["gres"] == "gpu:4"
    assert (opts["partition"], opts["account"], opts["qos"]) == ("gpu", "proj1", "high")
    assert opts["mem"] == "8192M"
    plain = slurm_options(train())
    assert not {"gres", "partition", "account", "qos"} & set(plain)


@pytest.mark.parametrize("time,normal,minutes", [("1-00:00:00", "1-00:00:00", 1440),
                                                 ("45", "00:45:00", 45),
                                                 ("00:00:30", "00:01:00", 1)])
def test_walltime_is_normalised_and_submitit_gets_minutes(train, time, normal, minutes):
    spec = train(f"resources.time='{time}'")
    assert slurm_options(spec)["time"] == normal
    assert submitit_parameters(spec)["timeout_min"] == minutes


def test_preprocess_spec_is_a_throttled_array_without_requeue(preprocess, tmp_path):
    opts = slurm_options(preprocess())
    assert opts["array"] == "0-2%3"
    assert opts["output"] == str(tmp_path / "faces" / "logs" / "%x-%A_%a.out")
    assert not {"requeue", "signal", "open-mode"} & set(opts)
    wide = slurm_options(preprocess("preprocess.num_shards=5", "resources.array_throttle=null"))
    assert wide["array"] == "0-4"


def test_export_carries_root_and_requeue_budget_without_commas_in_values(train):
    argv = sbatch_argv(train("resources.max_requeues=7"))
    items = export_items(argv)
    assert items == {"FACEGAN_ROOT": str(PROJECT_ROOT), "FACEGAN_MAX_REQUEUES": "7"}


@pytest.mark.parametrize("runtime,image", [("docker", "facegan-hpc:test"),
                                           ("apptainer", "/images/facegan.sif")])
def test_container_export_keeps_one_value_per_variable(train, runtime, image):
    spec = train(f"resources.container.runtime={runtime}", f"resources.container.image={image}",
                 "resources.gpus_per_node=2")
    items = export_items(sbatch_argv(spec))
    assert items["FACEGAN_PYTHON"] == "python"
    command = items["FACEGAN_CONTAINER"].split()
    assert Path(command[0]).name == {"docker": "docker-task.sh", "apptainer": "apptainer"}[
        runtime] and command[-1] == image
    assert ("--nv" in command) == (runtime == "apptainer")
    assert ("--gpus" in command) == (runtime == "docker")  # the task's own, on the node
    cpu_only = train(f"resources.container.runtime={runtime}",
                     f"resources.container.image={image}", "resources.gpus_per_node=2",
                     "train.device=cpu")
    assert "--gpus" not in export_items(sbatch_argv(cpu_only))["FACEGAN_CONTAINER"].split()


def test_options_add_replace_and_remove(train):
    spec = train()
    argv = sbatch_argv(spec, options={"time": False, "partition": "debug", "hold": None,
                                      "nodes": "2"})
    opts = options_of(argv)
    assert "time" not in opts
    assert opts["partition"] == "debug" and "hold" in opts and opts["hold"] is None
    assert opts["nodes"] == "2"
    assert "--time" not in " ".join(argv)
    assert "time" in slurm_options(spec)  # the spec's own options are not changed


def test_argv_ends_with_script_spec_and_overrides(train):
    spec = train()
    argv = sbatch_argv(spec, ["train.epochs=3", "resources.partition=gpu"])
    assert argv[0] == "sbatch"
    assert argv[-6:] == [str(SLURM_DIR / "train.sbatch"), str(TRAIN.resolve()), "--set",
                         "train.epochs=3", "--set", "resources.partition=gpu"]
    other = sbatch_argv(spec, script="custom.sbatch")
    assert other[-2] == str(SLURM_DIR / "custom.sbatch")


def test_submitit_asks_for_the_same_allocation(train):
    spec = train("resources.time='1-02:30:00'", "resources.mem_gb=3", "resources.nodes=2",
                 "resources.cpus_per_task=4", "resources.partition=gpu")
    opts, params = slurm_options(spec), submitit_parameters(spec)
    assert params["timeout_min"] == walltime_minutes(opts["time"]) == (24 + 2) * 60 + 30
    assert params["nodes"] == int(opts["nodes"]) == 2
    assert params["tasks_per_node"] == int(opts["ntasks-per-node"]) == 2
    assert params["cpus_per_task"] == int(opts["cpus-per-task"]) == 4
    assert int(params["mem_gb"] * 1024) == int(opts["mem"].removesuffix("M")) == 3072
    assert params["gpus_per_node"] == 0 and "gres" not in opts
    assert params["slurm_partition"] == opts["partition"] == "gpu"
    assert params["slurm_signal_delay_s"] == int(opts["signal"].split("@")[1]) == 120
    assert params["name"] == opts["job-name"]
    args = submitit_executor_args(spec)
    assert args["slurm_max_num_timeout"] == 20  # resources.max_requeues of the example
    assert "slurm_python" not in args


def test_srun_uses_pmix_only_with_several_ranks(train, monkeypatch):
    """...and gives each rank its CPUs: srun has not inherited --cpus-per-task since 22.05."""
    assert submitit_parameters(train())["slurm_srun_args"] == [  # 1 x 2 tasks, 1 CPU each
        "--mpi=pmix", "--kill-on-bad-exit=1", "--cpus-per-task=1"]
    assert submitit_parameters(train("resources.tasks_per_node=1"))["slurm_srun_args"] == [
        "--cpus-per-task=1"]  # submitit starts even one task with srun
    two_nodes = train("resources.tasks_per_node=1", "resources.nodes=2",
                      "resources.cpus_per_task=8")
    assert submitit_parameters(two_nodes)["slurm_srun_args"] == [
        "--mpi=pmix", "--kill-on-bad-exit=1", "--cpus-per-task=8"]
    monkeypatch.setenv("FACEGAN_SRUN_MPI", "pmi2")  # the site's plugin, as common.sh takes it
    assert submitit_parameters(two_nodes)["slurm_srun_args"] == [
        "--mpi=pmi2", "--kill-on-bad-exit=1", "--cpus-per-task=8"]


def test_array_throttle_becomes_array_parallelism(preprocess):
    assert submitit_parameters(preprocess())["slurm_array_parallelism"] == 3
    unthrottled = submitit_parameters(preprocess("resources.array_throttle=null"))
    assert "slurm_array_parallelism" not in unthrottled


def test_dependency_waits_for_success_and_dies_with_its_parent(train):
    deps = dependency_options("123")
    assert deps == {"dependency": "afterok:123", "kill-on-invalid-dep": "yes"}
    opts = options_of(sbatch_argv(train(), options=deps))
    assert opts["dependency"] == "afterok:123" and opts["kill-on-invalid-dep"] == "yes"


def plan_parts(plan: str) -> tuple[list[str], dict, dict, str]:
    lines = plan.split("\n# submitit")[0].split("\n# inside the allocation")[0].split("\n", 2)
    assert lines[0] == "# sbatch (plain Slurm):"
    argv = shlex.split(lines[2].replace("\\\n", " "))
    calls = {}
    for line in plan.splitlines():
        if line.startswith(("executor = ", "executor.update_parameters(")):
            call = ast.parse(line.removeprefix("executor = ")).body[0].value
            calls[line.split("(")[0]] = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    return argv, calls["executor = submitit.AutoExecutor"], \
        calls["executor.update_parameters"], plan.splitlines()[-1]


def test_render_plan_shows_exactly_what_submit_does(train, tmp_path):
    spec = train()
    plan = render_plan(spec, ["train.epochs=3"])
    assert plan.splitlines()[1] == f"mkdir -p {tmp_path / 'run' / 'logs'}"
    argv, executor, params, last = plan_parts(plan)
    assert argv == sbatch_argv(spec, ["train.epochs=3"])
    assert executor == submitit_executor_args(spec)
    assert params == submitit_parameters(spec)
    assert last == "executor.submit(task)"


def test_render_plan_shows_how_the_ranks_start_and_one_rank_per_gpu(train):
    spec = train("resources.nodes=2", "resources.tasks_per_node=2", "resources.gpus_per_node=4")
    plan = render_plan(spec, ["train.epochs=3"]).splitlines()
    (at,) = [i for i, line in enumerate(plan) if line.startswith("# inside the allocation")]
    assert "starts 4 Horovod ranks (2 node(s) x 2)" in plan[at]
    srun = shlex.split(plan[at + 1])
    assert srun[:4] == ["srun", *SRUN_RANK_ARGS, f"--cpus-per-task={spec.resources.cpus_per_task}"]
    assert srun[-2:] == ["--set", "train.epochs=3"]
    assert srun[-5:-2] == ["jobs", "run", str(spec.source)]
    assert "4 GPUs per node but 2 ranks per node" in plan[at + 2]
    one_per_gpu = render_plan(train("resources.gpus_per_node=2"))
    assert "starts 2 Horovod ranks" in one_per_gpu and "warning" not in one_per_gpu
    assert "inside the allocation" not in render_plan(train("resources.tasks_per_node=1"))


def test_render_plan_maps_an_array(preprocess):
    spec = preprocess()
    argv, _, params, last = plan_parts(render_plan(spec))
    assert argv == sbatch_argv(spec)
    assert params == submitit_parameters(spec)
    assert last.startswith("executor.map_array(task, range(3))")


def test_unquoted_hh_mm_ss_walltime_is_not_read_as_sexagesimal(train):
    """YAML 1.1 would read an unquoted 1:30:00 as the base-60 integer 5400 (minutes!)."""
    assert slurm_options(train("resources.time=1:30:00"))["time"] == "01:30:00"
    assert slurm_options(train("resources.time=90:00"))["time"] == "01:30:00"


EXTRA = ("resources.slurm_extra={constraint: a100, mail-type: 'END,FAIL', exclusive: true, "
         "hold: false, gres: 'gpu:a100:2'}")


def test_any_other_sbatch_option_reaches_both_routes_and_plan(train):
    spec = train(EXTRA, "resources.gpus_per_node=2")
    opts = options_of(sbatch_argv(spec))
    assert opts["constraint"] == "a100" and opts["mail-type"] == "END,FAIL"
    assert "exclusive" in opts and opts["exclusive"] is None and "hold" not in opts
    assert opts["gres"] == "gpu:a100:2"  # the typed gres in place of gpu:2
    params = submitit_parameters(spec)
    assert params["slurm_additional_parameters"] == {
        "constraint": "a100", "mail-type": "END,FAIL", "exclusive": True}
    assert params["slurm_gres"] == "gpu:a100:2" and params["gpus_per_node"] == 0
    plan = render_plan(spec)
    assert "--constraint=a100" in plan and "'constraint': 'a100'" in plan
    assert "slurm_additional_parameters" not in submitit_parameters(train())


def test_every_option_the_spec_sets_itself_is_owned_by_a_field(train, preprocess):
    """What jobs/scheduler.py renders from the spec's own fields is what slurm_extra refuses."""
    rendered = set()
    for spec in (train("resources.gpus_per_node=2", "resources.partition=p",
                       "resources.account=a", "resources.qos=q"), preprocess()):
        rendered |= set(options_of(sbatch_argv(spec))) - {"export"}
    assert rendered - {"gres"} <= set(MANAGED_SBATCH_OPTIONS), rendered


@pytest.mark.parametrize("extra, says", [
    ("{time: '10:00:00'}", "resources.slurm_extra.time: --time is set by resources.time"),
    ("{requeue: true}", "--requeue is set by the job's kind"),
    ("{array: 0-3}", "--array is set by the job's kind"),
    ("{'--constraint': a100}", "long name without '--'"),
    ("{gres: 'gpu:a100:4'}", "asks for 4 GPU(s) per node but resources.gpus_per_node is 0"),
])
def test_an_option_the_spec_owns_elsewhere_is_refused_naming_its_field(write_spec, tmp_path,
                                                                       extra, says):
    spec = write_spec(f"""\
        kind: train
        name: t
        resources: {{slurm_extra: {extra}}}
        train: {{data: {tmp_path / 'x.h5'}, run_dir: {tmp_path / 'run'}}}
        """)
    proc = run_cli("validate", str(spec))
    assert proc.returncode == exitcodes.INVALID_SPEC and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_chained_job_keeps_its_extra_options_beside_the_dependency(train):
    spec = train("resources.slurm_extra={constraint: a100}")
    params = make_executor(spec, "slurm", after="123")._executor.parameters
    assert params["additional_parameters"]["constraint"] == "a100"
    assert params["additional_parameters"]["dependency"] == "afterok:123"
