"""Turn a spec's ``resources`` into a scheduler request: an ``sbatch`` command line for the
scripts in ``slurm/`` and the equivalent submitit executor parameters.

:func:`slurm_options` renders the sbatch options and :func:`submitit_parameters` submitit's;
both read only ``spec.resources``, and ``test_submitit_asks_for_the_same_allocation`` checks
that the two routes ask Slurm for the same allocation. ``plan`` prints both, as ``submit``
sends them.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from gan.parallel.devices import gpu_reason
from jobs import kinds
from jobs.core.fields import iter_path_fields, walltime_minutes
from jobs.core.schema import JobSpec, Resources

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SLURM_DIR = PROJECT_ROOT / "slurm"
DOCKER_TASK = PROJECT_ROOT / "containers" / "docker-task.sh"


# srun's arguments for Horovod ranks (slurm/common.sh passes the same, checked by a test):
# PMIx so MPI sees every task, and a rank that dies takes the step down with it — without
# that its peers spin in the allreduce at 100% CPU until the walltime.
SRUN_RANK_ARGS = ("--mpi=pmix", "--kill-on-bad-exit=1")


def srun_rank_args(cpus_per_task: int, ranks: int) -> list[str]:
    """SRUN_RANK_ARGS (for several ranks) with the MPI plugin the site names in
    FACEGAN_SRUN_MPI, as common.sh, and the CPUs of each task: since Slurm 22.05 srun no longer
    inherits --cpus-per-task from the allocation, so without it a task may be bound to one
    CPU (submitit starts even a single task with srun)."""
    mpi = os.environ.get("FACEGAN_SRUN_MPI")
    mpi_args = [f"--mpi={mpi}" if mpi and a.startswith("--mpi=") else a for a in SRUN_RANK_ARGS]
    return [*(mpi_args if ranks > 1 else []), f"--cpus-per-task={cpus_per_task}"]


def array_size(spec: JobSpec) -> int | None:
    """Tasks in the job's Slurm array, or None for a single job."""
    return kinds.of(spec).array_size(spec)


def log_dir(spec: JobSpec) -> Path:
    return Path(spec.work_dir) / "logs"


def bind_dirs(spec: JobSpec) -> list[str]:
    """Host directories a containerised job needs: the spec's, every path in it (inputs as
    they are, outputs by their nearest existing parent) and ``container.binds``."""
    dirs = {str(Path(spec.source).resolve().parent)}
    for _, value, _ in iter_path_fields(spec.work, spec.kind):
        path = Path(value)
        existing = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
        dirs.add(str(existing if existing.is_dir() else existing.parent))
    return sorted(dirs) + list(spec.resources.container.binds)


def container_command(spec: JobSpec) -> list[str]:
    """The prefix that runs a command inside the spec's container ([] for none). Only the
    job's own command goes inside: sbatch/scontrol/srun stay on the host."""
    c = spec.resources.container
    if c.runtime == "none":
        return []
    binds = bind_dirs(spec)
    if c.runtime == "apptainer":
        gpu = ["--nv"] if spec.resources.gpus_per_node else []
        return ["apptainer", "exec", *gpu, *[a for b in binds for a in ("-B", b)], c.image]
    # docker-task.sh adds, on the node as the task starts, the GPUs Slurm gave it, every
    # SLURM_* variable and the host's IPC namespace
    device = getattr(spec.work, "device", "auto")  # train's train.device; others: auto
    gpu = ["--gpus"] if gpu_reason(device, spec.resources.gpus_per_node) else []
    mounts = [a for b in binds for a in ("-v", f"{b}:{b}" if ":" not in b else b)]
    return [str(DOCKER_TASK), *gpu, "--rm", "--init", "--network", "host", *mounts, c.image]


def dependency_options(after: str, condition: str = "afterok") -> dict[str, str]:
    """Start only after job ``after`` succeeded (``afterok``; cancelled, not pending forever,
    if it failed), or after it ended in any way (``afterany``: a resubmit chain's link)."""
    return {"dependency": f"{condition}:{after}", "kill-on-invalid-dep": "yes"}


def requeues_itself(spec: JobSpec) -> bool:
    """Training (also as sweep points) checkpoints at the walltime signal and requeues."""
    return kinds.of(spec).requeues


