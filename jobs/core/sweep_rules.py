"""The rules of a sweep spec beyond its fields' types: something to train, a space that
random search can draw from, and rungs early stopping can judge at (``SweepSpec.problems``,
which the loader asks with every other section's, so every problem is reported at once,
field named)."""
from __future__ import annotations

from typing import Any

DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")


def sweep_problems(work: Any) -> list[tuple[str, str]]:
    """A sweep's search: points to train, a space random search can draw from, rungs.
    (key under sweep, why) each."""
    out: list[tuple[str, str]] = []
    random = work.search == "random"
    if not work.grid and not work.points and not (random and work.trials):
        out.append(("", "give 'grid' and/or 'points' (or search: random with trials): a "
                        "sweep needs at least one point"))
    for key, values in work.grid.items():
        if not values:
            out.append((f"grid.{key}", "needs at least one value"))
    if random and not work.trials:
        out.append(("trials", "search: random needs the number of trials to draw"))
    if not random and (work.space or work.trials):
        out.append(("space" if work.space else "trials", "only for search: random (search: "
                    "grid trains every combination of sweep.grid)"))
    for key, dist in work.space.items():
        out += _distribution_problems(f"space.{key}", dist)
    rule = work.early_stop
    if rule.rule != "none" and (not rule.rungs or any(
            b <= a for a, b in zip(rule.rungs, rule.rungs[1:])) or rule.rungs[0] <= 0):
        out.append(("early_stop.rungs", "give positive, increasing rungs (in "
                                        f"sweep.early_stop.unit: {rule.unit})"))
    return out


def _distribution_problems(where: str, dist: dict) -> list[tuple[str, str]]:
    if len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
        return [(where, f"one of {', '.join(DISTRIBUTIONS)}, e.g. {{log_uniform: [1e-5, "
                        "1e-3]}")]
    (name, args), = dist.items()
    if name == "choice":
        return [] if args else [(where, "choice needs at least one value")]
    if len(args) != 2 or not all(isinstance(a, (int, float)) for a in args) \
            or not args[0] < args[1] or (name == "log_uniform" and args[0] <= 0) \
            or (name == "int_uniform" and not all(isinstance(a, int) for a in args)):
        return [(where, f"{name} needs [lo, hi] with lo < hi" + {
            "log_uniform": " and lo > 0", "int_uniform": ", both integers"}.get(name, ""))]
    return []
