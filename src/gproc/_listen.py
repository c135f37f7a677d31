"""``listen``: catch signals while someone listens, run their handlers, wait for shutdown.

One *dispatcher* at a time does the work: the first ``listen`` on the main thread (Python only
ever runs signal handlers there). It installs OS-level handlers for the shutdown signals and for
every signal that has a handler, and gives the previous dispositions back as soon as a shutdown
signal arrives or it stops listening. Every other ``listen`` (other threads, or a second task on
the main thread's loop) is a *follower*: it waits for the shutdown the dispatcher reports, and
takes over when a main-thread dispatcher leaves without one.

The OS-level handler only writes the signal's number into a pipe (one byte per delivery, so a
burst of deliveries is a burst of bytes, not a flag set twice). The dispatcher reads the pipe and
starts the handlers outside the signal handler: plain functions in threads (idle ones reused),
coroutine functions and ``OpHandler`` operations as tasks on the listening loop. The same pipe
carries three more kinds of byte: "the registry changed" (so a listener installs handlers for
newly registered signals), "a handler finished" (so the shutdown wait wakes) and "stop
listening" (``stop_listening``).

The waiting is one operation (``listen_op``) driven by ``run_sync`` or ``run_async``; the faces
differ only in how a coroutine handler is started.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import queue
import signal as _signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ._drive import Op, Wait, run_async, run_sync, wait_readable
from ._errors import SignalError
from ._signals import OpHandler, SignalHandler, handler_name, registry

__all__ = ["listen", "listen_async", "listen_op", "stop_listening"]

log = logging.getLogger("gproc")

#: Bytes in the record pipe that are not signal numbers (signals are 1..SIGRTMAX <= 64 on Linux).
_RECONCILE = 0
_STOP = 254
_JOB_DONE = 255
_BYTE = [bytes((i,)) for i in range(256)]


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()  # non-inheritable: children never see it
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    return r, w


def _drain(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _poke(fd: int, byte: int) -> None:
    try:
        os.write(fd, _BYTE[byte])
    except BlockingIOError:
        pass  # 64 KiB unread: the reader is due to wake anyway


@dataclass(eq=False)
class _Job:
    """One run of one handler for one delivery."""

    name: str
    sig: _signal.Signals
    cancel: Callable[[], object] | None = None


CoroutineHandler = Callable[[_signal.Signals], Coroutine[Any, Any, Any]]
StartCoroutine = Callable[[_Job, CoroutineHandler, _signal.Signals], None]


class _Hub:
    """The process-wide listening state. ``lock`` guards everything but the pipes' contents."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Made once and kept for the life of the process: a handler thread that overran the
        # shutdown timeout may finish (and write "done") much later, and writing to a closed and
        # reused descriptor number would corrupt some unrelated file.
        self.record_r, self.record_w = _pipe()
        # The wakeup fd (when nobody else uses it): the C-level handler writes it from whichever
        # thread the kernel picked, so the main thread's poll wakes and runs our Python handler.
        self.nudge_r, self.nudge_w = _pipe()
        self.dispatching = False
        self.result: _signal.Signals | None = None
        self.shutting_down: _signal.Signals | None = None
        self.watchers: set[int] = set()  # write ends of the followers' pipes
        self.main_gone = False
        self.exit_hooked = False
        self.running: list[_Job] = []

    def notify_followers(self) -> None:
        # Poke under the lock: a follower removes its pipe under the same lock before closing it,
        # so we never write to a closed (or meanwhile reused) descriptor. The writes never block.
        with self.lock:
            for fd in self.watchers:
                _poke(fd, 1)

    def close(self) -> None:
        for fd in (self.record_r, self.record_w, self.nudge_r, self.nudge_w):
            os.close(fd)


_hub_instance: _Hub | None = None
_hub_lock = threading.Lock()


def _hub() -> _Hub:
    global _hub_instance
    if _hub_instance is None:
        with _hub_lock:
            if _hub_instance is None:
                _hub_instance = _Hub()
    return _hub_instance


def _after_fork_in_child() -> None:
    # The child must not share pipes (or locks held by threads that did not survive) with us.
    global _hub_instance, _hub_lock, _workers
    _hub_lock = threading.Lock()
    _workers = _Workers()  # its threads did not survive the fork
    if _hub_instance is not None:
        _hub_instance.close()
        _hub_instance = None
    registry.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _on_registry_change() -> None:
    hub = _hub_instance
    if hub is not None and hub.dispatching:
        _poke(hub.record_w, _RECONCILE)


