"""The shell helpers, written once as operations (see ``_drive``).

``shell``, ``shell_exec`` and ``shell_run`` differ only in how the command's streams are connected;
running, pumping, timing out, stopping and error reporting are :func:`_run_command`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._drive import Op, Wait
from ._errors import ShellError, ShellTimeout, SpawnError
from ._spawn import ChildHandle, child_env, shell_argv, spawn
from ._stop import StopPolicy, signal_target, stop_op
from ._streams import DEVNULL, STDOUT, Capture, Plumbing

__all__ = ["DEFAULT_GRACE", "shell", "shell_exec", "shell_run"]

#: Seconds between SIGTERM and SIGKILL when a shell command times out or is interrupted.
DEFAULT_GRACE = 2.0

Env = Mapping[str, "str | None"]
PathLike = "str | os.PathLike[str]"


@dataclass
class _Outcome:
    returncode: int | None
    pid: int
    duration: float
    timed_out: bool
    tail: str | None


def _check_common(cmd: object, timeout: float | None, grace: float) -> None:
    if not isinstance(cmd, str):
        raise TypeError(
            f"the command must be a str (a shell command line), not {type(cmd).__name__}"
        )
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"timeout must be None or a number of seconds >= 0, not {timeout!r}")
    if not isinstance(grace, (int, float)) or grace < 0:
        raise ValueError(f"grace must be a number of seconds >= 0, not {grace!r}")


def _stdin_is_terminal(plumbing: Plumbing) -> bool:
    # Only an inherited terminal matters: a command reading our terminal must stay in our
    # foreground process group, or the kernel stops it with SIGTTIN (see docs/gotchas.md).
    if plumbing.popen_args.get("stdin", None) is not None:
        return False
    try:
        return os.isatty(0)
    except OSError:
        return False


def _run_command(
    cmd: str,
    plumbing: Plumbing,
    *,
    env: Env | None,
    cwd: str | os.PathLike[str] | None,
    timeout: float | None,
    grace: float,
) -> Op[_Outcome]:
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    new_session = not _stdin_is_terminal(plumbing)
    policy = StopPolicy(grace=grace, scope="tree")
    # Ctrl+C can land between any two bytecodes. `started_child` receives the Popen before its
    # constructor even forks, so whatever the moment, the except clauses below can find the child.
    started_child: list[subprocess.Popen[bytes]] = []
    child: ChildHandle | None = None
    timed_out = False
    try:
        try:
            spawn(
                shell_argv(cmd),
                env=child_env(env),
                cwd=cwd,
                new_session=new_session,
                holder=started_child,
                **plumbing.popen_args,
            )
        except OSError as exc:
            raise SpawnError(f"cannot run {cmd!r}: {exc}", cmd=cmd, cause=exc) from exc
        finally:
            plumbing.close_child_ends()
        popen = started_child[0]
        child = ChildHandle(popen, own_group=new_session)
        exit_fd = child.exit_fd()
        while not child.exited():
            reads = [p.fd for p in plumbing.outputs if p.fd is not None]
            if exit_fd is not None:
                reads.append(exit_fd)
            pump = plumbing.stdin_pump
            writes = [pump.fd] if pump is not None and pump.fd is not None else []
            ready = yield Wait(readable=reads, writable=writes, deadline=deadline)
            for out in plumbing.outputs:
                if out.fd in ready:
                    out.on_readable()
            if pump is not None and pump.fd in ready:
                pump.on_writable()
            if deadline is not None and not ready and time.monotonic() >= deadline:
                timed_out = True
                break
        if timed_out:
            yield from stop_op([child], policy)
        for out in plumbing.outputs:
            out.drain()
        return _Outcome(
            returncode=popen.returncode,
            pid=popen.pid,
            duration=time.monotonic() - started,
            timed_out=timed_out,
            tail=plumbing.tail.text(),
        )
    except GeneratorExit:
        # Abandoned by its driver (garbage collection): no more waiting is possible here.
        if child is not None:
            signal_target(child, signal.SIGKILL, "group")
            child.exited()
        raise
    except BaseException:
        # Ctrl+C, cancellation, or a sink that raised: nothing may be left running.
        if child is None and started_child and getattr(started_child[0], "pid", None):
            child = ChildHandle(started_child[0], own_group=new_session)
        if child is not None:
            yield from stop_op([child], policy)
        raise
    finally:
        if child is not None:
            child.close()
        plumbing.close()


def _raise_for(cmd: str, outcome: _Outcome, output: str | None, timeout: float | None) -> None:
    returncode = outcome.returncode
    if outcome.timed_out:
        raise ShellTimeout(
            cmd,
            returncode,
            output=output,
            pid=outcome.pid,
            duration=outcome.duration,
            timeout=timeout or 0.0,
        )
    raise ShellError(cmd, returncode, output=output, pid=outcome.pid, duration=outcome.duration)


def shell(
    cmd: str,
    stdout: Any = None,
    stdin: Any = None,
    *,
    stderr: Any = None,
    env: Env | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    grace: float = DEFAULT_GRACE,
) -> Op[int]:
    """Run ``cmd`` through the shell with the given streams; return its exit code.

    ``stdout``/``stderr``: ``None`` (inherit ours), a file, an fd, or any object with ``write()``
    taking ``str`` or ``bytes``. ``stdin``: ``None`` (inherit), ``str``/``bytes``, a file, an fd
    or any object with ``read()``. Passing the same object as ``stdout`` and ``stderr`` sends both
    through one pipe, in the order they were written.
    """
    _check_common(cmd, timeout, grace)
    plumbing = Plumbing.connect(stdin, stdout, stderr)
    outcome = yield from _run_command(cmd, plumbing, env=env, cwd=cwd, timeout=timeout, grace=grace)
    if (outcome.timed_out or outcome.returncode != 0) and (check or outcome.timed_out):
        _raise_for(cmd, outcome, outcome.tail, timeout)
    return _returncode(outcome)


def shell_exec(
    cmd: str,
    *,
    env: Env | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: str | bytes | None = None,
    timeout: float | None = None,
    check: bool = True,
    grace: float = DEFAULT_GRACE,
) -> Op[str]:
    """Run ``cmd`` and return its stdout and stderr, interleaved in the order written.

    The output is decoded as UTF-8 (invalid bytes replaced). Stdin is ``input`` or empty, never
    our terminal. A non-zero exit raises :class:`~gproc.ShellError` carrying the output, unless
    ``check=False``.
    """
    _check_common(cmd, timeout, grace)
    if input is not None and not isinstance(input, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"input= takes str or bytes, not {type(input).__name__}")
    capture = Capture()
    # stderr=STDOUT: one pipe for both, so the output keeps the order it was written in.
    plumbing = Plumbing.connect(DEVNULL if input is None else input, capture, STDOUT)
    outcome = yield from _run_command(cmd, plumbing, env=env, cwd=cwd, timeout=timeout, grace=grace)
    output = capture.text()
    if outcome.timed_out or (check and outcome.returncode != 0):
        _raise_for(cmd, outcome, output, timeout)
    return output


def shell_run(
    cmd: str,
    *,
    env: Env | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    grace: float = DEFAULT_GRACE,
) -> Op[int]:
    """Run ``cmd`` with our stdin, stdout and stderr; return its exit code."""
    return (
        yield from shell(
            cmd, None, None, env=env, cwd=cwd, timeout=timeout, check=check, grace=grace
        )
    )


def _returncode(outcome: _Outcome) -> int:
    # Only reachable without a timeout, after the child was reaped: the code is known.
    assert outcome.returncode is not None
    return outcome.returncode
