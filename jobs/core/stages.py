"""A pipeline's stages, described once: preprocess (an array of shards) → merge → train.

The sbatch chain ``plan`` prints (``jobs/pipeline.py``), the submitit jobs ``submit`` makes
(``jobs/submit.py``) and the in-process run (``python -m jobs run PIPELINE``, the pipeline's
entry in ``jobs/kinds.py``) all walk this list: its order, each stage's spec, the overrides
its sbatch line passes, the stage it waits for (``afterok``), and whether the in-process run
runs it (not the merge: a preprocess run without an array index merges its shards itself).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from jobs.core.loader import pipeline_stages
from jobs.core.schema import JobSpec


@dataclass(frozen=True)
class Stage:
    name: str  # its shell variable in the printed chain, and submit's label
    spec: JobSpec
    sets: list[str]  # the --set overrides its sbatch line passes
    after: str | None  # the stage whose success it waits for
    in_process: bool = True  # run by ``python -m jobs run PIPELINE``


def merge_spec(preprocess: JobSpec) -> JobSpec:
    """A preprocess spec's merge, as a job of its own (a pipeline's second stage)."""
    return dataclasses.replace(preprocess, kind="merge", name=f"{preprocess.name}-merge")


def stages(job: JobSpec) -> list[Stage]:
    """The pipeline's stages in order; the last is the training (a resubmit chain's first)."""
    pre, train = pipeline_stages(job)
    pre_set = list(job.work.preprocess_set)
    return [Stage("pre", pre, pre_set, None),
            Stage("merge", merge_spec(pre), pre_set, "pre", in_process=False),
            Stage("first", train, [*job.work.train_set, f"train.data={train.work.data}"],
                  "merge")]
