"""A chaos run: a small sweep of digits trials on the 2-node test cluster, submitted through
sbatch and through submitit, under a seeded schedule of faults at random steps. Every
trial must end with the weights of the same trial run undisturbed (its reference, a sweep of
the same points submitted beside it). A benchmark, not a timed test.

    ./run python bench/chaos.py [--smoke] [--seed N]

Faults, each at a step drawn from the seed (a trial's rank-0 heartbeat says when it is
there; the stall is armed in the trial's environment and fires in the training itself):

* ``stall``: the trial's training thread frozen (``FACEGAN_TEST_FAULT``): the watchdog ends
  the job, the retry leaves its node out;
* ``sigkill``: SIGKILL of the trial's rank: the job fails, the resubmit chain's next link
  resumes;
* ``scontrol_requeue``: Slurm's requeue (SIGTERM: a checkpoint, then the job again);
* ``cancel``: ``scancel`` of the trial's job (a site that cancels instead of requeueing):
  the next link resumes;
* ``slurmd_restart``: the slurmd of the trial's node stopped for 5 s and started again under
  its running job;
* ``walltime``: not injected; the full run's 3-minute limit requeues long trials at their
  walltime (counted from their stop-signal events).

Left out: a full disk while checkpointing. It ends with exit 3, never retried, by design
(docs/faults.md): a disk that filled is not known to empty itself.

``--smoke`` (in the test suite): one trial on each route, three faults (a stall, a SIGKILL,
a requeue), a hang guard of SMOKE_CAP_MIN minutes. The exit code is 0 only if every trial
ended with its reference's weights and every planned fault landed.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chaos_cluster import Cluster, Trial, fault_env, inject, submit_sweep  # noqa: E402
from bench.table import Table  # noqa: E402
from gan.quality.digits import write_digits  # noqa: E402
from jobs.core import events, runtime  # noqa: E402

INJECTED = ("scontrol_requeue", "sigkill", "cancel", "slurmd_restart")
KINDS = ("stall", *INJECTED)
SMOKE_CAP_MIN, FULL_CAP_MIN = 15, 60
STEPS_PER_EPOCH = 1797 // 64  # scikit-learn's digits at a batch of 64, one rank
STEP_S = 0.25  # each chaos step made this much slower: a fault finds its step in time


def write_specs(folder: Path, data: Path, route: str, rates: list[float], epochs: int,
                minutes: int) -> Path:
    """A train spec (one rank, one CPU, the watchdog at 20 s, two resubmit links) and the
    sweep of its learning rates, one trial each, for ``route`` (or the reference)."""
    head = {"name": f"chaos-{route}", "resources": {
        "cpus_per_task": 1, "mem_gb": 2, "time": minutes, "max_requeues": 30, "resubmit": 2,
        "advanced": {"signal_lead_s": 20}}}
    base, sweep = folder / f"{route}-base.yaml", folder / f"{route}.yaml"
    base.write_text(yaml.safe_dump({"kind": "train", **head, "train": {
        "data": str(data), "run_dir": str(folder / route / "unused"), "epochs": epochs,
        "batch_size": 64, "deterministic": True, "log_every_steps": 1000,
        "model": {"image_size": 16, "latent_dim": 32, "generator_filters": [32, 16],
                  "discriminator_filters": [16, 32]},
        "ema": {"enabled": False}, "watchdog": {"stall_s": 20}}}))
    sweep.write_text(yaml.safe_dump({"kind": "sweep", **head, "sweep": {
        "base": str(base), "run_root": str(folder / route),
        "grid": {"train.optimizer.learning_rate": rates}}}))
    return sweep


def schedule(rng: random.Random, trials: list[tuple[str, int]], kinds: list[str],
             total_steps: int) -> list[tuple[str, tuple[str, int], int]]:
    """(kind, trial, step): each fault on the next trial in turn, at a step in the middle
    of the run (after the first epoch's checkpoint, before the last epoch)."""
    low, high = STEPS_PER_EPOCH + 2, total_steps - STEPS_PER_EPOCH
    return [(kind, trials[i % len(trials)], rng.randint(low, high))
            for i, kind in enumerate(kinds)]


def drive(cluster: Cluster, trials: dict, plan: list, cap_s: float) -> None:
    """Inject each planned fault when its trial's rank 0 reaches the step; return once the
    queue is empty (every job, the chains' links too, ended), or the cap passed."""
    pending = [(kind, trials[key], step) for kind, key, step in plan if kind in INJECTED]
    deadline = time.monotonic() + cap_s
    while time.monotonic() < deadline:
        for fault in list(pending):
            kind, trial, step = fault
            beat = trial.beat()
            if beat is not None and beat.step >= step and time.time() - beat.written < 10:
                inject(cluster, trial, kind, beat)
                pending.remove(fault)
        if cluster.queue_empty():
            return
        time.sleep(0.5)


def report(trials: dict, references: dict, plan: list, total_steps: int) -> Table:
    table = Table()
    for kind in (*KINDS, "walltime"):
        counts = [(faults_of(t, kind), survived(t, references)) for t in trials.values()]
        hit = sum(n for n, _ in counts)
        if hit or any(p[0] == kind for p in plan):
            table.add(f"{kind}: faults survived, of those injected", sum(
                n for n, ok in counts if ok), hit, "faults", fmt=",.0f")
    missed = missing(trials, plan)
    table.add("faults planned but never injected, of all planned", missed, len(plan),
              "faults", fmt=",.0f", higher_is_better=False)
    redone = sum(redone_steps(t) for t in trials.values())
    table.add("steps redone (all faults), of all the trials' steps", redone,
              total_steps * len(trials), "steps", fmt=",.0f", higher_is_better=False)
    chaos = statistics.mean(t.wall_s() for t in trials.values())
    calm = statistics.mean(t.wall_s() for t in references.values())
    table.add("wall time per trial: under faults vs undisturbed", chaos, calm, "s",
              higher_is_better=False)
    lost = [t.name for t in trials.values() if not survived(t, references)]
    table.add("trials lost (unfinished or other weights), of all", len(lost), len(trials),
              "trials", fmt=",.0f", higher_is_better=False)
    if lost:
        print(f"LOST: {', '.join(lost)}", file=sys.stderr)
    return table


def missing(trials: dict, plan: list) -> int:
    """Planned faults that never landed (their trial ended before the step, or a hook did
    not fire): a chaos run that proves nothing about them. Each is named on stderr."""
    missed = 0
    for key, trial in trials.items():
        for kind in KINDS:
            short = sum(p[0] == kind and p[1] == key for p in plan) - faults_of(trial, kind)
            if short > 0:
                print(f"MISSED: {kind} in {trial.name} (injected: {trial.injected})",
                      file=sys.stderr)
                missed += short
    return missed


def faults_of(trial: Trial, kind: str) -> int:
    """How many faults of ``kind`` the trial took: injected, or, for a stall and a walltime,
    as its events recorded them (one watchdog's stall a run; USR1/USR2 stop signals)."""
    if kind == "stall":
        return len({(e["job"], e["pid"]) for e in events.read(trial.run_dir, "stall")})
    if kind == "walltime":
        return sum(e["signal"] in (10, 12) for e in events.read(trial.run_dir, "stop_signal"))
    return sum(k == kind for k, _ in trial.injected)


def survived(trial: Trial, references: dict) -> bool:
    reference = references[trial.point]
    return trial.finished() and trial.final_digest() == reference.final_digest() is not None


def redone_steps(trial: Trial) -> int:
    """Steps trained twice: from the checkpoint a killed or stalled run resumed from, to the
    step it had reached (a requeue, a cancel or a walltime signal checkpoints first)."""
    ends = [step for kind, step in trial.injected if kind == "sigkill"]
    ends += [e["step"] for e in events.read(trial.run_dir, "stall")][:1]
    return sum(end - trial.checkpoint_before(end) for end in ends)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="one trial a route, 3 faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR and keep it (the cluster's logs, every run)")
    args = parser.parse_args()
    runtime.configure()
    rng = random.Random(args.seed)
    rates = [2.0e-4] if args.smoke else [1.0e-4, 2.0e-4]
    epochs, minutes = (4, 20) if args.smoke else (24, 3)
    kinds = ["stall", "sigkill", "scontrol_requeue"] if args.smoke else [
        *KINDS, "stall", "sigkill"]
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp, \
            Cluster((args.keep or Path(tmp)) / "cl") as cl:
        folder = args.keep or Path(tmp)
        data = write_digits(folder / "digits.h5")
        keys = [(route, k) for k in range(len(rates)) for route in ("sbatch", "submitit")]
        plan = schedule(rng, keys, kinds, epochs * STEPS_PER_EPOCH)
        for kind, key, step in plan:
            print(f"planned: {kind} in {key[0]} trial {key[1]} at step {step}")
        references = {t.point: t for t in submit_sweep(  # as slow, without a fault
            cl, write_specs(folder, data, "reference", rates, epochs, 60), "sbatch",
            fault_env([], folder / "marks-reference", len(rates), STEP_S))}
        trials = {}
        for route in ("sbatch", "submitit"):
            stalls = [(key[1], step) for kind, key, step in plan
                      if kind == "stall" and key[0] == route]
            env = fault_env(stalls, folder / f"marks-{route}", len(rates), STEP_S)
            for trial in submit_sweep(cl, write_specs(folder, data, route, rates, epochs,
                                                      minutes), route, env):
                trials[(route, trial.point)] = trial
        cap = 60 * (SMOKE_CAP_MIN if args.smoke else FULL_CAP_MIN)
        drive(cl, trials, plan, cap)
        drive(cl, {("reference", k): t for k, t in references.items()}, [], cap)
        table = report(trials, references, plan, epochs * STEPS_PER_EPOCH)
        # judged here: the run directories go with the temporary folder
        whole = all(survived(t, references) for t in trials.values())
        landed = not missing(trials, plan)
    table.print()  # last: the smoke test reads every line after its header
    return 0 if whole and landed else 1


if __name__ == "__main__":
    sys.exit(main())
