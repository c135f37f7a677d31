"""Who serves the receiving socket: the listener thread, or the thread blocked in ``receive()``.

Why this exists: when the listener thread reads a message and hands it to another thread blocked
in ``receive()``, that hand-off (a lock release, a thread switch, the GIL changing hands, and back)
costs more than everything else in a round trip, and a sender waits for it on every message. So a
thread that waits in ``receive()`` serves the socket itself, the way leader/follower servers do:
it reads the message, acknowledges it and returns it, with no other thread involved. The listener
thread stands by, and serves only when no receiving thread does.

The rules (all state is guarded by the queues' lock):

- At most one thread polls and serves the socket set at any time: the listener thread, or the
  *leader*. So the serving code itself needs no locking.
- A sync ``receive()`` that finds its queue empty leads when the socket is free: nobody leads and
  the listener stands by, or the leader is *away* (see below). When the listener is serving, the
  receiver asks it to stand down and waits as a follower meanwhile; the listener hands the socket
  over only to a thread that is still waiting, so the socket is never left unserved.
- A leader that returns a message keeps the lead while it is away, until its next ``receive()``:
  a loop of ``receive()`` calls costs no hand-over at all. While it is away nobody serves, so the
  listener checks every :data:`AWAY_LIMIT` and takes the socket back from a leader away that
  long: a sender waits at most that much longer for its acknowledgement while the receiving
  thread is busy elsewhere. Another thread that wants to receive meanwhile takes the lead at once.
- A leader that leaves while other threads wait wakes one of them to take the lead.
- The listener's checks stop while a leader stays inside ``receive()`` (an idle receiver costs no
  wake-ups); the leader wakes the listener when it next leaves.
- ``asyncio`` receivers never lead: an event loop thread must not block in a poll of its own.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from .message import Message
    from .queues import Group, GroupQueues

__all__ = ["AWAY_LIMIT", "EXIT", "SERVE", "Leadership", "Server"]

#: The longest a leader may be away before the listener thread serves again (seconds).
AWAY_LIMIT: Final = 0.002
#: Checks in a row that find the leader waiting in receive() before the listener stops checking.
_QUIET_CHECKS: Final = 25
#: What :meth:`Leadership.listener_duty` returns besides a standby timeout.
SERVE: Final = -1.0
EXIT: Final = -2.0


class Server(Protocol):
    """What a leader needs from the listener."""

    def serve_once(self, timeout: float | None, want: Group | None = None) -> Message | None:
        """Wait up to ``timeout`` for the socket set and serve what is ready; a message for the
        group ``want`` may be returned instead of queued."""

    @property
    def stopping(self) -> bool: ...

    def call_for_lead(self) -> None:
        """Interrupt the listener thread's poll so that it reconsiders its duty (non-blocking)."""


class Leadership:
    def __init__(self, queues: GroupQueues) -> None:
        self._queues = queues
        self._lock = queues._lock
        # Called with the lock held: wakes one thread blocked in a sync receive(), if any.
        self._wake_a_waiter = queues._wake_a_sync_waiter
        self.server: Server | None = None
        self._leader: int | None = None  # the leading thread's ident
        self._present = False  # the leader is inside receive() (serving, or about to)
        self._left_at = 0.0
        self._leaves = 0
        self._listener_serving = True
        self._asked = False  # a receiver asked the serving listener to stand down
        self._sleeping = False  # the listener stands by without a timeout
        self._seen_leaves = -1
        self._quiet = 0
        self._standby = threading.Event()

    # ------------------------------------------------------------------ the listener's side

    def attach(self, server: Server) -> None:
        with self._lock:
            self.server = server
            self._leader = None
            self._present = False
            self._listener_serving = True
            self._asked = False

    def detach(self) -> None:
        with self._lock:
            self.server = None
            self._standby.set()

    def listener_duty(self, stopping: bool) -> float | None:
        """:data:`SERVE`, :data:`EXIT`, or how long to stand by (``None``: until woken)."""
        with self._lock:
            self._standby.clear()  # cleared under the lock: a wake-up after this is kept
            self._sleeping = False
            if stopping:
                return AWAY_LIMIT if self._leader is not None and self._present else EXIT
            if self._leader is None:
                asked, self._asked = self._asked, False
                if asked and self._wake_a_waiter():
                    self._listener_serving = False  # the woken thread leads
                    return AWAY_LIMIT
                self._listener_serving = True
                return SERVE
            if not self._present:
                away = time.monotonic() - self._left_at
                if away >= AWAY_LIMIT:
                    self._leader = None
                    self._listener_serving = True
                    return SERVE
                return AWAY_LIMIT - away
            if self._leaves == self._seen_leaves:
                self._quiet += 1
                if self._quiet >= _QUIET_CHECKS:
                    self._sleeping = True
                    return None
            else:
                self._seen_leaves = self._leaves
                self._quiet = 0
            return AWAY_LIMIT

    def stand_by(self, timeout: float | None) -> None:
        self._standby.wait(timeout)

    # ------------------------------------------------------------------ the receivers' side

    def claim_locked(self, me: int, patient: bool) -> Server | None:
        """The server to serve in this thread, or None to wait as a follower. ``patient``: the
        caller will wait long enough for a hand-over from the listener to be worth asking."""
        server = self.server
        if server is None:
            return None
        leader = self._leader
        if leader == me or (leader is not None and not self._present):
            self._leader = me  # ours already, or taken from a leader that is away
            self._present = True
            return server
        if leader is None:
            if not self._listener_serving:
                self._leader = me
                self._present = True
                return server
            if patient and not self._asked:
                self._asked = True
                server.call_for_lead()
        return None

    def leave_locked(self, me: int) -> None:
        """The calling thread returns from receive(); if it leads, it is away from now on."""
        if self._leader != me or not self._present:
            return
        self._present = False
        self._left_at = time.monotonic()
        self._leaves += 1
        if self.server is None or self._sleeping:
            self._sleeping = False
            self._standby.set()
        if self._queues._sync_waiting:
            self._wake_a_waiter()  # a follower takes the lead from us while we are away
