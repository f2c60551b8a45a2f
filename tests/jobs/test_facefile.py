"""The face-file layout's one home: what writers stamp, readers check, and both agree on."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from gan.data import ImageSet
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
