"""What happens when a service exits: a pure state machine, no clocks or processes of its own.

- ``restart = "no"`` (the default, as in honcho and foreman): any exit stops everything, and
  ``gproc up`` exits with that service's status.
- ``restart = "on-failure"``: a clean exit (status 0) leaves the service down and the rest running;
  a failure (non-zero status, or killed by a signal) restarts it.
- ``restart = "always"``: every exit restarts it.

Restarts are spaced by an exponential backoff: ``backoff * 2**k`` seconds (capped at
``backoff_max``), where ``k`` is the number of restarts within the last ``restart_window`` seconds.
So a service that crashed once last week restarts quickly, and one that keeps crashing backs off.
When a service would need more than ``max_restarts`` restarts within the window it is in a crash
loop: it is declared failed and everything stops (supervisor would retry forever; a developer wants
to see the traceback, not a scrolling log).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .._errors import signal_name
from .config import ServiceConfig

__all__ = [
    "CrashLoop",
    "Decision",
    "ExitStatus",
    "Restart",
    "RestartTracker",
    "StayDown",
    "StopAll",
]


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a process ended: ``returncode`` as :mod:`subprocess` has it (``-N``: killed by N)."""

    returncode: int

    @property
    def code(self) -> int | None:
        return self.returncode if self.returncode >= 0 else None

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None

    @property
    def success(self) -> bool:
        return self.returncode == 0

    @property
    def shell_status(self) -> int:
        """The status a shell would report: the code, or 128 + N when killed by signal N."""
        return self.returncode if self.returncode >= 0 else 128 - self.returncode

    def describe(self) -> str:
        if self.returncode < 0:
            return f"killed by {signal_name(-self.returncode)}"
        return f"exited with code {self.returncode}"


@dataclass(frozen=True, slots=True)
class Restart:
    """Start the service again after ``delay`` seconds; this is restart number ``attempt``."""

    delay: float
    attempt: int


@dataclass(frozen=True, slots=True)
class StayDown:
    """Leave the service down (it finished cleanly under ``on-failure``); the rest keeps going."""


@dataclass(frozen=True, slots=True)
class StopAll:
    """Stop everything (``restart = "no"``); ``gproc up`` exits with ``status``."""

    status: int


@dataclass(frozen=True, slots=True)
class CrashLoop:
    """The service exited more than ``max_restarts`` times within ``window`` seconds."""

    restarts: int
    window: float


Decision = Restart | StayDown | StopAll | CrashLoop


class RestartTracker:
    """Restart decisions for one copy of a service."""

    __slots__ = ("_recent", "config", "restarts")

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        #: Restarts so far, for ``gproc ctl status``.
        self.restarts = 0
        self._recent: deque[float] = deque()

    def on_exit(self, status: ExitStatus, now: float) -> Decision:
        """Decide what follows an exit nobody asked for; ``now`` is a monotonic time."""
        mode = self.config.restart
        if mode == "no":
            return StopAll(status.shell_status)
        if mode == "on-failure" and status.success:
            return StayDown()
        window = self.config.restart_window
        while self._recent and self._recent[0] <= now - window:
            self._recent.popleft()
        if len(self._recent) >= self.config.max_restarts:
            return CrashLoop(len(self._recent), window)
        delay = min(self.config.backoff * 2 ** len(self._recent), self.config.backoff_max)
        self._recent.append(now)
        self.restarts += 1
        return Restart(delay, self.restarts)

    def reset(self) -> None:
        """Forget recent crashes (a person started the service again by hand)."""
        self._recent.clear()
