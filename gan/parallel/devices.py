"""Which device each rank trains on, and a refusal where a GPU job would fall back to the CPU.

Asked for a GPU it cannot see (a CPU build of TensorFlow, a node without the driver, a job that
did not ask Slurm for GPUs, a CUDA/driver mismatch), TensorFlow trains on the CPU and says so
only in a warning that batch logs usually hide: hours of a GPU allocation burnt at a hundredth
of the speed. So a rank that should have a GPU and sees none stops before training (exit 3)
with one line naming the host, ``CUDA_VISIBLE_DEVICES``, the TensorFlow build and what to do.
Several GPU ranks with a Horovod built without NCCL would average every gradient through the
host (GPU -> host -> TCP -> GPU); they stop the same way unless the spec accepts that
(``train.horovod.host_allreduce``). Every rank logs what it found, so a batch log always says
which device trained.
"""
from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")  # present wherever the driver is
# ``./run setup`` writes its flavour ("cpu" or "gpu") here in its venv, the GPU image in its own
FLAVOUR_FILE = ".facegan-flavour"
GPU_FLAVOUR_REASON = "this environment is the GPU flavour (./run setup --gpu)"


@dataclass(frozen=True)
class Found:
    """What one rank's TensorFlow sees. ``cuda_version`` is empty for a CPU build."""
    host: str
    tensorflow: str
    cuda_version: str
    gpus: tuple[str, ...] = ()
    driver: str = ""
    cuda_visible: str | None = None

    @property
    def build(self) -> str:
        """How a log line names TensorFlow's build."""
        return f"the CUDA {self.cuda_version} build" if self.cuda_version else "the CPU build"


