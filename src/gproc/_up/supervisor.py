"""The supervisor of ``gproc up``: starts the plan, relays output, applies the restart policy.

Everything happens on one asyncio loop in one thread, whatever the number of processes: each
copy's output pipe and its pidfd (which becomes readable when it exits) are registered with the
loop *once* for the copy's lifetime, so a wake-up costs one ``epoll_wait`` and the callbacks of
what is ready. (The ``_drive`` ``Wait`` machinery re-registers every descriptor at every wait,
which is right for an operation waiting on a few, and wrong for a loop watching four hundred.)

Stopping goes through :func:`gproc._stop.stop_op`, the one stop policy: the copy's whole tree gets
its ``stop_signal``, then SIGKILL after ``grace``. While a stop runs it owns the copy's pidfd, so
the supervisor's own exit watch is removed first and the exit is handled when the stop returns.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import aio
from .._drive import run_async
from .._errors import GprocError, MessagingError, signal_name
from .._messaging.message import Message
from .._spawn import ChildHandle, child_env, shell_argv, spawn
from .._stop import StopPolicy, signal_target, stop_op
from .._streams import widen_pipe
from .control import GROUP, handle
from .output import Label, LineSplitter, Output
from .plan import Instance
from .policy import CrashLoop, ExitStatus, Restart, RestartTracker, StayDown, StopAll

__all__ = ["DEFAULT_GRACE", "Copy", "Supervisor"]

#: Seconds between a service's stop signal and SIGKILL, unless gproc.toml or --grace says.
DEFAULT_GRACE = 5.0
#: Bytes read from an output pipe per wake-up.
READ_SIZE = 64 * 1024
#: The most read from a pipe after its process exited (what it left there, not a stream).
DRAIN_LIMIT = 4 << 20
#: Lines of a copy's output kept to quote when it is declared failed.
TAIL_LINES = 10
#: Exit status reported when a service could not be started at all (as a shell reports).
CANNOT_START = 127
#: ``gproc up``'s status when a service was declared failed (crash loop).
FAILED_STATUS = 1


class Copy:
    """One copy of a service (``web.1``) and everything the supervisor knows about it."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.tracker = RestartTracker(instance.config)
        self.handle: ChildHandle | None = None
        #: running | backoff | stopping | stopped (by request) | exited (for good) | failed
        self.state = "starting"
        self.started_at: float | None = None  # monotonic, for uptime
        self.last_exit: ExitStatus | None = None
        self.tail: deque[bytes] = deque(maxlen=TAIL_LINES)
        self.out_fd: int | None = None
        self.splitter = LineSplitter()
        self.restart_timer: asyncio.TimerHandle | None = None
        self.stop_task: asyncio.Task[None] | None = None
        #: What to do once the running stop is over: "stopped", "restart" or "shutdown".
        self.after_stop = "stopped"

    # The output.Label protocol.
    @property
    def name(self) -> str:
        return self.instance.name

    @property
    def service(self) -> str:
        return self.instance.service

    @property
    def slot(self) -> int:
        return self.instance.slot

    @property
    def pid(self) -> int | None:
        return self.handle.pid if self.handle is not None else None

    def uptime(self) -> float | None:
        if self.state not in ("running", "stopping") or self.started_at is None:
            return None
        return time.monotonic() - self.started_at

    def status(self) -> dict[str, Any]:
        """What ``gproc ctl status`` shows about this copy."""
        last = self.last_exit
        return {
            "name": self.name,
            "service": self.service,
            "pid": self.pid if self.state in ("running", "stopping") else None,
            "state": self.state,
            "uptime": self.uptime(),
            "restarts": self.tracker.restarts,
            "last_exit": None if last is None else {"code": last.code, "signal": _sig(last)},
        }


def _sig(status: ExitStatus) -> str | None:
    return signal_name(status.signal) if status.signal is not None else None


