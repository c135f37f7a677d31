"""gproc.Process against real processes, real signals and real process trees."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

import gproc
import gproc.aio

from .conftest import gone, wait_group_gone
from .process_helpers import all_gone, reaped, worker
from .process_helpers import ready as _ready

# ------------------------------------------------------------------ argv, env, start


def test_args0_equal_to_path_is_dropped_and_path_is_found_in_path() -> None:
    # If args[0] were kept, echo would print "echo a b". (Reading /proc/<pid>/cmdline instead
    # races with exec and is flaky.)
    out = io.StringIO()
    proc = gproc.Process("echo", ["echo", "a", "b"], stdout=out)
    assert proc.argv == ["echo", "a", "b"]
    assert proc.run() == 0
    assert out.getvalue() == "a b\n"


def test_args_are_passed_as_given_when_args0_differs() -> None:
    out = io.StringIO()
    code = gproc.Process("sh", ["-c", 'echo "$0|$1"', "zero", "one"], stdout=out).run()
    assert code == 0
    assert out.getvalue() == "zero|one\n"


def test_missing_program_is_a_spawn_error() -> None:
    proc = gproc.Process("gproc-no-such-program")
    with pytest.raises(gproc.SpawnError) as info:
        proc.start()
    assert isinstance(info.value, FileNotFoundError | OSError)
    assert info.value.errno == 2
    assert proc.pid is None


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(TypeError):
        gproc.Process("sleep", "30")
    with pytest.raises(TypeError):
        gproc.Process("sleep", [30])  # type: ignore[list-item]
    assert gproc.Process("sleep", (a for a in ["1"])).argv == ["sleep", "1"]
    with pytest.raises(ValueError, match="timeout"):
        gproc.Process("true").run(timeout=-1)


def test_env_adds_to_ours_and_child_receives_gproc_ppid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPROC_T_KEEP", "kept")
    out = io.StringIO()
    proc = gproc.Process.from_command(
        'echo "$GPROC_T_KEEP|$GPROC_T_NEW|$GPROC_PPID"', env={"GPROC_T_NEW": "new"}, stdout=out
    )
    assert proc.ppid == os.getpid()
    assert proc.run() == 0
    assert out.getvalue() == f"kept|new|{os.getpid()}\n"


def test_ppid_is_settable_before_start_only() -> None:
    out = io.StringIO()
    proc = gproc.Process.from_command("echo $GPROC_PPID", stdout=out)
    proc.ppid = 4242
    proc.run()
    assert out.getvalue() == "4242\n"
    with pytest.raises(gproc.ProcessError):
        proc.ppid = 1


def test_start_is_idempotent() -> None:
    with worker() as proc:
        pid = proc.start()
        assert proc.start() == pid
        assert _ready(proc) == pid
        children = [c.pid for c in psutil.Process().children()]
        assert children == [pid]


def test_each_child_leads_its_own_process_group() -> None:
    with gproc.Process("sleep", ["30"]) as proc:
        assert proc.pid is not None
        assert os.getpgid(proc.pid) == proc.pid


def test_calls_before_start_raise_process_not_started() -> None:
    proc = gproc.Process("true")
    assert proc.pid is None
    assert proc.returncode is None
    assert not proc.is_running()
    for call in (proc.wait, proc.poll, proc.kill, proc.terminate, lambda: proc.signal(15)):
        with pytest.raises(gproc.ProcessNotStarted):
            call()


# ------------------------------------------------------------------ exit codes, signals, waits


def test_exit_codes_and_signal_deaths() -> None:
    assert gproc.Process.from_command("exit 3").run() == 3
    proc = gproc.Process("sleep", ["30"])
    proc.start()
    assert proc.poll() is None
    assert proc.kill() == -signal.SIGKILL
    assert proc.returncode == -signal.SIGKILL
    assert proc.poll() == -signal.SIGKILL
    assert proc.wait() == -signal.SIGKILL


def test_signal_reaches_the_process_and_wait_reports_its_exit() -> None:
    proc = worker("--usr1-exit", "7")
    with proc:
        _ready(proc)
        proc.signal(signal.SIGUSR1)
        assert proc.wait(timeout=10) == 7
    with pytest.raises(gproc.ProcessNotFound) as info:
        proc.signal(signal.SIGUSR1)
    assert info.value.pid == proc.pid
    assert isinstance(info.value, ProcessLookupError)


def test_wait_timeout_raises_and_leaves_the_process_running() -> None:
    with gproc.Process("sleep", ["30"]) as proc:
        with pytest.raises(gproc.ProcessTimeout) as info:
            proc.wait(timeout=0.1)
        assert isinstance(info.value, TimeoutError)
        assert info.value.pid == proc.pid
        assert proc.is_running()


def test_terminate_escalates_to_sigkill_and_returns_the_code() -> None:
    proc = worker("--ignore-term")
    with proc:
        _ready(proc)
        assert proc.terminate(grace=0.2) == -signal.SIGKILL
    assert proc.terminate() == -signal.SIGKILL  # stopping a stopped process is a no-op


def test_no_zombie_after_kill_terminate_or_wait() -> None:
    killed = gproc.Process("sleep", ["30"])
    killed.start()
    killed.kill()
    terminated = gproc.Process("sleep", ["30"])
    terminated.start()
    terminated.terminate()
    waited = gproc.Process("true")
    waited.run()
    for proc in (killed, terminated, waited):
        assert proc.pid is not None
        assert reaped(proc.pid)


def _tree(proc: gproc.Process) -> list[int]:
    assert proc.stdout is not None
    pids = [int(proc.stdout.readline()) for _ in range(3)]
    assert proc.stdout.readline() == b"ready\n"
    return pids


TREE_CMD = (
    "sleep 60 & echo $!; (sleep 60; true) & echo $!; setsid sleep 60 & echo $!; echo ready; wait"
)


def test_terminate_stops_a_shell_and_all_its_grandchildren() -> None:
    proc = gproc.Process.from_command(TREE_CMD, stdout=gproc.PIPE)
    with proc:
        grandchildren = _tree(proc)
        everything = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert proc.terminate(grace=2) is not None
    # All of them, including the one that left the group with setsid.
    assert proc.pid is not None
    assert all_gone({*grandchildren, *everything, proc.pid})
    assert wait_group_gone(proc.pid)


def test_scope_process_spares_the_grandchildren() -> None:
    proc = gproc.Process.from_command(TREE_CMD, stdout=gproc.PIPE)
    with proc:
        grandchildren = _tree(proc)
        proc.kill(scope="process")
        assert proc.returncode == -signal.SIGKILL
        assert not any(gone(pid) for pid in grandchildren)
    # Orphans now: they no longer descend from the shell, so only their pids and group find them.
    assert proc.pid is not None
    os.killpg(proc.pid, signal.SIGKILL)
    os.kill(grandchildren[2], signal.SIGKILL)  # the one that left the group
    assert all_gone(grandchildren)
    assert wait_group_gone(proc.pid)  # also the subshell's own `sleep`, which no pid names here


# ------------------------------------------------------------------ streams


def test_streams_pipe_devnull_objects_and_stdin_text() -> None:
    sink = io.StringIO()
    code = gproc.Process(
        "sh", ["-c", "cat; echo err >&2"], stdin="from stdin\n", stdout=sink, stderr=sink
    ).run(timeout=10)
    assert code == 0
    assert sink.getvalue() == "from stdin\nerr\n"
    proc = gproc.Process("sh", ["-c", "echo out; echo err >&2"], stdout=gproc.PIPE)
    proc.start()
    assert proc.stdout is not None
    assert proc.stdout.read() == b"out\n"
    proc.wait()
    proc.stdout.close()
    assert gproc.Process("sh", ["-c", "echo hidden"], stdout=gproc.DEVNULL).run() == 0


def test_a_bytes_sink_and_a_real_file(tmp_path: Path) -> None:
    sink = io.BytesIO()
    gproc.Process("printf", ["a\\377b"], stdout=sink).run()
    assert sink.getvalue() == b"a\xffb"
    target = tmp_path / "out.txt"
    with target.open("wb") as f:
        proc = gproc.Process("sh", ["-c", "echo to the file"], stdout=f)
        proc.start()
        assert proc._plumbing is None  # a real file goes to the child as is: nothing to pump
        assert proc.wait() == 0
    assert target.read_text() == "to the file\n"


# ------------------------------------------------------------------ context manager, release


def _fail_inside(proc: gproc.Process) -> None:
    with proc:
        _ready(proc)
        raise RuntimeError("boom")


def test_leaving_the_block_stops_the_process_even_on_error() -> None:
    proc = worker()
    with pytest.raises(RuntimeError, match="boom"):
        _fail_inside(proc)
    assert proc.returncode == -signal.SIGTERM
    assert proc.stdout is not None
    assert proc.stdout.closed


def test_release_forgets_the_process_but_leaves_it_running() -> None:
    proc = gproc.Process("sleep", ["30"])
    pid = proc.start()
    proc.release()
    with pytest.raises(gproc.ProcessError, match="released"):
        proc.wait()
    assert not gone(pid)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


# ------------------------------------------------------------------ adoption and pid reuse


def _unrelated_sleeper() -> int:
    """A `sleep` that is not our child: its shell parent exits, it is re-parented."""
    out = subprocess.run(
        ["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pid = int(out)
    assert psutil.Process(pid).ppid() != os.getpid()
    return pid


def test_adopt_an_unrelated_process_and_detect_its_exit() -> None:
    pid = _unrelated_sleeper()
    manager = gproc.Manager()
    proc = manager.add_process(pid)
    assert proc.adopted
    assert proc.pid == pid
    assert proc.is_running()
    assert proc.start() == pid
    psutil.Process(pid).kill()  # someone else ends it
    assert proc.wait(timeout=10) is None  # not our child: the status is unknowable
    assert not proc.is_running()
    assert manager.wait_all() == {pid: None}


def test_adopt_a_missing_pid_or_a_different_start_time_is_process_not_found() -> None:
    done = subprocess.run(["true"], check=True)
    assert done.returncode == 0
    manager = gproc.Manager()
    missing = max(psutil.pids()) + 100_000
    with pytest.raises(gproc.ProcessNotFound) as info:
        manager.add_process(missing)
    assert isinstance(info.value, ProcessLookupError)
    assert info.value.pid == missing
    with gproc.Process("sleep", ["30"]) as proc:
        assert proc.pid is not None
        started = psutil.Process(proc.pid).create_time()
        with pytest.raises(gproc.ProcessNotFound, match="not the process"):
            manager.add_process(proc.pid, create_time=started - 100)
        assert manager.add_process(proc.pid, create_time=started).pid == proc.pid
    assert len(manager) == 1


def test_a_reused_pid_is_never_signalled() -> None:
    pid = _unrelated_sleeper()
    proc = gproc.Manager().add_process(pid)
    # Simulate pid reuse: the recorded identity no longer matches what holds the pid.
    handle = proc._handle
    assert isinstance(handle, gproc._process.AdoptedHandle)
    handle.create_time -= 100
    with pytest.raises(gproc.ProcessNotFound):
        proc.signal(signal.SIGKILL)
    proc.kill()  # a stop does nothing to a process that is not the one adopted
    assert not gone(pid)
    psutil.Process(pid).kill()
    assert all_gone([pid])


def test_adopting_ourselves_is_refused() -> None:
    with pytest.raises(ValueError, match="itself"):
        gproc.Manager().add_process(os.getpid())


# ------------------------------------------------------------------ leaks


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def test_no_descriptor_or_thread_leak_after_200_cycles() -> None:
    def cycle(i: int) -> None:
        if i % 2:
            with gproc.Process("sleep", ["30"], stdout=gproc.PIPE) as proc:
                proc.kill()
        else:
            proc = gproc.Process("true", stdout=io.StringIO())
            proc.run()

    cycle(0)
    cycle(1)
    gc.collect()  # objects of earlier tests must not close their descriptors mid-count
    fds, threads = _fd_count(), _thread_count()
    for i in range(200):
        cycle(i)
    gc.collect()
    assert _fd_count() == fds
    assert _thread_count() == threads


def test_the_python_argv_idiom_works() -> None:
    # GoFrame's NewProcess(os.Args[0], os.Args) idiom: args[0] equal to the path is dropped.
    code = "import sys; print(sys.argv[1:])"
    out = io.StringIO()
    gproc.Process(sys.executable, [sys.executable, "-c", code, "a"], stdout=out).run()
    assert out.getvalue() == "['a']\n"


def test_an_adopted_child_of_ours_reports_its_exit_code() -> None:
    popen = subprocess.Popen(["sleep", "30"])
    proc = gproc.Manager().add_process(popen.pid)
    assert proc.adopted
    assert proc.ppid is None  # gproc did not start it, so gave it no GPROC_PPID
    assert proc.kill() == -signal.SIGKILL  # reaped through its pidfd: the status is known
    assert reaped(popen.pid)
    popen.returncode = -signal.SIGKILL  # tell the Popen what happened, as gproc reaped it


def test_aio_wait_and_terminate_of_one_process_in_two_tasks_both_finish() -> None:
    async def main() -> tuple[int | None, int | None]:
        proc = gproc.aio.Process("sleep", ["30"])
        proc.start()
        waiter = asyncio.create_task(proc.wait())
        await asyncio.sleep(0.05)
        code = await asyncio.wait_for(proc.terminate(grace=1), 5)
        return code, await asyncio.wait_for(waiter, 5)

    assert asyncio.run(main()) == (-15, -15)
