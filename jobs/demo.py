"""``./run demo``: the main job on the bundled default data.

1. builds the default face set (``data/default/celeba``, CelebA Kaggle layout, made from
   photos that ship inside installed packages) if it is not there yet;
2. submits ``jobs/examples/pipeline_faces.yaml`` with submitit's local executor — no Slurm
   needed: the preprocess array (3 shards), the merge, then a short training of the
   embedding cGAN — exactly what ``python -m jobs submit`` does on a cluster;
3. validates every example spec and prints where the results are.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from jobs.core import exitcodes, runtime
from jobs.cli import main as jobs_main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "jobs" / "examples"
DEFAULT_DATA = ROOT / "data" / "default" / "celeba"
log = logging.getLogger("demo")


def main() -> int:
    runtime.configure()
    if not (DEFAULT_DATA / "fixture_truth.json").exists():
        from preprocess.fixture import build

        log.info("building the default face set in %s", DEFAULT_DATA)
        build(DEFAULT_DATA)
    code = jobs_main(["submit", str(EXAMPLES / "pipeline_faces.yaml"), "--executor", "local"])
    if code != exitcodes.OK:
        return code
    out = ROOT / "runs" / "demo" / "faces"
    manifest = json.loads((out / "faces.manifest.json").read_text())
    code = jobs_main(["validate", *map(str, sorted(EXAMPLES.glob("*.yaml")))])
    if code != exitcodes.OK:
        return code
    run_dir = ROOT / "runs" / "demo" / "cgan"
    grids = sorted((run_dir / "samples").glob("epoch_*.png"))
    print(f"""
facegan-hpc demo: done
  faces:        {manifest['num_faces']} from {manifest['photos']} photos -> {out / 'faces.h5'}
  classes:      {', '.join(f"{n}={manifest['label_counts'].get(str(i), 0)}"
                           for i, n in enumerate(manifest['class_names']))}
  skipped:      {', '.join(f'{k}={v}' for k, v in manifest['skipped_counts'].items())}
  report:       {out / 'faces.report.json'}
  sample sheet: {out / 'sample_sheet.png'}
  sample grid:  {grids[-1] if grids else '(none)'}
  loss curve:   {run_dir / 'loss_curve.png'}
  checkpoint:   {run_dir / 'checkpoints'}
  metrics:      {run_dir / 'metrics.csv'}  (tensorboard --logdir {run_dir / 'tensorboard'})
  job logs:     {run_dir / 'logs'}, {out / 'logs'}
""")
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
