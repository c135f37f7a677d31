"""Bounded per-group message queues, and the waiters of :func:`receive`.

The listener thread puts messages; any thread (sync API) or event loop (asyncio API) takes them.
A waiter is only *woken* by a put, it then takes the message itself under the lock: a message is
never handed to a waiter that might time out or be cancelled before it looks, so none is lost.
Sync waiters sleep on a ``threading.Condition``; asyncio waiters on a future that the listener
completes with ``loop.call_soon_threadsafe``. Nothing polls.

Each queue is bounded by a count and a byte budget, but an empty queue always takes one message
(so the budget can never make a maximum-size message undeliverable).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from _thread import allocate_lock as _allocate_lock
from _thread import get_ident
from collections import deque
from collections.abc import Iterable
from typing import Any

from .._errors import ReceiveTimeout
from .leadership import AWAY_LIMIT, Leadership
from .message import Message

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_COUNT", "Group", "GroupQueues"]

DEFAULT_MAX_COUNT = 10_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Group:
    """One group's queue and waiters."""

    __slots__ = ("async_waiters", "items", "name", "nbytes", "sync_waiters")

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: deque[Message] = deque()
        self.nbytes = 0
        # A sync waiter is a locked lock that the waker releases: a lighter Condition.
        self.sync_waiters: deque[threading.Lock] = deque()
        self.async_waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()


