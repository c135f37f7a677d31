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

from . import _procfs
from ._drive import Op, Wait
from ._spawn import open_pidfd

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


def _parent_map() -> dict[int, list[int]]:
    """ppid -> child pids, from one scan of the process table (``/proc`` where there is one)."""
    if _procfs.available():
        return _procfs.parent_map()
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        parent = proc.info.get("ppid")
        if parent is not None:
            children.setdefault(parent, []).append(proc.pid)
    return children


def descendants(pids: Iterable[int]) -> dict[int, list[psutil.Process]]:
    """Every live descendant of each pid, from one scan of the process table."""
    roots = list(pids)
    children = _parent_map()
    found: dict[int, list[psutil.Process]] = {}
    for root in roots:
        out: list[psutil.Process] = []
        stack = list(children.get(root, ()))
        seen: set[int] = set()
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            try:
                # psutil records the start time here: later signals refuse a reused pid.
                out.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
            stack.extend(children.get(pid, ()))
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
    killed: set[int] = set()
    try:
        pending = [t for t in targets if not t.exited()]
        if policy.scope == "tree" and pending:
            tree = descendants(t.pid for t in pending)
        for target in pending:
            try:
                signal_target(target, policy.signal, policy.scope, tree.get(target.pid, ()))
            except PermissionError:  # not ours to signal; the caller sees it is still running
                pass
        if policy.signal == _signal.SIGKILL:
            # Just SIGKILLed with their group and tree: the escalation need not do it again
            # (the kernel lets no fork escape a group signal, so nothing joined since).
            killed = {id(t) for t in pending}
        deadline = time.monotonic() + policy.grace
        yield from _wait_gone(pending, tree, deadline)
    except BaseException as exc:  # Ctrl+C or cancellation: skip the rest of the grace period
        interruption = exc

    # Escalate. A further interruption while doing so must not leave the job half done.
    for _ in range(3):
        try:
            _escalate(targets, policy, tree, killed)
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
    targets: Sequence[StopTarget],
    policy: StopPolicy,
    tree: dict[int, list[psutil.Process]],
    killed: set[int],
) -> None:
    """SIGKILL what is left; also the groups of targets that exited, where members may linger."""
    for target in targets:
        if id(target) in killed:
            continue
        if target.pgid is not None and policy.scope != "process":
            _signal_group(target.pgid, _signal.SIGKILL)
        if not target.exited():
            try:
                target.send_signal(_signal.SIGKILL)
            except PermissionError:
                pass
        if policy.scope == "tree":
            for proc in tree.get(target.pid, ()):
                if _alive(proc):
                    _signal_proc(proc, _signal.SIGKILL)


def _wait_gone(
    targets: Sequence[StopTarget],
    tree: dict[int, list[psutil.Process]],
    deadline: float,
) -> Op[None]:
    """Wait until the targets and the remembered descendants are gone, or the deadline passes.

    Only what a wake-up reports ready is looked at again, so stopping N processes costs O(N)
    checks in all, not O(N) per wake-up (this matters at a thousand children).
    """
    if time.monotonic() >= deadline:  # no grace at all (kill): skip the first look
        return
    by_fd: dict[int, StopTarget] = {}
    blind: list[StopTarget] = []  # no descriptor to watch: looked at on a short timer
    for target in targets:
        if target.exited():
            continue
        fd = target.exit_fd()
        if fd is None:
            blind.append(target)
        else:
            by_fd[fd] = target
    # Descendants are not our children: watch them with pidfds of their own where possible.
    watched: dict[int, psutil.Process] = {}
    blind_procs: list[psutil.Process] = []
    try:
        for procs in tree.values():
            for proc in procs:
                fd = open_pidfd(proc.pid)
                # Checked after opening: the pidfd then names the process psutil vouched for.
                if not _alive(proc):
                    if fd is not None:
                        os.close(fd)
                elif fd is None:
                    blind_procs.append(proc)
                else:
                    watched[fd] = proc
        while True:
            blind = [t for t in blind if not t.exited()]
            blind_procs = [p for p in blind_procs if _alive(p)]
            if not (by_fd or watched or blind or blind_procs):
                return
            now = time.monotonic()
            if now >= deadline:
                return
            wake = min(deadline, now + 0.05) if blind or blind_procs else deadline
            ready = yield Wait(readable=[*by_fd, *watched], deadline=wake)
            for fd in ready:
                if fd in by_fd:
                    if by_fd[fd].exited():
                        del by_fd[fd]
                    continue
                if fd in watched and not _alive(watched[fd]):
                    del watched[fd]
                    os.close(fd)
    finally:
        for fd in watched:
            os.close(fd)
