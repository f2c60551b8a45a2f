"""``./run demo``: the main job on the bundled default specs.

Until the pipeline's stages land (preprocess: issue #3, train: #4, chained submission: #5),
the demo validates every example spec and prints the submission each would make.
"""
from __future__ import annotations

import sys
from pathlib import Path

from jobs import exitcodes, runtime
from jobs.cli import main as jobs_main

EXAMPLES = sorted(str(p) for p in (Path(__file__).parent / "examples").glob("*.yaml"))


def main() -> int:
    runtime.configure()
    code = jobs_main(["validate", *EXAMPLES])
    if code != exitcodes.OK:
        return code
    for spec in EXAMPLES:
        print(f"\n===== plan: {spec} =====", flush=True)
        code = jobs_main(["plan", spec])
        if code not in (exitcodes.OK, exitcodes.NOT_RUNNABLE):  # inputs come from earlier stages
            return code
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
