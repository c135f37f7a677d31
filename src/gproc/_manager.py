"""Many processes: a thread-safe registry plus operations that act on all of them at once.

:class:`ManagerCore` keeps the bookkeeping (pid -> process, in start order) under a lock that is
never held while waiting or signalling. Operations over many processes take a snapshot, cost one
scan of the process table (tree scope), act on every process, and only then raise one
:class:`~gproc.ManyErrors` listing each failure with its pid. :class:`Manager` and
:class:`AsyncManager` are the blocking and asyncio faces over the same operations.
"""

from __future__ import annotations

import os
import signal as _signal
import threading
import time
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from ._drive import Op, async_method, sync_method
from ._errors import ManyErrors, ProcessNotFound, ProcessTimeout
from ._messaging.broadcast import gather
from ._process import (
    DEFAULT_GRACE,
    AsyncProcess,
    Env,
    Process,
    ProcessCore,
    _check_grace,
    _deadline,
    signal_many,
    stop_many,
    wait_op,
)
from ._signals import OpHandler, add_sig_handler_shutdown, remove_sig_handler
from ._stop import Scope, StopPolicy

__all__ = ["AsyncManager", "Manager", "ManagerCore"]

P = TypeVar("P", bound=ProcessCore)


def _raise_many(what: str, total: int, errors: list[Exception]) -> None:
    if errors:
        raise ManyErrors(f"{what}: {len(errors)} of {total} processes failed", errors)