registry.on_change = _on_registry_change


# --------------------------------------------------------------------------- OS-level handlers


def _record(signum: int, frame: object) -> None:
    """The OS-level handler: record the delivery and wake the dispatcher; nothing else."""
    hub = _hub_instance
    if hub is not None:
        _poke(hub.record_w, signum)


class _Installed:
    """The OS-level handlers one dispatcher put in place, and the dispositions they replaced."""

    def __init__(self, hub: _Hub) -> None:
        self._hub = hub
        self._previous: dict[_signal.Signals, Any] = {}
        self._own_wakeup = False
        self.active = True

    def reconcile(self, wanted: frozenset[_signal.Signals]) -> None:
        if not self.active:
            return
        for sig in sorted(wanted - self._previous.keys()):
            self._previous[sig] = _signal.signal(sig, _record)
        for sig in sorted(self._previous.keys() - wanted):
            self._give_back(sig)
        # A program may block signals during its start-up so that none is lost or acted on
        # before it listens; listening is when it wants them. (Never re-blocked afterwards: a
        # second Ctrl+C must reach the restored default.)
        if wanted:
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, wanted)
        if not self._own_wakeup:
            old = _signal.set_wakeup_fd(self._hub.nudge_w, warn_on_full_buffer=False)
            if old == -1:
                self._own_wakeup = True
            else:  # an asyncio loop owns it, and that loop wakes this thread for us
                _signal.set_wakeup_fd(old)

    def _give_back(self, sig: _signal.Signals) -> None:
        previous = self._previous.pop(sig)
        # None: the previous handler was not set from Python; the default is our best guess.
        _signal.signal(sig, _signal.SIG_DFL if previous is None else previous)

    def restore(self) -> None:
        """Give every signal its previous disposition back (idempotent)."""
        self.active = False
        for sig in list(self._previous):
            self._give_back(sig)
        if self._own_wakeup:
            self._own_wakeup = False
            current = _signal.set_wakeup_fd(-1)
            if current != self._hub.nudge_w:  # someone took it over meanwhile: leave theirs
                _signal.set_wakeup_fd(current)


# --------------------------------------------------------------------------- running handlers


