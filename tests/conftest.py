"""Shared fixtures: every test is bounded in time (pytest-timeout) and leaves no process behind.

Each test runs with a unique ``GPROC_TEST_MARK`` in the environment. Every process a test starts,
directly or through any number of shells, inherits it; after the test, any process still carrying
the mark is killed and the test fails, so a leak cannot hide behind re-parenting to init.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

MARK_ENV = "GPROC_TEST_MARK"
PROGRAMS = Path(__file__).parent / "programs"


def marked_processes(mark: str) -> list[psutil.Process]:
    """Live processes (not zombies, not us) whose environment carries ``mark``."""
    needle = f"{MARK_ENV}={mark}"
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            with open(f"/proc/{proc.pid}/environ", "rb") as f:
                environ = f.read()
        except (OSError, psutil.Error):
            continue
        if needle.encode() in environ.split(b"\0"):
            found.append(proc)
    return found


def our_zombies() -> list[int]:
    zombies = []
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                zombies.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return zombies


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[str]:
    mark = uuid.uuid4().hex
    os.environ[MARK_ENV] = mark
    try:
        yield mark
    finally:
        del os.environ[MARK_ENV]
    leftovers = marked_processes(mark)
    described = ", ".join(f"{p.pid} {_describe(p)}" for p in leftovers)
    for proc in leftovers:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    psutil.wait_procs(leftovers, timeout=5)
    zombies = our_zombies()
    for pid in zombies:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    problems = []
    if leftovers:
        problems.append(f"the test left processes running: {described}")
    if zombies:
        problems.append(f"the test left zombie children: {zombies}")
    if problems:
        pytest.fail("; ".join(problems))


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.cmdline()} ppid={proc.ppid()} pgid={os.getpgid(proc.pid)}"
    except (psutil.Error, OSError):
        return "(gone)"


def python_program(name: str, *args: str) -> list[str]:
    """argv that runs a helper program from tests/programs with this interpreter."""
    return [sys.executable, str(PROGRAMS / f"{name}.py"), *args]


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 30) -> str:
    """Run ``code`` in a fresh interpreter; return its stdout (raises on failure)."""
    full_env = dict(os.environ)
    if env is not None:
        full_env.update(env)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return done.stdout


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs. A zombie re-parented to an init that does not reap (as in
    some sandboxes) counts as gone: it runs no code and holds nothing but its pid."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """Wait (on the process itself, not a sleep loop) until ``pid`` is gone."""
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    _, alive = psutil.wait_procs([proc], timeout=timeout)
    return not alive or gone(pid)


def wait_group_gone(pgid: int, timeout: float = 5.0) -> bool:
    """Wait until no live process is left in process group ``pgid``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members = []
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == pgid and not gone(proc.pid):
                    members.append(proc)
            except (OSError, psutil.Error):
                continue
        if not members:
            return True
        psutil.wait_procs(members, timeout=0.1)
    return False
