"""One implementation, two faces.

Every blocking operation in gproc (running a command, waiting for a process, stopping a tree,
sending a message) is written once, as a generator that does non-blocking work and *yields* a
:class:`Wait` whenever it has to wait for file descriptors or time. Two small drivers run such a
generator:

- :func:`run_sync` waits with ``poll(2)`` in the calling thread;
- :func:`run_async` waits with the running asyncio loop's readers and timers.

So ``gproc.shell_exec`` and ``gproc.aio.shell_exec`` are the same code, and the sync and async
twins cannot drift apart. (This is the shape of httpx's ``Auth.auth_flow``; see STYLE.md.)

Interruptions are part of the protocol: if the wait itself is interrupted (``KeyboardInterrupt`` in
the sync driver, task cancellation in the async one) the driver throws that exception into the
generator at its ``yield``. The generator may clean up, and may yield further waits while doing so
(for example the grace period of a stop policy); the driver keeps serving them. A second
interruption during that cleanup is thrown in again, so the generator can escalate.
"""

from __future__ import annotations

import asyncio
import functools
import select
import time
import weakref
from collections.abc import Callable, Coroutine, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

__all__ = [
    "Op",
    "Ready",
    "Wait",
    "async_face",
    "async_method",
    "deadline_after",
    "run_async",
    "run_sync",
    "sleep",
    "sync_face",
    "sync_method",
    "wait_readable",
]

T = TypeVar("T")
S = TypeVar("S")
P = ParamSpec("P")

Ready = frozenset[int]
"""The file descriptors a wait found ready; empty when the deadline passed first."""

_NOTHING: Ready = frozenset()


@dataclass(slots=True)
class Wait:
    """Wait until one of ``readable``/``writable`` is ready or ``deadline`` passes.

    ``deadline`` is a :func:`time.monotonic` value; ``None`` waits without limit. A wait with no
    descriptors and no deadline would never end and is refused. Treat it as immutable; it is not
    frozen only because a frozen dataclass costs twice as much to build, and messaging builds one
    per message.
    """

    readable: Iterable[int] = ()
    writable: Iterable[int] = ()
    deadline: float | None = None
    #: Optional, for the sync driver only: a ``select.poll`` object already registered for
    #: exactly these descriptors (and used by one wait at a time). An operation that waits on
    #: the same descriptor over and over (a messaging connection, once per message) keeps one
    #: instead of having a poll object built and filled for every wait.
    poller: select.poll | None = None


Op = Generator[Wait, Ready, T]
"""A blocking operation written once: yields waits, receives the ready descriptors, returns T."""


def deadline_after(timeout: float | None) -> float | None:
    """The :func:`time.monotonic` deadline ``timeout`` seconds from now (``None``: no limit).

    A negative or non-numeric ``timeout`` is a ``ValueError``, raised before anything starts.
    """
    if timeout is None:
        return None
    if type(timeout) is float and timeout >= 0:  # the common case, checked first (per message)
        return time.monotonic() + timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"timeout must be None or a number of seconds >= 0, not {timeout!r}")
    return time.monotonic() + timeout


