"""``python -m jobs``: validate, plan, run, submit and follow facegan-hpc jobs.

Each job is one YAML spec (see ``jobs/examples/`` and ``python -m jobs schema``). Exit codes are
listed in :mod:`jobs.core.exitcodes` and in ``--help``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from jobs import kinds, pipeline, plan_scaling, report, scheduler, schema_doc
from jobs.core import chain, events, exitcodes, runtime, stall
from jobs.core.launch import Launch
from jobs.core.loader import SpecError, check_paths, load_spec, parse_set_args
from jobs.core.runtime import array_index_from_env
from jobs.core.schema import JobSpec
from jobs.core.signals import StopSignals
from jobs.core.stages import merge_spec
from jobs.status import status
from jobs.submit import preflight, submit
from jobs.sweep import format_table, point_spec, summary, summary_columns, swept_keys
from jobs.sweep_plot import plot_summary

log = logging.getLogger("jobs")

EPILOG = "exit codes:\n" + "\n".join(
    f"  {code:>3}  {text}" for code, text in exitcodes.DESCRIPTIONS.items()) + """

examples:
  python -m jobs validate jobs/examples/*.yaml
  python -m jobs plan jobs/examples/train_cgan_faces.yaml --set train.epochs=5
  python -m jobs run jobs/examples/preprocess_faces.yaml
  python -m jobs submit jobs/examples/train_cgan_faces.yaml --executor slurm
  python -m jobs preflight jobs/examples/train_cgan_faces.yaml   # a minute, every rank
  python -m jobs status /scratch/$USER/runs/cgan64
  python -m jobs summary jobs/examples/sweep_cgan_lr.yaml
  python -m jobs report /scratch/$USER/runs/cgan64   # -> .../report.html, any browser
  python -m jobs schema            # every field, its default and meaning
"""


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", type=int, default=None, metavar="K",
                   help="array task to run (default: $SLURM_ARRAY_TASK_ID, else all tasks)")
    p.add_argument("--fresh", action="store_true",
                   help="training: refuse to reuse an existing run directory")
    p.add_argument("--merge", action="store_true",
                   help="a preprocess spec: only check its shards and merge them (what "
                        "slurm/merge.sbatch runs after the array)")
    p.add_argument("--chain", type=_chain_link, default=chain.NO_CHAIN, metavar="FIRST:K",
                   help="link K of the resubmit chain that job FIRST started "
                        "(resources.resubmit): exit at once if the run ended, else resume")


def _view_commands(sub) -> None:
    """The commands that read what jobs wrote (and write nothing a job reads)."""
    p = sub.add_parser("status", help="state of the jobs submitted for a spec or run directory")
    p.add_argument("target", metavar="SPEC_OR_DIR")
    p = sub.add_parser("report", help="write the HTML page of a run directory or a sweep's "
                                      "run_root (or of a spec's): one self-contained file "
                                      "that any browser opens, no server")
    p.add_argument("target", metavar="DIR_OR_SPEC")
    p = sub.add_parser("summary", help="a sweep's last metrics per point (table + CSV)")
    p.add_argument("spec", metavar="SWEEP_SPEC")
    p = sub.add_parser("schema", help="print the spec fields with their defaults and meaning")
    p.add_argument("--all", action="store_true", dest="everything",
                   help="also the advanced fields (each section's advanced:)")
    p.add_argument("--markdown", action="store_true",
                   help="as docs/spec-reference.md's markdown tables (every field)")
    p.add_argument("--update", "--update-readme", metavar="FILE", dest="update",
                   help="rewrite the field reference between the markers in this file "
                        "(docs/spec-reference.md; --update-readme is its older name)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobs", description="Validate, plan, run and submit facegan-hpc jobs "
        "described by YAML specs.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging and TensorFlow's own messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_spec(p: argparse.ArgumentParser, many: bool = False) -> None:
        p.add_argument("spec", nargs="+" if many else None, metavar="SPEC",
                       help="job spec YAML file" + ("(s)" if many else ""))
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a field, e.g. --set train.optimizer.learning_rate=1e-4 "
                            "(repeatable)")

    p = sub.add_parser("validate", help="check specs strictly; nothing runs")
    with_spec(p, many=True)
    p = sub.add_parser("plan", help="print the resolved spec and the exact sbatch/submitit "
                                    "submission; nothing is submitted")
    with_spec(p)
    p = sub.add_parser("run", help="run the job here, in this process")
    with_spec(p)
    _run_options(p)
    p = sub.add_parser("submit", help="submit through submitit to Slurm or run with its local "
                                      "executor")
    with_spec(p)
    p.add_argument("--executor", choices=("slurm", "local"), default="slurm",
                   help="slurm (default) or local (no Slurm needed; runs on this machine)")
    p.add_argument("--wait", action="store_true", help="wait for the jobs and report results")
    p.add_argument("--preflight", action="store_true",
                   help="a train spec: run its preflight first (as the preflight command) and "
                        "submit only if it passes")
    p = sub.add_parser("preflight", help="prove an allocation before a long run: a short job "
                                         "on a train spec's resources checks every rank "
                                         "(device, allreduce, data rate, step); exit 3 names "
                                         "a failed check and its rank")
    with_spec(p)
    p.add_argument("--executor", choices=("slurm", "local", "here"), default="slurm",
                   help="slurm (default): a job on the spec's resources; local: submitit's "
                        "local executor (one rank); here: this process, or the ranks srun "
                        "or horovodrun started inside an allocation")
    p = sub.add_parser("stalled", help="for the sbatch scripts: did the stall watchdog end "
                                       "the job, is it retried ('retry NODES' or 'no')")
    with_spec(p)
    _run_options(p)  # it takes the job's own command line
    _view_commands(sub)
    return parser


def main(argv: list[str] | None = None, stop: StopSignals | None = None) -> int:
    """``stop``: the stop signals ``python -m jobs`` caught before its slow imports."""
    args = build_parser().parse_args(argv)
    args.stop = stop
    runtime.configure(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except SpecError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return exitcodes.INVALID_SPEC
    except KeyboardInterrupt:
        return 130


def _load(args: argparse.Namespace, path: str) -> JobSpec:
    """Load and check a spec, including the rules of the specs it refers to."""
    spec = load_spec(path, parse_set_args(args.set))
    kinds.ensure_checked(spec)
    return spec


def cmd_validate(args: argparse.Namespace) -> int:
    problems: list[str] = []
    for path in args.spec:
        try:
            spec = _load(args, path)
            print(f"ok: {path} ({spec.kind} '{spec.name}')")
        except SpecError as exc:
            problems += exc.problems
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return exitcodes.INVALID_SPEC if problems else exitcodes.OK


def cmd_plan(args: argparse.Namespace) -> int:
    spec = _load(args, args.spec)
    print(f"# resolved spec ({spec.source})")
    print(yaml.safe_dump(spec.to_dict(redact=True), sort_keys=False,
                         default_flow_style=None).rstrip())
    print()
    print(pipeline.render_plan(spec) if kinds.is_(spec, "pipeline") else
          scheduler.render_plan(spec, args.set))
    for warning in [*plan_scaling.plan_warnings(spec), *plan_scaling.device_warnings(spec)]:
        print(warning)
    for line in dict.fromkeys(train.work.watchdog.describe()
                              for _, train in kinds.of(spec).trainings(spec)):
        print(line)
    return _paths_code(spec)


def _paths_code(spec: JobSpec) -> int:
    """The spec's inputs and outputs checked here: each problem printed, exit 3 if any."""
    problems = check_paths(spec)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return exitcodes.NOT_RUNNABLE if problems else exitcodes.OK


def cmd_run(args: argparse.Namespace) -> int:
    spec = _load(args, args.spec)
    if args.merge:
        if not kinds.is_(spec, "preprocess"):
            print(f"error: {args.spec} is a '{spec.kind}' spec; --merge merges a preprocess "
                  "spec's shards", file=sys.stderr)
            return exitcodes.INVALID_SPEC
        spec = merge_spec(spec)
    index = args.index if args.index is not None else array_index_from_env()
    log.info("running %s '%s' from %s%s", spec.kind, spec.name, spec.source,
             f" (array task {index})" if index is not None else "")
    return kinds.run(spec, Launch(index=index, fresh=args.fresh, stop=args.stop or StopSignals(),
                                  link=args.chain))


def _chain_link(text: str) -> chain.Link:
    try:
        return chain.parse_link(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_submit(args: argparse.Namespace) -> int:
    spec = _load(args, args.spec)
    code = _preflight(spec, args.spec, args.executor) if args.preflight else _paths_code(spec)
    return code if code != exitcodes.OK else submit(spec, executor=args.executor,
                                                    wait=args.wait)


def _preflight(spec: JobSpec, path: str, executor: str) -> int:
    """A train spec's preflight, waited for: the command, and ``submit --preflight``."""
    if not kinds.is_(spec, "train"):
        print(f"error: {path} is a '{spec.kind}' spec; preflight checks a train spec",
              file=sys.stderr)
        return exitcodes.INVALID_SPEC
    code = _paths_code(spec)
    return code if code != exitcodes.OK else preflight(spec, executor)


def cmd_preflight(args: argparse.Namespace) -> int:
    return _preflight(_load(args, args.spec), args.spec, args.executor)


def cmd_stalled(args: argparse.Namespace) -> int:
    """The stall record of this job's last run (``jobs/core/stall.py``) as one line for
    slurm/common.sh; why, in the log. A spec that trains nothing was never watched."""
    spec = load_spec(args.spec, parse_set_args(args.set))
    if kinds.is_(spec, "sweep"):  # (None: a study's trial it never asked for)
        spec = point_spec(spec, args.index if args.index is not None else
                          array_index_from_env() or 0)
    if spec is None or not kinds.is_(spec, "train"):
        print("no")
        return exitcodes.OK
    verdict = stall.verdict(events.read(spec.work.run_dir), events.job_id(),
                            spec.work.watchdog,
                            stall.limits_from_env(spec.resources.max_requeues))
    log.info("%s: %s", spec.work.run_dir, verdict.why)
    print(verdict.line())
    return exitcodes.OK


def cmd_status(args: argparse.Namespace) -> int:
    target = Path(args.target)
    work_dir = Path(load_spec(target).work_dir) if target.is_file() else target
    if not work_dir.is_dir():
        print(f"error: {work_dir} is not a directory", file=sys.stderr)
        return exitcodes.NOT_RUNNABLE
    print(status(work_dir))
    return exitcodes.OK


def cmd_summary(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    if not kinds.is_(spec, "sweep"):
        print(f"error: {args.spec} is a '{spec.kind}' spec, not a sweep", file=sys.stderr)
        return exitcodes.INVALID_SPEC
    path, rows = summary(spec)
    print(format_table(rows, [c for c in summary_columns(rows) if c != "run_dir"]))
    print(f"\n{len(rows)} points -> {path}")
    figure = spec.work.early_stop.metric
    plot = plot_summary(rows, swept_keys(spec), figure, path.with_suffix(".png"))
    print(f"{figure} against each swept value -> {plot}" if plot else
          f"(no plot: no point has measured {figure} yet)")
    return exitcodes.OK


def cmd_report(args: argparse.Namespace) -> int:
    """The page of a directory (what it holds says which page), or of a spec's directory."""
    target = Path(args.target)
    try:
        if target.is_file():
            spec = load_spec(target)
            page = kinds.of(spec).page(spec)
            if page is None:
                raise report.NoPage(f"{target}: a '{spec.kind}' job has no report page, or "
                                    "has not started training yet")
        else:
            page = report.page_of_directory(target)
    except report.NoPage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.NOT_RUNNABLE
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # what it read
        print(f"error: {target}: no page written: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return exitcodes.NOT_RUNNABLE
    print(page)
    return exitcodes.OK


def cmd_schema(args: argparse.Namespace) -> int:
    if args.update:
        schema_doc.update_reference(args.update)
        return exitcodes.OK
    print(schema_doc.render(markdown=args.markdown, everything=args.everything or args.markdown))
    return exitcodes.OK


COMMANDS = {"validate": cmd_validate, "plan": cmd_plan, "run": cmd_run, "submit": cmd_submit,
            "preflight": cmd_preflight, "stalled": cmd_stalled, "status": cmd_status,
            "report": cmd_report, "summary": cmd_summary, "schema": cmd_schema}
