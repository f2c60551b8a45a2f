"""Node-local staging: a checked copy, found intact after a requeue, made again when damaged or
half-written, never used without its record; the shared file when there is no room; and the
same batches whether the images are staged, loaded or streamed."""
from __future__ import annotations

import logging
import os

import h5py
import numpy as np
import pytest

from gan.parallel.distributed import World
from gan.training import staging
from gan.training.data import ImageSet, Split
from jobs.core import facefile
from jobs.core.files import temp_name

N, SIDE = 600, 8


@pytest.fixture
def source(tmp_path):
    """A shard-like file: images chunked by 64 rows, each chunk Fletcher-32 checked."""
    path = tmp_path / "faces.h5"
    images = np.random.default_rng(0).integers(0, 256, (N, SIDE, SIDE, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset(facefile.IMAGES, data=images, chunks=(64, SIDE, SIDE, 3),
                         fletcher32=True)
        f[facefile.LABELS] = np.arange(N) % 3
        f.attrs["class_names"] = ["a", "b", "c"]
        facefile.stamp(f.attrs)
    return path


def test_a_staged_copy_is_checked_recorded_and_read_like_the_source(source, tmp_path):
    staged = staging.stage(source, tmp_path / "node")
    assert staged is not None and staged.parent.parent == tmp_path / "node"
    record = staging.recorded(staged.parent, source)
    assert record["shape"] == [N, SIDE, SIDE, 3] and staging.intact(staged.parent, source)
    for max_gb in (4.0, 0.0):  # the order of a loaded set, then of a streamed one
        plain, mapped = ImageSet(source, max_gb), ImageSet(source, max_gb, staged)
        assert isinstance(mapped.images, np.memmap) and not mapped.streamed
        assert plain.streamed == (max_gb == 0.0)
        split = Split(1, 2, 16)
        for (a, la, ia), (b, lb, ib) in zip(plain.batches(3, 1, split),
                                            mapped.batches(3, 1, split)):
            assert np.array_equal(a, b) and np.array_equal(ia, ib) and np.array_equal(la, lb)
        plain.close()
        mapped.close()


def test_a_requeued_job_finds_its_copy_or_makes_it_again(source, tmp_path, caplog):
    node = tmp_path / "node"
    staged = staging.stage(source, node)
    made = staged.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, "gan.training.staging"):
        assert staging.stage(source, node) == staged
    assert "found intact" in caplog.text and staged.stat().st_mtime_ns == made
    with open(staged, "r+b") as f:  # one flipped byte in the middle of the copy
        f.seek(os.path.getsize(staged) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert not staging.intact(staged.parent, source)
    assert staging.stage(source, node) == staged and staging.intact(staged.parent, source)


def test_a_copy_without_its_record_is_never_used(source, tmp_path):
    """What a kill during the copy leaves: a temporary file, or the file without stage.json."""
    node = tmp_path / "node"
    staged = staging.stage(source, node)
    (staged.parent / staging.RECORD).unlink()
    temp_name(staged).write_bytes(b"half a copy")
    assert staging.recorded(staged.parent, source) is None
    assert staging.stage_for_node(source, str(node), World(1, 2, 1)) is None  # local rank 1
    assert staging.stage(source, node) == staged and staging.intact(staged.parent, source)
    assert staging.stage_for_node(source, str(node), World(1, 2, 1)) == staged


def test_without_room_the_shared_file_is_read(source, small_disk, caplog):
    """A node disk of 256 MB: no room for the copy and the margin kept beside it."""
    disk, _ = small_disk
    with caplog.at_level(logging.WARNING, "gan.training.staging"):
        assert staging.stage(source, disk) is None
    assert "reading the shared" in caplog.text and str(source) in caplog.text
    assert not list(disk.rglob("*.npy*"))


def test_a_damaged_source_chunk_is_not_staged(source, tmp_path, caplog):
    with h5py.File(source, "r") as f:
        offset = f[facefile.IMAGES].id.get_chunk_info(3).byte_offset
    with open(source, "r+b") as f:
        f.seek(offset + 100)
        f.write(b"\x00\x01\x02\x03")
    with caplog.at_level(logging.WARNING, "gan.training.staging"):
        assert staging.stage(source, tmp_path / "node") is None
    assert "cannot stage" in caplog.text
    folder = staging.folder_for(source, tmp_path / "node")
    assert not list(folder.glob("*.npy*")) and not (folder / staging.RECORD).exists()


def test_the_default_directory_is_the_nodes_own(monkeypatch):
    monkeypatch.setenv("SLURM_TMPDIR", "/local/job7")
    monkeypatch.setenv("TMPDIR", "/scratch/tmp")
    assert staging.default_dir(None).as_posix() == "/local/job7"
    assert staging.default_dir("/mine").as_posix() == "/mine"
    monkeypatch.delenv("SLURM_TMPDIR")
    assert staging.default_dir(None).as_posix() == "/scratch/tmp"


def test_a_damaged_copy_without_room_to_redo_it_loses_its_record(source, small_disk):
    """The node's other ranks read the record, never the copy's bytes: a copy found damaged
    must lose its record at once, even when there is no room to make it again; and a copy
    killed mid-way (its temporary file) must not keep the room of the next."""
    disk, resize = small_disk
    resize(300 * 2**20)
    staged = staging.stage(source, disk)
    assert staged is not None
    killed = temp_name(staged)
    killed.write_bytes(b"\0" * 2**20)
    with open(staged, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        f.write(b"\x7f")
    (disk / "filler").write_bytes(b"\0" * (100 * 2**20))  # now no room for copy + margin
    assert staging.stage(source, disk) is None
    assert staging.recorded(staged.parent, source) is None and not killed.exists()
    assert staging.stage_for_node(source, str(disk), World(1, 2, 1)) is None


def test_any_error_while_staging_leaves_the_shared_file(tmp_path, caplog):
    """A file without the images dataset (its readability is checked later, by ImageSet):
    local rank 0 still reaches the barrier the node's other ranks wait at."""
    odd = tmp_path / "odd.h5"
    with h5py.File(odd, "w") as f:
        f["something"] = np.zeros(3)
    with caplog.at_level(logging.WARNING, "gan.training.staging"):
        assert staging.stage_for_node(odd, str(tmp_path / "node"), World(0, 1, 0)) is None
    assert "cannot stage" in caplog.text
