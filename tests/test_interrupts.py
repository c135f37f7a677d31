"""Ctrl+C in the parent stops the command's whole tree before KeyboardInterrupt propagates."""

from __future__ import annotations

import random
import signal
import subprocess
import time

from .conftest import python_program, wait_gone


def _start(mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        python_program("interrupted_shell", mode),
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_ctrl_c_stops_the_tree_then_raises_keyboard_interrupt() -> None:
    program = _start("tree")
    assert program.stdout is not None
    grandchild = int(program.stdout.readline())
    program.send_signal(signal.SIGINT)
    rest = program.stdout.read()
    assert program.wait(timeout=10) == 130
    assert "interrupted" in rest
    assert wait_gone(grandchild)


def test_ctrl_c_at_any_moment_of_back_to_back_starts_leaves_nothing_behind() -> None:
    # The no-leftover fixture checks that no command survived, whatever moment SIGINT hit:
    # while a child was being forked, waited for, or reaped.
    rng = random.Random(1234)
    for _ in range(8):
        program = _start("loop")
        assert program.stdout is not None
        assert program.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.05))  # the moment of the interruption, not a wait
        program.send_signal(signal.SIGINT)
        out, _ = program.communicate(timeout=10)
        assert program.returncode == 130
        assert "interrupted" in out
