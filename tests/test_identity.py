"""Identity: pid, the gproc parent, start time, uptime, binary search."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import sys
from pathlib import Path

import psutil
import pytest

import gproc

from .conftest import run_python

_REPORT = (
    "import gproc, json; print(json.dumps({'pid': gproc.pid(), 'ppid': gproc.ppid(), "
    "'ppid_os': gproc.ppid_os(), 'is_child': gproc.is_child()}))"
)


def _report(env: dict[str, str]) -> dict[str, object]:
    return json.loads(run_python(_REPORT, env=env))  # type: ignore[no-any-return]


def test_pid_is_ours() -> None:
    assert gproc.pid() == os.getpid()
    assert gproc.ppid_os() == os.getppid()


def test_child_started_by_gproc_knows_its_gproc_parent() -> None:
    # "; true" keeps the shell alive as the OS parent (bash would otherwise exec the last command).
    out = gproc.shell_exec(f'{sys.executable} -c "{_REPORT}"; true')
    facts = json.loads(out)
    assert facts["ppid"] == os.getpid()
    assert facts["is_child"] is True
    # The shell in between is the OS parent; gproc's parent is us.
    assert facts["ppid_os"] != os.getpid()


@pytest.mark.parametrize("value", ["", "0"])
def test_without_a_gproc_parent_ppid_is_the_os_parent(value: str) -> None:
    facts = _report({"GPROC_PPID": value})
    assert facts["is_child"] is False
    assert facts["ppid"] == facts["ppid_os"] == os.getpid()


def test_set_ppid_sets_and_removes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPROC_PPID", raising=False)
    gproc.set_ppid(4242)
    assert gproc.ppid() == 4242
    assert gproc.is_child()
    gproc.set_ppid(0)
    assert not gproc.is_child()
    assert gproc.ppid() == os.getppid()
    gproc.set_ppid(77)
    gproc.set_ppid(None)
    assert "GPROC_PPID" not in os.environ
    with pytest.raises(ValueError, match="positive pid"):
        gproc.set_ppid(-3)


def test_start_time_is_the_os_start_time_not_import_time() -> None:
    started = gproc.start_time()
    assert started.tzinfo is not None
    expected = psutil.Process().create_time()
    assert abs(started.timestamp() - expected) < 0.01
    assert started <= dt.datetime.now(dt.timezone.utc)
    up = gproc.uptime()
    assert up > dt.timedelta(0)
    assert abs(up.total_seconds() - (dt.datetime.now().timestamp() - expected)) < 1


def _make(path: Path, mode: int) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_search_binary_path_finds_only_executable_regular_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "tool").mkdir()  # a directory named like the tool: skipped
    _make(first / "plain", 0o644)  # not executable: skipped
    _make(second / "plain", 0o755)
    wanted = _make(second / "tool", 0o755)
    monkeypatch.setenv("PATH", f"{first}{os.pathsep}{second}")
    assert gproc.search_binary_path("tool") == str(wanted)
    assert gproc.search_binary_path("plain") == str(second / "plain")
    assert gproc.search_binary_path("missing") is None
    assert gproc.search_binary("missing") is None


def test_search_binary_does_not_look_in_the_current_directory_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    real = _make(bindir / "ls", 0o755)
    _make(tmp_path / "ls", 0o755)  # a stray ./ls must not win
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(bindir))
    assert gproc.search_binary("ls") == str(real)


def test_search_binary_accepts_a_path_as_given(tmp_path: Path) -> None:
    tool = _make(tmp_path / "tool.sh", 0o755)
    assert gproc.search_binary(str(tool)) == str(tool)
    tool.chmod(stat.S_IRUSR)
    if os.geteuid() != 0:  # root may execute anything with an x bit; this file has none
        assert gproc.search_binary(str(tool)) is None
    assert gproc.search_binary(str(tmp_path / "nope")) is None
    assert gproc.search_binary(str(tmp_path)) is None
