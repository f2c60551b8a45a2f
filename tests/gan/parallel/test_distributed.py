"""gan.parallel.distributed.gradient_tape's compression argument (train.horovod.compression);
what it does across 2 real ranks is tests/system/test_horovod.py."""
from __future__ import annotations

import ast
import types
import typing

import pytest
import tensorflow as tf

from gan.parallel import distributed
from jobs.core.train_schema import HorovodSpec
from tests.conftest import ROOT


def test_one_process_gets_its_own_tape_whatever_the_compression():
    tape = object()
    for compression in distributed.COMPRESSIONS:
        assert distributed.gradient_tape(distributed.World(0, 1, 0), tape, compression) is tape


def test_an_unknown_compression_is_refused_and_the_spec_offers_the_same_choices():
    with pytest.raises(ValueError, match="fp16"):
        distributed.gradient_tape(distributed.World(0, 1, 0), object(), "fp8")
    assert HorovodSpec().compression == "none"
    choices = typing.get_args(typing.get_type_hints(HorovodSpec)["compression"])
    assert choices == distributed.COMPRESSIONS


def test_one_process_collectives_are_what_they_mean_for_one_rank():
    """No code outside gan/parallel/distributed.py asks whether Horovod is there: for one process a
    sum or a mean of one value is that value, a gather is the rank's own, a barrier waits
    for no one."""
    world = distributed.World(rank=0, size=1, local_rank=0)
    value = tf.constant([[1.5, 2.0]])
    for collective in (world.sum, world.mean, world.gather):
        assert collective(value, name="x") is value
    assert world.gather_object({"a": 1}, name="x") == [{"a": 1}]
    world.barrier()
    assert world.nccl_built == 0 and world.is_chief


def test_the_build_names_what_carries_the_collectives():
    """The preflight reports it per rank (gan/preflight.py); one process has no Horovod."""
    assert distributed.World(0, 1, 0).build == "one process"
    fake = types.SimpleNamespace(nccl_built=lambda: 0, mpi_built=lambda: 1, gloo_built=lambda: 1)
    assert distributed.World(1, 2, 1, hvd=fake).build == "Horovod MPI+Gloo"


def test_only_the_world_reads_the_horovod_object():
    """Every Horovod branch lives in gan/parallel/distributed.py: elsewhere a ``.hvd`` is a
    second place that would have to agree with the World about one process."""
    own = ROOT / "gan" / "parallel" / "distributed.py"
    readers = [f"{path.relative_to(ROOT)}:{node.lineno}"
               for pkg in ("jobs", "gan", "preprocess", "bench")
               for path in sorted((ROOT / pkg).rglob("*.py")) if path != own
               for node in ast.walk(ast.parse(path.read_text(), str(path)))
               if isinstance(node, ast.Attribute) and node.attr == "hvd"]
    assert not readers, f"outside World, these read .hvd: {readers}"
