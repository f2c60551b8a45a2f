"""Requeue latency on a real (private, single-node) Slurm cluster.

A training job with a 1-minute walltime and a 30 s early signal requeues itself until done
(slurm/train.sbatch). From its log: the time from the walltime signal to the job running
again, and to its first new training step, against the 60 s walltime; and the checkpoint
save time against an epoch.

    ./run python bench/bench_requeue.py      # needs root (starts slurm/testcluster)
"""
from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.table import Table  # noqa: E402

TABLE = Table()
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")


def when(line: str) -> dt.datetime:
    return dt.datetime.strptime(STAMP.match(line).group(1), "%Y-%m-%d %H:%M:%S")


def main() -> None:
    from gan.quality.digits import write_digits
    from jobs.core.loader import load_spec
    from jobs.scheduler import sbatch_argv

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subprocess.run([str(ROOT / "slurm/testcluster/start.sh"), str(folder / "cluster")],
                       check=True, capture_output=True)
        env = {**os.environ, "SLURM_CONF": str(folder / "cluster/etc/slurm.conf"),
               "FACEGAN_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
        try:
            data = write_digits(folder / "digits.h5")
            run_dir = folder / "run"
            (run_dir / "logs").mkdir(parents=True)
            spec = folder / "rq.yaml"
            spec.write_text(f"""kind: train
name: rq
resources: {{cpus_per_task: 2, mem_gb: 2, time: 1, signal_lead_s: 30, max_requeues: 8}}
train:
  data: {data}
  run_dir: {run_dir}
  epochs: 40
  log_every_steps: 1
  model: {{image_size: 16, generator_filters: [128, 128], discriminator_filters: [128, 128]}}
  optimizer: {{name: adam, learning_rate: 2.0e-4, beta_1: 0.5}}
""")
            argv = sbatch_argv(load_spec(spec))
            job = subprocess.run(argv[:1] + ["--parsable"] + argv[1:], env=env, check=True,
                                 capture_output=True, text=True).stdout.strip()
            log = run_dir / "logs" / f"rq-{job}.out"
            while "job finished" not in (log.read_text() if log.exists() else ""):
                time.sleep(2)
        finally:
            subprocess.run([str(ROOT / "slurm/testcluster/stop.sh"), str(folder / "cluster")],
                           capture_output=True)
        lines = [line for line in log.read_text().splitlines() if STAMP.match(line)]
    to_running, to_step = [], []
    for i, line in enumerate(lines):
        if "walltime signal" not in line:
            continue
        start = next(x for x in lines[i:] if "start: restart" in x)
        resumed = lines.index(next(x for x in lines[i:] if "resumed from" in x))
        step = next(x for x in lines[resumed:] if " it " in x)
        to_running.append((when(start) - when(line)).total_seconds())
        to_step.append((when(step) - when(line)).total_seconds())
    saves = [float(m.group(1)) for m in re.finditer(r"checkpoint ckpt-\d+ \(epoch \d+, "
                                                     r"([0-9.]+) s\)", "\n".join(lines))]
    epochs = [when(x) for x in lines if " done: " in x]
    epoch_secs = sum((b - a).total_seconds() for a, b in zip(epochs, epochs[1:])
                     if (b - a).total_seconds() < 10) / max(1, len(epochs) - 1)
    n = len(to_running)
    TABLE.add(f"walltime signal -> job running again (mean of {n} requeues)",
              sum(to_running) / n, 60, "s", ".1f", higher_is_better=False)
    TABLE.add(f"walltime signal -> first new training step (mean of {n})", sum(to_step) / n,
              60, "s", ".1f", higher_is_better=False)
    TABLE.add("checkpoint save vs one epoch", sum(saves) / len(saves), epoch_secs, "s", ".3f",
              higher_is_better=False)
    TABLE.print()


if __name__ == "__main__":
    main()
