import sys

from jobs import runtime

runtime.catch_early_stop_signals()  # first, before the slow imports

from jobs.cli import main  # noqa: E402

sys.exit(main())
