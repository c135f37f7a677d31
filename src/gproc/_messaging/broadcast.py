"""Sending to many processes at once: every send runs concurrently, failures are kept per pid.

:func:`gather` drives several operations as one: it waits on the union of their descriptors and
the earliest deadline, and hands each operation the part of the result that concerns it. So a
broadcast to ten processes where one is not receiving takes one timeout, not ten, and the sync
and asyncio faces still share it (it is an ``Op`` like any other).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TypeVar

from .._drive import Op, Ready, Wait
from . import sender

__all__ = ["gather", "send_each"]

T = TypeVar("T")


def gather(ops: Sequence[Op[T]]) -> Op[list[T | Exception]]:
    """Run ``ops`` concurrently; their results in order, an ``Exception`` in place of a failure.

    An interruption (Ctrl+C, cancellation) closes every unfinished operation, so each runs its
    clean-up (``finally``) before the interruption propagates.
    """
    results: list[T | Exception | None] = [None] * len(ops)
    waits: dict[int, Wait] = {}

    def advance(index: int, ready: Ready | None) -> None:
        op = ops[index]
        try:
            waits[index] = next(op) if ready is None else op.send(ready)
        except StopIteration as done:
            waits.pop(index, None)
            results[index] = done.value
        except Exception as exc:
            waits.pop(index, None)
            results[index] = exc

    try:
        for index in range(len(ops)):
            advance(index, None)
        while waits:
            readable: set[int] = set()
            writable: set[int] = set()
            deadline: float | None = None
            for wait in waits.values():
                readable.update(wait.readable)
                writable.update(wait.writable)
                if wait.deadline is not None and (deadline is None or wait.deadline < deadline):
                    deadline = wait.deadline
            ready = yield Wait(readable=readable, writable=writable, deadline=deadline)
            now = time.monotonic()
            for index, wait in list(waits.items()):
                mine = ready.intersection(wait.readable) | ready.intersection(wait.writable)
                if mine or (wait.deadline is not None and now >= wait.deadline):
                    advance(index, frozenset(mine))
    finally:
        for index in list(waits):
            ops[index].close()
    return results  # type: ignore[return-value]


def send_each(
    pids: Sequence[int], data: bytes | str, group: str, timeout: float | None
) -> Op[dict[int, Exception]]:
    """Send ``data`` to every pid concurrently; the failures by pid (empty when all were queued)."""
    outcomes = yield from gather([sender.send(pid, data, group, timeout=timeout) for pid in pids])
    pairs = zip(pids, outcomes, strict=True)
    return {pid: outcome for pid, outcome in pairs if isinstance(outcome, Exception)}