class GroupQueues:
    def __init__(self, max_count: int = DEFAULT_MAX_COUNT, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._groups: dict[str, Group] = {}
        self._sync_waiting = 0  # sync waiters in all groups (so "is anyone waiting" is O(1))
        #: Which thread serves the socket: the listener's, or one blocked in get_sync().
        self.lead = Leadership(self)

    def _group(self, name: str) -> Group:
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = Group(name)
        return group

    # ------------------------------------------------------------------ the listener's side

    def put(self, message: Message) -> bool:
        """Queue ``message``; False (and nothing queued) when its group's queue is full.

        Waiters are not woken here but by :meth:`wake`, which the listener calls once it has
        written the acknowledgement: a receiver that acts on a message at once (even by exiting)
        can never overtake the ack its sender is waiting for.
        """
        size = len(message.data)
        with self._lock:
            group = self._group(message.group)
            if group.items and (
                len(group.items) >= self.max_count or group.nbytes + size > self.max_bytes
            ):
                return False
            group.items.append(message)
            group.nbytes += size
        return True

    def put_back(self, message: Message) -> None:
        """Queue an acknowledged message at the front of its group, whatever the limits (a
        message handed to a leader that was interrupted before it could return it)."""
        with self._lock:
            group = self._group(message.group)
            group.items.appendleft(message)
            group.nbytes += len(message.data)
            self._wake_one(group)

    def wake(self, names: Iterable[str]) -> None:
        """Wake a waiter of each group in ``names`` that has messages."""
        with self._lock:
            for name in names:
                group = self._groups.get(name)
                if group is not None and group.items:
                    self._wake_one(group)

    def wake_group(self, name: str) -> None:
        """:meth:`wake` for one group, the listener's per-message case."""
        group = self._groups.get(name)
        # Looked at without the lock first: a waiter registers (under the lock) only after it
        # found the queue empty, so one that registered before our put is seen here, and one
        # that registers after it finds the message itself. Most puts have no waiter at all
        # (the receiving thread leads, see leadership.py).
        if group is None or not (group.sync_waiters or group.async_waiters):
            return
        with self._lock:
            if group.items:
                self._wake_one(group)

    def _wake_one(self, group: Group) -> None:
        # Called with the lock held. A spurious wake-up is harmless (the waiter re-checks), a
        # missed one is not: a sync waiter first, else an asyncio one.
        if group.sync_waiters:
            self._sync_waiting -= 1
            group.sync_waiters.popleft().release()
            return
        while group.async_waiters:
            loop, future = group.async_waiters.popleft()
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # that loop is closed: its waiter is gone
                continue
            break

    def _wake_a_sync_waiter(self) -> bool:
        # Called with the lock held, by the leadership: any waiting thread may take the lead.
        if not self._sync_waiting:
            return False
        for group in self._groups.values():
            if group.sync_waiters:
                self._sync_waiting -= 1
                group.sync_waiters.popleft().release()
                return True
        return False  # pragma: no cover - the count says otherwise

    def snapshot(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(name, len(group.items)) for name, group in self._groups.items()]

    def wake_all(self) -> None:
        with self._lock:
            for group in self._groups.values():
                while group.sync_waiters or group.async_waiters:
                    self._wake_one(group)

    # ------------------------------------------------------------------ the receivers' side

    def _take(self, group: Group) -> Message | None:
        if not group.items:
            return None
        message = group.items.popleft()
        group.nbytes -= len(message.data)
        if group.items:
            self._wake_one(group)  # more to take: pass the wake-up on
        return message

    def get_sync(self, name: str, timeout: float | None) -> Message:
        deadline = None if timeout is None else time.monotonic() + timeout
        lock = self._lock
        lead = self.lead
        me = get_ident()
        group = self._groups.get(name)  # (a dict lookup is atomic; creating one is not)
        if group is None:
            with lock:
                group = self._group(name)
        while True:
            waiter = None
            # Ctrl+C may land anywhere here, even right after the lock's release (before we
            # serve or wait): a leader must not stay "present" (nobody would serve again, and
            # stop() would wait for it forever), and a waiter must not stay registered (it
            # would swallow a wake-up meant for a real one).
            try:
                with lock:
                    message = self._take(group)
                    if message is not None:
                        lead.leave_locked(me)
                        return message
                    patient = deadline is None or deadline - time.monotonic() > AWAY_LIMIT
                    server = lead.claim_locked(me, patient)
                    if server is None:
                        waiter = _allocate_lock()
                        waiter.acquire()
                        self._sync_waiting += 1  # (counted first: the append is the last call)
                        group.sync_waiters.append(waiter)
                if server is not None:
                    # We lead: serve the socket in this thread until a message of ours comes.
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                    message = server.serve_once(remaining, group)
            except BaseException:  # Ctrl+C: leave the lead to others, lose no wake-up
                if waiter is None:
                    with lock:
                        lead.leave_locked(me)
                else:
                    self._leave(group, group.sync_waiters, waiter)
                raise
            if server is not None:
                if message is not None:
                    with lock:
                        lead.leave_locked(me)
                    return message
                stopping = server.stopping
                if stopping or (deadline is not None and time.monotonic() >= deadline):
                    with lock:
                        message = self._take(group)
                        lead.leave_locked(me)
                    if message is not None:
                        return message
                    if not stopping:
                        raise _timeout(name, timeout)
                continue
            assert waiter is not None
            try:
                if deadline is None:
                    woken = waiter.acquire()
                else:
                    woken = waiter.acquire(True, max(0.0, deadline - time.monotonic()))
            except BaseException:  # KeyboardInterrupt: leave without losing a wake-up
                self._leave(group, group.sync_waiters, waiter)
                raise
            if not woken:
                with lock:
                    try:
                        group.sync_waiters.remove(waiter)
                        self._sync_waiting -= 1
                    except ValueError:  # woken just now after all: take what it was for
                        pass
                    message = self._take(group)
                    if message is not None:
                        return message
                raise _timeout(name, timeout)

    async def get_async(self, name: str, timeout: float | None) -> Message:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._lock:
                group = self._group(name)
                message = self._take(group)
                if message is not None:
                    return message
                future: asyncio.Future[None] = loop.create_future()
                waiter = (loop, future)
                group.async_waiters.append(waiter)
            timer = None if deadline is None else loop.call_at(deadline, _wake, future)
            try:
                await future
            except BaseException:  # cancelled: leave, but never swallow a wake-up meant for us
                self._leave(group, group.async_waiters, waiter)
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            with self._lock:
                self._forget(group, waiter)
                message = self._take(group)
                if message is not None:
                    return message
            if deadline is not None and loop.time() >= deadline:
                raise _timeout(name, timeout)

    def _forget(
        self, group: Group, waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]
    ) -> None:
        try:
            group.async_waiters.remove(waiter)
        except ValueError:
            pass

    def _leave(self, group: Group, waiters: deque[Any], waiter: object) -> None:
        """A waiter gives up (timeout, Ctrl+C, cancellation) without swallowing a wake-up."""
        with self._lock:
            try:
                waiters.remove(waiter)
                if waiters is group.sync_waiters:
                    self._sync_waiting -= 1
            except ValueError:  # it was woken already: pass the wake-up to the next waiter
                if group.items:
                    self._wake_one(group)

    def clear(self) -> None:
        with self._lock:
            self._groups.clear()
            self._sync_waiting = 0

    def groups(self) -> Iterable[str]:
        with self._lock:
            return list(self._groups)


def _timeout(group: str, timeout: float | None) -> ReceiveTimeout:
    return ReceiveTimeout(
        f"no message in group {group!r} within {timeout}s", pid=os.getpid(), group=group
    )
