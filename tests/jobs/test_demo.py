"""The demo's table: KID, recall (when the metrics spec measured it) and face rate of each
generator in columns that line up, from figures.json as ``generate.task: metrics`` writes it."""
from __future__ import annotations

from jobs.demo import quality_table

FIGURES = {"generated_images": 500, "real_images": 131,
           "kid": {"real_vs_real": [0.0, 0.00019], "generated": [0.00351, 0.00063],
                   "untrained": [0.07995, 0.00126]},
           "face_rate": {"real": 1.0, "generated": 0.72, "untrained": 0.0}}


def test_the_table_shows_recall_beside_kid_when_measured():
    recall = {"real_vs_real": 0.96, "generated": 0.41, "untrained": 0.0}
    lines = quality_table({**FIGURES, "recall": recall}).splitlines()
    assert "recall: share of real faces near a sample" in lines[0]
    assert lines[1].split() == ["KID", "x", "1000", "recall", "face", "rate"]
    assert lines[3].split()[-5:] == ["3.51", "±", "0.63", "41%", "72%"], lines[3]
    assert lines[4].split()[-5:] == ["79.95", "±", "1.26", "0%", "0%"], lines[4]
    assert len({len(line) for line in lines[1:]}) == 1  # the columns line up


def test_without_recall_the_table_is_kid_and_face_rate():
    lines = quality_table(FIGURES).splitlines()
    assert "recall" not in "\n".join(lines)
    assert lines[2].split()[-4:] == ["0.00", "±", "0.19", "100%"], lines[2]
