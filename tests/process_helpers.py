"""Helpers shared by the Process and Manager tests."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterable

import gproc

from .conftest import gone, python_program

WORKER = python_program("worker")


def worker(*options: str, **kw: object) -> gproc.Process:
    """The worker program (tests/programs/worker.py) with its stdout on a pipe."""
    return gproc.Process(WORKER[0], [*WORKER[1:], *options], stdout=gproc.PIPE, **kw)  # type: ignore[arg-type]


def ready(proc: gproc.Process) -> int:
    """Read the worker's "ready <pid>" line (the readiness handshake) and return the pid."""
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("ready "), line
    return int(line.split()[1])


def all_gone(pids: Iterable[int], timeout: float = 5.0) -> bool:
    """Wait on pidfds (a zombie's is readable too) until every pid is gone; True if they are."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    try:
        for fd in fds:
            remaining = max(0.0, deadline - time.monotonic())
            select.select([fd], [], [], remaining)
    finally:
        for fd in fds:
            os.close(fd)
    return all(gone(pid) for pid in pids)


def reaped(pid: int) -> bool:
    """Neither running nor a zombie child of ours, as /proc tells it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return True
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return not (int(ppid) == os.getpid() and state in "RSDZT")