def gpu_environment(home: str | None = None) -> dict[str, str]:
    """What a GPU rank's environment holds unless the user's (or the spec's ``env:``) says
    otherwise. TensorFlow's own GPU threads (``gpu_private``) so kernel launches do not queue
    behind the input pipeline's; NCCL's warnings in the batch log; and a CUDA kernel cache
    that outlives the job: TensorFlow 2.18 ships only PTX for Hopper, so each H100 process
    compiles its kernels at start-up, at every requeue, unless they are cached somewhere
    persistent and big enough (the driver's default is 256 MiB)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path(home or Path.home()) / ".cache")
    return {"TF_GPU_THREAD_MODE": "gpu_private", "NCCL_DEBUG": "WARN",
            "CUDA_CACHE_PATH": str(Path(cache) / "facegan-hpc" / "cuda"),
            "CUDA_CACHE_MAXSIZE": str(4 << 30)}


def installed_flavour(prefix: str | None = None) -> str:
    """The flavour this Python environment was set up as ('' when ``./run`` did not make it,
    e.g. a hand-made venv)."""
    try:
        return (Path(prefix or sys.prefix) / FLAVOUR_FILE).read_text().strip()
    except OSError:
        return ""


def gpu_reason(device: str, gpus_per_node: int, flavour: str = "") -> str | None:
    """Why this job must train on a GPU (the spec field, or the environment, that says so), or
    None: then it may train on the CPU (``auto`` still takes a GPU it sees, see
    :func:`uses_gpu`). Whoever installed the GPU flavour meant to train on GPUs: there ``auto``
    without a GPU is a mistake, and ``train.device: cpu`` says otherwise on purpose."""
    if device == "cpu":
        return None
    if device == "gpu":
        return "train.device is gpu"
    if gpus_per_node > 0:
        return f"resources.gpus_per_node is {gpus_per_node}"
    return GPU_FLAVOUR_REASON if flavour == "gpu" else None


def uses_gpu(device: str, reason: str | None, found: Found) -> bool:
    """A job that must have a GPU, or an ``auto`` one where a GPU is seen (a CPU user with a
    CUDA build of TensorFlow on a CPU node trains on the CPU, as before)."""
    return reason is not None or (device == "auto" and bool(found.gpus))


def first_refusal(problems: list[str | None]) -> str | None:
    """One decision for all ranks (every rank's :func:`refusal`, gathered): if any rank must
    not train, none does, so no rank goes on alone into a collective or writes a file."""
    return next((p for p in problems if p), None)


def refusal(found: Found, reason: str | None, ranks: int, nccl: str,
            host_allreduce: bool) -> str | None:
    """The one line a rank stops with, or None when it may train. ``nccl``: the NCCL version
    Horovod was built with ('' without)."""
    if reason is None:
        return None
    if not found.gpus:
        visible = "unset" if found.cuda_visible is None else repr(found.cuda_visible)
        if found.cuda_version:
            fix = ("check that the job asked Slurm for GPUs (resources.gpus_per_node, "
                   "--gres=gpu:N), that nvidia-smi on this node lists them and that its driver "
                   f"({found.driver or 'not found'}) suits CUDA {found.cuda_version}")
        else:
            fix = "set this environment up with ./run setup --gpu (TensorFlow's CUDA build)"
        return (f"{found.host}: {reason}, but TensorFlow sees no GPU (CUDA_VISIBLE_DEVICES="
                f"{visible}; TensorFlow {found.tensorflow} is {found.build}): {fix}, or set "
                "train.device: cpu to train on the CPU")
    if ranks > 1 and not nccl and not host_allreduce:
        return (f"{found.host}: {ranks} GPU ranks, but this Horovod was built without NCCL: "
                "every gradient would travel GPU -> host -> network -> GPU. Set this "
                "environment up with ./run setup --gpu (Horovod with NCCL), or set "
                "train.horovod.host_allreduce: true to accept the host route")
    return None


class NoDevice(RuntimeError):
    """This rank must not train where it is (the message is :func:`refusal`'s line)."""


def describe(found: Found, use_gpu: bool, nccl: str, ranks: int) -> str:
    """The rank's device line for the batch log."""
    line = f"TensorFlow {found.tensorflow} ({found.build})"
    if use_gpu:
        line = (f"device: {', '.join(found.gpus) or 'no GPU'}; driver "
                f"{found.driver or 'unknown'}; {line}")
    else:
        line = f"device: CPU; {line}"
    if ranks > 1:
        line += f"; Horovod NCCL {nccl}" if nccl else "; Horovod without NCCL"
    return line


def nccl_version(code: int) -> str:
    """The NCCL version Horovod was built with, from its code (``World.nccl_built``; '' for
    0: without NCCL, or without Horovod)."""
    if not code:
        return ""
    return f"{code // 10000}.{code % 10000 // 100}.{code % 100}" if code >= 10000 else \
        f"{code // 1000}.{code % 1000 // 100}.{code % 100}"  # NCCL < 2.9 encoded 2 digits less


def driver_version(path: Path = DRIVER_VERSION_FILE) -> str:
    """The NVIDIA kernel driver's version, read where the driver publishes it ('' if none)."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9][0-9.]*)", text)
    return match.group(1) if match else ""


def tensorflow_cuda_version() -> str:
    """The CUDA version TensorFlow was built for ('' for the CPU build)."""
    import tensorflow as tf

    info = tf.sysconfig.get_build_info()
    return str(info.get("cuda_version", "")) if info.get("is_cuda_build") else ""


def probe() -> Found:
    """What this process's TensorFlow sees, by the GPUs' physical names: listing them does not
    initialise them, so a CPU job can still hide them (``distributed.init``)."""
    import tensorflow as tf

    gpus = tuple(gpu.name for gpu in tf.config.list_physical_devices("GPU"))
    return Found(host=socket.gethostname(), tensorflow=tf.__version__,
                 cuda_version=tensorflow_cuda_version(), gpus=gpus, driver=driver_version(),
                 cuda_visible=os.environ.get("CUDA_VISIBLE_DEVICES"))


def pinned_gpus() -> tuple[str, ...]:
    """The GPUs this rank kept after pinning, by name and compute capability (for its log)."""
    import tensorflow as tf

    named = []
    for gpu in tf.config.get_visible_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        named.append(details.get("device_name", gpu.name) + (
            f" (compute capability {capability[0]}.{capability[1]})" if capability else ""))
    return tuple(named)
