import sys

from jobs.core.signals import StopSignals

stop = StopSignals().catch_early()  # first, before the slow imports

from jobs.cli import main  # noqa: E402

sys.exit(main(stop=stop))
