"""The benchmarks' shared output: every figure beside its baseline from the same run; and the
run sizes every script offers (full, ``--quick``, ``--smoke``), so they mean the same in all."""
from __future__ import annotations

import argparse

SMOKE_HELP = ("the fewest steps and images that still print every row (the test suite runs "
              "this to prove the script and its table work; its figures mean nothing)")


def add_size_flags(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """``--quick`` (small sizes, for a person in a hurry) or ``--smoke`` (tiny sizes, for the
    test suite), at most one of them; neither is the full run that docs/benchmarks.md's
    tables come from."""
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help=quick_help)
    sizes.add_argument("--smoke", action="store_true", help=SMOKE_HELP)


def by_size(args: argparse.Namespace, full, quick, smoke):
    """The value for the run size ``args`` asks for (see add_size_flags)."""
    return smoke if args.smoke else quick if args.quick else full


NO_RATIO = "n/a (baseline 0)"


class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, what: str, value: float, baseline: float, unit: str, fmt: str = ",.1f",
            higher_is_better: bool = True, spreads: tuple[float, float] | None = None) -> None:
        """One row; ``spreads`` (of the value, of the baseline) prints each as mean ± spread,
        for figures averaged over seeds."""
        value_s, base_s = (f" ± {s:{fmt}}" for s in spreads) if spreads else ("", "")
        ratio = f"{value / baseline:.2f}x" if baseline else NO_RATIO  # a share can be 0
        self.rows.append((what, f"{value:{fmt}}{value_s} {unit}",
                          f"{baseline:{fmt}}{base_s} {unit}",
                          ratio + ("" if higher_is_better else " (lower is better)")))

    def print(self) -> None:
        width = max(len(r[0]) for r in self.rows)
        cols = max(16, *(max(len(r[1]), len(r[2])) for r in self.rows))
        print(f"\n{'benchmark':<{width}}  {'figure':>{cols}}  {'baseline':>{cols}}  ratio")
        for what, value, baseline, ratio in self.rows:
            print(f"{what:<{width}}  {value:>{cols}}  {baseline:>{cols}}  {ratio}")
