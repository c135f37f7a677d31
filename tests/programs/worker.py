"""A worker for process tests: set up signal behaviour, say "ready <pid>", then sleep.

Options: ``--ignore-term`` (SIGTERM does nothing), ``--usr1-exit CODE`` (SIGUSR1 exits with CODE).
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main(argv: list[str]) -> None:
    if "--ignore-term" in argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "--usr1-exit" in argv:
        code = int(argv[argv.index("--usr1-exit") + 1])
        signal.signal(signal.SIGUSR1, lambda *_: os._exit(code))
    sys.stdout.write(f"ready {os.getpid()}\n")
    sys.stdout.flush()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1:])
