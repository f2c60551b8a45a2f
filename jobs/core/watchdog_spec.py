"""``train.watchdog``: the stall watchdog's settings (``jobs/core/watchdog.py`` acts on them).

Why these defaults: a hung job burns its whole allocation, so the watchdog must speak well
before the walltime, yet never mistake the first step's compile, a checkpoint on a slow
filesystem or a quality measurement for a hang. Unset, ``stall_s`` is derived from the
steps it measured: ``step_factor`` times the slowest of the recent step intervals (their
95th percentile), never below ``floor_s`` (also the bound until 8 steps are measured, which
covers the compile) and never above ``CAP_FLOORS`` floors. Named pauses (a checkpoint, a
quality measurement, rank 0's figures) have their own bound, ``pause_s``.
"""
from __future__ import annotations

from dataclasses import dataclass

from jobs.core.fields import opt

CAP_FLOORS = 3  # a derived bound is at most this many floor_s


@dataclass
class WatchdogSpec:
    enabled: bool = opt(True, "Watch every rank for progress: a job whose ranks make none for "
                              "stall_s is ended with every thread's stack in its log, a "
                              "'stall' event naming the rank and host that stopped, and exit "
                              "76, which the sbatch scripts and submitit retry")
    stall_s: float | None = opt(None, "Seconds without a step before the job counts as hung; "
                                      "none: derived from the measured step time (step_factor "
                                      "x the slow end of recent steps, at least floor_s)", gt=0)
    floor_s: float = opt(600.0, "The least a derived stall_s can be, and the bound until 8 "
                                "steps are measured (the first step compiles)", gt=0,
                         advanced=True)
    step_factor: float = opt(50.0, "A derived stall_s is this many times the 95th percentile "
                                   "of the last 100 step intervals", gt=1, advanced=True)
    pause_s: float = opt(1800.0, "How long a named pause may last (a checkpoint, a quality "
                                 "measurement, rank 0 writing figures while the others wait) "
                                 "before it counts as a hang", gt=0, advanced=True)
    retries: int = opt(3, "How many times one run is retried after a stall; more stalls end "
                          "it (the requeue limit still applies)", ge=0, advanced=True)
    exclude_max: int = opt(2, "How many nodes one job may leave out on its retries (never so "
                              "many that its node count cannot be met)", ge=0, advanced=True)

    def problems(self) -> list[tuple[str, str]]:
        if self.stall_s is not None and self.pause_s < self.stall_s:
            return [("advanced.pause_s", f"{self.pause_s:g} is shorter than stall_s "
                                         f"{self.stall_s:g}: a pause is a longer wait")]
        return []

    def bounds(self) -> tuple[float, float]:
        """The least and the most seconds the watchdog may wait before acting on a step."""
        if self.stall_s is not None:
            return self.stall_s, self.stall_s
        return self.floor_s, CAP_FLOORS * self.floor_s

    def horovod_environment(self) -> dict[str, str]:
        """Horovod's own stall check, agreeing with the watchdog: its warning (naming the
        ranks that did not submit a tensor) comes at half the least bound, so it is in the
        log before the watchdog acts; its shutdown only after the longest wait the watchdog
        allows (a pause, then a stall), so the watchdog always speaks first."""
        least, most = self.bounds()
        return {"HOROVOD_STALL_CHECK_TIME_SECONDS": str(max(5, int(least // 2))),
                "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": str(int(self.pause_s + most + 60))}

    def describe(self) -> str:
        """One plan line: what the watchdog will do with these settings."""
        if not self.enabled:
            return "# stall watchdog: off (train.watchdog.enabled: false)"
        least, most = self.bounds()
        bound = f"{least:g} s" if self.stall_s is not None else \
            f"{self.step_factor:g} x the slow steps, within {least:g}-{most:g} s"
        env = self.horovod_environment()
        return (f"# stall watchdog: a rank without a step for {bound} (a named pause: "
                f"{self.pause_s:g} s) ends the job with its stacks, exit 76; retried up to "
                f"{self.retries} times, leaving out up to {self.exclude_max} node(s). "
                f"Horovod's stall check: warns at {env['HOROVOD_STALL_CHECK_TIME_SECONDS']} s, "
                f"shuts down at {env['HOROVOD_STALL_SHUTDOWN_TIME_SECONDS']} s")
