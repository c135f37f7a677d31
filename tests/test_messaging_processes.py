"""Process.send, Manager.send (broadcast) and Manager.send_to, in both faces."""

from __future__ import annotations

import asyncio
import sys

import pytest

import gproc
from gproc import aio

from .conftest import PROGRAMS
from .messaging_helpers import private_runtime_dir

__all__ = ["private_runtime_dir"]

RECEIVER = [str(PROGRAMS / "msg_receiver.py")]


def ready(proc: gproc.Process | aio.Process) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"


def said(proc: gproc.Process | aio.Process) -> str:
    assert proc.stdout is not None
    line: bytes = proc.stdout.readline()
    return line.decode().strip()


def test_process_send_reaches_the_child_and_never_a_finished_one() -> None:
    proc = gproc.Process(sys.executable, RECEIVER, stdout=gproc.PIPE)
    with pytest.raises(gproc.ProcessNotStarted):
        proc.send("too early")
    with proc:
        ready(proc)
        proc.send("hello", timeout=10)
        assert said(proc) == "hello"
        proc.send(b"quit")
        assert proc.wait(10) == 0
        with pytest.raises(gproc.ProcessNotFound) as info:
            proc.send("too late")
        assert info.value.pid == proc.pid


def test_manager_send_broadcasts_and_reports_every_failure_by_pid() -> None:
    with gproc.Manager(grace=1) as manager:
        receivers = [manager.new_process(sys.executable, RECEIVER, stdout=gproc.PIPE) for _ in "ab"]
        quiet = manager.new_command("sleep 30")
        for proc in [*receivers, quiet]:
            proc.start()
        for proc in receivers:
            ready(proc)
        failures = manager.send("to all", timeout=0.5)
        assert quiet.pid is not None
        assert list(failures) == [quiet.pid]
        failure = failures[quiet.pid]
        assert isinstance(failure, gproc.NotReceiving)
        assert failure.pid == quiet.pid
        assert [said(proc) for proc in receivers] == ["to all", "to all"]

        first = receivers[0]
        assert first.pid is not None
        manager.send_to(first.pid, "just you")
        assert said(first) == "just you"
        with pytest.raises(gproc.ProcessNotFound):
            manager.send_to(1, "nobody")  # pid 1 is not one of ours


def test_manager_send_with_every_process_receiving_returns_quietly() -> None:
    with gproc.Manager(grace=1) as manager:
        receivers = [manager.new_process(sys.executable, RECEIVER, stdout=gproc.PIPE) for _ in "ab"]
        for proc in receivers:
            proc.start()
            ready(proc)
        assert manager.send("hi") == {}  # delivered to all
        manager.send("quit")
        assert set(manager.wait_all(timeout=10).values()) == {0}


def test_aio_process_and_manager_send() -> None:
    async def main() -> None:
        async with aio.Manager(grace=1) as manager:
            proc = manager.new_process(sys.executable, RECEIVER, stdout=gproc.PIPE)
            proc.start()
            ready(proc)
            await proc.send("one")
            assert said(proc) == "one"
            assert await manager.send("two") == {}
            assert said(proc) == "two"
            assert proc.pid is not None
            await manager.send_to(proc.pid, "quit")
            assert await proc.wait(10) == 0

    asyncio.run(main())
