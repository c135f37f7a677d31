"""Starting children: the shell, the child environment, and a handle that knows when a child exits.

Children are started with :class:`subprocess.Popen` (never by forking by hand), each in a session
and process group of its own unless the caller needs it to share our terminal, so that a stop can
reach the whole tree and Ctrl+C on our terminal reaches gproc first, which then applies the stop
policy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ._identity import PPID_ENV

__all__ = ["ChildHandle", "child_env", "find_shell", "open_pidfd", "shell_argv", "spawn"]

Env = Mapping[str, "str | None"]
StdSpec = "int | IO[Any] | None"

_shell_path: str | None = None


def find_shell() -> str:
    """``/bin/bash`` if present, else ``/bin/sh``, else bash or sh from PATH (as GoFrame does)."""
    global _shell_path
    if _shell_path is None:
        for candidate in ("/bin/bash", "/bin/sh"):
            if os.access(candidate, os.X_OK):
                _shell_path = candidate
                break
        else:
            found = shutil.which("bash") or shutil.which("sh")
            if found is None:
                raise FileNotFoundError(
                    "no shell found: neither /bin/bash, /bin/sh nor bash or sh in PATH"
                )
            _shell_path = found
    return _shell_path


def shell_argv(cmd: str) -> list[str]:
    """The argv that runs ``cmd`` through the shell, passed unparsed to ``-c``."""
    return [find_shell(), "-c", cmd]


def child_env(env: Env | None = None, *, ppid: int | None = None) -> dict[bytes, bytes]:
    """Our environment, plus ``env`` (a value of None removes a variable), plus ``GPROC_PPID``.

    Built as bytes: that is what exec() takes, and it skips decoding and re-encoding every
    variable on every start (a measurable share of starting a short command).
    """
    raw = getattr(os.environ, "_data", None)  # the bytes mapping behind os.environ
    merged: dict[bytes, bytes] = dict(raw) if isinstance(raw, dict) else dict(os.environb)
    if env:
        for key, value in env.items():
            if value is None:
                merged.pop(os.fsencode(key), None)
            else:
                merged[os.fsencode(key)] = os.fsencode(value)
    merged[_PPID_KEY] = str(os.getpid() if ppid is None else ppid).encode()
    return merged


_PPID_KEY = PPID_ENV.encode()


class _RecordingPopen(subprocess.Popen[bytes]):
    """A Popen that hands itself out before its constructor runs.

    If Ctrl+C lands while the child is being started, ``Popen()`` raises and the object, with the
    pid of a child that may already be running, would be lost. Recording it first lets
    :func:`spawn` kill and reap that child before re-raising.
    """

    def __init__(self, holder: list[subprocess.Popen[bytes]], *args: Any, **kwargs: Any) -> None:
        holder.append(self)
        super().__init__(*args, **kwargs)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[bytes, bytes] | Mapping[str, str],
    cwd: str | os.PathLike[str] | None = None,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    new_session: bool = True,
    holder: list[subprocess.Popen[bytes]] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv``; on any interruption during the start, leave no child behind.

    ``holder``, if given, receives the Popen before the child is forked, so that a caller
    interrupted right after this returns can still find (and stop) the child.
    """
    if holder is None:
        holder = []
    with _keyboard_interrupt_deferred():
        return _start(holder, argv, env, cwd, stdin, stdout, stderr, new_session)


def _start(
    holder: list[subprocess.Popen[bytes]],
    argv: Sequence[str],
    env: Mapping[bytes, bytes] | Mapping[str, str],
    cwd: str | os.PathLike[str] | None,
    stdin: Any,
    stdout: Any,
    stderr: Any,
    new_session: bool,
) -> subprocess.Popen[bytes]:
    try:
        return _RecordingPopen(
            holder,
            list(argv),
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=new_session,
            close_fds=True,
        )
    except BaseException:
        started = holder[0] if holder else None
        child_pid = getattr(started, "pid", None)
        if started is not None and child_pid is not None:
            _kill_half_started(started, child_pid, new_session)
        raise


@contextlib.contextmanager
def _keyboard_interrupt_deferred() -> Iterator[None]:
    """Hold back Ctrl+C while a child is being started, and raise it once the start is over.

    ``Popen`` can be interrupted after the fork but before it stores the child's pid, and then
    nothing knows the child exists. Blocking SIGINT with a signal mask is no cure: the child would
    inherit the mask. Instead, when Ctrl+C would raise KeyboardInterrupt (Python's default
    handler, main thread: the only place it is ever raised), a handler that only records it is
    in place for the few hundred microseconds of the start.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or _raw_signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    received: list[int] = []
    previous = _raw_signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        _raw_signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


#: The C module behind :mod:`signal`, whose wrappers convert to and from enums at ~4 us a call:
#: three calls per start were ~1.5% of ``Process.start()``.
_raw_signal: Any = getattr(signal, "_signal", signal)


def _kill_half_started(popen: subprocess.Popen[bytes], pid: int, own_group: bool) -> None:
    try:
        if own_group:
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:  # setsid() not done yet in the child
                os.kill(pid, 9)
        else:
            os.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    popen.returncode = -9
    for stream in (popen.stdin, popen.stdout, popen.stderr):
        if stream is not None:
            stream.close()


class ChildHandle:
    """A started child as the stop policy and the waits see it.

    Owns a descriptor that becomes readable when the child exits: a pidfd on Linux >= 5.3,
    otherwise one end of a pipe that a helper thread writes to once ``waitid(WNOWAIT)`` reports the
    exit (the thread never reaps, so ``Popen`` keeps the exit status).
    """

    __slots__ = ("_exit_fd", "_popen", "_thread", "own_group")

    def __init__(self, popen: subprocess.Popen[bytes], *, own_group: bool) -> None:
        self._popen = popen
        self.own_group = own_group
        self._thread: threading.Thread | None = None
        self._exit_fd: int | None = open_pidfd(popen.pid)
        if self._exit_fd is None:
            self._start_fallback()

    def _start_fallback(self) -> None:
        r, w = os.pipe()
        self._exit_fd = r
        pid = self._popen.pid

        def watch() -> None:
            try:
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                pass
            finally:
                try:
                    os.write(w, b"x")
                except OSError:  # the handle was closed first
                    pass
                os.close(w)  # the thread owns the write end: no close/reuse race with close()

        self._thread = threading.Thread(target=watch, name=f"gproc-wait-{pid}", daemon=True)
        self._thread.start()

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        return self._popen

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def pgid(self) -> int | None:
        return self._popen.pid if self.own_group else None

    def exit_fd(self) -> int | None:
        return self._exit_fd

    def exited(self) -> bool:
        return self._popen.poll() is not None

    def send_signal(self, sig: int) -> None:
        if self._thread is None and self._exit_fd is not None:
            # The pidfd names this very process: even if another thread reaps it between our
            # check and the signal, the kernel refuses rather than hitting a reused pid.
            if self._popen.returncode is None:
                try:
                    signal.pidfd_send_signal(self._exit_fd, sig)
                except ProcessLookupError:
                    pass
            return
        # Popen.send_signal polls first and does nothing once the child is reaped: an unreaped
        # child keeps its pid.
        self._popen.send_signal(sig)

    def close(self) -> None:
        """Release the exit descriptor (the child itself is untouched)."""
        fd, self._exit_fd = self._exit_fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        if getattr(self, "_exit_fd", None) is not None:
            self.close()


def open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid``, or None where the kernel or a sandbox has none (or pid is gone)."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:  # ENOSYS on old kernels, EPERM under some seccomp profiles
        return None
