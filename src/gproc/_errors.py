"""The one exception hierarchy of gproc.

Every error a user can meet derives from :class:`GprocError`. Where a standard library error already
says the same thing, the gproc error also derives from it, so code that catches ``TimeoutError``,
``ProcessLookupError`` or ``subprocess.CalledProcessError`` keeps working.

Errors carry the facts that explain them (pid, command, exit code, output) as attributes and are
picklable, so they survive a trip through ``multiprocessing`` or a log shipper.
"""

from __future__ import annotations

import signal as _signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

if sys.version_info >= (3, 11):
    from builtins import ExceptionGroup
else:  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import ExceptionGroup

__all__ = [
    "ConfigError",
    "ConnectionLost",
    "GprocError",
    "ManyErrors",
    "MessageTooLarge",
    "MessagingError",
    "NotReceiving",
    "ProcessError",
    "ProcessNotFound",
    "ProcessNotStarted",
    "ProcessTimeout",
    "QueueFull",
    "ReceiveTimeout",
    "ShellError",
    "ShellTimeout",
    "SignalError",
    "SpawnError",
    "UnsafeRuntimeDir",
    "signal_name",
]

#: How much of a command's output an error message quotes.
_TAIL_LINES = 10
_TAIL_CHARS = 2000


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15; ``signal 99`` for numbers the platform does not name."""
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _restore(cls: type[GprocError], args: tuple[Any, ...], state: dict[str, Any]) -> GprocError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class GprocError(Exception):
    """Root of every error raised by gproc."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only facts in __init__, which the default exception pickling
        # (cls(*args)) cannot replay; rebuild from the instance state instead.
        return (_restore, (type(self), self.args, self.__dict__.copy()))


def _tail(output: str | None) -> str:
    if not output:
        return ""
    lines = output.rstrip("\n").splitlines()[-_TAIL_LINES:]
    text = "\n".join(lines)
    if len(text) > _TAIL_CHARS:
        text = "..." + text[-_TAIL_CHARS:]
    return text


class ShellError(GprocError, subprocess.CalledProcessError):
    """A shell command failed: it exited non-zero or was killed by a signal.

    Attributes: ``cmd``, ``returncode`` (negative signal number when killed, as in
    :mod:`subprocess`), ``signal`` (the signal's name or ``None``), ``output`` (what gproc captured,
    possibly only the last part), ``pid``, ``duration`` (seconds) and ``timed_out``.
    """

    def __init__(
        self,
        cmd: str | Sequence[str],
        returncode: int | None,
        *,
        output: str | None = None,
        pid: int | None = None,
        duration: float = 0.0,
        timed_out: bool = False,
    ) -> None:
        # returncode is None only when a killed process could not be reaped (uninterruptible
        # sleep): gproc never invents an exit status.
        subprocess.CalledProcessError.__init__(self, returncode, cmd, output, None)  # type: ignore[arg-type]
        self.pid = pid
        self.duration = duration
        self.timed_out = timed_out
        self.signal: str | None = (
            signal_name(-returncode) if returncode is not None and returncode < 0 else None
        )

    def _status(self) -> str:
        if self.timed_out:
            return f"timed out after {self.duration:.3g}s and was stopped"
        if self.signal is not None:
            return f"was killed by {self.signal}"
        return f"exited with status {self.returncode}"

    def __str__(self) -> str:
        pid = f" (pid {self.pid})" if self.pid is not None else ""
        message = f"command {self.cmd!r}{pid} {self._status()}"
        tail = _tail(self.output)
        if tail:
            message += "; last output:\n" + tail
        return message


class ShellTimeout(ShellError, TimeoutError):
    """A shell command ran past its ``timeout`` and its whole process tree was stopped."""

    def __init__(
        self,
        cmd: str | Sequence[str],
        returncode: int | None,
        *,
        output: str | None = None,
        pid: int | None = None,
        duration: float = 0.0,
        timeout: float = 0.0,
    ) -> None:
        super().__init__(cmd, returncode, output=output, pid=pid, duration=duration, timed_out=True)
        self.timeout = timeout


class ProcessError(GprocError):
    """Something went wrong with a process; ``pid`` says which (``None`` before it started)."""

    def __init__(self, message: str, *, pid: int | None = None, cmd: Any = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.cmd = cmd


class ProcessNotFound(ProcessError, ProcessLookupError):
    """No process with that pid exists (or it is no longer the process it was)."""


class SpawnError(ProcessError, OSError):
    """A process could not be started (no such program or directory, not executable, ...).

    ``cause`` is the underlying :class:`OSError`; ``errno`` and ``filename`` are copied from it.
    """

    def __init__(self, message: str, *, cmd: Any = None, cause: OSError | None = None) -> None:
        super().__init__(message, cmd=cmd)
        self.cause = cause
        self.errno = cause.errno if cause is not None else None
        self.filename = cause.filename if cause is not None else None

    def __str__(self) -> str:
        # OSError would print "[Errno 2] None: <filename>" once errno is set; ours says more.
        return str(self.args[0]) if self.args else "cannot start the process"


class ProcessNotStarted(ProcessError, RuntimeError):
    """The call needs a started process, and this one was never started."""


class ProcessTimeout(ProcessError, TimeoutError):
    """Waiting for a process ran past its timeout. The process is left running."""

    def __init__(
        self, message: str, *, pid: int | None = None, cmd: Any = None, timeout: float = 0.0
    ) -> None:
        super().__init__(message, pid=pid, cmd=cmd)
        self.timeout = timeout


class ManyErrors(GprocError, ExceptionGroup):
    """An operation over many processes failed for some of them.

    It acted on every process first; ``exceptions`` holds one error per failure, each carrying its
    pid. Catch it as a :class:`GprocError` or split it with ``except*``.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, list(self.exceptions)))


class MessagingError(GprocError):
    """Sending or receiving a message failed; ``pid`` and ``group`` say where."""

    def __init__(self, message: str, *, pid: int | None = None, group: str | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.group = group
        #: For ``send_many``: how many leading messages were queued before the failure.
        self.delivered: int | None = None


class NotReceiving(MessagingError):
    """The target process exists but did not start receiving within the timeout."""


class QueueFull(MessagingError):
    """The receiver's queue for that group stayed full for the whole timeout."""


class MessageTooLarge(MessagingError, ValueError):
    """The message exceeds the size limit; nothing was sent."""


class ConnectionLost(MessagingError, ConnectionError):
    """The connection broke before the receiver acknowledged the message; it may not be queued."""


class ReceiveTimeout(MessagingError, TimeoutError):
    """No message of that group arrived within the timeout."""


class UnsafeRuntimeDir(MessagingError, PermissionError):
    """The messaging runtime directory is not private to this user, so gproc refuses to use it."""


class SignalError(GprocError, RuntimeError):
    """Signal handling was used in a way that cannot work (for example, no main-thread listener)."""


class ConfigError(GprocError, ValueError):
    """A config file (Procfile, .env, gproc.toml) is invalid; names the file, line and key."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        where = path or ""
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.line = line
        self.key = key
