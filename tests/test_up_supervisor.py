"""The supervisor driven in-process: start, stop and restart single services (what ctl does)."""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from gproc._up.config import parse_config
from gproc._up.output import Label
from gproc._up.plan import build_plan
from gproc._up.procfile import parse_procfile
from gproc._up.supervisor import Supervisor
from tests.conftest import PROGRAMS, wait_gone

SERVICE = f"{shlex.quote(sys.executable)} {shlex.quote(str(PROGRAMS / 'up_service.py'))}"


class Recorder:
    """An Output that keeps lines and events and wakes waiters on each."""

    def __init__(self) -> None:
        self.output: list[tuple[str, str]] = []
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    def lines_of(self, name: str) -> list[str]:
        return [text for who, text in self.output if who == name]

    def lines(self, label: Label, lines: Sequence[bytes]) -> None:
        self.output.extend((label.name, line.decode()) for line in lines)
        self.changed.set()

    def event(self, event: str, message: str, label: Label | None = None, **facts: Any) -> None:
        self.events.append((event, message, facts))
        self.changed.set()

    def flush(self) -> None:
        pass

    async def until(self, check: Callable[[], object], timeout: float = 15.0) -> None:
        """Wait (woken by each line or event, never polling) until ``check()`` holds."""

        async def watch() -> None:
            while not check():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(watch(), timeout)


def make(text: str, toml: str = "") -> tuple[Supervisor, Recorder]:
    entries = parse_procfile(text.replace("$SERVICE", SERVICE))
    config = parse_config(toml, "gproc.toml", [e.name for e in entries])
    recorder = Recorder()
    plan = build_plan(entries, config=config)
    return Supervisor(plan, recorder, grace=2), recorder


def ready_pid(recorder: Recorder, name: str, after: int = 0) -> int | None:
    for text in recorder.lines_of(name)[after:]:
        if text.startswith(f"ready {name} pid="):
            return int(text.split("pid=")[1].split()[0])
    return None


async def _scenario(tmp_path: Path) -> None:
    supervisor, rec = make("web: $SERVICE serve\nworker: $SERVICE serve\n")
    runner = asyncio.create_task(supervisor.run(handle_signals=False, serve=False))
    await rec.until(lambda: ready_pid(rec, "web.1") and ready_pid(rec, "worker.1") is not None)
    first = ready_pid(rec, "web.1")
    assert first is not None

    # stop: the service goes down, the rest keeps running
    assert supervisor.command("stop", "web") == ["web.1 stopping"]
    await rec.until(lambda: supervisor.by_name["web.1"].state == "stopped")
    assert wait_gone(first)
    assert supervisor.by_name["worker.1"].state == "running"
    assert supervisor.command("stop", "web.1") == ["web.1 is not running (stopped)"]

    # start: up again with a new pid
    seen = len(rec.lines_of("web.1"))
    assert supervisor.command("start", "web") == ["web.1 started"]
    await rec.until(lambda: ready_pid(rec, "web.1", seen) is not None)
    second = ready_pid(rec, "web.1", seen)
    assert second not in (None, first)
    assert supervisor.command("start", "web") == ["web.1 is already running"]

    # restart: stopped, then started again; a manual restart is not a crash
    seen = len(rec.lines_of("web.1"))
    assert supervisor.command("restart", "web.1") == ["web.1 restarting"]
    await rec.until(lambda: ready_pid(rec, "web.1", seen) is not None)
    assert second is not None
    assert wait_gone(second)
    rows = {row["name"]: row for row in supervisor.status()}
    assert rows["web.1"]["state"] == "running"
    assert rows["web.1"]["restarts"] == 0
    assert rows["web.1"]["last_exit"] == {"code": None, "signal": "SIGTERM"}
    assert rows["web.1"]["pid"] == ready_pid(rec, "web.1", seen)

    with pytest.raises(LookupError, match="no service 'db' here"):
        supervisor.command("stop", "db")

    supervisor.shutdown("test over", 0)
    assert await runner == 0
    with pytest.raises(RuntimeError, match="shutting down"):
        supervisor.command("start", "web")
    assert [row["state"] for row in supervisor.status()] == ["exited", "exited"]


def test_stop_start_restart_one_service(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))


async def _backoff_scenario() -> None:
    supervisor, rec = make(
        "web: $SERVICE serve\nflaky: $SERVICE exit 1\n",
        '[flaky]\nrestart = "always"\nbackoff = 30\n',
    )
    runner = asyncio.create_task(supervisor.run(handle_signals=False, serve=False))
    flaky = supervisor.by_name["flaky.1"]
    await rec.until(lambda: flaky.state == "backoff")
    # ctl stop during the backoff: it is not restarted, and everything else keeps running
    assert supervisor.command("stop", "flaky") == ["flaky.1 will not be restarted"]
    assert flaky.state == "stopped"
    # ctl start: at once, with the crash history forgiven
    assert supervisor.command("start", "flaky") == ["flaky.1 started"]
    await rec.until(lambda: flaky.state == "backoff")
    assert [e[2]["delay"] for e in rec.events if e[0] == "restarting"] == [30.0, 30.0]
    supervisor.shutdown("test over", 0)
    assert await runner == 0


def test_ctl_stop_and_start_during_backoff() -> None:
    asyncio.run(_backoff_scenario())
