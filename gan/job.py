"""The ``train`` job kind: what ``python -m jobs run`` and ``slurm/train.sbatch`` call."""
from __future__ import annotations

import logging

from jobs import exitcodes
from jobs.schema import JobSpec

log = logging.getLogger(__name__)


def run(spec: JobSpec, index: int | None = None, fresh: bool = False) -> int:
    from gan import distributed
    from gan.guard import GuardStop
    from gan.train import SpecMismatch, Trainer

    world = distributed.init()
    if not world.is_chief:  # only rank 0 logs progress; the others speak up on problems
        logging.getLogger().setLevel(logging.WARNING)
    try:
        trainer = Trainer(spec.work, world, fresh=fresh)
    except (SpecMismatch, OSError, ValueError) as exc:
        log.error("%s", exc)
        return exitcodes.NOT_RUNNABLE
    try:
        return trainer.run()
    except GuardStop as exc:
        log.error("%s", exc)
        return exitcodes.GUARD_STOPPED