def _finish(job: _Job) -> None:
    hub = _hub()
    with hub.lock:
        if job in hub.running:
            hub.running.remove(job)
    _poke(hub.record_w, _JOB_DONE)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class _Workers:
    """The threads that run plain handlers: an idle one is reused, and a new one starts whenever
    none is idle, so a call never waits for another (a busy or hung handler delays nothing).

    Reuse matters for latency: starting a thread costs a few hundred microseconds on a loaded
    machine. The threads are daemons: a handler that overran the shutdown timeout was reported by
    name and must not keep the program alive. Idle ones leave after ``IDLE_SECONDS``.
    """

    IDLE_SECONDS = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = 0  # waiting in _calls.get() and not yet promised a call
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def submit(self, call: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1  # promise the call to one waiting thread
                self._calls.put(call)
                return
        threading.Thread(target=self._work, args=(call,), daemon=True).start()

    def _work(self, call: Callable[[], None]) -> None:
        while True:
            call()
            threading.current_thread().name = "gproc signal handler (idle)"
            with self._lock:
                self._idle += 1
            try:
                call = self._calls.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # some waiting thread is unpromised: this one may leave
                        self._idle -= 1
                        return
                # Every waiting thread, this one included, was just promised a call.
                call = self._calls.get()


_workers = _Workers()


def _run_in_thread(job: _Job, handler: SignalHandler, sig: _signal.Signals) -> None:
    threading.current_thread().name = f"gproc {sig.name} handler {job.name}"
    try:
        result = handler(sig)
        if inspect.isawaitable(result):  # a coroutine handler under the sync listen
            asyncio.run(_awaited(result))
    except BaseException:
        log.exception("signal handler %s for %s raised", job.name, sig.name)
    finally:
        _finish(job)


async def _run_as_task(job: _Job, handler: CoroutineHandler, sig: _signal.Signals) -> None:
    try:
        await handler(sig)
    except asyncio.CancelledError:
        log.warning("signal handler %s for %s was cancelled", job.name, sig.name)
        raise
    except Exception:
        log.exception("signal handler %s for %s raised", job.name, sig.name)
    finally:
        _finish(job)


def _task_starter(loop: asyncio.AbstractEventLoop) -> StartCoroutine:
    def start(job: _Job, handler: CoroutineHandler, sig: _signal.Signals) -> None:
        coroutine: Coroutine[Any, Any, None] = _run_as_task(job, handler, sig)
        job.cancel = loop.create_task(coroutine, name=f"gproc signal handler {job.name}").cancel

    return start


def _start_handlers(
    handlers: list[SignalHandler], sig: _signal.Signals, start_coroutine: StartCoroutine | None
) -> None:
    hub = _hub()
    for handler in handlers:
        job = _Job(handler_name(handler), sig)
        with hub.lock:
            hub.running.append(job)
        coroutine_handler: CoroutineHandler | None = None
        if isinstance(handler, OpHandler):
            coroutine_handler = handler.run_async
        elif inspect.iscoroutinefunction(handler):
            coroutine_handler = handler
        try:
            if start_coroutine is not None and coroutine_handler is not None:
                start_coroutine(job, coroutine_handler, sig)
            else:
                _workers.submit(functools.partial(_run_in_thread, job, handler, sig))
        except Exception:
            log.exception("could not start signal handler %s for %s", job.name, sig.name)
            _finish(job)


# --------------------------------------------------------------------------- the dispatcher


def _handle(
    data: bytes, installed: _Installed, start_coroutine: StartCoroutine | None
) -> tuple[_signal.Signals | None, bool]:
    """Act on what the record pipe held: (the shutdown signal if one arrived, stop requested)."""
    shutdown: _signal.Signals | None = None
    stop = False
    for byte in data:
        if byte == _RECONCILE:
            installed.reconcile(registry.wanted())
            continue
        if byte == _STOP:
            stop = True
            continue
        if byte == _JOB_DONE:
            continue
        try:
            sig = _signal.Signals(byte)
        except ValueError:
            continue
        handlers, is_shutdown = registry.handlers_for(sig)
        if is_shutdown:
            if shutdown is not None:
                continue  # already shutting down; the dispositions are given back
            # Give the signals back first: from now on a second Ctrl+C (or SIGTERM) does what
            # it would have done without us, even while the handlers below still run.
            installed.restore()
            shutdown = sig
            _hub().shutting_down = sig
            log.debug("received %s: shutting down", sig.name)
        _start_handlers(handlers, sig, start_coroutine)
    return shutdown, stop


def _dispatch_op(
    deadline: float | None,
    start_coroutine: StartCoroutine | None,
    on_listening: Callable[[], object] | None,
) -> Op[_signal.Signals | None]:
    hub = _hub()
    installed = _Installed(hub)
    try:
        installed.reconcile(registry.wanted())
        if on_listening is not None:
            on_listening()
        while True:
            yield Wait(readable=(hub.record_r, hub.nudge_r), deadline=deadline)
            _drain(hub.nudge_r)
            shutdown, stop = _handle(_drain(hub.record_r), installed, start_coroutine)
            timed_out = deadline is not None and time.monotonic() >= deadline
            if shutdown is None and (stop or timed_out):
                installed.restore()
                # Whatever was recorded before the give-back was delivered to us: handle it.
                shutdown, _ = _handle(_drain(hub.record_r), installed, start_coroutine)
                if shutdown is None:
                    return None
            if shutdown is not None:
                return (yield from _shutdown_op(hub, shutdown))
    finally:
        installed.restore()


def _shutdown_op(hub: _Hub, sig: _signal.Signals) -> Op[_signal.Signals]:
    """Wait for every running handler, bounded by the shutdown timeout; then publish ``sig``."""
    timeout = registry.timeout
    deadline = time.monotonic() + timeout
    try:
        while True:
            with hub.lock:
                running = list(hub.running)
            if not running:
                break
            if time.monotonic() >= deadline:
                names = ", ".join(f"{job.name} ({job.sig.name})" for job in running)
                log.error(
                    "signal handlers still running %gs after %s, listen() returns without them: %s",
                    timeout,
                    sig.name,
                    names,
                )
                for job in running:
                    if job.cancel is not None:
                        job.cancel()
                break
            yield Wait(readable=(hub.record_r,), deadline=deadline)
            _drain(hub.record_r)  # "handler finished" bytes: no signal is recorded any more
    finally:
        # Also on a second Ctrl+C during the wait: the shutdown did happen, followers return.
        with hub.lock:
            hub.result = sig
        hub.notify_followers()
    return sig


# --------------------------------------------------------------------------- listen


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _main_exiting() -> None:
    # Runs on the main thread when it has finished, before the interpreter joins other threads.
    hub = _hub()
    with hub.lock:
        hub.main_gone = True
    hub.notify_followers()


def _main_gone(hub: _Hub) -> bool:
    """Whether no main-thread listener can ever run any more (called with ``hub.lock`` held)."""
    if hub.main_gone or not threading.main_thread().is_alive():
        return True
    if not hub.exit_hooked:
        # threading._register_atexit runs a callback when the main thread finishes, *before*
        # the interpreter waits for the other threads: a follower learns that nobody will ever
        # listen on the main thread instead of blocking the exit forever. (concurrent.futures
        # relies on the same hook.)
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            try:
                register(_main_exiting)
            except RuntimeError:  # the interpreter is already shutting down
                return True
        hub.exit_hooked = True
    return False


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout is a number of seconds or None, not {timeout!r}")
    if not timeout >= 0:
        raise ValueError(f"timeout must be >= 0 seconds, not {timeout!r}")
    return time.monotonic() + timeout


def listen_op(
    timeout: float | None = None,
    start_coroutine: StartCoroutine | None = None,
    *,
    on_listening: Callable[[], object] | None = None,
) -> Op[_signal.Signals | None]:
    """Wait for a shutdown signal and its handlers; None when ``timeout`` passed first.

    ``on_listening`` is called once this call, as the main-thread dispatcher, has its handlers in
    place: the moment a supervisor or a test may start sending signals. (The CLI prints "Ctrl+C
    stops them" then; programs that start no children can block signals instead, see
    docs/signals.md.)
    """
    deadline = _check_timeout(timeout)
    hub = _hub()
    watch: tuple[int, int] | None = None
    try:
        while True:
            with hub.lock:
                if hub.result is not None:
                    return hub.result
                on_main = _on_main_thread()
                lead = on_main and not hub.dispatching
                if lead:
                    hub.dispatching = True
                else:
                    if not on_main and _main_gone(hub):
                        raise SignalError(
                            f"listen() in thread {threading.current_thread().name!r} would wait "
                            "forever: only the main thread can receive signals, and it has "
                            "finished without listening. Call gproc.listen() (or await "
                            "gproc.aio.listen()) on the main thread; other threads' listen() "
                            "calls return with it."
                        )
                    if watch is None:
                        watch = _pipe()
                        hub.watchers.add(watch[1])
            if lead:
                try:
                    return (yield from _dispatch_op(deadline, start_coroutine, on_listening))
                finally:
                    with hub.lock:
                        hub.dispatching = False
                        # A second Ctrl+C may end the dispatcher before its shutdown wait began:
                        # the shutdown happened all the same, and followers return with it.
                        if hub.result is None:
                            hub.result = hub.shutting_down
                    hub.notify_followers()
            assert watch is not None
            if not (yield from wait_readable(watch[0], deadline)):
                return None
            _drain(watch[0])
    finally:
        if watch is not None:
            with hub.lock:
                hub.watchers.discard(watch[1])
            os.close(watch[0])
            os.close(watch[1])


def stop_listening() -> None:
    """Make the main-thread ``listen`` return None now, as if its timeout had passed (the next
    one, if none runs yet). Signals recorded before are still handled. Followers keep waiting.

    For a program that also ends for reasons other than a signal (``gproc spawn``: when every
    child has exited). Callable from any thread; never blocks.
    """
    _poke(_hub().record_w, _STOP)


def listen(*, timeout: float | None = None) -> _signal.Signals | None:
    """Block until a shutdown signal arrives and every handler for it has finished (bounded by
    the shutdown timeout); return that signal, or None when ``timeout`` seconds passed first.

    Other signals run their handlers meanwhile. Call it on the main thread (Python receives
    signals only there); calls in other threads wait for the same shutdown and return with it.
    """
    return run_sync(listen_op(timeout))


async def listen_async(*, timeout: float | None = None) -> _signal.Signals | None:
    """The asyncio twin of :func:`listen`: coroutine-function handlers run as tasks on this loop."""
    loop = asyncio.get_running_loop()
    return await run_async(listen_op(timeout, _task_starter(loop)))
