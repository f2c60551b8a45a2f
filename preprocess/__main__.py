"""``python -m preprocess fixture DIR``: build the bundled default face set (CelebA layout), the
one preprocessing step that is not a job.

The jobs themselves run through the one command line every route shares:
``python -m jobs run SPEC`` (all shards, then the merge), ``--index K`` (shard K, as an
array task), ``--merge`` (check the shards and merge them, as slurm/merge.sbatch does).
"""
from __future__ import annotations

import argparse
import sys

from jobs.core import exitcodes, runtime
from preprocess import fixture


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m preprocess", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fixture", help="build the default face set")
    p.add_argument("dir")
    p.add_argument("--layout", choices=("kaggle", "original"), default="kaggle")
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    runtime.configure(args.verbose)
    print(fixture.build(args.dir, layout=args.layout, seed=args.seed))
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
