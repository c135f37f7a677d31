"""gproc ctl: controlling a running gproc up through gproc messaging, end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_gone
from tests.up_helpers import Up, procfile, up_runs


@pytest.fixture
def up(tmp_path: Path) -> Iterator[type[Up]]:
    yield from up_runs(tmp_path)


@pytest.fixture(autouse=True)
def private_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own messaging directory: other receivers on the machine are not seen."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("GPROC_RUNTIME_DIR", str(runtime))


def ctl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gproc", "ctl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def status(cwd: Path, *args: str) -> dict[str, dict[str, object]]:
    done = ctl(cwd, "status", "--json", *args)
    assert done.returncode == 0, done.stderr
    return {row["name"]: row for row in json.loads(done.stdout)}


def test_every_ctl_command(tmp_path: Path, up) -> None:
    procfile(tmp_path, "web: $SERVICE serve\nworker: $SERVICE serve\n")
    run = up("-c", "worker=2")
    pids = {
        name: int(run.wait_for(rf"{name} +\| ready {name} pid=(\d+)")[1])
        for name in ("web.1", "worker.1", "worker.2")
    }

    table = ctl(tmp_path, "status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["SERVICE", "PID", "STATE", "UPTIME", "RESTARTS", "LAST", "EXIT"]
    assert lines[1].split()[:3] == ["web.1", str(pids["web.1"]), "running"]

    stopped = ctl(tmp_path, "stop", "web")
    assert (stopped.returncode, stopped.stdout) == (0, "web.1 stopping\n")
    run.wait_for(r"gproc +\| web\.1 killed by SIGTERM")
    assert wait_gone(pids["web.1"])
    rows = status(tmp_path)
    assert rows["web.1"]["state"] == "stopped"
    assert rows["web.1"]["pid"] is None
    assert rows["worker.1"]["state"] == "running"  # the rest keeps running

    mark = len(run.lines)
    started = ctl(tmp_path, "start", "web")
    assert started.stdout == "web.1 started\n"
    again = int(run.wait_for(r"web\.1 +\| ready web\.1 pid=(\d+)", start=mark)[1])
    assert again != pids["web.1"]

    mark = len(run.lines)
    restarted = ctl(tmp_path, "restart", "worker.2")
    assert restarted.stdout == "worker.2 restarting\n"
    run.wait_for(r"gproc +\| worker\.2 killed by SIGTERM", start=mark)
    new = run.wait_for(r"worker\.2 +\| ready worker\.2 pid=(\d+)", start=mark)
    assert wait_gone(pids["worker.2"])
    rows = status(tmp_path, "--pid", str(run.proc.pid))
    assert rows["worker.2"]["pid"] == int(new[1])
    assert rows["worker.2"]["last_exit"] == {"code": None, "signal": "SIGTERM"}
    assert rows["worker.1"]["pid"] == pids["worker.1"]

    unknown = ctl(tmp_path, "stop", "db")
    assert unknown.returncode == 1
    assert "no service 'db'" in unknown.stderr
    assert ctl(tmp_path, "stop").returncode == 1  # NAME is required

    run.signal(signal.SIGINT)
    assert run.finish() == 0


def test_ctl_finds_the_supervisor_of_this_directory(tmp_path: Path, up) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for root in (first, second):
        root.mkdir()
        procfile(root, "web: $SERVICE serve\n")
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    missing = ctl(nowhere, "status")
    assert missing.returncode == 1
    assert "no `gproc up` is running" in missing.stderr

    a = up(root=first)
    b = up(root=second)
    a.wait_for(r"ready web\.1")
    b.wait_for(r"ready web\.1")
    assert ctl(first, "stop", "web").returncode == 0
    a.wait_for(r"web\.1 killed by SIGTERM")
    assert status(second)["web.1"]["state"] == "running"
    assert status(first)["web.1"]["state"] == "stopped"
    # The Procfile's directory counts, not only the supervisor's working directory.
    assert status(tmp_path, "--pid", str(b.proc.pid))["web.1"]["state"] == "running"

    elsewhere = ctl(nowhere, "status")
    assert elsewhere.returncode == 1
    assert f"pid {a.proc.pid}" in elsewhere.stderr
    assert f"pid {b.proc.pid}" in elsewhere.stderr

    c = up(root=second)
    c.wait_for(r"ready web\.1")
    several = ctl(second, "status")
    assert several.returncode == 1
    assert "several" in several.stderr
    assert f"pid {b.proc.pid}" in several.stderr
    assert f"pid {c.proc.pid}" in several.stderr


def test_services_message_the_supervisor(tmp_path: Path, up) -> None:
    procfile(tmp_path, "web: $SERVICE message\n")
    run = up("--json")
    run.wait_for(r'"event": "message"')
    event = next(e for e in run.events() if e["event"] == "message")
    assert event["data"] == "hello from web.1"
    assert event["name"] == "web.1"
    assert event["sender_pid"] == event["pid"]
    run.signal(signal.SIGTERM)
    assert run.finish() == 0
    assert os.environ.get("GPROC_RUNTIME_DIR")


def test_up_runs_without_ctl_when_messaging_is_unsafe(
    tmp_path: Path, up, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # writable by anyone: messaging refuses it
    monkeypatch.setenv("GPROC_RUNTIME_DIR", str(shared))
    procfile(tmp_path, "web: $SERVICE exit 0\n")
    run = up("--json")
    assert run.finish() == 0
    warning = next(e for e in run.events() if e["event"] == "warning")
    assert "gproc ctl is unavailable" in str(warning["message"])
    assert any(e["event"] == "started" for e in run.events())
