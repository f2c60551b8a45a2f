"""Training data order is deterministic, resumable, rank-disjoint and reads the right images."""
from __future__ import annotations

import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

import gan.training.data
from gan.training.data import ImageSet, Split
from jobs.core import facefile
from jobs.core.ahead import read_ahead

N = 300
LABELS = np.where(np.arange(N) < 60, 0, np.where(np.arange(N) < 150, 1, 2))
CLASS_NAMES = ["feminine", "masculine", "cheekbones", "lips"]  # "lips" has no image


def encoded(n: int) -> np.ndarray:
    """Image i holds i // 256 in pixel (0, 0) and i % 256 everywhere else."""
    images = np.empty((n, 8, 8, 1), np.uint8)
    for i in range(n):
        images[i] = i % 256
        images[i, 0, 0, 0] = i // 256
    return images


def decode(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, 0].astype(np.int64) * 256 + images[:, 0, 1, 0]


@pytest.fixture
def h5(tmp_path) -> Path:
    path = tmp_path / "faces.h5"
    with h5py.File(path, "w") as f:
        f["images"] = encoded(N)
        f["labels"] = LABELS
        f.attrs["class_names"] = CLASS_NAMES
        facefile.stamp(f.attrs)
    return path


@pytest.fixture
def open_set(h5):
    opened = []

    def make(**kwargs) -> ImageSet:
        opened.append(ImageSet(h5, **kwargs))
        return opened[-1]
    yield make
    for s in opened:
        s.close()


@pytest.fixture(params=["in_memory", "streamed"])
def data(request, open_set) -> ImageSet:
    if request.param == "in_memory":
        return open_set()
    return open_set(in_memory_max_gb=0)


def test_modes_and_metadata(open_set):
    memory, streamed = open_set(), open_set(in_memory_max_gb=0)
    assert memory.in_memory and isinstance(memory.images, np.ndarray)
    assert not streamed.in_memory and isinstance(streamed.images, h5py.Dataset)
    assert memory.num == streamed.num == N and memory.shape == (8, 8, 1)
    assert memory.class_names == CLASS_NAMES and memory.num_classes == 4
    assert memory.labels.dtype == np.int32


def test_epoch_order_is_a_deterministic_permutation(data):
    order = data.epoch_order(seed=7, epoch=3)
    assert sorted(order.tolist()) == list(range(N))
    assert np.array_equal(order, data.epoch_order(seed=7, epoch=3))
    assert not np.array_equal(order, data.epoch_order(seed=7, epoch=4))
    assert not np.array_equal(order, data.epoch_order(seed=8, epoch=3))
    assert not np.array_equal(order, np.arange(N))


def test_order_does_not_depend_on_the_set_instance(open_set):
    """A restarted job opens the file afresh and must see the same order."""
    a, b = open_set(in_memory_max_gb=0), open_set(in_memory_max_gb=0)
    assert np.array_equal(a.epoch_order(1, 2), b.epoch_order(1, 2))


def test_steps_per_epoch_drops_the_partial_tail(data):
    assert data.steps_per_epoch(Split(rank=0, size=1, batch=32)) == N // 32
    assert data.steps_per_epoch(Split(rank=1, size=2, batch=16)) == N // 32
    assert data.steps_per_epoch(Split(rank=0, size=3, batch=7)) == N // 21
    assert data.steps_per_epoch(Split(rank=0, size=4, batch=100)) == 0


@pytest.mark.parametrize("size,batch", [(2, 16), (3, 7), (3, 10)])
def test_ranks_never_share_an_image_within_an_epoch(data, size, batch):
    per_rank = []
    for rank in range(size):
        split = Split(rank=rank, size=size, batch=batch)
        steps = data.steps_per_epoch(split)
        idx = np.concatenate([data.rank_indices(5, 1, split, s) for s in range(steps)])
        assert len(idx) == steps * batch
        assert len(set(idx.tolist())) == len(idx)
        per_rank.append(set(idx.tolist()))
    for r in range(size):
        for other in range(r + 1, size):
            assert not per_rank[r] & per_rank[other]
    # together the ranks take the first steps*size*batch positions of the epoch's order
    used = data.steps_per_epoch(Split(0, size, batch)) * size * batch
    assert set().union(*per_rank) == set(data.epoch_order(5, 1)[:used].tolist())


def test_batches_match_rank_indices(data):
    split = Split(rank=1, size=2, batch=16)
    got = list(data.batches(3, 0, split))
    assert len(got) == data.steps_per_epoch(split)
    for step, (_, _, idx) in enumerate(got):
        assert np.array_equal(idx, data.rank_indices(3, 0, split, step))


@pytest.mark.parametrize("start", [1, 4, 8, 9])
def test_resuming_mid_epoch_sees_the_same_batches(data, start):
    split = Split(rank=0, size=2, batch=16)
    full = list(data.batches(11, 2, split))
    resumed = list(data.batches(11, 2, split, start_step=start))
    assert len(resumed) == len(full) - start
    for (img_a, lab_a, idx_a), (img_b, lab_b, idx_b) in zip(full[start:], resumed):
        assert np.array_equal(idx_a, idx_b)
        assert np.array_equal(img_a, img_b)
        assert np.array_equal(lab_a, lab_b)


