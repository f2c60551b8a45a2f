"""``python -m jobs plan`` warns before a job asks for GPUs whose speed-up the gradient
averaging would eat (jobs/plan_scaling.py, with the formula of gan/scaling.py)."""
from __future__ import annotations

from jobs import plan_scaling
from jobs.core import exitcodes
from jobs.core.loader import load_spec, parse_set_args
from tests.conftest import ROOT, run_cli, set_args

CGAN = ROOT / "jobs/examples/train_cgan_faces.yaml"
MANY_SMALL = ["resources.nodes=8", "resources.tasks_per_node=4", "resources.gpus_per_node=4",
              "train.batch_size=8"]


def spec(path=CGAN, *sets: str):
    return load_spec(path, parse_set_args(list(sets)))


def test_many_gpu_ranks_with_a_tiny_batch_warn_and_name_every_knob():
    [warning] = plan_scaling.plan_warnings(spec(CGAN, *MANY_SMALL))
    assert warning.startswith("# warning: 32 GPU ranks at train.batch_size 8")
    assert "< 70%" in warning and "between nodes" in warning
    for knob in ("raise train.batch_size (", "train.horovod.compression: fp16",
                 "fewer ranks", "FACEGAN_GPU_TFLOPS"):
        assert knob in warning
    # the batch it suggests does scale
    batch = int(warning.split("raise train.batch_size (")[1].split()[0])
    eff, _, _ = plan_scaling.predict(spec(CGAN, *MANY_SMALL), plan_scaling.Layout(8, 4), batch,
                                     "none")
    assert eff >= plan_scaling.THRESHOLD


def test_specs_that_scale_do_not_warn():
    assert plan_scaling.plan_warnings(spec(CGAN)) == []  # 2 CPU ranks: not a GPU job
    # 256 images per GPU: a step long enough to hide the averaging
    assert plan_scaling.plan_warnings(spec(CGAN, *MANY_SMALL[:3], "train.batch_size=256")) == []
    # the cluster example: 4 GPUs on one node, the 128x128 DCGAN
    assert plan_scaling.plan_warnings(spec(ROOT / "jobs/examples/train_dcgan128_faces.yaml")) \
        == []
    cpu_only = [s for s in MANY_SMALL if "gpus" not in s]  # CPU ranks hide their averaging
    assert plan_scaling.plan_warnings(spec(CGAN, *cpu_only)) == []
    one_gpu = ["resources.tasks_per_node=1", "resources.gpus_per_node=1", "train.batch_size=1"]
    assert plan_scaling.plan_warnings(spec(CGAN, *one_gpu)) == []  # nothing to average


def test_fp16_is_not_suggested_twice_and_a_faster_link_silences(monkeypatch):
    [warning] = plan_scaling.plan_warnings(spec(CGAN, *MANY_SMALL,
                                                "train.horovod.compression=fp16"))
    assert "compression" not in warning.split("To scale:")[1]
    monkeypatch.setenv("FACEGAN_LINK_GBPS", "10000")   # a 10 Tb/s link
    monkeypatch.setenv("FACEGAN_GPU_TFLOPS", "0.01")   # and a slow GPU
    assert plan_scaling.plan_warnings(spec(CGAN, *MANY_SMALL)) == []


def test_sweep_points_and_pipeline_stages_are_checked(write_spec, tmp_path):
    base = write_spec(CGAN.read_text().replace("tasks_per_node: 2", "tasks_per_node: 8\n"
                                               "  gpus_per_node: 8"), "base.yaml")
    sweep = write_spec(f"""\
        kind: sweep
        name: s
        resources: {{tasks_per_node: 8, gpus_per_node: 8}}  # the sweep's apply to every point
        sweep:
          base: {base}
          run_root: {tmp_path / 'runs'}
          grid: {{train.batch_size: [1, 64]}}
        """, "sweep.yaml")
    [warning] = plan_scaling.plan_warnings(load_spec(sweep))
    assert "train.batch_size 1 " in warning and warning.endswith("[sweep point 0]")
    pipeline = write_spec(f"""\
        kind: pipeline
        name: p
        pipeline:
          preprocess: {ROOT / 'jobs/examples/preprocess_faces.yaml'}
          train: {base}
          train_set: [train.batch_size=1]
        """, "pipeline.yaml")
    assert len(plan_scaling.plan_warnings(load_spec(pipeline))) == 1
    # this environment's TensorFlow is the CPU build: once for the sweep, once for the stage
    for job in (load_spec(sweep), load_spec(pipeline)):
        [warning] = plan_scaling.device_warnings(job)
        assert warning.startswith("# warning: resources.gpus_per_node is 8, but this "
                                  "environment's TensorFlow is the CPU build"), warning


def test_a_gpu_spec_on_this_cpu_build_warns_and_a_cpu_spec_does_not():
    [warning] = plan_scaling.device_warnings(spec(CGAN, "train.device=gpu"))
    assert "train.device is gpu" in warning and "./run setup --gpu" in warning
    assert plan_scaling.device_warnings(spec(CGAN)) == []  # 2 CPU ranks, auto: the CPU
    assert plan_scaling.device_warnings(spec(CGAN, *MANY_SMALL, "train.device=cpu")) == []
    in_image = ["resources.container.runtime=apptainer", "resources.container.image=/i.sif"]
    assert plan_scaling.device_warnings(spec(CGAN, *MANY_SMALL, *in_image)) == []


def test_plan_prints_the_warning_and_still_succeeds(tmp_path):
    data = tmp_path / "faces.h5"
    data.write_bytes(b"")
    proc = run_cli("plan", str(CGAN), *set_args([f"train.data={data}",
                                                  f"train.run_dir={tmp_path / 'run'}",
                                                  *MANY_SMALL]))
    assert proc.returncode == exitcodes.OK, proc.stderr
    assert "# warning: 32 GPU ranks at train.batch_size 8" in proc.stdout
    assert "# warning: resources.gpus_per_node is 4, but this environment's TensorFlow is " \
           "the CPU build" in proc.stdout


def test_a_bad_override_is_one_warning_line_not_a_crash(monkeypatch):
    monkeypatch.setenv("FACEGAN_LINK_GBPS", "0")
    [warning] = plan_scaling.plan_warnings(spec(CGAN, *MANY_SMALL))
    assert "FACEGAN_LINK_GBPS='0' is not a positive number" in warning
