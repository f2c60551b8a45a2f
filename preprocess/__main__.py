"""``python -m preprocess``: the preprocessing steps on their own.

  fixture DIR              build the bundled default face set (CelebA layout) in DIR
  shard SPEC [--shard K]   write one shard (K defaults to $SLURM_ARRAY_TASK_ID)
  merge SPEC               check all shards and write faces.h5 + manifest + report

``python -m jobs run SPEC`` does all shards and the merge in one go.
"""
from __future__ import annotations

import argparse
import os
import sys

from jobs.core import exitcodes, runtime
from jobs.core.loader import SpecError, check_paths, expect_kind, load_spec, parse_set_args
from preprocess import fixture, job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m preprocess", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fixture", help="build the default face set")
    p.add_argument("dir")
    p.add_argument("--layout", choices=("kaggle", "original"), default="kaggle")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("shard", help="write one shard")
    p.add_argument("spec")
    p.add_argument("--shard", type=int, default=None, help="default: $SLURM_ARRAY_TASK_ID")
    p.add_argument("--num-shards", type=int, default=None, help="override the spec's")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p = sub.add_parser("merge", help="merge complete shards")
    p.add_argument("spec")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    runtime.configure(args.verbose)

    if args.command == "fixture":
        print(fixture.build(args.dir, layout=args.layout, seed=args.seed))
        return exitcodes.OK

    try:
        overrides = parse_set_args(args.set)
        if getattr(args, "num_shards", None):
            overrides.append(("preprocess.num_shards", args.num_shards))
        spec = load_spec(args.spec, overrides)
    except SpecError as exc:
        print("\n".join(f"error: {p}" for p in exc.problems), file=sys.stderr)
        return exitcodes.INVALID_SPEC
    try:
        expect_kind(spec, "preprocess", args.spec, f"python -m preprocess {args.command}")
    except SpecError as exc:
        print("\n".join(f"error: {p}" for p in exc.problems), file=sys.stderr)
        return exitcodes.INVALID_SPEC
    index = args.shard if getattr(args, "shard", None) is not None else \
        runtime.array_index_from_env()
    if args.command == "shard" and index is None:
        print("error: give --shard K or run as a Slurm array task", file=sys.stderr)
        return exitcodes.INVALID_SPEC
    # what jobs.runner does on every other route: the inputs checked, the spec's env: applied
    problems = check_paths(spec)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return exitcodes.NOT_RUNNABLE
    os.environ.update(spec.env)
    return job.run_merge(spec) if args.command == "merge" else job.run(spec, index=index)


if __name__ == "__main__":
    sys.exit(main())
