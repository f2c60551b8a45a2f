import sys

from jobs.core import runtime
from jobs.core.signals import StopSignals

stop = StopSignals().catch_early()  # first, before the slow imports
runtime.quiet_before_imports(sys.argv)
runtime.skip_keras_extras()

from jobs.cli import main  # noqa: E402

sys.exit(main(stop=stop))
