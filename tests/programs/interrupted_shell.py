"""Runs a shell command through gproc until SIGINT arrives; reports how it ended.

argv[1]: "tree"  -> run a shell whose grandchild holds the output pipe; print its pid, then wait.
         "loop"  -> start short commands back to back (to be interrupted at any moment).
"""

from __future__ import annotations

import signal
import sys

import gproc

# A test runner started in the background may hand us SIGINT ignored; act like a terminal program.
signal.signal(signal.SIGINT, signal.default_int_handler)
mode = sys.argv[1]
try:
    if mode == "tree":
        # stdout is our pipe to the test: the shell prints the grandchild's pid on it.
        gproc.shell("sleep 100 & echo $!; wait", stdout=sys.stdout, grace=1.0)
    else:
        print("ready", flush=True)
        while True:
            gproc.shell_exec("true")
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