class ManagerCore(Generic[P]):
    """The registry and the many-process operations; faces choose blocking or awaited."""

    _process_class: type[P]

    def __init__(self, *, grace: float = DEFAULT_GRACE) -> None:
        self._grace = _check_grace(grace)
        self._lock = threading.Lock()
        self._procs: dict[int, P] = {}
        self._shutdown_handler: OpHandler | None = None

    # ------------------------------------------------------------------ creating and adopting

    def new_process(
        self,
        path: str | os.PathLike[str],
        args: Iterable[str] = (),
        env: Env | None = None,
        **kw: Any,
    ) -> P:
        """A process of this manager; it is listed once started."""
        kw.setdefault("grace", self._grace)
        proc = self._process_class(path, args, env, **kw)
        proc._manager = self
        return proc

    def new_command(self, cmd: str, env: Env | None = None, **kw: Any) -> P:
        """A process running ``cmd`` through the shell; listed once started."""
        kw.setdefault("grace", self._grace)
        proc = self._process_class.from_command(cmd, env, **kw)
        proc._manager = self
        return proc

    def add_process(self, pid: int, *, create_time: float | None = None) -> P:
        """Adopt a running process by pid (and, if given, its psutil ``create_time``).

        Raises :class:`~gproc.ProcessNotFound` when no such process exists (or it is not the one
        started at ``create_time``). Its exit is detected; its exit code is ``None`` unless it is
        our child. A pid this manager already lists, running, returns that process.
        """
        listed = self.get_process(pid)
        if listed is not None and listed.is_running():
            # Two handles on one child would race to reap it (and Popen invents status 0 for
            # the loser): the process already listed is the adoption.
            return listed
        proc = self._process_class._adopt(pid, create_time, self._grace)
        proc._manager = self
        self._register(proc)
        return proc

    def _register(self, proc: ProcessCore) -> None:
        assert proc.pid is not None
        with self._lock:
            # A pid is only reused after its process was reaped; the newer process wins the key.
            self._procs[proc.pid] = proc  # type: ignore[assignment]

    def _forget(self, proc: ProcessCore) -> None:
        with self._lock:
            if proc.pid is not None and self._procs.get(proc.pid) is proc:
                del self._procs[proc.pid]

    # ------------------------------------------------------------------ bookkeeping

    def get_process(self, pid: int) -> P | None:
        """The listed process with this pid, or ``None``."""
        with self._lock:
            return self._procs.get(pid)

    def remove_process(self, pid: int) -> P | None:
        """Forget the process (it keeps running, nothing is killed); return it, or ``None``."""
        with self._lock:
            proc = self._procs.pop(pid, None)
        if proc is not None:
            proc._manager = None
        return proc

    def processes(self) -> list[P]:
        """Every listed process, in start order, exited ones included."""
        with self._lock:
            return list(self._procs.values())

    def pids(self) -> list[int]:
        with self._lock:
            return list(self._procs)

    def running(self) -> list[P]:
        """The listed processes that are still running."""
        return [p for p in self.processes() if p.is_running()]

    def clear(self) -> None:
        """Forget every process (kills nothing)."""
        with self._lock:
            procs = list(self._procs.values())
            self._procs.clear()
        for proc in procs:
            proc._manager = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._procs)

    def __contains__(self, pid: object) -> bool:
        with self._lock:
            return pid in self._procs

    def __repr__(self) -> str:
        procs = self.processes()
        alive = sum(1 for p in procs if p.is_running())
        return f"<{type(self).__name__} {len(procs)} processes, {alive} running>"

    # ------------------------------------------------------------------ acting on all

    def signal_all(self, sig: int, *, scope: Scope = "tree") -> None:
        """Signal every listed process; exited ones are reported, the others still signalled."""
        procs = self.processes()
        _raise_many(f"signal_all({sig})", len(procs), signal_many(procs, sig, scope))

    def _wait_all_op(self, timeout: float | None = None) -> Op[dict[int, int | None]]:
        deadline = _deadline(timeout)
        procs = self.processes()
        pending = yield from wait_op(procs, deadline)
        if pending:
            pids = ", ".join(str(p.pid) for p in pending[:20])
            more = "..." if len(pending) > 20 else ""
            raise ProcessTimeout(
                f"{len(pending)} of {len(procs)} processes still running after {timeout}s: "
                f"pids {pids}{more}",
                timeout=timeout or 0.0,
            )
        return {p.pid: p.returncode for p in procs if p.pid is not None}

    def _stop_all_op(self, policy: StopPolicy, what: str) -> Op[dict[int, int | None]]:
        started = time.monotonic()
        procs = self.processes()
        errors = yield from stop_many(procs, policy)
        _raise_many(f"{what} ({time.monotonic() - started:.2f}s)", len(procs), errors)
        return {p.pid: p.returncode for p in procs if p.pid is not None}

    def _terminate_all_op(
        self, grace: float = DEFAULT_GRACE, *, scope: Scope = "tree"
    ) -> Op[dict[int, int | None]]:
        policy = StopPolicy(grace=_check_grace(grace), scope=scope)
        return (yield from self._stop_all_op(policy, "terminate_all"))

    def _kill_all_op(self, *, scope: Scope = "tree") -> Op[dict[int, int | None]]:
        policy = StopPolicy(grace=0.0, signal=_signal.SIGKILL, scope=scope)
        return (yield from self._stop_all_op(policy, "kill_all"))

    # ------------------------------------------------------------------ signals

    def shutdown_on_signals(self, grace: float = DEFAULT_GRACE) -> OpHandler:
        """On a shutdown signal, stop every process of this manager before ``listen`` returns.

        SIGTERM to each process tree, SIGKILL to whatever is left after ``grace`` seconds, all
        processes in parallel (the stop policy of ``terminate_all``). Under ``aio.listen`` the
        stop runs on the listening loop. Calling it again replaces the grace; leaving the
        manager's ``with`` block unregisters it. Returns the handler, for ``remove_sig_handler``.
        """
        policy = StopPolicy(grace=_check_grace(grace))

        def stop(sig: _signal.Signals) -> Op[dict[int, int | None]]:
            return self._stop_all_op(policy, f"shutdown on {sig.name}")

        handler = OpHandler(stop, f"{type(self).__name__}.shutdown_on_signals(grace={grace:g})")
        with self._lock:
            previous, self._shutdown_handler = self._shutdown_handler, handler
        if previous is not None:
            remove_sig_handler(previous)
        add_sig_handler_shutdown(handler)
        return handler

    def _forget_signals(self) -> None:
        with self._lock:
            handler, self._shutdown_handler = self._shutdown_handler, None
        if handler is not None:
            remove_sig_handler(handler)

    def _send_op(
        self, data: bytes | str, group: str = "", *, timeout: float | None = 5.0
    ) -> Op[dict[int, Exception]]:
        """Send ``data`` to every listed process, concurrently (one ``timeout`` for all).

        Every process is tried. Returns the failures, ``{pid: error}`` (exited, not receiving,
        queue full...; each error carries its pid): empty when every process queued the message.
        A broadcast that reaches some processes is normal, so failures are returned rather than
        raised, but never hidden: GoFrame's ``Manager.Send`` drops them.
        """
        procs = self.processes()
        ops = [proc._send_op(data, group, timeout=timeout) for proc in procs]
        outcomes = yield from gather(ops)
        return {
            proc.pid: outcome
            for proc, outcome in zip(procs, outcomes, strict=True)
            if isinstance(outcome, Exception) and proc.pid is not None
        }

    def _send_to_op(
        self, pid: int, data: bytes | str, group: str = "", *, timeout: float | None = 5.0
    ) -> Op[None]:
        """Send ``data`` to the listed process ``pid`` (``ProcessNotFound`` if it is not listed)."""
        proc = self.get_process(pid)
        if proc is None:
            raise ProcessNotFound(f"pid {pid} is not a process of this manager", pid=pid)
        yield from proc._send_op(data, group, timeout=timeout)

    def _exit_op(self) -> Op[None]:
        self._forget_signals()
        if any(p.is_running() for p in self.processes()):
            yield from self._terminate_all_op(self._grace)


class Manager(ManagerCore[Process]):
    """Many processes, blocking API. See ``docs/processes.md``.

    ``with Manager() as m:`` terminates (with ``grace``) everything still running on leaving.
    """

    _process_class = Process

    wait_all = sync_method(ManagerCore._wait_all_op)
    terminate_all = sync_method(ManagerCore._terminate_all_op)
    kill_all = sync_method(ManagerCore._kill_all_op)
    send = sync_method(ManagerCore._send_op)
    send_to = sync_method(ManagerCore._send_to_op)
    _exit = sync_method(ManagerCore._exit_op)

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._exit()


class AsyncManager(ManagerCore[AsyncProcess]):
    """Many processes, asyncio API (``gproc.aio.Manager``)."""

    _process_class = AsyncProcess

    wait_all = async_method(ManagerCore._wait_all_op)
    terminate_all = async_method(ManagerCore._terminate_all_op)
    kill_all = async_method(ManagerCore._kill_all_op)
    send = async_method(ManagerCore._send_op)
    send_to = async_method(ManagerCore._send_to_op)
    _exit = async_method(ManagerCore._exit_op)

    async def __aenter__(self) -> AsyncManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._exit()
