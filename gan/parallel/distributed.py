"""Horovod glue that works with Keras 3.

Keras 3 variables are not ``tf.Variable`` objects, and ``horovod.tensorflow.keras`` silently
never allreduces with Keras 3 (ranks diverge without an error). So the suite only uses the
low-level API — ``DistributedGradientTape`` and ``broadcast_variables`` — and hands Horovod the
``tf.Variable`` behind each Keras variable (:func:`tf_variables`).

Horovod ignores Slurm's environment: ``srun`` with a Gloo-only build would start N independent
rank-0 processes. :func:`init` therefore checks ``hvd.size()`` against what the launcher asked
for and refuses to run a silently un-distributed job.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jobs.core import events

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """Where this process sits in the job, and its collectives. ``hvd`` is None for a plain
    single process: then each collective is what it means for one rank (a sum or a mean of
    one value is that value, a gather is the rank's own), so no code outside this module
    asks whether Horovod is there. Every rank must call a collective, with the same name."""
    rank: int
    size: int
    local_rank: int
    hvd: Any = None

    @property
    def is_chief(self) -> bool:
        """Only the chief (rank 0) writes files and logs progress."""
        return self.rank == 0

    @property
    def build(self) -> str:
        """What carries this process's collectives, for the preflight's report: "one
        process", or Horovod and the transports it was built with ("Horovod NCCL+MPI+Gloo"),
        since a Horovod built without NCCL still runs on GPUs, only slower. Here, so that no
        code outside this module reads the Horovod object."""
        if self.hvd is None:
            return "one process"
        built = [name for name, test in (("NCCL", self.hvd.nccl_built),
                                         ("MPI", self.hvd.mpi_built),
                                         ("Gloo", self.hvd.gloo_built)) if test()]
        return "Horovod " + "+".join(built)

    @property
    def nccl_built(self) -> int:
        """Horovod's NCCL code (0 without NCCL, or without Horovod)."""
        return 0 if self.hvd is None else int(self.hvd.nccl_built())

    def sum(self, value: Any, name: str) -> Any:
        """The tensor summed over the ranks (in a ``tf.function`` too)."""
        return value if self.hvd is None else \
            self.hvd.allreduce(value, op=self.hvd.Sum, name=name)

    def mean(self, value: Any, name: str) -> Any:
        return value if self.hvd is None else \
            self.hvd.allreduce(value, op=self.hvd.Average, name=name)

    def gather(self, value: Any, name: str) -> Any:
        """Every rank's tensor, concatenated along the first axis in rank order."""
        return value if self.hvd is None else self.hvd.allgather(value, name=name)

    def gather_object(self, obj: Any, name: str) -> list:
        """Every rank's (picklable) object, in rank order."""
        return [obj] if self.hvd is None else self.hvd.allgather_object(obj, name=name)

    def barrier(self, name: str = "barrier") -> None:
        """Ranks wait here for each other (e.g. for rank 0 to finish a checkpoint)."""
        if self.hvd is not None:
            import tensorflow as tf  # as everywhere in this module: only once training

            self.hvd.allreduce(tf.constant(0.0), name=name)


def expected_world_size() -> int | None:
    """The number of ranks the launcher started, if it says (horovodrun, mpirun, srun)."""
    for var in ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return None


# Set for each process by a launcher that joins the processes into one world: horovodrun,
# mpirun, srun --mpi=pmix, srun --mpi=pmi2. Without one, N processes are N worlds of one.
PROCESS_MANAGER_RANK = events.PROCESS_MANAGER_RANK  # what a launcher sets: one list
LAUNCH_HINT = ("Under Slurm launch the ranks with 'srun --mpi=pmix' (python -m jobs plan SPEC "
               "prints the line), elsewhere with horovodrun or mpirun.")


class WorldMismatch(RuntimeError):
    """The launcher started several processes that do not form one Horovod world: each would
    train alone, on its own shard, and write the same files. Never worth running."""


def init(use_horovod: bool | None = None, use_gpu: bool = True) -> World:
    """Initialise Horovod when launched as several ranks (or when asked), pin one GPU per local
    rank (or hide every GPU: ``use_gpu=False``), and verify the world size matches the
    launcher's."""
    expected = expected_world_size()
    if use_horovod is None:
        use_horovod = (expected or 1) > 1 or "HOROVOD_RANK" in os.environ
    if not use_horovod:
        _place(0, use_gpu)
        return World(rank=0, size=1, local_rank=0)
    if (expected or 1) > 1 and not any(var in os.environ for var in PROCESS_MANAGER_RANK):
        # checked before MPI_Init, which would otherwise abort with its own riddle
        raise WorldMismatch(f"the launcher started {expected} processes but no process "
                            f"manager joins them (none of {', '.join(PROCESS_MANAGER_RANK)} "
                            f"is set): each would train alone. {LAUNCH_HINT}")
    import horovod.tensorflow as hvd

    hvd.init()
    if expected is not None and hvd.size() != expected:
        raise WorldMismatch(f"Horovod started {hvd.size()} rank(s) but the launcher started "
                            f"{expected} processes: each would train alone. {LAUNCH_HINT}")
    _place(hvd.local_rank(), use_gpu)
    return World(rank=hvd.rank(), size=hvd.size(), local_rank=hvd.local_rank(), hvd=hvd)


def _place(local_rank: int, use_gpu: bool) -> None:
    """One GPU per local rank, growing its memory as needed; none at all for a CPU job (a GPU
    TensorFlow would otherwise place ops on any GPU it sees)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not use_gpu:
        if gpus:
            tf.config.set_visible_devices([], "GPU")
        return
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if gpus:
        tf.config.set_visible_devices(gpus[local_rank % len(gpus)], "GPU")


def tf_variables(variables: Iterable[Any]) -> list[Any]:
    """The ``tf.Variable`` behind each (Keras 3 or TF) variable, for Horovod's API."""
    import tensorflow as tf

    return [v if isinstance(v, tf.Variable) else v.value for v in variables]


def broadcast(world: World, variables: Iterable[Any], root_rank: int = 0) -> None:
    """Make every rank start from the chief's values. Call after models and optimizers are
    built (optimizer slots exist only after build)."""
    if world.hvd is not None:
        world.hvd.broadcast_variables(tf_variables(variables), root_rank=root_rank)


def broadcast_object(world: World, obj: Any, name: str, root_rank: int = 0) -> Any:
    """Rank ``root_rank``'s (picklable) ``obj`` on every rank: one decision for all. ``name``
    is the collective's, the same on every rank (Horovod's default is the object's type name,
    which differs when rank 0 sends a string and the others hold None)."""
    if world.hvd is None:
        return obj
    return world.hvd.broadcast_object(obj, root_rank=root_rank, name=name)


COMPRESSIONS = ("none", "fp16")  # train.horovod.compression


def gradient_tape(world: World, tape: Any, compression: str = "none") -> Any:
    """Wrap a ``tf.GradientTape`` so ``gradient()`` returns rank-averaged gradients.
    ``compression="fp16"`` sends them as 16-bit floats: half the bytes on the wire, which is
    what limits scaling on slow links (``gan.scaling``). Each rank's gradient is rounded to
    fp16 and summed in fp16, so the average differs from one process's by that rounding, but
    every rank receives the same bits: ranks stay identical."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown gradient compression {compression!r}; "
                         f"choose from {', '.join(COMPRESSIONS)}")
    if world.hvd is None:
        return tape
    kind = world.hvd.Compression.fp16 if compression == "fp16" else world.hvd.Compression.none
    return world.hvd.DistributedGradientTape(tape, compression=kind)
