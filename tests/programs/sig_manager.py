"""A Manager with three kinds of children that shuts down on signals (tests/test_signals.py).

Usage: sig_manager.py sync|aio. Prints each child's pid, then "ready" once ``listen`` has its
handlers in place (children must not be started with signals blocked: they would inherit the
block, so the readiness comes from listen itself), then what listen returned and each exit code.
"""

from __future__ import annotations

import asyncio
import sys

import gproc
from gproc import aio
from gproc._drive import run_async, run_sync
from gproc._listen import _task_starter, listen_op

COMMANDS = [
    "echo up; exec sleep 60",  # stops on SIGTERM
    "trap '' TERM; echo up; exec sleep 60",  # ignores SIGTERM (inherited): needs the SIGKILL
    "sleep 60 & sleep 60 & echo up; wait",  # a tree: grandchildren must go too
]


def say(*parts: object) -> None:
    sys.stdout.write(" ".join(map(str, parts)) + "\n")
    sys.stdout.flush()


def ready() -> None:
    say("ready")


def sync_main() -> None:
    with gproc.Manager() as manager:
        procs = [manager.new_command(cmd, stdout=gproc.PIPE) for cmd in COMMANDS]
        for proc in procs:
            proc.start()
            assert proc.stdout is not None
            proc.stdout.readline()  # "up": its own children exist now
            say("child", proc.pid)
        manager.shutdown_on_signals(grace=0.5)
        sig = run_sync(listen_op(on_listening=ready))
        say("listen returned", sig.name if sig else None)
        say("codes", *(proc.returncode for proc in procs))
        say("running", len(manager.running()))


async def aio_main() -> None:
    async with aio.Manager() as manager:
        procs = [manager.new_command(cmd, stdout=gproc.PIPE) for cmd in COMMANDS]
        for proc in procs:
            proc.start()
            assert proc.stdout is not None
            proc.stdout.readline()
            say("child", proc.pid)
        manager.shutdown_on_signals(grace=0.5)
        starter = _task_starter(asyncio.get_running_loop())
        sig = await run_async(listen_op(None, starter, on_listening=ready))
        say("listen returned", sig.name if sig else None)
        say("codes", *(proc.returncode for proc in procs))
        say("running", len(manager.running()))


if __name__ == "__main__":
    if sys.argv[1] == "sync":
        sync_main()
    else:
        asyncio.run(aio_main())
