"""gproc.Manager and the asyncio twins, against real processes."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

import gproc
from gproc import aio

from .conftest import gone
from .process_helpers import WORKER, all_gone, reaped


def _ready_all(procs: list[gproc.Process]) -> None:
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"ready ")


def _workers(manager: gproc.Manager, n: int, *options: str) -> list[gproc.Process]:
    procs = [
        manager.new_process(WORKER[0], [*WORKER[1:], *options], stdout=gproc.PIPE) for _ in range(n)
    ]
    for proc in procs:
        proc.start()
    _ready_all(procs)
    return procs


def _close_pipes(procs: list[gproc.Process]) -> None:
    for proc in procs:
        if proc.stdout is not None:
            proc.stdout.close()


def test_bookkeeping() -> None:
    manager = gproc.Manager()
    first = manager.new_process("sleep", ["30"])
    assert len(manager) == 0  # listed once started
    first.start()
    second = manager.new_command("exit 4")
    second.start()
    assert manager.pids() == [first.pid, second.pid]
    assert manager.processes() == [first, second]
    assert first.pid is not None
    assert second.pid is not None
    assert manager.get_process(first.pid) is first
    assert manager.get_process(-5) is None
    assert second.wait() == 4
    assert manager.running() == [first]
    assert len(manager) == 2  # exited processes stay listed with their code
    assert second.pid in manager
    assert manager.remove_process(first.pid) is first
    assert manager.remove_process(first.pid) is None
    assert first.is_running()  # forgetting kills nothing
    assert manager.pids() == [second.pid]
    manager.clear()
    assert len(manager) == 0
    assert first.kill() == -signal.SIGKILL


def test_kill_all_then_wait_all_reports_every_exit_code() -> None:
    manager = gproc.Manager()
    procs = [manager.new_process("sleep", ["30"]) for _ in range(5)]
    for proc in procs:
        proc.start()
    done = manager.new_command("exit 2")
    done.start()
    done.wait()
    codes = manager.kill_all()
    expected = {p.pid: -signal.SIGKILL for p in procs} | {done.pid: 2}
    assert codes == expected
    assert manager.wait_all(timeout=5) == expected
    assert manager.running() == []
    assert all(reaped(pid) for pid in expected if pid is not None)


def test_terminate_all_escalates_where_needed() -> None:
    with gproc.Manager() as manager:
        polite = _workers(manager, 3)
        stubborn = _workers(manager, 2, "--ignore-term")
        codes = manager.terminate_all(grace=0.3)
    assert {codes[p.pid] for p in polite if p.pid is not None} == {-signal.SIGTERM}
    assert {codes[p.pid] for p in stubborn if p.pid is not None} == {-signal.SIGKILL}
    _close_pipes(polite + stubborn)


def test_signal_all_acts_on_every_process_then_reports_each_failure() -> None:
    manager = gproc.Manager()
    exited = [manager.new_command("exit 0") for _ in range(2)]
    for proc in exited:
        proc.run()
    live = _workers(manager, 2, "--usr1-exit", "5")
    with pytest.raises(gproc.ManyErrors) as info:
        manager.signal_all(signal.SIGUSR1)
    group = info.value
    assert isinstance(group, gproc.GprocError)
    errors = [e for e in group.exceptions if isinstance(e, gproc.ProcessNotFound)]
    assert len(errors) == len(group.exceptions) == 2
    assert {e.pid for e in errors} == {p.pid for p in exited}
    assert "2 of 4" in str(group)
    assert [p.wait(timeout=10) for p in live] == [5, 5]  # the running ones were signalled
    _close_pipes(live)


def test_signal_all_rejects_a_bad_signal_up_front() -> None:
    with gproc.Manager() as manager:
        manager.new_process("sleep", ["30"]).start()
        with pytest.raises(ValueError, match="signal"):
            manager.signal_all(4242)


def test_wait_all_timeout_names_the_processes_still_running() -> None:
    with gproc.Manager() as manager:
        proc = manager.new_process("sleep", ["30"])
        proc.start()
        manager.new_process("true").start()
        with pytest.raises(gproc.ProcessTimeout, match=str(proc.pid)):
            manager.wait_all(timeout=0.2)


def test_leaving_the_block_terminates_everything_still_running() -> None:
    with gproc.Manager(grace=1) as manager:
        tree = manager.new_command("sleep 60 & sleep 60 & echo ready; wait", stdout=gproc.PIPE)
        tree.start()
        assert tree.stdout is not None
        assert tree.stdout.readline() == b"ready\n"
        assert tree.pid is not None
        members = [c.pid for c in psutil.Process(tree.pid).children(recursive=True)]
        plain = manager.new_process("sleep", ["30"])
        plain.start()
    assert plain.returncode == -signal.SIGTERM
    assert all_gone([*members, tree.pid])
    tree.stdout.close()


def test_the_manager_is_thread_safe() -> None:
    manager = gproc.Manager()
    barrier = threading.Barrier(4)

    def start_some() -> None:
        barrier.wait()
        for _ in range(5):
            manager.new_process("sleep", ["30"]).start()

    threads = [threading.Thread(target=start_some) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(manager) == 20
    assert len(set(manager.pids())) == 20
    waiter = threading.Thread(target=manager.wait_all)
    waiter.start()
    manager.kill_all()
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert manager.running() == []


def test_adopted_processes_are_listed_and_stopped_with_the_rest() -> None:
    out = subprocess.run(
        ["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"], capture_output=True, check=True
    ).stdout
    stranger = int(out)
    with gproc.Manager() as manager:
        adopted = manager.add_process(stranger)
        child = manager.new_process("sleep", ["30"])
        child.start()
        assert manager.pids() == [stranger, child.pid]
        codes = manager.kill_all()
    assert codes == {stranger: None, child.pid: -signal.SIGKILL}
    assert not adopted.is_running()
    assert all_gone([stranger])


def test_released_process_leaves_the_manager() -> None:
    manager = gproc.Manager()
    proc = manager.new_process("sleep", ["30"])
    pid = proc.start()
    proc.release()
    assert len(manager) == 0
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


# ------------------------------------------------------------------ asyncio twin


def test_aio_process_runs_waits_and_stops() -> None:
    async def main() -> None:
        assert await aio.Process.from_command("exit 3").run() == 3
        async with aio.Process("sleep", ["30"]) as proc:
            with pytest.raises(gproc.ProcessTimeout):
                await proc.wait(timeout=0.1)
            assert await proc.terminate(grace=1) == -signal.SIGTERM
        sink = io.StringIO()
        await aio.Process("echo", ["hi"], stdout=sink).run()
        assert sink.getvalue() == "hi\n"

    asyncio.run(main())


def test_aio_manager_waits_for_all_concurrently() -> None:
    async def main() -> dict[int, int | None]:
        async with aio.Manager() as manager:
            for code in (0, 1, 2):
                manager.new_command(f"sleep 0.{code}; exit {code}").start()
            return await manager.wait_all(timeout=10)

    codes = asyncio.run(main())
    assert sorted(codes.values(), key=lambda c: c or 0) == [0, 1, 2]


def test_aio_cancelled_wait_stops_the_processes_it_owns() -> None:
    async def main() -> list[int]:
        manager = aio.Manager(grace=1)
        procs = [manager.new_process("sleep", ["30"]) for _ in range(3)]
        pids = [p.start() for p in procs]
        task = asyncio.create_task(manager.wait_all())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [p.returncode for p in procs] == [-signal.SIGTERM] * 3
        single = aio.Process("sleep", ["30"])
        pids.append(single.start())
        waiting = asyncio.create_task(single.wait())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert single.returncode == -signal.SIGTERM
        return pids

    pids = asyncio.run(main())
    assert all(reaped(pid) for pid in pids)


# ------------------------------------------------------------------ CLI


def _gproc_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gproc", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_spawn_prefixes_output_and_fails_if_any_copy_fails() -> None:
    cli = _gproc_cli("spawn", "-n", "3", "echo hello $GPROC_INDEX; exit $((GPROC_INDEX == 2))")
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 1, err
    lines = sorted(out.splitlines())
    assert len(lines) == 3
    for index in range(3):
        assert any(line.startswith(f"[{index} ") and f"hello {index}" in line for line in lines)
    assert "exited with 1" in err


def test_cli_spawn_stops_all_copies_on_ctrl_c(tmp_path: Path) -> None:
    cli = _gproc_cli("spawn", "-n", "2", "--grace", "1", "echo ready $$; exec sleep 60")
    assert cli.stdout is not None
    pids = [int(cli.stdout.readline().split()[-1]) for _ in range(2)]
    assert not any(gone(pid) for pid in pids)
    cli.send_signal(signal.SIGINT)
    _, err = cli.communicate(timeout=30)
    assert cli.returncode == 130, err
    assert all_gone(pids)


def test_adopting_a_listed_running_process_returns_it() -> None:
    with gproc.Manager() as manager:
        proc = manager.new_process("sleep", ["30"])
        pid = proc.start()
        assert manager.add_process(pid) is proc
        assert len(manager) == 1


def test_release_is_refused_while_a_wait_is_in_progress() -> None:
    with gproc.Manager() as manager:
        proc = manager.new_process("sleep", ["30"])
        proc.start()
        waiter = threading.Thread(target=proc.wait)
        waiter.start()
        while not proc._pins:  # the waiting thread has pinned the descriptors
            threading.Event().wait(0.005)
        with pytest.raises(gproc.ProcessError, match="release it after"):
            proc.release()
        proc.kill()
        waiter.join(timeout=10)
        assert not waiter.is_alive()


def test_demo_chapter_stops_its_workers_cleanly() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gproc", "demo"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("stopping cleanly") == 3
    assert "running: []" in done.stdout


def test_waiting_on_many_children_starts_no_thread() -> None:
    baseline = threading.active_count()
    seen: list[int] = []

    class Sink:
        """Runs inside wait_all (pumped output): records the thread count while waiting."""

        def write(self, text: str) -> int:
            seen.append(threading.active_count())
            return len(text)

    manager = gproc.Manager()
    for _ in range(50):
        manager.new_process("echo", ["hi"], stdout=Sink()).start()
    assert set(manager.wait_all(timeout=30).values()) == {0}
    assert len(seen) == 50
    assert set(seen) == {baseline}


def test_the_asyncio_twin_has_the_same_api() -> None:
    for sync_cls, async_cls in ((gproc.Process, aio.Process), (gproc.Manager, aio.Manager)):
        public = {n for n in dir(sync_cls) if not n.startswith("_")}
        assert public == {n for n in dir(async_cls) if not n.startswith("_")}
        for name in public:
            blocking = asyncio.iscoroutinefunction(getattr(async_cls, name))
            assert not asyncio.iscoroutinefunction(getattr(sync_cls, name))
            assert blocking == (
                name
                in {
                    *("wait", "run", "terminate", "kill", "wait_all", "terminate_all", "kill_all"),
                    *("send", "send_to"),  # messaging (issue 4)
                }
            ), name
    assert {"Process", "Manager"} <= set(gproc.__all__) & set(aio.__all__)