class Supervisor:
    """Runs a plan until it is stopped; :meth:`run` returns ``gproc up``'s exit status."""

    def __init__(
        self,
        plan: Sequence[Instance],
        output: Output,
        *,
        grace: float | None = None,
        cwd: str | None = None,
    ) -> None:
        self.copies = [Copy(instance) for instance in plan]
        self.by_name = {copy.name: copy for copy in self.copies}
        self.output = output
        self._grace = grace
        self._cwd = cwd
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_pending = False
        self._shutting_down = False
        self._status = 0
        self._done: asyncio.Future[None] | None = None
        #: Ctrl+C / SIGTERM / SIGHUP received so far (the second one skips the grace period).
        self._signals_seen = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the supervisor is not running"
        return self._loop

    # ------------------------------------------------------------------ running

    async def run(self, *, handle_signals: bool = True, serve: bool = True) -> int:
        """Start every copy and supervise them until everything has stopped.

        ``handle_signals``: stop on SIGINT/SIGTERM/SIGHUP (main thread only). ``serve``: answer
        ``gproc ctl`` and show messages that services send us, through gproc messaging.
        """
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        installed: list[signal.Signals] = []
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self._loop.add_signal_handler(sig, self.on_signal, sig)
                installed.append(sig)
        servers: list[asyncio.Task[None]] = []
        if serve:
            try:
                # Listening starts before any service does: a service may message us at once.
                aio.start_receiving()
            except (GprocError, OSError) as exc:  # e.g. an unsafe runtime directory
                self._event("warning", f"gproc ctl is unavailable: {exc}", reason="messaging")
            else:
                servers = [
                    self._loop.create_task(self._serve(GROUP, self._on_ctl)),
                    self._loop.create_task(self._serve("", self._on_message)),
                ]
        try:
            for copy in self.copies:
                if self._shutting_down:
                    break
                self._start(copy)
            self._flush()
            await self._done
        finally:
            for task in servers:
                task.cancel()
            for sig in installed:
                self._loop.remove_signal_handler(sig)
            # Only reached with processes left if run() itself was cancelled: leave none.
            await self._kill_everything()
            self._flush()
        return self._status

    def on_signal(self, sig: int) -> None:
        """Ctrl+C, SIGTERM or SIGHUP: stop everything; a second one skips the grace period."""
        self._signals_seen += 1
        # A signal during a shutdown that a service started (crash loop, restart = "no") is the
        # user's impatience too: it skips the grace period like a second Ctrl+C.
        if self._signals_seen == 1 and not self._shutting_down:
            name = "Ctrl+C" if sig == signal.SIGINT else signal_name(sig)
            self.shutdown(f"{name} received", 0, reason="signal", signal=signal_name(sig))
        else:
            self._event("stopping", "second signal: killing what is left now", reason="signal")
            for copy in self.copies:
                if copy.stop_task is not None:
                    copy.stop_task.cancel()
        self._flush()

    def shutdown(self, why: str, status: int, **facts: Any) -> None:
        """Stop every copy by its stop policy, then end :meth:`run` with ``status``."""
        if self._shutting_down:
            return
        self._shutting_down = True
        self._status = status
        self._event("stopping", f"stopping all services: {why}", **facts)
        for copy in self.copies:
            if copy.restart_timer is not None:
                copy.restart_timer.cancel()
                copy.restart_timer = None
                copy.state = "stopped"
            if copy.stop_task is not None:
                copy.after_stop = "shutdown"
            elif copy.state == "running":
                self._stop(copy, then="shutdown")
            elif copy.state == "starting":
                copy.state = "stopped"  # never started: the shutdown came first
        self._check_done()

    def _check_done(self) -> None:
        if not self._shutting_down or self._done is None or self._done.done():
            return
        if any(copy.state in ("running", "stopping") for copy in self.copies):
            return
        self._event(
            "stopped", f"all services stopped (exit status {self._status})", status=self._status
        )
        self._flush()
        self._done.set_result(None)

    # ------------------------------------------------------------------ starting

    def _start(self, copy: Copy) -> None:
        instance = copy.instance
        copy.restart_timer = None
        copy.splitter = LineSplitter()
        copy.tail.clear()  # a failure quotes the last lines of its own run
        read_fd, write_fd = os.pipe()
        widen_pipe(read_fd)
        try:
            popen = spawn(
                shell_argv(instance.command),
                env=child_env(instance.env),
                cwd=instance.config.cwd or self._cwd,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
            )
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the environment
            os.close(read_fd)
            self._event(
                "exited",
                f"{copy.name} could not start: {exc}",
                copy,
                code=CANNOT_START,
                signal=None,
                error=str(exc),
            )
            self._after_exit(copy, ExitStatus(CANNOT_START))
            return
        finally:
            os.close(write_fd)
        copy.handle = ChildHandle(popen, own_group=True)
        copy.state = "running"
        copy.started_at = time.monotonic()
        os.set_blocking(read_fd, False)
        copy.out_fd = read_fd
        self.loop.add_reader(read_fd, self._on_output, copy)
        self._watch_exit(copy)
        self._event(
            "started",
            f"{copy.name} started (pid {popen.pid}, port {instance.port})",
            copy,
            command=instance.command,
            port=instance.port,
        )

    def _watch_exit(self, copy: Copy) -> None:
        assert copy.handle is not None
        fd = copy.handle.exit_fd()
        if fd is not None:
            self.loop.add_reader(fd, self._on_exit, copy)

    def _unwatch_exit(self, copy: Copy) -> None:
        if copy.handle is not None and (fd := copy.handle.exit_fd()) is not None:
            self.loop.remove_reader(fd)

    # ------------------------------------------------------------------ output

    def _on_output(self, copy: Copy) -> None:
        fd = copy.out_fd
        if fd is None:
            return
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        if data:
            self._lines(copy, copy.splitter.feed(data))
        else:
            self._close_output(copy)
        self._schedule_flush()

    def _lines(self, copy: Copy, lines: list[bytes]) -> None:
        if lines:
            copy.tail.extend(lines)
            self.output.lines(copy, lines)

    def _drain_output(self, copy: Copy) -> None:
        """Read what the copy left in its pipe, then close it: its last lines are never lost."""
        fd = copy.out_fd
        moved = 0
        # Bounded: a descendant that escaped the group could otherwise keep us here forever.
        while fd is not None and moved < DRAIN_LIMIT:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                break
            moved += len(data)
            self._lines(copy, copy.splitter.feed(data))
        self._close_output(copy)

    def _close_output(self, copy: Copy) -> None:
        if copy.out_fd is None:
            return
        self.loop.remove_reader(copy.out_fd)
        os.close(copy.out_fd)
        copy.out_fd = None
        rest = copy.splitter.flush()
        if rest is not None:
            self._lines(copy, [rest])

    def _schedule_flush(self) -> None:
        # Everything that became ready in one turn of the loop is written in one go.
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        try:
            self.output.flush()
        except BrokenPipeError:  # `gproc up | head`: nobody reads any more; stop
            self.shutdown("output closed", 0, reason="output")

    def _event(self, event: str, message: str, copy: Label | None = None, **facts: Any) -> None:
        self.output.event(event, message, copy, **facts)
        if self._loop is not None:
            self._schedule_flush()

    # ------------------------------------------------------------------ exits

    def _on_exit(self, copy: Copy) -> None:
        handle = copy.handle
        if handle is None or not handle.exited():
            return
        self._unwatch_exit(copy)
        self._after_exit(copy, self._reap(copy, handle))

    def _reap(self, copy: Copy, handle: ChildHandle) -> ExitStatus:
        """The copy's main process is gone: end what is left of its process group, show its last
        output, report the exit."""
        # Whatever the service left in its process group would be an orphan: no service runs
        # without its main process (Procfile services must not daemonize).
        signal_target(handle, signal.SIGKILL, "group")
        self._drain_output(copy)
        handle.close()
        code = handle.popen.returncode
        status = ExitStatus(code if code is not None else -signal.SIGKILL)
        copy.last_exit = status
        copy.handle = None
        self._event(
            "exited",
            f"{copy.name} {status.describe()}",
            _Gone(copy.name, copy.service, copy.slot, handle.pid),
            code=status.code,
            signal=_sig(status),
        )
        return status

    def _after_exit(self, copy: Copy, status: ExitStatus) -> None:
        copy.last_exit = status
        if self._shutting_down:
            copy.state = "exited"
            self._check_done()
            return
        decision = copy.tracker.on_exit(status, time.monotonic())
        if isinstance(decision, Restart):
            copy.state = "backoff"
            self._event(
                "restarting",
                f"{copy.name} restarting in {decision.delay:g}s (restart {decision.attempt})",
                copy,
                delay=decision.delay,
                attempt=decision.attempt,
            )
            copy.restart_timer = self.loop.call_later(decision.delay, self._start, copy)
        elif isinstance(decision, StayDown):
            copy.state = "exited"
            if all(c.state in ("exited", "stopped", "failed") for c in self.copies):
                self.shutdown("every service has finished", 0, reason="finished")
        elif isinstance(decision, StopAll):
            copy.state = "exited"
            self.shutdown(
                f'{copy.name} {status.describe()} (restart = "no")',
                decision.status,
                reason="exited",
                cause=copy.name,
            )
        elif isinstance(decision, CrashLoop):
            copy.state = "failed"
            lines = [line.decode("utf-8", "replace") for line in copy.tail]
            message = (
                f"{copy.name} failed: it exited {decision.restarts + 1} times within "
                f"{decision.window:g}s (max_restarts = {decision.restarts}); giving up"
            )
            if lines:
                message += "; its last lines were:\n" + "\n".join(f"    {t}" for t in lines)
            self._event("failed", message, copy, tail=lines)
            self.shutdown(f"{copy.name} failed", FAILED_STATUS, reason="failed", cause=copy.name)

    # ------------------------------------------------------------------ stopping

    def policy_for(self, copy: Copy) -> StopPolicy:
        config = copy.instance.config
        grace = self._grace if self._grace is not None else config.grace
        return StopPolicy(
            grace=DEFAULT_GRACE if grace is None else grace, signal=config.stop_signal, scope="tree"
        )

    def _stop(self, copy: Copy, *, then: str) -> None:
        handle = copy.handle
        assert handle is not None
        copy.state = "stopping"
        copy.after_stop = then
        self._unwatch_exit(copy)
        copy.stop_task = self.loop.create_task(self._run_stop(copy, handle))

    async def _run_stop(self, copy: Copy, handle: ChildHandle) -> None:
        try:
            await run_async(stop_op([handle], self.policy_for(copy)))
        except asyncio.CancelledError:
            pass  # a second Ctrl+C: stop_op has killed the tree at once
        finally:
            copy.stop_task = None
            self._reap(copy, handle)
            then = "shutdown" if self._shutting_down else copy.after_stop
            if then == "restart":
                self._start(copy)
            else:
                copy.state = "stopped" if then == "stopped" else "exited"
            self._check_done()
            self._flush()

    async def _kill_everything(self) -> None:
        pairs = [(c, c.handle) for c in self.copies if c.handle is not None and c.stop_task is None]
        for copy, _ in pairs:
            self._unwatch_exit(copy)
        if pairs:
            await run_async(stop_op([handle for _, handle in pairs], StopPolicy(grace=0)))
            for copy, handle in pairs:
                self._reap(copy, handle)

    # ------------------------------------------------------------------ messaging

    async def _serve(self, group: str, on_message: Callable[[Message], None]) -> None:
        """Take the messages of ``group`` one at a time, on the loop (so no locks are needed)."""
        while True:
            try:
                message = await aio.receive(group)
            except GprocError as exc:
                self._event("warning", f"no more messages in group {group!r}: {exc}")
                return
            on_message(message)
            self._flush()

    def _on_ctl(self, message: Message) -> None:
        """Answer a ``gproc ctl`` request."""
        reply = handle(self, message.data)
        if message.is_request:
            try:
                message.reply(reply)
            except MessagingError:
                pass  # the asker has gone away; nothing to tell

    def _on_message(self, message: Message) -> None:
        """Show what a service sent its gproc parent (``gproc.send(gproc.ppid(), ...)``)."""
        sender = next((c for c in self.copies if c.pid == message.sender_pid), None)
        who = sender.name if sender is not None else f"pid {message.sender_pid}"
        text = message.data.decode("utf-8", "replace")
        self._event(
            "message",
            f"message from {who}: {text}",
            sender,
            sender_pid=message.sender_pid,
            data=text,
        )

    # ------------------------------------------------------------------ control (gproc ctl)

    def status(self) -> list[dict[str, Any]]:
        return [copy.status() for copy in self.copies]

    def info(self) -> dict[str, Any]:
        """Who this supervisor is, for ``gproc ctl`` to find the one of a directory."""
        return {
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "root": self._cwd or os.getcwd(),
            "services": list(dict.fromkeys(copy.service for copy in self.copies)),
        }

    def select(self, name: str) -> list[Copy]:
        """The copies a ``ctl`` command names: ``web.2`` is one copy, ``web`` all of them."""
        if name in self.by_name:
            return [self.by_name[name]]
        found = [copy for copy in self.copies if copy.service == name]
        if not found:
            known = ", ".join(dict.fromkeys(c.service for c in self.copies))
            raise LookupError(f"no service {name!r} here (running: {known})")
        return found

    def command(self, action: str, name: str) -> list[str]:
        """``start``, ``stop`` or ``restart`` the named copies; returns what was done."""
        if self._shutting_down:
            raise RuntimeError("gproc up is shutting down")
        done: list[str] = []
        for copy in self.select(name):
            done.append(self._command_one(action, copy))
        self._flush()
        return done

    def _command_one(self, action: str, copy: Copy) -> str:
        actions: dict[str, Callable[[Copy], str]] = {
            "start": self._ctl_start,
            "stop": self._ctl_stop,
            "restart": self._ctl_restart,
        }
        if action not in actions:
            raise ValueError(f"unknown action {action!r}")
        return actions[action](copy)

    def _ctl_start(self, copy: Copy) -> str:
        if copy.state in ("running", "stopping"):
            return f"{copy.name} is already {copy.state}"
        if copy.restart_timer is not None:
            copy.restart_timer.cancel()
        copy.tracker.reset()
        self._start(copy)
        return f"{copy.name} started"

    def _ctl_stop(self, copy: Copy) -> str:
        if copy.restart_timer is not None:
            copy.restart_timer.cancel()
            copy.restart_timer = None
            copy.state = "stopped"
            return f"{copy.name} will not be restarted"
        if copy.state == "stopping":
            copy.after_stop = "stopped"
            return f"{copy.name} is stopping"
        if copy.state != "running":
            return f"{copy.name} is not running ({copy.state})"
        self._event("stopping", f"stopping {copy.name} (gproc ctl stop)", copy, reason="ctl")
        self._stop(copy, then="stopped")
        return f"{copy.name} stopping"

    def _ctl_restart(self, copy: Copy) -> str:
        copy.tracker.reset()
        if copy.state == "stopping":
            copy.after_stop = "restart"
            return f"{copy.name} will restart once stopped"
        if copy.state != "running":
            return self._ctl_start(copy)
        self._event("stopping", f"restarting {copy.name} (gproc ctl restart)", copy, reason="ctl")
        self._stop(copy, then="restart")
        return f"{copy.name} restarting"


@dataclass(frozen=True, slots=True)
class _Gone:
    """The label of a copy whose process just ended: it still names that process's pid."""

    name: str
    service: str
    slot: int
    pid: int | None
