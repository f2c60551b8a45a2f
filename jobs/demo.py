"""``./run demo``: the main job on the bundled default data.

1. builds the default face set (``data/default/celeba``, CelebA Kaggle layout, made from
   photos that ship inside installed packages) if it is not there yet;
2. submits ``jobs/examples/pipeline_demo.yaml`` with submitit's local executor — no Slurm
   needed: the preprocess array (3 shards), the merge, then the training of a 32x32 DCGAN
   sized for 2 CPU cores — exactly what ``python -m jobs submit`` does on a cluster;
3. measures its best snapshot (``generate_metrics.yaml``: KID and recall over O-Net features
   and the face rate, beside real faces and the untrained generator);
4. validates every example spec and prints the figures and where the results are, the run's
   page (``report.html``) first.

``--set KEY=VALUE`` overrides a field of the pipeline spec, as ``python -m jobs submit`` does;
the test suite runs the demo's whole path this way on a smaller training budget.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from jobs.cli import main as jobs_main
from jobs.core import exitcodes, pages, runtime
from jobs.core.run_page import write_run_page
from jobs.core.rundir import sample_grids
from preprocess.fixture import build

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "jobs" / "examples"
DEFAULT_DATA = ROOT / "data" / "default" / "celeba"
log = logging.getLogger("demo")


def quality_table(figures: dict) -> str:
    """KID, recall and face rate of the demo's generator beside real faces and the untrained G
    (recall when the metrics spec measured it: the share of real faces the samples reach)."""
    kid, rate = figures["kid"], figures["face_rate"]
    recall = figures.get("recall")
    keys = (("real faces (one half vs the other)", "real_vs_real", "real"),
            ("the demo's generator", "generated", "generated"),
            ("the same generator untrained", "untrained", "untrained"))
    lines = [f"  quality ({figures['generated_images']} samples, {figures['real_images']} real "
             "faces; KID over MTCNN O-Net features, lower is better"
             + ("; recall: share of real faces near a sample, higher is better" if recall
                else "") + "; face rate: share in which MTCNN finds a face)",
             f"    {'':<38}{'KID x 1000':>16}{'recall' if recall else '':>8}{'face rate':>12}"]
    for name, key, rate_key in keys:
        shown = f"{100 * recall[key]:>7.0f}%" if recall else f"{'':>8}"
        lines.append(f"    {name:<38}{1000 * kid[key][0]:>8.2f} ± {1000 * kid[key][1]:<5.2f}"
                     f"{shown}{100 * rate[rate_key]:>11.0f}%")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./run demo", description="The main job on the bundled default data: preprocess "
        "-> merge -> train a 32x32 DCGAN, then its quality beside real faces.")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of jobs/examples/pipeline_demo.yaml, e.g. "
                             "--set 'pipeline.train_set=[train.epochs=20]' (repeatable)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    sets = [arg for item in parse_args(argv).set for arg in ("--set", item)]
    runtime.configure()
    if not (DEFAULT_DATA / "fixture_truth.json").exists():
        log.info("building the default face set in %s", DEFAULT_DATA)
        build(DEFAULT_DATA)
    for command in (["submit", str(EXAMPLES / "pipeline_demo.yaml"), "--executor", "local",
                     *sets],
                    ["run", str(EXAMPLES / "generate_metrics.yaml")],
                    ["validate", *map(str, sorted(EXAMPLES.glob("*.yaml")))]):
        code = jobs_main(command)
        if code != exitcodes.OK:
            return code
    out = ROOT / "runs" / "demo" / "faces32"
    manifest = json.loads((out / "faces.manifest.json").read_text())
    run_dir = ROOT / "runs" / "demo" / "dcgan32"
    figures = json.loads((run_dir / "metrics" / "figures.json").read_text())
    grids = [path for _, path in sample_grids(run_dir)]
    # again: with the figures just measured in metrics/ (a view: it never fails the demo)
    page = pages.write_quietly(lambda: write_run_page(run_dir), run_dir) or "(not written)"
    print(f"""
facegan-hpc demo: done
  faces:        {manifest['num_faces']} from {manifest['photos']} photos -> {out / 'faces.h5'}
  classes:      {', '.join(f"{n}={manifest['label_counts'].get(str(i), 0)}"
                           for i, n in enumerate(manifest['class_names']))}
  skipped:      {', '.join(f'{k}={v}' for k, v in manifest['skipped_counts'].items())}
  report:       {out / 'faces.report.json'}
  sample sheet: {out / 'sample_sheet.png'}
{quality_table(figures)}
  sample grid:  {grids[-1] if grids else '(none)'}  (the generator average, last epoch)
  best:         {run_dir / 'best'}  ({figures['checkpoint'].rsplit('/', 1)[-1]}, lowest KID)
  loss curve:   {run_dir / 'loss_curve.png'}
  checkpoint:   {run_dir / 'checkpoints'}
  metrics:      {run_dir / 'metrics.csv'}  (tensorboard --logdir {run_dir / 'tensorboard'})
  job logs:     {run_dir / 'logs'}, {out / 'logs'}
  run page:     {page}  (open it in any browser: curves, samples, figures, history)
""")
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
