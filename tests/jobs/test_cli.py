"""``python -m jobs`` as a user runs it: exit codes, messages, plans."""
from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from jobs.core import exitcodes
from jobs.core.loader import load_spec
from jobs.scheduler import sbatch_argv, submitit_parameters
from jobs.schema_doc import render
from tests.conftest import ROOT, run_cli

EXAMPLES = sorted(str(p) for p in (ROOT / "jobs" / "examples").glob("*.yaml"))


def test_validate_examples_ok():
    proc = run_cli("validate", *EXAMPLES)
    assert proc.returncode == exitcodes.OK, proc.stderr
    assert proc.stdout.count("ok: ") == len(EXAMPLES)


def test_validate_typo_exits_2_and_names_file_key_and_suggestion(write_spec, tmp_path):
    text = (ROOT / "jobs/examples/train_cgan_faces.yaml").read_text()
    path = write_spec(text.replace("learning_rate:", "lerning_rate:"))
    proc = run_cli("validate", str(path))
    assert proc.returncode == exitcodes.INVALID_SPEC
    assert str(path) in proc.stderr
    assert "lerning_rate" in proc.stderr and "did you mean 'learning_rate'" in proc.stderr


def test_bad_precision_recall_fields_exit_2_naming_each(tmp_path):
    proc = run_cli("validate", str(ROOT / "jobs/examples/generate_metrics.yaml"),
                   "--set", "generate.precision_recall=often", "--set", "generate.nearest_k=0")
    assert proc.returncode == exitcodes.INVALID_SPEC, proc.stderr
    assert "generate.precision_recall: expected true/false, got 'often'" in proc.stderr
    assert "generate.nearest_k: 0 is out of range" in proc.stderr
    proc = run_cli("validate", str(ROOT / "jobs/examples/train_demo_faces.yaml"),
                   "--set", "train.metrics.precision_recall=true",
                   "--set", "train.metrics.nearest_k=100")
    assert proc.returncode == exitcodes.INVALID_SPEC, proc.stderr
    assert "train.metrics.nearest_k: 100 needs train.metrics.count above 200" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_inception_weights_stop_run_before_training_exit_2(tmp_path):
    """Never a download, never a traceback: the field and the file are named, nothing runs."""
    missing = tmp_path / "inception_notop.h5"
    proc = run_cli("run", str(ROOT / "jobs/examples/train_dcgan_digits.yaml"),
                   "--set", f"train.run_dir={tmp_path / 'run'}",
                   "--set", "train.metrics.every_epochs=1",
                   "--set", f"train.metrics.inception.weights={missing}",
                   "--set", "train.metrics.inception.sha256=" + "0" * 64)
    assert proc.returncode == exitcodes.INVALID_SPEC, proc.stderr
    assert f"train.metrics.inception.weights: {missing} does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def hostile_specs(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files a spec loader meets in the wild, each with the message that must name it."""
    folder.mkdir()
    good = (ROOT / "jobs/examples/train_cgan_digits.yaml").read_text()
    latin1 = folder / "latin1.yaml"
    latin1.write_bytes(good.replace("cgan", "cg\u00e4n", 1).encode("latin-1"))
    (folder / "a-directory.yaml").mkdir()
    huge = folder / "huge.yaml"
    huge.write_text(good + "#" * (50 << 20) + "\n")
    bomb, prev = ['lol: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'], "l0"
    for level in range(1, 9):
        bomb.append(f"l{level}: &l{level} [{', '.join([f'*{prev}'] * 9)}]")
        prev = f"l{level}"
    (folder / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    (folder / "deep.yaml").write_text("kind: " + "[" * 50000 + "]" * 50000 + "\n")
    line = good[:good.index("cgan")].count("\n") + 1
    return {"latin1": (latin1, f"line {line}: not UTF-8 text (byte 0xe4"),
            "directory": (folder / "a-directory.yaml", "cannot read: Is a directory"),
            "huge": (huge, "larger than 1 MiB"),
            "bomb": (folder / "bomb.yaml", "holds more than 100000 values once its aliases"),
            "deep": (folder / "deep.yaml", "nested too deeply")}


def test_hostile_spec_files_exit_2_with_the_file_named_and_no_traceback(tmp_path):
    """Not UTF-8, a directory, 50 MB, a billion laughs, 50000 nested lists: one clear line
    each, and the good spec after them is still validated."""
    cases = hostile_specs(tmp_path / "specs")
    good = ROOT / "jobs/examples/train_cgan_digits.yaml"
    proc = run_cli("validate", *[str(path) for path, _ in cases.values()], str(good))
    assert proc.returncode == exitcodes.INVALID_SPEC
    assert "Traceback" not in proc.stderr and f"ok: {good}" in proc.stdout
    for name, (path, message) in cases.items():
        assert f"{path}: {message}" in proc.stderr, (name, proc.stderr[-2000:])


def test_validate_bad_type_names_field(write_spec):
    text = (ROOT / "jobs/examples/train_cgan_faces.yaml").read_text()
    path = write_spec(text.replace("epochs: 100", "epochs: many"))
    proc = run_cli("validate", str(path))
    assert proc.returncode == exitcodes.INVALID_SPEC
    assert "train.epochs: expected an integer, got 'many'" in proc.stderr


def test_plan_prints_resolved_spec_and_exact_submission(write_spec, tmp_path):
    data = tmp_path / "faces.h5"
    data.write_bytes(b"")
    text = (ROOT / "jobs/examples/train_cgan_faces.yaml").read_text()
    text = text.replace("runs/demo/faces/faces.h5", str(data)).replace("runs/demo/cgan",
                                                                        str(tmp_path / "run"))
    path = write_spec(text + "env:\n  HF_TOKEN: hunter2\n")
    proc = run_cli("plan", str(path), "--set", "resources.partition=gpu", "--set",
                   "train.epochs=3")
    assert proc.returncode == exitcodes.OK, proc.stderr
    assert "hunter2" not in proc.stdout + proc.stderr
    resolved = yaml.safe_load(proc.stdout.split("\n# sbatch")[0])
    assert resolved["train"]["epochs"] == 3 and resolved["env"]["HF_TOKEN"] == "***"
    block = proc.stdout.split("# sbatch (plain Slurm):\n")[1].split("\n\n")[0]
    block, ranks = block.split("\n# inside the allocation")  # and how its 2 ranks start
    assert "srun --mpi=pmix --kill-on-bad-exit=1" in ranks
    mkdir, sbatch = block.split("\n", 1)
    assert mkdir == f"mkdir -p {tmp_path / 'run' / 'logs'}"  # sbatch needs the log folder
    argv = shlex.split(sbatch.replace("\\\n", " "))
    assert argv[0] == "sbatch" and "--partition=gpu" in argv and "--requeue" in argv
    assert "--signal=B:USR1@120" in argv and "--ntasks-per-node=2" in argv
    assert argv[-6:] == [str(ROOT / "slurm/train.sbatch"), str(path), "--set",
                         "resources.partition=gpu", "--set", "train.epochs=3"]
    assert "executor.update_parameters(" in proc.stdout and "slurm_partition='gpu'" in \
        proc.stdout


def test_plan_with_missing_input_exits_3():
    proc = run_cli("plan", str(ROOT / "jobs/examples/generate_grid.yaml"), "--set",
                   "generate.run_dir=/nonexistent/run")
    assert proc.returncode == exitcodes.NOT_RUNNABLE
    assert "generate.run_dir: '/nonexistent/run' does not exist" in proc.stderr


def test_array_jobs_plan_one_array_with_throttle():
    spec = load_spec(ROOT / "jobs/examples/preprocess_faces.yaml")
    argv = sbatch_argv(spec)
    assert "--array=0-2%3" in argv
    assert any(a.startswith("--output=") and a.endswith("%x-%A_%a.out") for a in argv)
    assert "--requeue" not in argv  # preprocessing shards are simply rerun, not requeued
    sweep = load_spec(ROOT / "jobs/examples/sweep_cgan_lr.yaml")
    assert "--array=0-3%2" in sbatch_argv(sweep)
    assert submitit_parameters(sweep)["slurm_array_parallelism"] == 2


def test_run_merge_takes_only_a_preprocess_spec():
    train = ROOT / "jobs/examples/train_dcgan_digits.yaml"
    proc = run_cli("run", str(train), "--merge")
    assert proc.returncode == exitcodes.INVALID_SPEC and "Traceback" not in proc.stderr
    assert f"{train} is a 'train' spec; --merge merges a preprocess spec's shards" in \
        proc.stderr, proc.stderr


def test_help_lists_commands_and_exit_codes():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for word in ("validate", "plan", "run", "submit", "status", "75", "requeue"):
        assert word in proc.stdout


def test_the_spec_reference_is_current():
    reference = (ROOT / "docs/spec-reference.md").read_text()
    assert render(markdown=True) in reference, (
        "docs/spec-reference.md is stale: python -m jobs schema --update "
        "docs/spec-reference.md")


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    commands = [line for line in first_block.splitlines()[1:] if line.strip()]
    assert commands == ["./run demo", "./run test"]
    ci = (ROOT / ".ci/run").read_text()
    assert "./run test" in ci and Path(ROOT / "run").stat().st_mode & 0o111
