"""A GPU job never trains on the CPU without a word: which specs want a GPU, the one line a rank
stops with when it has none (or when GPU ranks would average through the host), and what each
rank logs. The refusal through the real CLI is in tests/system/test_train.py."""
from __future__ import annotations

import pytest

from gan.parallel import devices
from gan.parallel.devices import Found
from gan.parallel.distributed import World
from tests.conftest import ROOT

CPU_BUILD = Found(host="node7", tensorflow="2.18.1", cuda_version="")
CUDA_NO_GPU = Found(host="gpu3", tensorflow="2.18.1", cuda_version="12.5.1", driver="550.54.15",
                    cuda_visible="")
CUDA_TWO_GPUS = Found(host="gpu3", tensorflow="2.18.1", cuda_version="12.5.1",
                      gpus=("NVIDIA A100-SXM4-80GB (compute capability 8.0)",) * 2,
                      driver="550.54.15", cuda_visible="0,1")


@pytest.mark.parametrize("device, gpus_per_node, wants", [
    ("auto", 0, None),
    ("auto", 4, "resources.gpus_per_node is 4"),
    ("gpu", 0, "train.device is gpu"),
    ("cpu", 4, None),  # cpu wins: the user asked for it
])
def test_which_specs_must_have_a_gpu(device, gpus_per_node, wants):
    assert devices.gpu_reason(device, gpus_per_node) == wants
    assert devices.gpu_reason(device, gpus_per_node, "cpu") == wants


def test_in_the_gpu_flavour_auto_must_have_a_gpu_and_cpu_stays_the_way_out():
    """A GPU-flavour environment (./run setup --gpu) was made to train on GPUs: an ``auto``
    job that sees none stops with the one line; ``train.device: cpu`` still trains."""
    reason = devices.gpu_reason("auto", 0, "gpu")
    assert reason == devices.GPU_FLAVOUR_REASON
    line = devices.refusal(CUDA_NO_GPU, reason, 1, "", False)
    assert line.startswith("gpu3: this environment is the GPU flavour (./run setup --gpu), "
                           "but TensorFlow sees no GPU") and "train.device: cpu" in line
    assert devices.gpu_reason("cpu", 0, "gpu") is None
    assert devices.gpu_reason("auto", 2, "gpu") == "resources.gpus_per_node is 2"


def test_the_flavour_is_read_from_the_environments_own_folder(tmp_path):
    assert devices.installed_flavour(str(tmp_path)) == ""
    (tmp_path / devices.FLAVOUR_FILE).write_text("gpu\n")
    assert devices.installed_flavour(str(tmp_path)) == "gpu"


def test_run_and_the_image_write_the_flavour_where_python_reads_it():
    """One fact in three languages: ./run's FLAVOUR_FILE, the Dockerfile's and devices'."""
    assert f'FLAVOUR_FILE="$VENV/{devices.FLAVOUR_FILE}"' in (ROOT / "run").read_text()
    assert f"/opt/venv/{devices.FLAVOUR_FILE}" in (ROOT / "containers/Dockerfile").read_text()


def test_auto_takes_a_gpu_it_sees_and_a_cuda_build_without_one_trains_on_the_cpu():
    assert devices.uses_gpu("auto", None, CUDA_TWO_GPUS)
    assert not devices.uses_gpu("auto", None, CUDA_NO_GPU)  # a CPU node, a CUDA wheel
    assert devices.refusal(CUDA_NO_GPU, devices.gpu_reason("auto", 0), 1, "", False) is None
    assert not devices.uses_gpu("cpu", None, CUDA_TWO_GPUS)
    assert devices.uses_gpu("gpu", "train.device is gpu", CPU_BUILD)  # then refused


def test_ranks_take_one_decision_the_first_refusal_of_any():
    assert devices.first_refusal([None, "node2: no GPU", "node3: no GPU"]) == "node2: no GPU"
    assert devices.first_refusal([None, None]) is None


