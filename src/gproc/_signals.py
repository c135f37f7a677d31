"""The process-wide registry of signal handlers and the shutdown configuration.

Registering never touches the OS: it only records which handler wants which signal. The OS-level
handlers are installed by ``listen`` on the main thread, for as long as it listens (see
``_listen``), so a registered handler never swallows Ctrl+C while nobody listens.

Everything here is thread-safe and never blocks: registration works from any thread, and the
sync and asyncio faces share these very functions.
"""

from __future__ import annotations

import signal as _signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ._drive import Op, run_async, run_sync

__all__ = [
    "DEFAULT_SHUTDOWN_SIGNALS",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "OpHandler",
    "SignalHandler",
    "add_sig_handler",
    "add_sig_handler_shutdown",
    "handler_name",
    "registry",
    "remove_sig_handler",
    "set_shutdown_signals",
    "set_shutdown_timeout",
]

SignalHandler = Callable[[_signal.Signals], Any]
"""``handler(sig)``: a plain function (run in a thread) or a coroutine function (awaited)."""

#: The signals that end ``listen`` unless configured otherwise. GoFrame also lists SIGKILL, which
#: no process can catch; we leave it out instead of pretending.
DEFAULT_SHUTDOWN_SIGNALS: tuple[_signal.Signals, ...] = (
    _signal.SIGINT,
    _signal.SIGQUIT,
    _signal.SIGTERM,
    _signal.SIGABRT,
)

#: Seconds ``listen`` waits for the handlers of a shutdown signal before it returns without them.
DEFAULT_SHUTDOWN_TIMEOUT = 30.0

_UNCATCHABLE = frozenset({_signal.SIGKILL, _signal.SIGSTOP})


def _as_signal(value: object) -> _signal.Signals:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a signal is a signal.Signals or an int, not {type(value).__name__}")
    try:
        sig = _signal.Signals(value)
    except ValueError:
        raise ValueError(f"{value} is not a signal on this platform") from None
    if sig in _UNCATCHABLE:
        raise ValueError(f"{sig.name} cannot be caught, so no handler can run for it")
    return sig


def _as_signals(values: Iterable[object]) -> list[_signal.Signals]:
    signals = [_as_signal(v) for v in values]
    if not signals:
        raise ValueError("name at least one signal")
    return signals


def _check_handler(handler: object) -> None:
    if not callable(handler):
        raise TypeError(f"a signal handler must be callable, not {type(handler).__name__}")


class OpHandler:
    """A signal handler written once, as an operation (see ``_drive``).

    Under :func:`gproc.aio.listen` it runs as a task on the listening loop (``run_async``), so
    objects that belong to that loop (an ``aio.Manager``'s processes) are served there; under
    :func:`gproc.listen`, calling it runs the operation in a handler thread (``run_sync``).
    """

    def __init__(self, op: Callable[[_signal.Signals], Op[Any]], name: str) -> None:
        self.op = op
        self.__qualname__ = name  # how logs name it
        self.__module__ = "gproc"

    def __call__(self, sig: _signal.Signals) -> None:
        run_sync(self.op(sig))

    async def run_async(self, sig: _signal.Signals) -> None:
        await run_async(self.op(sig))

    def __repr__(self) -> str:
        return f"<signal handler {self.__qualname__}>"


def handler_name(handler: object) -> str:
    """How logs name a handler: ``module.qualname`` where it has one, else its repr."""
    qualname = getattr(handler, "__qualname__", None)
    module = getattr(handler, "__module__", None)
    if isinstance(qualname, str):
        return f"{module}.{qualname}" if isinstance(module, str) else qualname
    return repr(handler)


