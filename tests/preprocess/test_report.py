"""Shard reports record every photo's fate, and summing them adds every count exactly once."""
from __future__ import annotations

import copy
import json

import numpy as np

from preprocess.report import ShardReport, sum_reports


def shard(index: int, count: int, photos: int, labels: list[int],
          skips: list[tuple[str, str, str]], converts: list[tuple[str, str]]) -> ShardReport:
    rep = ShardReport(index, count)
    rep.photos = photos
    for label in labels:
        rep.keep(label)
    for name, reason, detail in skips:
        rep.skip(name, reason, detail)
    for name, note in converts:
        rep.convert(name, note)
    return rep


def as_json(rep: ShardReport) -> dict:
    """What the merge reads: the report as written to and read back from JSON."""
    return json.loads(json.dumps(rep.to_dict()))


def three_shards() -> list[ShardReport]:
    return [
        shard(0, 3, photos=5, labels=[0, 1, 1],
              skips=[("a.jpg", "no_face", ""), ("b.jpg", "corrupt", "truncated")],
              converts=[("c.png", "rgba")]),
        shard(1, 3, photos=4, labels=[2, 2, 10],
              skips=[("d.jpg", "no_face", "")], converts=[]),
        shard(2, 3, photos=6, labels=[0],
              skips=[("e.jpg", "low_confidence", "0.41"), ("f.jpg", "no_face", ""),
                     ("g.jpg", "corrupt", "")],
              converts=[("h.jpg", "cmyk"), ("i.png", "rgba")]),
    ]


def test_shard_report_records_each_photo():
    rep = shard(1, 4, photos=3, labels=[2, 2],
                skips=[("x.jpg", "no_face", ""), ("y.jpg", "corrupt", "bad header")],
                converts=[("z.png", "rgba")])
    assert rep.faces == 2 and rep.labels == {2: 2}
    assert rep.counts() == {"photos": 3, "faces": 2, "skipped_corrupt": 1,
                            "skipped_no_face": 1}
    d = rep.to_dict()
    assert (d["shard"], d["num_shards"], d["photos"], d["faces"]) == (1, 4, 3, 2)
    assert d["skipped_counts"] == {"corrupt": 1, "no_face": 1}
    assert list(d["skipped_counts"]) == ["corrupt", "no_face"]  # sorted
    assert d["skipped"] == {"corrupt": [{"file": "y.jpg", "detail": "bad header"}],
                            "no_face": [{"file": "x.jpg"}]}  # no empty detail
    assert d["converted_counts"] == {"rgba": 1} and d["converted"] == {"rgba": ["z.png"]}
    assert d["label_counts"] == {"2": 2}
    assert json.loads(json.dumps(d)) == d  # plain JSON data


def test_keep_counts_numpy_labels_as_plain_ints():
    rep = ShardReport(0, 1)
    rep.keep(np.int64(1))  # labels come out of numpy arrays
    rep.keep(np.uint8(1))
    assert rep.labels == {1: 2} and [type(k) for k in rep.labels] == [int]
    assert rep.to_dict()["label_counts"] == {"1": 2}


def test_sum_adds_every_count():
    reports = [as_json(r) for r in three_shards()]
    total = sum_reports(reports)
    assert total["shards"] == 3
    assert total["photos"] == 5 + 4 + 6
    assert total["faces"] == 3 + 3 + 1
    assert total["skipped_counts"] == {"corrupt": 2, "low_confidence": 1, "no_face": 3}
    assert total["converted_counts"] == {"cmyk": 1, "rgba": 2}
    assert total["label_counts"] == {"0": 2, "1": 2, "2": 2, "10": 1}
    assert sum(total["label_counts"].values()) == total["faces"]


def test_sum_keeps_every_entry_once_in_shard_order():
    total = sum_reports([as_json(r) for r in three_shards()])
    assert total["skipped"] == {
        "corrupt": [{"file": "b.jpg", "detail": "truncated"}, {"file": "g.jpg"}],
        "low_confidence": [{"file": "e.jpg", "detail": "0.41"}],
        "no_face": [{"file": "a.jpg"}, {"file": "d.jpg"}, {"file": "f.jpg"}]}
    assert total["converted"] == {"cmyk": ["h.jpg"], "rgba": ["c.png", "i.png"]}
    for key in ("skipped", "converted"):
        assert {r: len(v) for r, v in total[key].items()} == total[f"{key}_counts"]
        assert list(total[key]) == sorted(total[key])


def test_sum_is_plain_json_and_leaves_its_inputs_alone():
    reports = [as_json(r) for r in three_shards()]
    before = copy.deepcopy(reports)
    first = sum_reports(reports)
    assert reports == before
    assert sum_reports(reports) == first  # summing again does not count anything twice
    assert json.loads(json.dumps(first)) == first
    assert all(type(first[k]) is dict for k in ("skipped_counts", "converted_counts",
                                                "label_counts", "skipped", "converted"))


def test_sum_of_one_report_is_that_report():
    (rep,) = three_shards()[:1]
    d = as_json(rep)
    total = sum_reports([d])
    assert total["shards"] == 1
    for key in ("photos", "faces", "skipped_counts", "converted_counts", "label_counts",
                "skipped", "converted"):
        assert total[key] == d[key], key


def test_sum_of_nothing_is_zero():
    total = sum_reports([])
    assert total == {"shards": 0, "photos": 0, "faces": 0, "skipped_counts": {},
                     "converted_counts": {}, "label_counts": {}, "skipped": {},
                     "converted": {}}
