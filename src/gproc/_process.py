"""One process: started by gproc (a child) or adopted by pid; watched, signalled, stopped, reaped.

:class:`ProcessCore` holds all the logic. Its blocking methods are operations (see ``_drive``);
:class:`Process` and :class:`AsyncProcess` are thin faces that run them blocking or awaited.
:func:`wait_op` waits for any number of processes at once (one ``Wait`` over all their exit
descriptors), which is what ``Process.wait`` and ``Manager.wait_all`` both are.

Descriptor lifetime: a process's exit descriptor (pidfd) and its pumped pipes are closed once its
exit has been seen *and* no operation is using them ("pins"). Closing a descriptor another thread
is polling could let its number be reused under that poll; pinning rules that out.
"""

from __future__ import annotations

import os
import select
import signal as _signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

import psutil

from ._drive import Op, Wait, async_method, deadline_after, sync_method
from ._errors import ProcessError, ProcessNotFound, ProcessNotStarted, ProcessTimeout, SpawnError
from ._messaging import sender as _messaging_sender
from ._spawn import ChildHandle, _kill_half_started, child_env, open_pidfd, shell_argv, spawn
from ._stop import Scope, StopPolicy, descendants, signal_target, stop_op
from ._streams import Plumbing

if TYPE_CHECKING:
    from ._manager import ManagerCore

__all__ = ["DEFAULT_GRACE", "AdoptedHandle", "AsyncProcess", "Process", "ProcessCore", "wait_op"]

#: Seconds between SIGTERM and SIGKILL when gproc stops a process on its own (leaving a ``with``
#: block, a wait interrupted by Ctrl+C or cancellation) and the default of ``terminate()``.
DEFAULT_GRACE = 5.0

#: How often to look again at a process that has no descriptor to watch (no pidfd).
_BLIND_INTERVAL = 0.05

#: Two start times closer than this are the same: /proc counts in clock ticks (10 ms).
_SAME_START = 0.005

Env = Mapping[str, "str | None"]
PC = TypeVar("PC", bound="ProcessCore")


