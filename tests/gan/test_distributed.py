"""gan.distributed.gradient_tape's compression argument (train.horovod.compression); what it
does across 2 real ranks is tests/system/test_horovod.py."""
from __future__ import annotations

import typing

import pytest

from gan import distributed
from jobs.core.train_schema import HorovodSpec


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
