"""The face-file layout's one home: what writers stamp, readers check, and both agree on."""
from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from gan.training.data import ImageSet
from jobs.core import facefile


def test_written_arrays_read_back_through_the_training_reader(tmp_path):
    images = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    path = facefile.write_arrays(tmp_path / "f.h5", images, np.array([0, 1, 1, 0, 1]),
                                 class_names=["a", "b"], attributes=np.eye(5, 2),
                                 attribute_names=["Smiling", "Male"])
    assert not list(tmp_path.glob(".*tmp*")), "a temporary was left behind"
    data = ImageSet(path)
    try:
        assert data.class_names == ["a", "b"] and data.attribute_names == ["Smiling", "Male"]
        np.testing.assert_array_equal(data.images, images)
        assert data.labels.tolist() == [0, 1, 1, 0, 1]
    finally:
        data.close()
    with h5py.File(path, "r") as f:
        assert f.attrs[facefile.VERSION_KEY] == facefile.FORMAT_VERSION
        assert f.attrs[facefile.COMPLETE_KEY]


@pytest.mark.parametrize("change, message", [
    ({facefile.VERSION_KEY: facefile.FORMAT_VERSION + 1}, "format version"),
    ({facefile.COMPLETE_KEY: False}, "incomplete"),
])
def test_readers_refuse_other_versions_and_unfinished_files_naming_the_file(tmp_path, change,
                                                                            message):
    path = facefile.write_arrays(tmp_path / "f.h5", np.zeros((2, 4, 4, 3), np.uint8),
                                 np.zeros(2), class_names=["all"])
    with h5py.File(path, "a") as f:
        f.attrs.update(change)
    with pytest.raises(facefile.FaceFileError, match=message) as info:
        ImageSet(path)
    assert str(path) in str(info.value)


def test_a_file_without_images_is_not_a_face_file(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros(3)
        facefile.stamp(f.attrs)
    with pytest.raises(facefile.FaceFileError, match="not a face file"):
        ImageSet(path)


def merged_view(folder) -> tuple:
    """Two shards and a virtual view over them, as preprocessing's merge lays them out."""
    shards, images = [], []
    for k in range(2):
        part = np.full((3, 4, 4, 3), 10 * (k + 1), np.uint8)
        shards.append(facefile.write_arrays(folder / f"shard{k}.h5", part, np.full(3, k),
                                            class_names=["a", "b"]))
        images.append(part)
    view = folder / "faces.h5"
    with h5py.File(view, "w") as out:
        for name, shape, dtype in ((facefile.IMAGES, (6, 4, 4, 3), np.uint8),
                                   (facefile.LABELS, (6,), np.int16)):
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            for k, shard in enumerate(shards):
                layout[3 * k:3 * k + 3] = h5py.VirtualSource(shard.name, name,
                                                             shape=(3, *shape[1:]))
            out.create_virtual_dataset(name, layout)
        out.attrs[facefile.CLASS_NAMES] = ["a", "b"]
        facefile.stamp(out.attrs)
    return view, shards, np.concatenate(images)


def test_a_merged_view_reads_while_file_locks_are_unavailable(tmp_path, monkeypatch):
    """Another process holding an exclusive lock on the view and on a shard (what a stale
    NFS lock or a `locking` failure looks like to HDF5: errno 11): the readers still read
    every face. With HDF5's locks the view cannot even be opened (and a view whose own lock
    succeeds reads zeros for a locked shard: the reason readers take no locks at all)."""
    monkeypatch.delenv("HDF5_USE_FILE_LOCKING", raising=False)  # a cluster's own setting
    view, shards, images = merged_view(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCKS, str(view), str(shards[1])],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OSError, match="unable to lock file"):
            h5py.File(view, "r")
        data = ImageSet(view)
        try:
            np.testing.assert_array_equal(data.images, images)
            assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
        finally:
            data.close()
    finally:
        holder.kill()
        holder.wait()


HOLD_LOCKS = """\
import fcntl, sys, time
held = [open(p, "rb") for p in sys.argv[1:]]
for f in held:
    fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_merged_view_with_a_missing_shard_is_refused_naming_it(tmp_path):
    """HDF5 reads zeros for a virtual source that is gone: the reader refuses instead."""
    view, shards, _ = merged_view(tmp_path)
    shards[1].unlink()
    with pytest.raises(facefile.FaceFileError, match="shard1.h5 are missing") as info:
        ImageSet(view)
    assert str(view) in str(info.value)