def _readable_now(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


class AdoptedHandle:
    """A process gproc did not start, known by (pid, start time) and watched through a pidfd.

    The pidfd is opened *before* the start time is read, so both name the same process. Every
    signal goes through the pidfd (the kernel refuses if that process is gone, whatever now holds
    the pid) and is preceded by an identity check. Its exit status is known only when it happens
    to be our child (``waitid`` on the pidfd); otherwise it is ``None``, never an invented 0.
    """

    __slots__ = ("_gone", "_lock", "_own_group", "_pidfd", "create_time", "pid", "returncode")

    def __init__(self, pid: int, create_time: float | None = None) -> None:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise ValueError(f"a pid is a positive int, not {pid!r}")
        if pid == os.getpid():
            raise ValueError("a process cannot adopt itself")
        self.pid = pid
        self.returncode: int | None = None
        self._gone = False
        # Serialises exit detection: the thread that reaps must store the code before any
        # other thread reports the process gone.
        self._lock = threading.Lock()
        self._pidfd = open_pidfd(pid)
        actual = _create_time(pid)
        if actual is None or (create_time is not None and abs(actual - create_time) > _SAME_START):
            self.close()
            why = "does not exist" if actual is None else "is not the process started then"
            raise ProcessNotFound(f"process {pid} {why}", pid=pid)
        self.create_time = actual
        try:
            self._own_group = os.getpgid(pid) == pid and pid != os.getpgrp()
        except ProcessLookupError:
            self._own_group = False

    def same_process(self) -> bool:
        """Whether ``pid`` still names the process adopted (same start time)."""
        actual = _create_time(self.pid)
        return actual is not None and abs(actual - self.create_time) <= _SAME_START

    @property
    def pgid(self) -> int | None:
        # A group id stays taken while its leader lives (even as a zombie), so group signals are
        # only sent while the identity check holds.
        return self.pid if self._own_group and not self._gone and self.same_process() else None

    def exit_fd(self) -> int | None:
        return None if self._gone else self._pidfd

    def exited(self) -> bool:
        if self._gone:
            return True
        with self._lock:
            return self._exited_locked()

    def _exited_locked(self) -> bool:
        if self._gone:
            return True
        if self._pidfd is not None:
            if not _readable_now(self._pidfd):
                # The pidfd names the process itself; the start time is checked as well, as the
                # one identity rule of gproc (it can only differ if the pidfd is somehow stale).
                if self.same_process():
                    return False
            else:
                self._reap_if_ours()
        else:
            try:
                proc = psutil.Process(self.pid)
                alive = (
                    abs(proc.create_time() - self.create_time) <= _SAME_START
                    and proc.status() != psutil.STATUS_ZOMBIE
                )
            except psutil.NoSuchProcess:
                alive = False
            if alive:
                return False
        self._gone = True
        return True

    def _reap_if_ours(self) -> None:
        # Only through the pidfd: waitid(P_PIDFD) can reach nothing but this very process, and it
        # fails with ChildProcessError when the process is not our child.
        waiter = getattr(os, "waitid", None)
        p_pidfd = getattr(os, "P_PIDFD", None)
        if waiter is None or p_pidfd is None or self._pidfd is None:
            return
        try:
            result = waiter(p_pidfd, self._pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            return
        if result is not None:
            code = result.si_status
            self.returncode = -code if result.si_code != os.CLD_EXITED else code

    def send_signal(self, sig: int) -> None:
        if self.exited():
            return
        if self._pidfd is not None:
            try:
                _signal.pidfd_send_signal(self._pidfd, sig)
            except ProcessLookupError:
                pass
        elif self.same_process():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def __del__(self) -> None:
        if getattr(self, "_pidfd", None) is not None:
            self.close()


Handle = ChildHandle | AdoptedHandle


def _check_grace(grace: float) -> float:
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
        raise ValueError(f"grace must be a number of seconds >= 0, not {grace!r}")
    return float(grace)


_deadline = deadline_after


class ProcessCore:
    """Everything a process does; the faces only decide how its operations are run."""

    __slots__ = (
        "__weakref__",
        "_argv",
        "_cmd",
        "_cwd",
        "_env",
        "_grace",
        "_handle",
        "_lock",
        "_manager",
        "_pid",
        "_pins",
        "_plumbing",
        "_ppid",
        "_released",
        "_settled",
        "_streams",
        "stderr",
        "stdin",
        "stdout",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        args: Iterable[str] = (),
        env: Env | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        stdin: Any = None,
        stdout: Any = None,
        stderr: Any = None,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        path = os.fspath(path)
        if not isinstance(path, str) or not path:
            raise TypeError(f"path must be a non-empty str or path, not {path!r}")
        if isinstance(args, (str, bytes)):
            raise TypeError("args must be a sequence of str, not a single str")
        args = list(args)
        if not all(isinstance(a, str) for a in args):
            raise TypeError(f"args must be a sequence of str, not {args!r}")
        if args and args[0] == path:  # GoFrame compatibility: Process(sys.argv[0], sys.argv)
            args = args[1:]
        self._argv: list[str] = [path, *args]
        self._cmd: str | list[str] = self._argv
        self._env = dict(env) if env else None
        self._cwd = cwd
        self._streams: tuple[Any, Any, Any] | None = (stdin, stdout, stderr)
        self._grace = _check_grace(grace)
        self._ppid: int | None = None
        self._handle: Handle | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._pins = 0
        self._settled = False
        self._released = False
        self._plumbing: Plumbing | None = None
        self._manager: ManagerCore[Any] | None = None
        self.stdin: IO[bytes] | None = None
        self.stdout: IO[bytes] | None = None
        self.stderr: IO[bytes] | None = None

    @classmethod
    def from_command(cls: type[PC], cmd: str, env: Env | None = None, **kw: Any) -> PC:
        """A process that runs ``cmd`` through the shell (``/bin/bash -c cmd``)."""
        if not isinstance(cmd, str):
            raise TypeError(f"cmd must be a str (a shell command line), not {type(cmd).__name__}")
        argv = shell_argv(cmd)
        proc = cls(argv[0], argv[1:], env, **kw)
        proc._cmd = cmd
        return proc

    @classmethod
    def _adopt(
        cls: type[PC], pid: int, create_time: float | None = None, grace: float = DEFAULT_GRACE
    ) -> PC:
        handle = AdoptedHandle(pid, create_time)
        proc = cls(str(pid), grace=grace)
        try:
            proc._argv = psutil.Process(pid).cmdline() or [str(pid)]
        except psutil.Error:
            pass
        proc._cmd = proc._argv
        proc._streams = None
        proc._handle = handle
        proc._pid = pid
        return proc

    # ------------------------------------------------------------------ facts

    @property
    def pid(self) -> int | None:
        """The process id; ``None`` before ``start()``."""
        return self._pid

    @property
    def cmd(self) -> str | list[str]:
        """The command: the argv list, or the shell command line for ``from_command``."""
        return self._cmd

    @property
    def argv(self) -> list[str]:
        """The argv the child receives (``argv[0]`` is the path as given)."""
        return list(self._argv)

    @property
    def adopted(self) -> bool:
        """True for a process gproc did not start (``Manager.add_process``)."""
        return isinstance(self._handle, AdoptedHandle)

    @property
    def ppid(self) -> int | None:
        """The ``GPROC_PPID`` the child receives (this process's pid unless set before start).

        ``None`` for an adopted process: gproc did not start it, so gave it nothing.
        """
        if self.adopted:
            return None
        return os.getpid() if self._ppid is None else self._ppid

    @ppid.setter
    def ppid(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"ppid must be a pid (int >= 0), not {value!r}")
        with self._lock:
            if self._pid is not None:
                raise ProcessError(
                    f"ppid can only be set before start(); process {self._pid} was started",
                    pid=self._pid,
                    cmd=self._cmd,
                )
            self._ppid = value

    @property
    def returncode(self) -> int | None:
        """The exit code once known (negative signal number if killed), else ``None``.

        Always ``None`` for an adopted process that is not our child: its status is unknowable.
        """
        handle = self._handle
        if handle is None:
            return None
        if isinstance(handle, ChildHandle):
            return handle.popen.returncode
        return handle.returncode

    def __repr__(self) -> str:
        if getattr(self, "_pid", None) is None:
            state = "not started"
        elif self._check_exit():
            state = f"exited {self.returncode}"
        else:
            state = "running"
        return f"<{type(self).__name__} pid={self._pid} {state} cmd={self._cmd!r}>"

    # ------------------------------------------------------------------ start

    def start(self) -> int:
        """Start the process and return its pid. A second call starts nothing, returns the pid."""
        with self._lock:
            if self._pid is not None:
                return self._pid
            if self._released:  # pragma: no cover - release() needs a started process
                raise ProcessError("process was released", cmd=self._cmd)
            self._pid = self._spawn()
        manager = self._manager
        if manager is not None:
            manager._register(self)
        return self._pid

    def _spawn(self) -> int:
        assert self._streams is not None
        plumbing = Plumbing.connect(*self._streams)
        # `started` receives the Popen before it forks: if Ctrl+C lands after spawn() returned
        # but before the handle is stored, the except clause still finds the child and kills it.
        started: list[subprocess.Popen[bytes]] = []
        try:
            try:
                # A path without a slash is looked up in the child's PATH (ours plus ``env``)
                # by Popen itself, in C, as execvp does: directories and non-executables skipped.
                spawn(
                    self._argv,
                    env=child_env(self._env, ppid=self._ppid),
                    cwd=self._cwd,
                    holder=started,
                    **plumbing.popen_args,
                )
            finally:
                plumbing.close_child_ends()
            popen = started[0]
            self._handle = ChildHandle(popen, own_group=True)
        except OSError as exc:
            plumbing.close()  # Popen has reaped a child whose exec failed
            raise SpawnError(
                f"cannot start {self._cmd!r}: {exc}", cmd=self._cmd, cause=exc
            ) from exc
        except BaseException:
            plumbing.close()
            child = started[0] if started else None
            child_pid = getattr(child, "pid", None)
            if child is not None and child_pid is not None and self._handle is None:
                _kill_half_started(child, child_pid, own_group=True)
            raise
        self._streams = None  # the caller's objects now live in the plumbing (or the child)
        self._plumbing = plumbing if plumbing.has_pumps() else None
        self.stdin, self.stdout, self.stderr = popen.stdin, popen.stdout, popen.stderr
        return popen.pid

    def _require(self) -> Handle:
        handle = self._handle
        if handle is None:
            if self._released:
                raise ProcessError(
                    f"process {self._pid} was released; gproc no longer tracks it",
                    pid=self._pid,
                    cmd=self._cmd,
                )
            raise ProcessNotStarted(
                f"process {self._cmd!r} was not started; call start() first", cmd=self._cmd
            )
        return handle

    # ------------------------------------------------------------------ exit and resources

    def _check_exit(self) -> bool:
        """Reap if possible; True once the process has exited. Never blocks."""
        handle = self._handle
        if handle is None or not handle.exited():
            return False
        self._settle()
        return True

    def _settle(self) -> None:
        # Close the exit descriptor and deliver what the pumped pipes still hold, once the exit
        # was seen and no operation is polling those descriptors (see the module docstring).
        with self._lock:
            handle = self._handle
            if self._settled or self._pins or handle is None or not handle.exited():
                return
            self._settled = True
            plumbing, self._plumbing = self._plumbing, None
            handle.close()
        if plumbing is not None:
            plumbing.drain_and_close()

    def _pin(self) -> None:
        with self._lock:
            self._pins += 1

    def _unpin(self) -> None:
        with self._lock:
            self._pins -= 1
        self._check_exit()

    def poll(self) -> int | None:
        """The exit code if the process has exited (reaping it), else ``None``."""
        self._require()
        self._check_exit()
        return self.returncode

    def is_running(self) -> bool:
        """True while the process runs; False before start and once it has exited."""
        return self._handle is not None and not self._check_exit()

    # ------------------------------------------------------------------ signals

    def signal(self, sig: int, *, scope: Scope = "tree") -> None:
        """Send ``sig``: to the process, its group (``"group"``) and descendants (``"tree"``).

        Raises :class:`ProcessNotFound` when the process has exited, or when its pid now names
        another process: nothing is signalled then.
        """
        errors = signal_many([self], sig, scope)
        if errors:
            raise errors[0]

    def _wait_op(self, timeout: float | None = None) -> Op[int | None]:
        self._require()
        return (yield from self._wait_until(_deadline(timeout), timeout))

    def _run_op(self, timeout: float | None = None) -> Op[int | None]:
        deadline = _deadline(timeout)  # checked before anything starts
        self.start()
        return (yield from self._wait_until(deadline, timeout))

    def _wait_until(self, deadline: float | None, timeout: float | None) -> Op[int | None]:
        pending = yield from wait_op([self], deadline)
        if pending:
            raise ProcessTimeout(
                f"process {self._pid} still running after {timeout}s",
                pid=self._pid,
                cmd=self._cmd,
                timeout=timeout or 0.0,
            )
        return self.returncode

    def _terminate_op(
        self, grace: float = DEFAULT_GRACE, *, scope: Scope = "tree"
    ) -> Op[int | None]:
        policy = StopPolicy(grace=_check_grace(grace), scope=scope)
        errors = yield from stop_many([self], policy)
        if errors:
            raise errors[0]
        return self.returncode

    def _kill_op(self, *, scope: Scope = "tree") -> Op[int | None]:
        policy = StopPolicy(grace=0.0, signal=_signal.SIGKILL, scope=scope)
        errors = yield from stop_many([self], policy)
        if errors:
            raise errors[0]
        return self.returncode

    def _send_op(
        self, data: bytes | str, group: str = "", *, timeout: float | None = 5.0
    ) -> Op[None]:
        """Send a message to this process (see :func:`gproc.send`); returns once it is queued.

        ``ProcessNotStarted`` before ``start()``; ``ProcessNotFound`` once the process has
        exited, so a message can never reach a later process that got its pid.
        """
        self._require()
        if not self.is_running():
            raise ProcessNotFound(
                f"process {self._pid} has exited; the message was not sent",
                pid=self._pid,
                cmd=self._cmd,
            )
        pid = self._pid
        assert pid is not None  # started
        yield from _messaging_sender.send(pid, data, group, timeout=timeout)

    def _exit_op(self) -> Op[None]:
        """Leaving a ``with`` block: stop the process if it still runs, close our pipe ends."""
        try:
            if self._handle is not None and self.is_running():
                yield from self._terminate_op(self._grace)
        finally:
            for stream in (self.stdin, self.stdout, self.stderr):
                if stream is not None:
                    stream.close()

    def release(self) -> None:
        """Stop tracking the process: close gproc's descriptors, forget it. It keeps running.

        A child that is released before it exits is reaped later by :mod:`subprocess` (when
        its ``Popen`` is garbage collected and the next child starts), as any ``Popen`` would be.
        """
        handle = self._require()
        with self._lock:
            if self._pins:
                raise ProcessError(
                    f"process {self._pid} is being waited for or stopped; release it after that",
                    pid=self._pid,
                    cmd=self._cmd,
                )
            self._handle = None
            self._released = True
            plumbing, self._plumbing = self._plumbing, None
        handle.close()
        if plumbing is not None:
            plumbing.close()
        manager = self._manager
        if manager is not None:
            manager._forget(self)


# ---------------------------------------------------------------------- operations on many


def wait_op(procs: Sequence[ProcessCore], deadline: float | None) -> Op[list[ProcessCore]]:
    """Wait until every process has exited or ``deadline`` passes; return those still running.

    One ``Wait`` covers every exit descriptor and every pumped pipe, so the cost is O(1) threads
    and O(ready) work per wake-up. If the wait is interrupted (Ctrl+C, cancellation), the
    processes gproc started are stopped with their grace period before the interruption goes on;
    adopted ones are left alone (they are not ours to stop).
    """
    for proc in procs:
        proc._require()
        proc._pin()
    try:
        by_fd: dict[int, ProcessCore] = {}
        blind: list[ProcessCore] = []
        pumped: list[ProcessCore] = []
        for proc in procs:
            if proc._check_exit():
                continue
            handle = proc._require()
            fd = handle.exit_fd()
            if fd is None:
                blind.append(proc)
            else:
                by_fd[fd] = proc
            if proc._plumbing is not None:
                pumped.append(proc)
        while by_fd or blind:
            reads: list[int] = list(by_fd)
            writes: list[int] = []
            outputs: dict[int, Any] = {}
            inputs: dict[int, Any] = {}
            for proc in pumped:
                plumbing = proc._plumbing
                if plumbing is None:
                    continue
                for out in plumbing.outputs:
                    if out.fd is not None:
                        outputs[out.fd] = out
                pump = plumbing.stdin_pump
                if pump is not None and pump.fd is not None:
                    inputs[pump.fd] = pump
            reads += outputs
            writes += inputs
            wake = deadline
            if blind:
                soon = time.monotonic() + _BLIND_INTERVAL
                wake = soon if wake is None else min(wake, soon)
            try:
                ready = yield Wait(readable=reads, writable=writes, deadline=wake)
                for fd in ready:
                    if fd in outputs:
                        outputs[fd].on_readable()
                    elif fd in inputs:
                        inputs[fd].on_writable()
            except GeneratorExit:  # abandoned by a garbage-collected caller: no waiting possible
                raise
            except BaseException:
                running = [p for p in [*by_fd.values(), *blind] if not p.adopted]
                groups: dict[float, list[ProcessCore]] = {}
                for proc in running:
                    groups.setdefault(proc._grace, []).append(proc)
                for grace, members in groups.items():
                    yield from stop_many(members, StopPolicy(grace=grace))
                raise
            for fd in ready:
                if fd in by_fd and by_fd[fd]._check_exit():
                    del by_fd[fd]
            if blind:
                blind = [p for p in blind if not p._check_exit()]
            if deadline is not None and time.monotonic() >= deadline:
                break
        return [*by_fd.values(), *blind]
    finally:
        for proc in procs:
            proc._unpin()


def signal_many(procs: Sequence[ProcessCore], sig: int, scope: Scope) -> list[Exception]:
    """Signal every process that runs (one process-table scan); return one error per failure."""
    if isinstance(sig, bool) or not isinstance(sig, int):
        raise TypeError(f"sig must be a signal number, not {sig!r}")
    if sig != 0 and sig not in _signal.valid_signals():
        raise ValueError(f"{sig} is not a valid signal number")
    errors: list[Exception] = []
    live: list[ProcessCore] = []
    for proc in procs:
        proc._require()
        if proc._check_exit():
            errors.append(
                ProcessNotFound(
                    f"process {proc.pid} has exited (exit code {proc.returncode})",
                    pid=proc.pid,
                    cmd=proc.cmd,
                )
            )
        else:
            live.append(proc)
    tree = descendants(p._require().pid for p in live) if scope == "tree" and live else {}
    for proc in live:
        handle = proc._require()
        try:
            signal_target(handle, sig, scope, tree.get(handle.pid, ()))
        except OSError as exc:
            err = ProcessError(
                f"cannot signal process {proc.pid}: {exc}", pid=proc.pid, cmd=proc.cmd
            )
            err.__cause__ = exc
            errors.append(err)
    return errors


def stop_many(procs: Sequence[ProcessCore], policy: StopPolicy) -> Op[list[Exception]]:
    """Stop every process by ``policy`` (in parallel); return one error per process left alive."""
    handles = [p._require() for p in procs]
    for proc in procs:
        proc._pin()
    try:
        yield from stop_op(handles, policy)
    finally:
        for proc in procs:
            proc._unpin()
    return [
        ProcessError(
            f"process {p.pid} is still running after SIGKILL (uninterruptible sleep?)",
            pid=p.pid,
            cmd=p.cmd,
        )
        for p in procs
        if not p._check_exit()
    ]


# ---------------------------------------------------------------------- faces


class Process(ProcessCore):
    """A process, blocking API. See ``docs/processes.md``.

    ``Process(path, args=(), env=None, *, cwd=None, stdin=None, stdout=None, stderr=None,
    grace=5.0)``. ``with Process(...) as p:`` starts it and stops it (terminate with ``grace``)
    on leaving the block if it still runs.
    """

    __slots__ = ()

    wait = sync_method(ProcessCore._wait_op)
    run = sync_method(ProcessCore._run_op)
    terminate = sync_method(ProcessCore._terminate_op)
    kill = sync_method(ProcessCore._kill_op)
    send = sync_method(ProcessCore._send_op)
    _exit = sync_method(ProcessCore._exit_op)

    def __enter__(self) -> Process:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._exit()


class AsyncProcess(ProcessCore):
    """A process, asyncio API (``gproc.aio.Process``): the same, with awaited waits and stops.

    ``start()``, ``poll()``, ``signal()`` never block and are plain methods in both faces.
    """

    __slots__ = ()

    wait = async_method(ProcessCore._wait_op)
    run = async_method(ProcessCore._run_op)
    terminate = async_method(ProcessCore._terminate_op)
    kill = async_method(ProcessCore._kill_op)
    send = async_method(ProcessCore._send_op)
    _exit = async_method(ProcessCore._exit_op)

    async def __aenter__(self) -> AsyncProcess:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._exit()
