"""The benchmarks' shared output: every figure beside its baseline from the same run."""
from __future__ import annotations


class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, what: str, value: float, baseline: float, unit: str, fmt: str = ",.1f",
            higher_is_better: bool = True) -> None:
        ratio = value / baseline if baseline else float("nan")
        self.rows.append((what, f"{value:{fmt}} {unit}", f"{baseline:{fmt}} {unit}",
                          f"{ratio:.2f}x" + ("" if higher_is_better else " (lower is better)")))

    def print(self) -> None:
        width = max(len(r[0]) for r in self.rows)
        print(f"\n{'benchmark':<{width}}  {'figure':>16}  {'baseline':>16}  ratio")
        for what, value, baseline, ratio in self.rows:
            print(f"{what:<{width}}  {value:>16}  {baseline:>16}  {ratio}")
