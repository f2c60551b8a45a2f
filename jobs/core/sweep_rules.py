"""The rules of a sweep spec beyond its fields' types: something to train, a space that
random search can draw from, and rungs early stopping can judge at (``jobs/core/loader.py``
calls them with its validator, so every problem is reported at once, field named)."""
from __future__ import annotations

from jobs.core.schema import SweepSpec

DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")


def check_sweep(v, work: SweepSpec) -> None:
    """A sweep's search: points to train, a space random search can draw from, rungs.
    ``v``: the loader's validator (its ``fail(where, what)`` collects the problems)."""
    random = work.search == "random"
    if not work.grid and not work.points and not (random and work.trials):
        v.fail("sweep", "give 'grid' and/or 'points' (or search: random with trials): a sweep "
                        "needs at least one point")
    for key, values in work.grid.items():
        if not values:
            v.fail(f"sweep.grid.{key}", "needs at least one value")
    if random and not work.trials:
        v.fail("sweep.trials", "search: random needs the number of trials to draw")
    if not random and (work.space or work.trials):
        v.fail("sweep.space" if work.space else "sweep.trials", "only for search: random "
               "(search: grid trains every combination of sweep.grid)")
    for key, dist in work.space.items():
        where = f"sweep.space.{key}"
        if len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
            v.fail(where, f"one of {', '.join(DISTRIBUTIONS)}, e.g. {{log_uniform: [1e-5, "
                          "1e-3]}}")
            continue
        (name, args), = dist.items()
        if name == "choice":
            if not args:
                v.fail(where, "choice needs at least one value")
        elif len(args) != 2 or not all(isinstance(a, (int, float)) for a in args) \
                or not args[0] < args[1] or (name == "log_uniform" and args[0] <= 0) \
                or (name == "int_uniform" and not all(isinstance(a, int) for a in args)):
            v.fail(where, f"{name} needs [lo, hi] with lo < hi" + {
                "log_uniform": " and lo > 0", "int_uniform": ", both integers"}.get(name, ""))
    rule = work.early_stop
    if rule.rule != "none" and (not rule.rungs or any(
            b <= a for a, b in zip(rule.rungs, rule.rungs[1:])) or rule.rungs[0] <= 0):
        v.fail("sweep.early_stop.rungs", "give positive, increasing rungs (in "
                                         f"sweep.early_stop.unit: {rule.unit})")
