"""What happened to every photo of a shard: kept, converted, or skipped and why.

Each shard writes ``shard-….report.json``; the merge sums them into ``faces.report.json``.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any


class ShardReport:
    def __init__(self, index: int, count: int):
        self.index, self.count = index, count
        self.photos = 0
        self.faces = 0
        self.skipped: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.converted: dict[str, list[str]] = defaultdict(list)
        self.labels: Counter = Counter()

    def skip(self, name: str, reason: str, detail: str = "") -> None:
        self.skipped[reason].append({"file": name, "detail": detail} if detail
                                    else {"file": name})

    def keep(self, label: int) -> None:
        self.faces += 1
        self.labels[int(label)] += 1

    def convert(self, name: str, note: str) -> None:
        self.converted[note].append(name)

    def counts(self) -> dict[str, int]:
        out = {"photos": self.photos, "faces": self.faces}
        out.update({f"skipped_{r}": len(v) for r, v in sorted(self.skipped.items())})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"shard": self.index, "num_shards": self.count, "photos": self.photos,
                "faces": self.faces,
                "skipped_counts": {r: len(v) for r, v in sorted(self.skipped.items())},
                "converted_counts": {n: len(v) for n, v in sorted(self.converted.items())},
                "label_counts": {str(k): v for k, v in sorted(self.labels.items())},
                "skipped": dict(sorted(self.skipped.items())),
                "converted": dict(sorted(self.converted.items()))}


def sum_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"shards": len(reports), "photos": 0, "faces": 0,
                             "skipped_counts": Counter(), "converted_counts": Counter(),
                             "label_counts": Counter(), "skipped": defaultdict(list),
                             "converted": defaultdict(list)}
    for rep in reports:
        total["photos"] += rep["photos"]
        total["faces"] += rep["faces"]
        for key in ("skipped_counts", "converted_counts", "label_counts"):
            total[key].update(rep[key])
        for key in ("skipped", "converted"):
            for reason, items in rep[key].items():
                total[key][reason].extend(items)
    return {k: (dict(sorted(v.items())) if isinstance(v, dict) else v) for k, v in total.items()}