def slurm_options(spec: JobSpec) -> dict[str, str | None]:
    """sbatch long options (without ``--``) for this job; a None value is a bare flag."""
    res = spec.resources
    opts: dict[str, str | None] = {
        "job-name": spec.name,
        "nodes": str(res.nodes),
        "ntasks-per-node": str(res.tasks_per_node),
        "cpus-per-task": str(res.cpus_per_task),
        "mem": f"{int(res.mem_gb * 1024)}M",
        "time": res.time,
    }
    if res.gpus_per_node:
        opts["gres"] = f"gpu:{res.gpus_per_node}"
    for key in ("partition", "account", "qos"):
        if getattr(res, key):
            opts[key] = getattr(res, key)
    size = array_size(spec)
    if size is not None:
        opts["array"] = f"0-{size - 1}" + (f"%{res.array_throttle}" if res.array_throttle else "")
        opts["output"] = str(log_dir(spec) / "%x-%A_%a.out")
    else:
        opts["output"] = str(log_dir(spec) / "%x-%j.out")
    if requeues_itself(spec):
        opts["signal"] = f"B:USR1@{res.signal_lead_s}"
        opts["requeue"] = None
        opts["open-mode"] = "append"
    for key, value in extra_options(res).items():  # a typed gres replaces gpu:N
        opts[key] = None if value is True else value
    return opts


def extra_options(res: Resources) -> dict[str, str | bool]:
    """``resources.slurm_extra`` as both routes pass it: true a bare flag, false left out,
    every other value as text."""
    return {key: True if value is True else str(value)
            for key, value in res.slurm_extra.items() if value is not False}


def sbatch_argv(spec: JobSpec, overrides: list[str] = (), *, script: str | None = None,
                options: dict[str, str | None | bool] | None = None) -> list[str]:
    """The exact sbatch command that submits this job with the scripts in ``slurm/``.
    ``options`` adds or replaces sbatch options (``False`` removes one)."""
    opts = slurm_options(spec)
    for key, value in (options or {}).items():
        if value is False:
            opts.pop(key, None)
        else:
            opts[key] = value
    argv = ["sbatch"]
    for key, value in opts.items():
        argv.append(f"--{key}" if value is None else f"--{key}={value}")
    # sbatch runs a spool copy of the script: tell it where the project is.
    export = (f"--export=ALL,FACEGAN_ROOT={PROJECT_ROOT},"
              f"FACEGAN_MAX_REQUEUES={spec.resources.max_requeues}")
    container = container_command(spec)
    if container:  # the scripts put this before the job's python (no commas: --export splits)
        export += f",FACEGAN_CONTAINER={' '.join(container)},FACEGAN_PYTHON=python"
    argv.append(export)
    argv.append(str(SLURM_DIR / (script or kinds.of(spec).sbatch)))
    argv.append(str(Path(spec.source).resolve()))
    for item in overrides:
        argv += ["--set", item]
    return argv


def submitit_parameters(spec: JobSpec) -> dict[str, Any]:
    """Parameters for ``submitit.AutoExecutor.update_parameters`` (same allocation as sbatch)."""
    res = spec.resources
    params: dict[str, Any] = {
        "name": spec.name,
        "timeout_min": walltime_minutes(res.time),
        "nodes": res.nodes,
        "tasks_per_node": res.tasks_per_node,
        "cpus_per_task": res.cpus_per_task,
        "gpus_per_node": res.gpus_per_node,
        "mem_gb": res.mem_gb,
        "slurm_signal_delay_s": res.signal_lead_s,
    }
    for key in ("partition", "account", "qos"):
        if getattr(res, key):
            params[f"slurm_{key}"] = getattr(res, key)
    if res.array_throttle:
        params["slurm_array_parallelism"] = res.array_throttle
    extra = extra_options(res)
    if "gres" in extra:  # a typed gres, in place of submitit's --gpus-per-node
        params["gpus_per_node"] = 0
        params["slurm_gres"] = extra.pop("gres")
    if extra:
        params["slurm_additional_parameters"] = extra
    # submitit starts its tasks with srun; Horovod ranks need MPI to see every one
    params["slurm_srun_args"] = srun_rank_args(res.cpus_per_task, res.nodes * res.tasks_per_node)
    return params


