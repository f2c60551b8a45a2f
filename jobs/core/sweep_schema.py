"""The sweep section of a job spec (``sweep:``) and its rules beyond its fields' types:
something to train, a space that random, TPE or CMA-ES search can draw from, and rungs early
stopping can judge at. ``SweepSpec.problems`` is asked by the loader with every other
section's, so every problem is reported at once, field named."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from jobs.core.fields import opt, section

DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")
DRAWN = ("random", "tpe", "cmaes")  # searches that draw sweep.trials points from sweep.space
STUDIED = ("tpe", "cmaes")  # searches an Optuna study asks as each task starts (jobs/study.py)


def search_space(sweep: Any) -> dict[str, dict[str, list[Any]]]:
    """Dotted key -> {distribution: args} a drawn search draws from: ``sweep.space``, with
    ``sweep.grid``'s lists as choices."""
    return {**{key: {"choice": values} for key, values in sweep.grid.items()}, **sweep.space}


def sweep_problems(work: Any) -> list[tuple[str, str]]:
    """A sweep's search: points to train, a space random search can draw from, rungs.
    (key under sweep, why) each."""
    out: list[tuple[str, str]] = []
    drawn = work.search in DRAWN
    if not work.grid and not work.points and not (drawn and work.trials):
        out.append(("", "give 'grid' and/or 'points' (or search: random, tpe or cmaes with "
                        "trials): a sweep needs at least one point"))
    for key, values in work.grid.items():
        if not values:
            out.append((f"grid.{key}", "needs at least one value"))
    if drawn and not work.trials:
        out.append(("trials", f"search: {work.search} needs the number of trials to draw"))
    if not drawn and (work.space or work.trials):
        out.append(("space" if work.space else "trials", "only for search: random, tpe or "
                    "cmaes (search: grid trains every combination of sweep.grid)"))
    if work.search == "cmaes":
        out += [(where, "cmaes searches numbers only (Optuna would draw a choice at "
                        "random): use search: tpe") for where in _choices(work)]
    if work.startup_trials is not None and work.search not in STUDIED:
        out.append(("startup_trials", "only for search: tpe or cmaes"))
    for key, dist in work.space.items():
        out += _distribution_problems(f"space.{key}", dist)
    rule = work.early_stop
    if rule.rule != "none" and (not rule.rungs or any(
            b <= a for a, b in zip(rule.rungs, rule.rungs[1:])) or rule.rungs[0] <= 0):
        out.append(("early_stop.rungs", "give positive, increasing rungs (in "
                                        f"sweep.early_stop.unit: {rule.unit})"))
    return out


def _choices(work: Any) -> list[str]:
    """Where a sweep draws from a list of values: sweep.grid's lists and space choices."""
    return [f"grid.{key}" for key in work.grid] + [
        f"space.{key}" for key, dist in work.space.items()
        if isinstance(dist, dict) and "choice" in dist]


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


# ---------------------------------------------------------------------------------------------
# sweep: one train spec, many overrides, one Slurm array
# ---------------------------------------------------------------------------------------------
@dataclass
class EarlyStopSpec:
    rule: Literal["none", "median", "asha"] = opt(
        "none", "Stop a trial at a rung when its metric is worse than the median of the other "
                "trials' there (median), or outside the best 1/reduction_factor of all trials "
                "there (asha: asynchronous successive halving, as Ray Tune's ASHA)")
    metric: Literal["kid", "fid", "face_rate", "precision", "recall", "coverage",
                    "inception_kid", "inception_fid"] = opt(
        "kid", "The train.metrics figure judged (kid, fid: lower is better; face_rate, "
               "precision, recall, coverage: higher), at the rungs and, for search: tpe or "
               "cmaes, as the study's objective (a point's best value); the base spec must "
               "measure it")
    unit: Literal["epochs", "kimg"] = opt("epochs", "What the rungs count")
    rungs: list[float] = opt([], "Where trials are judged, in unit, increasing; judged at the "
                                 "first measurement at or after each", example="[2, 4, 8]")
    reduction_factor: float = opt(3.0, "asha: keep the best 1/reduction_factor at a rung",
                                  gt=1, advanced=True)
    min_trials: int = opt(2, "Judge only once this many trials (this one included) reached "
                             "the rung", ge=1, advanced=True)


@dataclass
class SweepSpec:
    base: str = opt(help="The train spec every point starts from", path="exists",
                    example="jobs/examples/train_cgan_faces.yaml")
    run_root: str = opt(help="Each point trains in run_root/<its overrides>", path="output",
                        example="/scratch/$USER/sweeps/lr")
    search: Literal["grid", "random", "tpe", "cmaes"] = opt(
        "grid", "grid: every combination of grid; random: 'trials' points drawn from space "
                "(and from grid's lists, as choices) by seed, fixed up front; tpe, cmaes: "
                "'trials' points an Optuna study (run_root/study.journal) asks for as each "
                "array task starts, from the points finished so far")
    grid: dict[str, list[Any]] = opt({}, "Dotted key -> values; every combination is a point")
    space: dict[str, dict[str, list[Any]]] = opt(
        {}, "search: random, tpe, cmaes: dotted key -> one of {uniform: [lo, hi]}, "
            "{log_uniform: [lo, hi]}, {int_uniform: [lo, hi]}, {choice: [values]} (cmaes: "
            "no choice)",
        example="{train.optimizer.learning_rate: {log_uniform: [1.0e-5, 1.0e-3]}}")
    trials: int = opt(0, "search: random, tpe, cmaes: how many points to draw", ge=0)
    seed: int = opt(0, "search: random: the draws' seed (trial k's values depend on it and k "
                       "only); tpe, cmaes: the sampler's, with the array index", ge=0)
    startup_trials: int | None = opt(
        None, "search: tpe, cmaes: points drawn at random before the sampler models the "
              "finished ones (none = Optuna's default: 10 for tpe, 1 for cmaes)", ge=0,
        advanced=True)
    points: list[dict[str, Any]] = opt([], "Explicit points (dotted key -> value), added after "
                                           "the grid or the drawn trials (tpe, cmaes: not "
                                           "told to the study)")
    early_stop: EarlyStopSpec = section(EarlyStopSpec, "Stop trials that fall behind at rungs")

    def problems(self) -> list[tuple[str, str]]:
        return sweep_problems(self)