def test_a_gpu_spec_on_a_cpu_build_stops_with_one_line_naming_host_devices_and_build():
    line = devices.refusal(CPU_BUILD, "resources.gpus_per_node is 4", 1, "", False)
    assert "\n" not in line
    for part in ("node7", "resources.gpus_per_node is 4", "CUDA_VISIBLE_DEVICES=unset",
                 "TensorFlow 2.18.1 is the CPU build", "./run setup --gpu",
                 "train.device: cpu"):
        assert part in line, (part, line)


def test_a_cuda_build_without_gpus_points_at_slurm_and_the_driver():
    line = devices.refusal(CUDA_NO_GPU, "train.device is gpu", 1, "", False)
    for part in ("gpu3", "CUDA_VISIBLE_DEVICES=''", "the CUDA 12.5.1 build", "--gres=gpu:N",
                 "nvidia-smi", "550.54.15", "train.device: cpu"):
        assert part in line, (part, line)


def test_gpu_ranks_without_nccl_stop_unless_the_host_route_is_allowed():
    reason = "resources.gpus_per_node is 2"
    line = devices.refusal(CUDA_TWO_GPUS, reason, 2, "", False)
    assert "without NCCL" in line and "train.horovod.host_allreduce: true" in line
    assert devices.refusal(CUDA_TWO_GPUS, reason, 2, "", True) is None
    assert devices.refusal(CUDA_TWO_GPUS, reason, 2, "2.21.5", False) is None
    assert devices.refusal(CUDA_TWO_GPUS, reason, 1, "", False) is None  # nothing to average
    assert devices.refusal(CPU_BUILD, None, 2, "", False) is None  # a CPU job: Gloo is right


def test_each_rank_logs_its_device_driver_build_and_nccl():
    line = devices.describe(CUDA_TWO_GPUS, True, "2.21.5", 8)
    assert line == ("device: NVIDIA A100-SXM4-80GB (compute capability 8.0), NVIDIA "
                    "A100-SXM4-80GB (compute capability 8.0); driver 550.54.15; TensorFlow "
                    "2.18.1 (the CUDA 12.5.1 build); Horovod NCCL 2.21.5")
    assert devices.describe(CPU_BUILD, False, "", 1) == \
        "device: CPU; TensorFlow 2.18.1 (the CPU build)"
    assert devices.describe(CPU_BUILD, False, "", 2).endswith("; Horovod without NCCL")


@pytest.mark.parametrize("code, version", [(0, ""), (22105, "2.21.5"), (2804, "2.8.4")])
def test_nccl_version_codes_before_and_after_nccl_2_9(code, version):
    assert devices.nccl_version(code) == version
    assert World(rank=0, size=1, local_rank=0).nccl_built == 0  # no Horovod


@pytest.mark.parametrize("text, version", [
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024",
     "550.54.15"),
    ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build", 
     "580.65.06"),
])
def test_driver_version_read_where_the_driver_publishes_it(tmp_path, text, version):
    path = tmp_path / "version"
    path.write_text(text + "\nGCC version:  gcc version 12.2.0\n")
    assert devices.driver_version(path) == version
    assert devices.driver_version(tmp_path / "absent") == ""


def test_this_machine_is_what_the_probe_says():
    """The real probe on this CPU machine: TensorFlow's CPU build, no GPU, no driver."""
    found = devices.probe()
    assert found.cuda_version == "" and found.gpus == () and found.build == "the CPU build"
    assert devices.pinned_gpus() == ()
    assert devices.refusal(found, "train.device is gpu", 1, "", False).startswith(found.host)


def test_a_gpu_rank_gets_private_gpu_threads_nccl_warnings_and_a_lasting_kernel_cache(
        monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    env = devices.gpu_environment(str(tmp_path))
    assert env == {"TF_GPU_THREAD_MODE": "gpu_private", "NCCL_DEBUG": "WARN",
                   "CUDA_CACHE_PATH": str(tmp_path / ".cache" / "facegan-hpc" / "cuda"),
                   "CUDA_CACHE_MAXSIZE": str(4 * 1024 ** 3)}
    monkeypatch.setenv("XDG_CACHE_HOME", "/scratch/me/cache")
    assert devices.gpu_environment()["CUDA_CACHE_PATH"] == "/scratch/me/cache/facegan-hpc/cuda"