def submitit_python(spec: JobSpec) -> str | None:
    """submitit's python command: inside the container if the spec asks for one."""
    container = container_command(spec)
    return shlex.join([*container, "python"]) if container else None


def submitit_executor_args(spec: JobSpec) -> dict[str, Any]:
    """Arguments only the executor's constructor takes."""
    args = {"folder": str(log_dir(spec) / "submitit" / "%j"),
            "slurm_max_num_timeout": spec.resources.max_requeues}
    if submitit_python(spec):
        args["slurm_python"] = submitit_python(spec)
    return args


def render_plan(spec: JobSpec, overrides: list[str] = ()) -> str:
    """Human-readable plan: the sbatch command(s), then the submitit calls."""
    argv = sbatch_argv(spec, overrides)
    lines = ["# sbatch (plain Slurm):", f"mkdir -p {shlex.quote(str(log_dir(spec)))}",
             " \\\n    ".join(shlex.quote(a) for a in argv), *_rank_lines(spec, argv), "",
             "# submitit (python -m jobs submit):",
             f"executor = submitit.AutoExecutor({_kwargs(submitit_executor_args(spec))})",
             f"executor.update_parameters({_kwargs(submitit_parameters(spec))})"]
    size = array_size(spec)
    lines.append(f"executor.map_array(task, range({size}))  # one Slurm array"
                 if size is not None else "executor.submit(task)")
    return "\n".join(lines + _chain_lines(spec, argv))


def chain_argv(argv: list[str], previous: str, link: str) -> list[str]:
    """A resubmit chain's link: the job's sbatch line, after ``previous`` ends in any way,
    told which link it is (``python -m jobs run --chain FIRST:K``)."""
    deps = [f"--{k}={v}" for k, v in dependency_options(previous, "afterany").items()]
    return [argv[0], "--parsable", *deps, *argv[1:], "--chain", link]


def _chain_lines(spec: JobSpec, argv: list[str]) -> list[str]:
    """``resources.resubmit``: the sbatch lines of the chain, as a shell loop."""
    loop = chain_loop(spec, argv)
    if not loop:
        return []
    first = " ".join(shlex.quote(a) for a in [argv[0], "--parsable", *argv[1:]])
    return ["", f"# resources.resubmit: {spec.resources.resubmit} successor(s), each after "
                "the one before ends (sbatch route, instead of the sbatch line above):",
            f"first=$({first})", *loop]


def chain_loop(spec: JobSpec, argv: list[str]) -> list[str]:
    """After ``first=$(sbatch --parsable …)``: the chain's successors (none without
    ``resources.resubmit``)."""
    n = spec.resources.resubmit
    if not n or not requeues_itself(spec):
        return []
    link = " ".join(shlex.quote(a) for a in chain_argv(argv, "@P", "@L"))
    link = link.replace("@P", "${prev%%;*}").replace("@L", '"${first%%;*}:$k"')
    return ["prev=$first", f"for k in $(seq 1 {n}); do prev=$({link}); done"]


def _rank_lines(spec: JobSpec, argv: list[str]) -> list[str]:
    """How a multi-rank job starts its ranks (``launch_ranks`` in slurm/common.sh), and what
    does not fit one rank per GPU."""
    res = spec.resources
    ranks = res.nodes * res.tasks_per_node
    if ranks <= 1:
        return []
    spec_and_sets = argv[next(i for i, a in enumerate(argv) if a.endswith(".sbatch")) + 1:]
    python = str(PROJECT_ROOT / ".venv" / "bin" / "python")  # common.sh's FACEGAN_PYTHON
    lines = [f"# inside the allocation, slurm/common.sh starts {ranks} Horovod ranks "
             f"({res.nodes} node(s) x {res.tasks_per_node}), each with {res.cpus_per_task} "
             "CPU(s):", shlex.join(["srun", *srun_rank_args(res.cpus_per_task, ranks),
                                    *container_command(spec), python,
                                    "-m", "jobs", "run", *spec_and_sets])]
    if res.gpus_per_node and res.gpus_per_node != res.tasks_per_node:
        lines.append(f"# warning: {res.gpus_per_node} GPUs per node but {res.tasks_per_node} "
                     "ranks per node: Horovod pins one GPU per local rank; set "
                     "resources.tasks_per_node = resources.gpus_per_node")
    return lines


def _kwargs(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())
