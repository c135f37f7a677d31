"""The one stop policy: signal, grace period, escalation, scope.

Shell timeouts, ``Process.terminate``, ``Manager.terminate_all`` and graceful shutdown all stop
processes through :func:`stop_op`, so they behave the same way:

1. Look at the process table once and remember every descendant of every target (tree scope).
   This must happen *before* any signal: once a leader dies its children are re-parented and can
   no longer be found by walking down from it.
2. Send the policy's signal (SIGTERM by default) to each target's process group, to descendants
   that left that group, or only to the process itself, as the scope says.
3. Wait up to ``grace`` seconds for the targets and the remembered descendants to exit.
4. SIGKILL whatever is left, including the whole process group, wait for the targets to be gone
   and reap them.

An interruption (Ctrl+C, task cancellation) during the grace period skips the rest of it: the
escalation happens at once and the interruption is re-raised afterwards.
"""

from __future__ import annotations

import os
import signal as _signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import psutil

from ._drive import Op, Wait

__all__ = ["Scope", "StopPolicy", "StopTarget", "descendants", "signal_target", "stop_op"]

Scope = Literal["process", "group", "tree"]

#: How long to wait for a SIGKILLed process to disappear before giving up on it. SIGKILL cannot be
#: caught; only a process stuck in uninterruptible sleep (a dead NFS mount) takes longer.
KILL_WAIT = 1.0


@dataclass(frozen=True, slots=True)
class StopPolicy:
    """How to stop a process: which signal first, how long to wait, what to reach.

    ``scope``: ``"process"`` signals the process alone; ``"group"`` its process group;
    ``"tree"`` (default) its group and every descendant, also those that left the group.
    """

    grace: float = 5.0
    signal: int = _signal.SIGTERM
    scope: Scope = "tree"

    def __post_init__(self) -> None:
        if self.grace < 0:
            raise ValueError(f"grace must be >= 0 seconds, not {self.grace!r}")
        if self.scope not in ("process", "group", "tree"):
            raise ValueError(f"scope must be 'process', 'group' or 'tree', not {self.scope!r}")


class StopTarget(Protocol):
    """What the stop policy needs to know about a process it stops."""

    @property
    def pid(self) -> int: ...

    @property
    def pgid(self) -> int | None:
        """The process group this process leads, or None when it shares ours."""

    def exit_fd(self) -> int | None:
        """A descriptor that becomes readable when the process exits (None: already gone)."""

    def exited(self) -> bool:
        """Reap the process if it is ours and say whether it is gone. Never blocks."""

    def send_signal(self, sig: int) -> None:
        """Signal the process itself; does nothing once it is gone. Never hits a reused pid."""


def descendants(pids: Iterable[int]) -> dict[int, list[psutil.Process]]:
    """Every live descendant of each pid, from one scan of the process table."""
    roots = list(pids)
    children: dict[int, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["ppid"]):
        parent = proc.info.get("ppid")
        if parent is not None:
            children.setdefault(parent, []).append(proc)
    found: dict[int, list[psutil.Process]] = {}
    for root in roots:
        out: list[psutil.Process] = []
        stack = list(children.get(root, ()))
        seen: set[int] = set()
        while stack:
            proc = stack.pop()
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            out.append(proc)
            stack.extend(children.get(proc.pid, ()))
        found[root] = out
    return found


def _signal_group(pgid: int, sig: int) -> None:
    # A group id cannot be taken over while any member of the old group lives (setsid/setpgid
    # refuse), so signalling a group whose leader is gone is safe against pid reuse.
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_proc(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)  # psutil refuses a pid that was reused since the snapshot
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_target(
    target: StopTarget,
    sig: int,
    scope: Scope,
    tree: Sequence[psutil.Process] = (),
) -> None:
    """Send ``sig`` to ``target`` within ``scope``; ``tree`` is its remembered descendants."""
    pgid = target.pgid
    if scope == "process" or (pgid is None and scope == "group"):
        target.send_signal(sig)
        return
    if pgid is not None:
        _signal_group(pgid, sig)
    else:
        target.send_signal(sig)
    if scope == "tree":
        for proc in tree:
            if pgid is not None:
                try:
                    if os.getpgid(proc.pid) == pgid:
                        continue  # the group signal reached it already; never signal twice
                except OSError:
                    continue
            _signal_proc(proc, sig)


def stop_op(targets: Sequence[StopTarget], policy: StopPolicy) -> Op[None]:
    """Stop every target by ``policy`` (all in parallel) and reap them."""
    interruption: BaseException | None = None
    tree: dict[int, list[psutil.Process]] = {}
    try:
        pending = [t for t in targets if not t.exited()]
        if policy.scope == "tree" and pending:
            tree = descendants(t.pid for t in pending)
        for target in pending:
            signal_target(target, policy.signal, policy.scope, tree.get(target.pid, ()))
        deadline = time.monotonic() + policy.grace
        yield from _wait_gone(pending, tree, deadline)
    except BaseException as exc:  # Ctrl+C or cancellation: skip the rest of the grace period
        interruption = exc

    # Escalate. A further interruption while doing so must not leave the job half done.
    for _ in range(3):
        try:
            _escalate(targets, policy, tree)
            break
        except BaseException as exc:
            interruption = interruption or exc
    try:
        yield from _wait_gone(targets, {}, time.monotonic() + KILL_WAIT)
    except BaseException as exc:
        interruption = interruption or exc
    if interruption is not None:
        raise interruption


def _escalate(
    targets: Sequence[StopTarget], policy: StopPolicy, tree: dict[int, list[psutil.Process]]
) -> None:
    """SIGKILL what is left; also the groups of targets that exited, where members may linger."""
    for target in targets:
        if target.pgid is not None and policy.scope != "process":
            _signal_group(target.pgid, _signal.SIGKILL)
        if not target.exited():
            target.send_signal(_signal.SIGKILL)
        if policy.scope == "tree":
            for proc in tree.get(target.pid, ()):
                if _alive(proc):
                    _signal_proc(proc, _signal.SIGKILL)


def _wait_gone(
    targets: Sequence[StopTarget],
    tree: dict[int, list[psutil.Process]],
    deadline: float,
) -> Op[None]:
    """Wait until the targets and the remembered descendants are gone, or the deadline passes."""
    waiting = [t for t in targets if not t.exited()]
    # Descendants are not our children: watch them with pidfds of their own where possible.
    watched: list[tuple[psutil.Process, int | None]] = []
    for procs in tree.values():
        for proc in procs:
            if _alive(proc):
                watched.append((proc, _open_pidfd(proc.pid)))
    try:
        while True:
            waiting = [t for t in waiting if not t.exited()]
            watched_alive = [(p, fd) for p, fd in watched if _alive(p)]
            for p, fd in watched:
                if fd is not None and (p, fd) not in watched_alive:
                    os.close(fd)
            watched = watched_alive
            if not waiting and not watched:
                return
            if time.monotonic() >= deadline:
                return
            fds = [fd for t in waiting if (fd := t.exit_fd()) is not None]
            fds += [fd for _, fd in watched if fd is not None]
            if len(fds) < len(waiting) + len(watched):
                # Something cannot be watched by descriptor: look again shortly.
                yield Wait(readable=fds, deadline=min(deadline, time.monotonic() + 0.05))
            else:
                yield Wait(readable=fds, deadline=deadline)
    finally:
        for _, fd in watched:
            if fd is not None:
                os.close(fd)


def _open_pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None
