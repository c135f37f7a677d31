"""Signal handlers and graceful shutdown, with real signals sent to real child programs.

Each child (tests/programs/sig_listener.py) blocks the signals it handles before it prints
"ready", so a signal sent after "ready" waits for ``listen`` instead of racing it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest

import gproc
from gproc import aio
from gproc._listen import stop_listening

from .conftest import gone, marked_processes, python_program

USR1, USR2, TERM, INT = signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT


class Child:
    """A test program (sig_listener SCENARIO by default); collects its output lines as they come."""

    def __init__(self, scenario: str, program: str = "sig_listener") -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            python_program(program, scenario),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._new:
                self.lines.append(line.rstrip("\n"))
                self._new.notify_all()
        with self._new:
            self._eof = True
            self._new.notify_all()

    def wait_for(self, text: str, count: int = 1, timeout: float = 10) -> list[str]:
        """Wait until ``count`` lines starting with ``text`` were printed; return them."""

        def matching() -> list[str]:
            return [line for line in self.lines if line.startswith(text)]

        with self._new:
            done = self._new.wait_for(lambda: len(matching()) >= count or self._eof, timeout)
            found = matching()
        if not done or len(found) < count:
            raise AssertionError(
                f"expected {count} line(s) starting with {text!r}; got {self.lines!r}; "
                f"stderr: {self.stderr()!r}"
            )
        return found

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def send_and_wait(self, sig: int, text: str, count: int = 1) -> list[str]:
        self.send(sig)
        return self.wait_for(text, count)

    def finish(self, timeout: float = 10) -> int:
        returncode = self.proc.wait(timeout)
        self._reader.join(timeout)
        return returncode

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        assert self.proc.stdout is not None
        self._reader.join(5)
        self.proc.stdout.close()
        self._stderr.close()


@contextmanager
def child(scenario: str, program: str = "sig_listener") -> Iterator[Child]:
    c = Child(scenario, program)
    try:
        c.wait_for("ready")
        yield c
    finally:
        c.close()


# ------------------------------------------------------------------ handlers and shutdown


def test_handler_gets_the_signal_and_other_signals_keep_listening() -> None:
    with child("basic") as c:
        c.send_and_wait(USR1, "handler SIGUSR1")
        c.send_and_wait(USR2, "handler SIGUSR2")
        c.send_and_wait(USR1, "handler SIGUSR1", count=2)
        assert c.proc.poll() is None  # non-shutdown signals: still listening
        c.send(TERM)
        assert c.finish() == 0
        assert c.lines[-2:] == ["shutdown SIGTERM", "listen returned SIGTERM"]


def test_handlers_for_one_signal_run_concurrently() -> None:
    with child("concurrent") as c:
        c.send(TERM)
        assert c.finish() == 0, c.stderr()
        assert sorted(c.lines[1:-1]) == ["done a", "done b", "start a", "start b"]
        assert c.lines[-1] == "listen returned SIGTERM"


def test_shutdown_returns_every_listener_in_every_thread() -> None:
    with child("threads") as c:
        c.send(USR1)  # starts a listener thread and registers a SIGUSR2 handler meanwhile
        c.wait_for("late listener started")
        c.send_and_wait(USR2, "handler SIGUSR2")
        c.send(INT)
        assert c.finish() == 0, c.stderr()
        assert c.wait_for("main returned") == ["main returned SIGINT"]
        assert c.wait_for("threads returned") == [
            "threads returned aio=SIGINT early0=SIGINT early1=SIGINT late=SIGINT"
        ]
        assert c.wait_for("after shutdown") == ["after shutdown SIGINT SIGINT"]


def test_each_signal_of_a_burst_runs_the_handler_while_earlier_runs_are_busy() -> None:
    n = 6
    with child("burst") as c:
        c.send_and_wait(USR1, "run 1")  # now listening; the run stays busy until shutdown
        for _ in range(n - 1):
            # 50 ms apart: each delivery is handled before the next arrives (the OS merges
            # identical signals only while one is still pending).
            threading.Event().wait(0.05)
            c.send(USR1)
        c.wait_for(f"run {n}")
        c.send(TERM)
        assert c.finish() == 0, c.stderr()
        assert c.lines[-1] == f"count {n}"


def test_raising_and_overrunning_handlers_are_reported_and_do_not_stop_the_others() -> None:
    with child("misbehaving") as c:
        c.send(TERM)
        # The overrunning handler sleeps 30 s; listen gives up after the 0.5 s shutdown timeout.
        assert c.finish() == 0, c.stderr()
        assert "good ran" in c.lines
        assert "overrunning started" in c.lines
        assert c.lines[-1] == "listen returned SIGTERM"
        err = c.stderr()
        assert "ERROR signal handler " in err
        assert "raising for SIGTERM raised" in err
        assert "ValueError: boom from the raising handler" in err  # with its traceback
        assert "Traceback" in err
        assert "still running 0.5s after SIGTERM" in err
        assert "misbehaving.<locals>.overrunning (SIGTERM)" in err
        assert "good" not in err.split("still running")[1]


# ------------------------------------------------------------------ Ctrl+C and dispositions


def test_ctrl_c_is_keyboard_interrupt_while_nobody_listens() -> None:
    with child("ctrl_c_before_listen") as c:
        c.send(INT)
        assert c.finish() == 0, c.stderr()
        assert c.lines == ["ready", "KeyboardInterrupt"]


def test_dispositions_are_restored_after_listen_returns() -> None:
    with child("restored_after_listen") as c:
        c.send_and_wait(INT, "restored True")
        c.send_and_wait(INT, "KeyboardInterrupt")
        c.wait_for("waiting for SIGTERM")
        c.send(TERM)
        assert c.finish() == -TERM  # the default action again: SIGTERM kills
        assert "handler SIGUSR1" not in c.lines


def test_a_second_ctrl_c_during_a_slow_cleanup_ends_the_program() -> None:
    with child("second_ctrl_c") as c:
        c.send_and_wait(INT, "cleanup started")
        c.send(INT)
        assert c.finish() == 0, c.stderr()
        assert c.lines[-1] == "KeyboardInterrupt during cleanup"


# ------------------------------------------------------------------ asyncio and threads


def test_aio_listen_awaits_coroutine_handlers_on_its_loop() -> None:
    with child("asyncio_listen") as c:
        c.send(USR1)
        assert c.wait_for("async handler") == ["async handler SIGUSR1 True"]
        c.send(TERM)
        assert c.finish() == 0, c.stderr()
        assert "async shutdown SIGTERM" in c.lines
        assert "sync shutdown SIGTERM False" in c.lines  # a plain handler never blocks the loop
        assert "op shutdown SIGTERM True" in c.lines  # an operation is driven on the loop
        assert c.lines[-1] == "aio.listen returned SIGTERM"


def test_aio_listen_cancels_an_overrunning_coroutine_handler() -> None:
    with child("asyncio_overrun") as c:
        c.send(TERM)
        assert c.finish() == 0, c.stderr()
        assert c.lines[1:] == [
            "hanging started",
            "hanging cancelled",
            "aio.listen returned SIGTERM",
        ]
        assert "asyncio_overrun.<locals>.hanging (SIGTERM)" in c.stderr()


def test_the_shutdown_signal_set_is_configurable() -> None:
    with child("custom_shutdown_set") as c:
        c.send_and_wait(TERM, "handler SIGTERM")
        assert c.proc.poll() is None
        c.send(USR2)
        assert c.finish() == 0, c.stderr()
        assert c.lines[-2:] == ["shutdown SIGUSR2", "listen returned SIGUSR2"]


def test_sync_listen_runs_coroutine_handlers_too() -> None:
    with child("async_handler_under_sync_listen") as c:
        c.send_and_wait(USR1, "async handler SIGUSR1")
        c.send(TERM)
        assert c.finish() == 0, c.stderr()


def test_listening_in_a_thread_when_the_main_thread_never_will_raises() -> None:
    c = Child("no_main_listener")
    try:
        assert c.finish() == 0, c.stderr()
        for who in ("waiting listener", "late listener"):
            (line,) = c.wait_for(who)
            assert "SignalError" in line
            assert "only the main thread can receive signals" in line
    finally:
        c.close()


# ------------------------------------------------------------------ Manager


@pytest.mark.parametrize("face", ["sync", "aio"])
def test_manager_shutdown_on_sigterm_leaves_no_child_behind(
    face: str, no_leftover_processes: str
) -> None:
    with child(face, "sig_manager") as c:
        children = [int(line.split()[1]) for line in c.wait_for("child", count=3)]
        tree = [p.pid for pid in children for p in psutil.Process(pid).children(recursive=True)]
        assert len(tree) == 2  # the tree's two sleeps
        c.send(TERM)
        assert c.finish() == 0, c.stderr()
        assert c.wait_for("listen returned") == ["listen returned SIGTERM"]
        # Before listen returned: SIGTERM stopped the first and the tree, SIGKILL the stubborn one.
        assert c.wait_for("codes") == ["codes -15 -9 -15"]
        assert c.wait_for("running") == ["running 0"]
    assert all(gone(pid) for pid in children + tree)
    assert marked_processes(no_leftover_processes) == []


@pytest.mark.parametrize(("sig", "code"), [(TERM, 143), (INT, 130)])
def test_cli_spawn_stops_every_copy_on_a_shutdown_signal_and_says_why(sig: int, code: int) -> None:
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gproc",
            "spawn",
            "-n",
            "2",
            "--grace",
            "1",
            "echo up $$; exec sleep 60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert cli.stdout is not None
    assert cli.stderr is not None
    with cli:
        pids = [int(cli.stdout.readline().split()[-1]) for _ in range(2)]
        # Printed once gproc listens: from now on the signal reaches the shutdown handler.
        assert "Ctrl+C or SIGTERM stops them all" in cli.stderr.readline()
        cli.send_signal(sig)
        _, err = cli.communicate(timeout=30)
    assert cli.returncode == code, err
    assert f"{signal.Signals(sig).name}: stopped every copy" in err
    assert all(gone(pid) for pid in pids)


def test_cli_spawn_sigterm_while_copies_are_still_starting_leaves_none_running() -> None:
    # Before spawn listens, SIGTERM must still unwind through the Manager and stop every copy
    # started so far (the default action would end spawn and orphan them).
    cli = subprocess.Popen(
        [sys.executable, "-m", "gproc", "spawn", "-n", "200", "--grace", "1", "exec sleep 60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    with cli:
        spawner = psutil.Process(cli.pid)
        while not spawner.children():  # the first copy exists: starting is under way
            pass
        cli.send_signal(TERM)
        _, err = cli.communicate(timeout=30)
    assert cli.returncode == 143, err
    assert "SIGTERM: stopped every copy" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------ in this process


def test_listen_timeout_returns_none_and_restores_dispositions() -> None:
    before = {s: signal.getsignal(s) for s in (INT, TERM, signal.SIGQUIT, signal.SIGABRT)}
    assert gproc.listen(timeout=0) is None  # makes the process-wide pipes, kept from now on
    fds = len(os.listdir("/proc/self/fd"))
    assert gproc.listen(timeout=0.05) is None
    assert asyncio.run(aio.listen(timeout=0.05)) is None
    assert {s: signal.getsignal(s) for s in before} == before
    assert len(os.listdir("/proc/self/fd")) == fds


def test_stop_listening_makes_listen_return_none() -> None:
    stop_listening()  # before listen: the next main-thread listen returns at once
    assert gproc.listen() is None
    stop_listening()
    assert asyncio.run(aio.listen()) is None


def test_thread_listen_times_out_while_the_main_thread_does_not_listen() -> None:
    got: list[object] = ["unset"]
    t = threading.Thread(target=lambda: got.__setitem__(0, gproc.listen(timeout=0.05)))
    t.start()
    t.join()
    assert got == [None]


def test_registration_checks_its_arguments() -> None:
    def handler(sig: signal.Signals) -> None:
        pass

    with pytest.raises(ValueError, match="at least one signal"):
        gproc.add_sig_handler(handler)
    with pytest.raises(ValueError, match="SIGKILL cannot be caught"):
        gproc.add_sig_handler(handler, signal.SIGKILL)
    with pytest.raises(ValueError, match="not a signal"):
        gproc.add_sig_handler(handler, 999)
    with pytest.raises(TypeError, match="callable"):
        gproc.add_sig_handler("handler", USR1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        gproc.add_sig_handler_shutdown(handler, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        gproc.set_shutdown_timeout(-1)
    with pytest.raises(ValueError, match=">= 0"):
        gproc.listen(timeout=-1)
    with pytest.raises(ValueError, match="SIGSTOP cannot be caught"):
        gproc.set_shutdown_signals(signal.SIGSTOP)


def test_remove_sig_handler() -> None:
    def handler(sig: signal.Signals) -> None:
        pass

    gproc.add_sig_handler(handler, USR1, USR2)
    gproc.add_sig_handler(handler, USR1)  # once is enough
    assert gproc.remove_sig_handler(handler, USR1)
    assert not gproc.remove_sig_handler(handler, USR1)
    assert gproc.remove_sig_handler(handler)  # everywhere: USR2 too
    assert not gproc.remove_sig_handler(handler, USR2)

    gproc.add_sig_handler_shutdown(handler)
    with pytest.raises(ValueError, match="shutdown handler"):
        gproc.remove_sig_handler(handler, TERM)
    assert gproc.remove_sig_handler(handler)
    assert not gproc.remove_sig_handler(handler)


def test_shutdown_configuration_returns_the_previous_values() -> None:
    previous = gproc.set_shutdown_signals(TERM)
    try:
        assert set(previous) == {INT, signal.SIGQUIT, TERM, signal.SIGABRT}  # the defaults
        assert gproc.set_shutdown_signals(*previous) == (TERM,)
    finally:
        gproc.set_shutdown_signals(*previous)
    old = gproc.set_shutdown_timeout(2)
    assert old == 30.0
    assert gproc.set_shutdown_timeout(old) == 2.0