def test_images_and_labels_match_their_indices(data):
    split = Split(rank=2, size=3, batch=10)
    seen = 0
    for images, labels, idx in data.batches(4, 1, split):
        assert images.dtype == np.uint8 and images.shape == (10, 8, 8, 1)
        assert labels.dtype == np.int32
        assert np.array_equal(decode(images), idx)
        assert np.array_equal(images[:, 4, 4, 0], idx % 256)
        assert np.array_equal(labels, LABELS[idx])
        seen += 1
    assert seen == data.steps_per_epoch(split)


def test_streamed_order_shuffles_whole_blocks(open_set, monkeypatch):
    monkeypatch.setattr(gan.training.data, "BLOCK", 16)
    data = open_set(in_memory_max_gb=0)
    order = data.epoch_order(2, 0)
    assert sorted(order.tolist()) == list(range(N))
    blocks = order // 16
    # maximal runs of positions from one block: each block forms exactly one run
    starts = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1]])
    runs = np.split(order, starts[1:])
    num_blocks = -(-N // 16)
    assert len(runs) == num_blocks
    for run in runs:
        b = run[0] // 16
        assert sorted(run.tolist()) == list(range(b * 16, min(N, (b + 1) * 16)))
    block_sequence = [int(run[0] // 16) for run in runs]
    assert block_sequence != sorted(block_sequence)  # the blocks are shuffled
    assert any(not np.array_equal(run, np.sort(run)) for run in runs)  # so are their images
    # and reading them back from the file in that order still gives the right images
    split = Split(rank=0, size=1, batch=16)
    for images, _, idx in data.batches(2, 0, split):
        assert np.array_equal(decode(images), idx)


def test_in_memory_order_is_not_blocked(open_set, monkeypatch):
    monkeypatch.setattr(gan.training.data, "BLOCK", 16)
    order = open_set().epoch_order(2, 0)
    blocks = order // 16
    runs = 1 + int(np.count_nonzero(blocks[1:] != blocks[:-1]))
    assert runs > 2 * -(-N // 16)  # a full shuffle breaks blocks up


def test_class_frequencies(data):
    freq = data.class_frequencies()
    assert freq.shape == (len(CLASS_NAMES),)
    assert freq.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(freq, [60 / N, 90 / N, 150 / N, 0.0])


def test_default_class_name_and_empty_file(tmp_path):
    path = tmp_path / "one.h5"
    with h5py.File(path, "w") as f:
        f["images"] = encoded(3)
        f["labels"] = np.zeros(3, np.int64)
        facefile.stamp(f.attrs)
    s = ImageSet(path)
    try:
        assert s.class_names == ["all"] and s.attributes is None
        assert s.class_frequencies().tolist() == [1.0]
    finally:
        s.close()
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f["images"] = np.zeros((0, 8, 8, 1), np.uint8)
        f["labels"] = np.zeros(0, np.int64)
        facefile.stamp(f.attrs)
    with pytest.raises(ValueError, match="holds no images"):
        ImageSet(empty)


def test_class_prototypes_are_majority_attributes(tmp_path):
    path = tmp_path / "attrs.h5"
    attributes = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1],   # class 0
                           [0, 1, 1], [0, 1, 0]], np.uint8)   # class 1
    with h5py.File(path, "w") as f:
        f["images"] = encoded(5)
        f["labels"] = np.array([0, 0, 0, 1, 1])
        f["attributes"] = attributes
        f.attrs["class_names"] = ["a", "b", "c"]
        f.attrs["attribute_names"] = ["Smiling", "Male", "Young"]
        facefile.stamp(f.attrs)
    s = ImageSet(path)
    try:
        assert s.attribute_names == ["Smiling", "Male", "Young"]
        protos = s.class_prototypes(3)
        np.testing.assert_array_equal(protos, [[1, 0, 1], [0, 1, 0], [0, 0, 0]])
        assert protos.dtype == np.float32
    finally:
        s.close()


def test_read_ahead_batches_equal_those_read_in_turn(data):
    """The background reader changes when a batch is read, never which or in what order."""
    split = Split(1, 2, 16)
    ahead = list(data.batches(7, 3, split, 2))
    in_turn = list(data.batches(7, 3, split, 2, ahead=0))
    assert len(ahead) == len(in_turn) == data.steps_per_epoch(split) - 2
    for (im_a, lab_a, idx_a), (im_b, lab_b, idx_b) in zip(ahead, in_turn):
        assert np.array_equal(idx_a, idx_b) and np.array_equal(lab_a, lab_b)
        assert np.array_equal(im_a, im_b)


def test_a_read_error_reaches_the_loop_at_its_batch():
    def items():
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in read_ahead(items(), 2, "prefetch"):
            got.append(item)
    assert got == [1, 2]


def test_a_loop_that_stops_early_stops_the_reader():
    """A stop signal ends the epoch after any step: the reader must not keep reading."""
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    reader = read_ahead(items(), 2, "prefetch")
    assert next(reader) == 0
    reader.close()
    assert not any(t.name.startswith("prefetch") and t.is_alive()
                   for t in threading.enumerate())
    assert len(produced) <= 5