class _Registry:
    """Which handlers want which signal; which signals mean shutdown; how long shutdown may take.

    Handlers are kept in lists compared with ``==`` (not sets): bound methods of unhashable objects
    are valid handlers. Registering the same handler twice for a signal runs it once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_signal: dict[_signal.Signals, list[SignalHandler]] = {}
        # Shutdown handlers follow the shutdown set, whatever it is when the signal arrives.
        self._shutdown: list[SignalHandler] = []
        self._shutdown_signals: frozenset[_signal.Signals] = frozenset(DEFAULT_SHUTDOWN_SIGNALS)
        self._timeout = DEFAULT_SHUTDOWN_TIMEOUT
        #: Called (outside the lock) after every change, so a running listener can install or
        #: remove OS handlers. Set by ``_listen``; must not block.
        self.on_change: Callable[[], None] = lambda: None

    def after_fork(self) -> None:
        # A thread that held the lock at fork time does not exist in the child.
        self._lock = threading.Lock()

    def add(self, handler: SignalHandler, signals: Iterable[_signal.Signals]) -> None:
        with self._lock:
            for sig in signals:
                handlers = self._by_signal.setdefault(sig, [])
                if handler not in handlers:
                    handlers.append(handler)
        self.on_change()

    def add_shutdown(self, handlers: Iterable[SignalHandler]) -> None:
        with self._lock:
            for handler in handlers:
                if handler not in self._shutdown:
                    self._shutdown.append(handler)
        self.on_change()

    def remove(self, handler: SignalHandler, signals: list[_signal.Signals]) -> bool:
        with self._lock:
            if signals and handler in self._shutdown:
                overlap = sorted(s.name for s in self._shutdown_signals.intersection(signals))
                if overlap:
                    raise ValueError(
                        f"{handler_name(handler)} is a shutdown handler (it runs for every "
                        f"shutdown signal); remove it with remove_sig_handler(handler) and no "
                        f"signals, not for {', '.join(overlap)} alone"
                    )
            removed = False
            for sig in signals or list(self._by_signal):
                handlers = self._by_signal.get(sig, [])
                while handler in handlers:
                    handlers.remove(handler)
                    removed = True
                if not handlers:
                    self._by_signal.pop(sig, None)
            if not signals:
                while handler in self._shutdown:
                    self._shutdown.remove(handler)
                    removed = True
        self.on_change()
        return removed

    def handlers_for(self, sig: _signal.Signals) -> tuple[list[SignalHandler], bool]:
        """The handlers to run for ``sig`` and whether it is a shutdown signal."""
        with self._lock:
            handlers = list(self._by_signal.get(sig, ()))
            shutdown = sig in self._shutdown_signals
            if shutdown:
                handlers += [h for h in self._shutdown if h not in handlers]
            return handlers, shutdown

    def wanted(self) -> frozenset[_signal.Signals]:
        """Every signal a listener must catch: the shutdown set and every signal with a handler."""
        with self._lock:
            return self._shutdown_signals.union(self._by_signal)

    def is_shutdown(self, sig: _signal.Signals) -> bool:
        with self._lock:
            return sig in self._shutdown_signals

    @property
    def timeout(self) -> float:
        with self._lock:
            return self._timeout

    def configure(
        self, *, signals: frozenset[_signal.Signals] | None = None, timeout: float | None = None
    ) -> tuple[frozenset[_signal.Signals], float]:
        with self._lock:
            previous = (self._shutdown_signals, self._timeout)
            if signals is not None:
                self._shutdown_signals = signals
            if timeout is not None:
                self._timeout = timeout
        self.on_change()
        return previous


registry = _Registry()


def add_sig_handler(handler: SignalHandler, *signals: int) -> None:
    """Run ``handler(sig)`` whenever one of ``signals`` arrives while ``listen`` runs.

    A plain function runs in a thread of its own; a coroutine function is awaited on the loop of
    :func:`gproc.aio.listen` (or with ``asyncio.run`` in a thread under :func:`gproc.listen`).
    Handlers for one signal run concurrently. Registering never changes how the process reacts to
    a signal: only ``listen`` does, while it runs.
    """
    _check_handler(handler)
    registry.add(handler, _as_signals(signals))


def add_sig_handler_shutdown(*handlers: SignalHandler) -> None:
    """Run each handler when a shutdown signal arrives (see :func:`set_shutdown_signals`).

    ``listen`` returns once they have all finished, or after the shutdown timeout.
    """
    for handler in handlers:
        _check_handler(handler)
    registry.add_shutdown(handlers)


def remove_sig_handler(handler: SignalHandler, *signals: int) -> bool:
    """Stop running ``handler`` for ``signals`` (for everything, shutdown included, when none are
    named). Returns whether anything was removed."""
    return registry.remove(handler, [_as_signal(s) for s in signals])


def set_shutdown_signals(*signals: int) -> tuple[_signal.Signals, ...]:
    """Choose the signals that end ``listen`` (default SIGINT, SIGQUIT, SIGTERM, SIGABRT).

    Shutdown handlers follow the set, whenever they were registered. Returns the previous set.
    """
    previous, _ = registry.configure(signals=frozenset(_as_signals(signals)))
    return tuple(sorted(previous))


def set_shutdown_timeout(seconds: float) -> float:
    """How long ``listen`` waits for shutdown handlers (default 30 s); returns the old value."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"the shutdown timeout is a number of seconds, not {seconds!r}")
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(f"the shutdown timeout must be >= 0 seconds, not {seconds!r}")
    _, previous = registry.configure(timeout=float(seconds))
    return previous
