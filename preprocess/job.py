"""The ``preprocess`` job kind: what ``python -m jobs run`` and the array script call.

With an index (an array task, ``--index K`` or ``$SLURM_ARRAY_TASK_ID``) it writes that one
shard. Without, it writes every shard that is not already complete — so an interrupted local
run picks up where it stopped — and then merges.
"""
from __future__ import annotations

import logging

from jobs.core import exitcodes, files
from jobs.core.launch import Launch
from jobs.core.schema import JobSpec
from preprocess.extract import process_shard, spec_hash
from preprocess.inputs import InputError
from preprocess.merge import MissingShards, merge
from preprocess.shards import inspect_shard, shard_path

log = logging.getLogger(__name__)


def run(spec: JobSpec, launch: Launch) -> int:
    work, index = spec.work, launch.index
    try:
        if index is not None:
            if not 0 <= index < work.num_shards:
                log.error("array index %d is outside 0..%d (num_shards=%d)", index,
                          work.num_shards - 1, work.num_shards)
                return exitcodes.INVALID_SPEC
            process_shard(work, index)
            return exitcodes.OK
        expected = spec_hash(work)
        for k in range(work.num_shards):
            path = shard_path(work.output_dir, k, work.num_shards)
            if not launch.fresh and not isinstance(
                    inspect_shard(path, k, work.num_shards, expected, verify=False), str):
                log.info("shard %d/%d already complete: %s", k, work.num_shards, path.name)
                continue
            process_shard(work, k)
        merge(work, spec.source)
        return exitcodes.OK
    except InputError as exc:
        log.error("%s", exc)
        return exitcodes.NOT_RUNNABLE
    except MissingShards as exc:
        log.error("%s", exc)
        return exitcodes.FAILED
    except Exception as exc:
        return disk_full(work.output_dir, exc)


def run_merge(spec: JobSpec) -> int:
    """Only the merge (the step a Slurm chain runs after the array)."""
    try:
        merge(spec.work, spec.source)
        return exitcodes.OK
    except MissingShards as exc:
        log.error("%s", exc)
        return exitcodes.FAILED
    except Exception as exc:
        return disk_full(spec.work.output_dir, exc)


def disk_full(output_dir: str, exc: Exception) -> int:
    """Exit 3 with one clear line when ``exc`` is a full filesystem; re-raise anything else.
    Shards and the merged file are written under temporary names that an error removes, so
    nothing half-written is left that looks valid; finished shards stay."""
    if not files.is_disk_full(exc):
        raise exc
    log.error("%s", files.disk_full_message(
        output_dir, exc, "No shard or merged file was left half-written; finished shards are "
        "kept and a rerun skips them."))
    return exitcodes.NOT_RUNNABLE
