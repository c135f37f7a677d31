"""The /proc/<pid>/stat reader shared by the stop policy and messaging."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from gproc import _procfs


def test_start_ticks_and_parents_of_a_child_with_a_hostile_name() -> None:
    # A command name with spaces and parentheses must not shift the fields.
    with tempfile.TemporaryDirectory() as tmp:
        odd = Path(tmp) / "a) (b c"
        odd.symlink_to(sys.executable)
        child = subprocess.Popen(
            [str(odd), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
        )
        try:
            assert child.pid in _procfs.parent_map()[os.getpid()]
            ticks = _procfs.start_ticks(child.pid)
            assert ticks is not None
            boot = psutil.boot_time()
            created = boot + ticks / os.sysconf("SC_CLK_TCK")
            assert abs(created - psutil.Process(child.pid).create_time()) < 0.05
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait()
    assert _procfs.start_ticks(child.pid) is None  # reaped: gone
