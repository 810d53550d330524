"""Run nx-27017 so that it never outlives the process that started it (see `embedded.py`).

    python .../store/_child.py PARENT_PID NX_27017_ARGUMENTS...

On Linux the kernel sends this process SIGTERM as soon as its parent dies
(`prctl(PR_SET_PDEATHSIG, SIGTERM)`); on every platform a watchdog thread also checks the parent
pid every second (it covers other systems, and a parent that died before the `prctl`). nx-27017
exits on SIGTERM. Run as a script, not with `-m`: it needs nothing but nx-27017 importable.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCHDOG_SECONDS = 1.0


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl: nobody needs us
        sys.exit(0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main() -> None:
    # Running as a script puts this file's folder first on sys.path: the engine needs none of it.
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == here:
        sys.path.pop(0)
    parent, arguments = int(sys.argv[1]), sys.argv[2:]
    _die_with_parent(parent)
    from nx_27017 import main as nx_main  # type: ignore[import-untyped]

    sys.argv = ["nx-27017", *arguments]
    sys.exit(nx_main())


if __name__ == "__main__":
    main()
