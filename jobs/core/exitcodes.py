"""Exit codes of ``python -m jobs`` and of every job it runs.

The Slurm scripts and the submitit wrapper act on these: only ``REQUEUE`` asks to be run again,
and a ``STALLED`` job is retried when its ``stall`` event says so.
"""
OK = 0
FAILED = 1            # an unexpected error; the traceback is in the log
INVALID_SPEC = 2      # the spec (or the command line) is wrong: nothing ran
NOT_RUNNABLE = 3      # valid spec, but its inputs are missing, its disk full, the ranks were
                      # launched without a process manager, or a GPU job sees no GPU:
                      # rerunning as is won't help
REQUEUE = 75          # checkpointed after a stop signal: run me again (EX_TEMPFAIL)
STALLED = 76          # the stall watchdog ended a rank that made no progress: retried from the
                      # last checkpoint, decided by the 'stall' event (jobs/core/stall.py)
GUARD_STOPPED = 79    # the mode-collapse guard gave up: do not requeue
EARLY_STOPPED = 80    # a sweep's early-stopping rule stopped this trial: do not requeue

DESCRIPTIONS = {
    OK: "success",
    FAILED: "failed with an error (see the log)",
    INVALID_SPEC: "invalid spec or command line; nothing ran",
    NOT_RUNNABLE: "cannot run here: inputs missing, disk full, ranks not joined, or no GPU",
    REQUEUE: "checkpointed after a stop signal; requeue to continue",
    STALLED: "no progress within the watchdog's bound; retried from the last checkpoint",
    GUARD_STOPPED: "stopped by the mode-collapse guard; do not requeue",
    EARLY_STOPPED: "stopped early by the sweep's rule; do not requeue",
}