def sleep(seconds: float) -> Op[None]:
    """Pause an operation for ``seconds`` (an ``Op`` building block)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        yield Wait(deadline=deadline)


def wait_readable(fd: int, deadline: float | None) -> Op[bool]:
    """Wait for one descriptor; True when it became readable, False when the deadline passed."""
    ready = yield Wait(readable=(fd,), deadline=deadline)
    return fd in ready


# --------------------------------------------------------------------------- sync driver

_POLL_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR | select.POLLNVAL
_POLL_OUT = select.POLLOUT | select.POLLHUP | select.POLLERR | select.POLLNVAL


def _poll_once(wait: Wait) -> Ready:
    # A fresh poll object per wait unless the operation keeps its own: registration is plain
    # user-space bookkeeping (no syscall), and nothing stale can survive a descriptor being
    # closed and its number reused.
    poller = wait.poller
    if poller is None:
        poller = select.poll()
        readable, writable = wait.readable, wait.writable
        if not writable and type(readable) is tuple and len(readable) == 1:
            poller.register(readable[0], _POLL_IN)  # the common case, kept cheap
        else:
            masks: dict[int, int] = {}
            for fd in readable:
                masks[fd] = _POLL_IN
            for fd in writable:
                masks[fd] = masks.get(fd, 0) | _POLL_OUT
            for fd, mask in masks.items():
                poller.register(fd, mask)
    deadline = wait.deadline
    if deadline is None:
        events = poller.poll()
    else:
        remaining = deadline - time.monotonic()
        # poll() rounds a fraction of a millisecond up (waking early would only loop).
        events = poller.poll(remaining * 1000 if remaining > 0 else 0)
    if not events:
        return _NOTHING
    if len(events) == 1:
        fd = events[0][0]
        ready = _single.get(fd)
        if ready is None:
            ready = _single[fd] = frozenset((fd,))
        return ready
    return frozenset([fd for fd, _ in events])


#: ``frozenset((fd,))`` for each descriptor seen, reused: a one-descriptor result is the common
#: case, and a frozenset is immutable, so sharing it is safe (and bounded by the fd limit).
_single: dict[int, Ready] = {}


def run_sync(op: Op[T]) -> T:
    """Drive ``op`` to completion in this thread and return its result."""
    try:
        wait = next(op)
        while True:
            if wait.deadline is None and not wait.readable and not wait.writable:
                _check(wait)  # (inlined test: this loop runs once per message sent)
            try:
                ready = _poll_once(wait)
            except BaseException as interruption:  # KeyboardInterrupt, SystemExit from a handler
                wait = op.throw(interruption)
                continue
            wait = op.send(ready)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _check(wait: Wait) -> None:
    if wait.deadline is None and not wait.readable and not wait.writable:
        raise RuntimeError("gproc internal error: a wait with nothing to wait for")


# --------------------------------------------------------------------------- async driver


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _LoopWatches:
    """Several operations may wait on one descriptor in one loop (``p.wait()`` while another task
    runs ``p.terminate()``), but a loop keeps only one reader and one writer callback per
    descriptor: a second ``add_reader`` silently replaces the first, and the first waiter would
    hang. This keeps every subscriber and registers one dispatcher per descriptor with the loop.
    """

    __slots__ = ("_loop", "_readers", "_writers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._readers: dict[int, dict[int, Callable[[int], None]]] = {}
        self._writers: dict[int, dict[int, Callable[[int], None]]] = {}

    def _dispatch(self, table: dict[int, dict[int, Callable[[int], None]]], fd: int) -> None:
        for callback in list(table.get(fd, {}).values()):
            callback(fd)

    def add(self, write: bool, fd: int, token: int, callback: Callable[[int], None]) -> None:
        table = self._writers if write else self._readers
        subscribers = table.get(fd)
        if subscribers is None:
            subscribers = table[fd] = {}
            if write:
                self._loop.add_writer(fd, self._dispatch, table, fd)
            else:
                self._loop.add_reader(fd, self._dispatch, table, fd)
        subscribers[token] = callback

    def remove(self, write: bool, fd: int, token: int) -> None:
        table = self._writers if write else self._readers
        subscribers = table.get(fd)
        if subscribers is None:
            return
        subscribers.pop(token, None)
        if not subscribers:
            del table[fd]
            if write:
                self._loop.remove_writer(fd)
            else:
                self._loop.remove_reader(fd)


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWatches] = (
    weakref.WeakKeyDictionary()
)


def _loop_watches(loop: asyncio.AbstractEventLoop) -> _LoopWatches:
    watches = _watches.get(loop)
    if watches is None:
        watches = _watches[loop] = _LoopWatches(loop)
    return watches


async def _wait_async(loop: asyncio.AbstractEventLoop, wait: Wait) -> Ready:
    future: asyncio.Future[None] = loop.create_future()
    ready: set[int] = set()
    token = id(future)

    def on_ready(fd: int) -> None:
        ready.add(fd)
        if not future.done():
            future.set_result(None)

    watches = _loop_watches(loop)
    readers = list(wait.readable)
    writers = list(wait.writable)
    timer: asyncio.TimerHandle | None = None
    try:
        for fd in readers:
            watches.add(False, fd, token, on_ready)
        for fd in writers:
            watches.add(True, fd, token, on_ready)
        if wait.deadline is not None:
            # Both clocks are time.monotonic() for the stock loops; convert anyway.
            when = loop.time() + (wait.deadline - time.monotonic())
            timer = loop.call_at(when, _settle, future)
        await future
    finally:
        if timer is not None:
            timer.cancel()
        for fd in readers:
            watches.remove(False, fd, token)
        for fd in writers:
            watches.remove(True, fd, token)
    return frozenset(ready) if ready else _NOTHING


async def run_async(op: Op[T]) -> T:
    """Drive ``op`` on the running event loop and return its result."""
    loop = asyncio.get_running_loop()
    try:
        wait = next(op)
        while True:
            _check(wait)
            try:
                ready = await _wait_async(loop, wait)
            except BaseException as interruption:  # CancelledError, KeyboardInterrupt
                wait = op.throw(interruption)
                continue
            wait = op.send(ready)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- faces


def sync_face(factory: Callable[P, Op[T]]) -> Callable[P, T]:
    """Turn an operation factory into the blocking function of the sync API."""

    @functools.wraps(factory)
    def face(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(factory(*args, **kwargs))

    return face


def async_face(factory: Callable[P, Op[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn an operation factory into the coroutine function of the asyncio API."""

    @functools.wraps(factory)
    async def face(*args: P.args, **kwargs: P.kwargs) -> T:
        return await run_async(factory(*args, **kwargs))

    return face


def sync_method(factory: Callable[Concatenate[S, P], Op[T]]) -> Callable[Concatenate[S, P], T]:
    """Method version of :func:`sync_face`, for classes with a shared core."""

    @functools.wraps(factory)
    def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(factory(self, *args, **kwargs))

    return method


def async_method(
    factory: Callable[Concatenate[S, P], Op[T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Method version of :func:`async_face`."""

    @functools.wraps(factory)
    async def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await run_async(factory(self, *args, **kwargs))

    return method
