"""gproc up: restart decisions and output formatting (pure logic, no processes)."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

from gproc._up.config import ServiceConfig
from gproc._up.control import format_status, format_uptime, handle
from gproc._up.output import MAX_LINE, JsonOutput, LineSplitter, TextOutput, wants_color
from gproc._up.policy import CrashLoop, ExitStatus, Restart, RestartTracker, StayDown, StopAll

FAIL = ExitStatus(1)
OK = ExitStatus(0)
KILLED = ExitStatus(-9)

# ------------------------------------------------------------------ policy


def test_exit_status_facts() -> None:
    assert (FAIL.code, FAIL.signal, FAIL.success, FAIL.shell_status) == (1, None, False, 1)
    assert (KILLED.code, KILLED.signal, KILLED.shell_status) == (None, 9, 137)
    assert KILLED.describe() == "killed by SIGKILL"
    assert OK.describe() == "exited with code 0"


def test_restart_no_stops_everything_with_the_status() -> None:
    tracker = RestartTracker(ServiceConfig(restart="no"))
    assert tracker.on_exit(OK, 0.0) == StopAll(0)
    assert tracker.on_exit(FAIL, 0.0) == StopAll(1)
    assert tracker.on_exit(KILLED, 0.0) == StopAll(137)


def test_on_failure_restarts_only_failures() -> None:
    tracker = RestartTracker(ServiceConfig(restart="on-failure", backoff=1))
    assert tracker.on_exit(OK, 0.0) == StayDown()
    assert tracker.on_exit(FAIL, 0.0) == Restart(1.0, 1)
    assert tracker.on_exit(KILLED, 1.0) == Restart(2.0, 2)
    assert tracker.restarts == 2


def test_always_restarts_clean_exits_too() -> None:
    tracker = RestartTracker(ServiceConfig(restart="always", backoff=0))
    assert tracker.on_exit(OK, 0.0) == Restart(0.0, 1)


def test_backoff_doubles_up_to_the_cap_then_crash_loop() -> None:
    config = ServiceConfig(
        restart="always", backoff=0.5, backoff_max=3, max_restarts=5, restart_window=100
    )
    tracker = RestartTracker(config)
    delays = [tracker.on_exit(FAIL, float(t)) for t in range(5)]
    assert delays == [Restart(d, n) for n, d in enumerate([0.5, 1.0, 2.0, 3.0, 3.0], start=1)]
    assert tracker.on_exit(FAIL, 5.0) == CrashLoop(5, 100.0)


def test_old_crashes_leave_the_window() -> None:
    config = ServiceConfig(restart="always", backoff=1, max_restarts=2, restart_window=10)
    tracker = RestartTracker(config)
    assert tracker.on_exit(FAIL, 0.0) == Restart(1.0, 1)
    assert tracker.on_exit(FAIL, 5.0) == Restart(2.0, 2)
    # At t=10 the first restart is exactly one window old: it no longer counts.
    assert tracker.on_exit(FAIL, 10.0) == Restart(2.0, 3)
    assert tracker.on_exit(FAIL, 11.0) == CrashLoop(2, 10.0)
    # Long after, the service is trusted again and restarts at the first delay.
    assert tracker.on_exit(FAIL, 100.0) == Restart(1.0, 4)


def test_max_restarts_zero_fails_at_once_and_reset_forgives() -> None:
    tracker = RestartTracker(ServiceConfig(restart="always", max_restarts=0))
    assert tracker.on_exit(FAIL, 0.0) == CrashLoop(0, 60.0)
    tracker = RestartTracker(ServiceConfig(restart="always", max_restarts=1, backoff=1))
    assert tracker.on_exit(FAIL, 0.0) == Restart(1.0, 1)
    tracker.reset()
    assert tracker.on_exit(FAIL, 1.0) == Restart(1.0, 2)


# ------------------------------------------------------------------ line splitting


def test_lines_are_cut_at_newlines_and_partial_lines_wait() -> None:
    split = LineSplitter()
    assert split.feed(b"one\ntw") == [b"one"]
    assert split.feed(b"o\r\nthree") == [b"two"]
    assert split.feed(b"") == []
    assert split.flush() == b"three"
    assert split.flush() is None


def test_a_huge_line_comes_out_in_pieces() -> None:
    split = LineSplitter()
    pieces = split.feed(b"x" * (2 * MAX_LINE + 10))
    assert pieces == [b"x" * MAX_LINE, b"x" * MAX_LINE]
    assert split.flush() == b"x" * 10


# ------------------------------------------------------------------ formatting


@dataclass
class _Label:
    name: str
    service: str
    slot: int
    pid: int | None


WEB = _Label("web.1", "web", 0, 100)
WORKER = _Label("worker.12", "worker", 1, 101)
PREFIX = re.compile(rb"^\d\d:\d\d:\d\d ")


def test_text_prefix_aligned_and_plain_without_colour() -> None:
    sink = io.BytesIO()
    out = TextOutput(sink, [WEB.name, WORKER.name], color=False)
    out.lines(WEB, [b"hello", b"caf\xc3\xa9 \xff raw bytes"])
    out.lines(WORKER, [b"busy"])
    out.event("started", "web.1 started (pid 100)", WEB)
    assert sink.getvalue() == b""  # nothing before flush: one write per batch
    out.flush()
    lines = sink.getvalue().splitlines()
    assert all(PREFIX.match(line) for line in lines)
    assert [line[9:] for line in lines] == [
        b"web.1     | hello",
        b"web.1     | caf\xc3\xa9 \xff raw bytes",
        b"worker.12 | busy",
        b"gproc     | web.1 started (pid 100)",
    ]
    assert b"\x1b" not in sink.getvalue()


def test_text_colours_per_service() -> None:
    sink = io.BytesIO()
    out = TextOutput(sink, [WEB.name], color=True)
    out.lines(WEB, [b"a"])
    out.lines(WORKER, [b"b"])
    out.flush()
    web, worker = sink.getvalue().splitlines()
    assert web.startswith(b"\x1b[36m")
    assert web.endswith(b"|\x1b[0m a")
    assert worker.startswith(b"\x1b[33m")


def test_colour_only_on_a_terminal_and_never_when_refused(monkeypatch) -> None:
    class Tty(io.BytesIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert wants_color(Tty(), no_color=False)
    assert not wants_color(Tty(), no_color=True)
    assert not wants_color(io.BytesIO(), no_color=False)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_color(Tty(), no_color=False)


def test_json_records() -> None:
    sink = io.BytesIO()
    out = JsonOutput(sink)
    out.lines(WEB, [b"caf\xc3\xa9", b"\xff"])
    out.event("exited", "web.1 exited with code 3", WEB, code=3, signal=None)
    out.event("stopping", "stopping all (Ctrl+C)", reason="interrupt")
    out.flush()
    records = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["output", "output", "exited", "stopping"]
    assert records[0]["line"] == "café"
    assert records[1]["line"] == "\ufffd"
    assert records[0]["name"] == "web.1"
    assert records[0]["service"] == "web"
    assert records[0]["pid"] == 100
    assert records[2]["code"] == 3
    assert records[2]["signal"] is None
    assert records[3]["reason"] == "interrupt"
    assert "name" not in records[3]
    assert all("time" in r for r in records)


# ------------------------------------------------------------------ ctl protocol


class _FakeSupervisor:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def status(self) -> list[dict[str, object]]:
        return [
            {
                "name": "web.1",
                "pid": 42,
                "state": "running",
                "uptime": 3725.2,
                "restarts": 2,
                "last_exit": {"code": None, "signal": "SIGKILL"},
            },
            {
                "name": "worker.10",
                "pid": None,
                "state": "failed",
                "uptime": None,
                "restarts": 5,
                "last_exit": {"code": 3, "signal": None},
            },
        ]

    def info(self) -> dict[str, object]:
        return {"pid": 1, "root": "/app"}

    def command(self, action: str, name: str) -> list[str]:
        if name == "db":
            raise LookupError("no service 'db' here")
        self.calls.append((action, name))
        return [f"{name} {action}ed"]


def _ask(supervisor: _FakeSupervisor, request: object) -> dict[str, object]:
    data = request if isinstance(request, bytes) else json.dumps(request).encode()
    reply = json.loads(handle(supervisor, data))
    assert isinstance(reply, dict)
    return reply


def test_ctl_requests_and_replies() -> None:
    fake = _FakeSupervisor()
    assert _ask(fake, {"action": "status"})["result"] == fake.status()
    assert _ask(fake, {"action": "info"}) == {"ok": True, "result": {"pid": 1, "root": "/app"}}
    assert _ask(fake, {"action": "restart", "name": "web"}) == {
        "ok": True,
        "result": ["web restarted"],
    }
    assert fake.calls == [("restart", "web")]
    for bad, words in [
        (b"not json", "Expecting value"),
        ([1, 2], "JSON object"),
        ({"action": "explode"}, "unknown action 'explode'"),
        ({"action": "stop"}, "stop needs the name"),
        ({"action": "stop", "name": "db"}, "no service 'db' here"),
    ]:
        reply = _ask(fake, bad)
        assert reply["ok"] is False
        assert words in str(reply["error"])


def test_status_table() -> None:
    table = format_status(_FakeSupervisor().status()).splitlines()
    assert table == [
        "SERVICE    PID  STATE    UPTIME  RESTARTS  LAST EXIT",
        "web.1      42   running  1h02m   2         SIGKILL",
        "worker.10  -    failed   -       5         code 3",
    ]
    assert [format_uptime(s) for s in (None, 0.4, 59.9, 61, 3600)] == [
        "-",
        "0s",
        "59s",
        "1m01s",
        "1h00m",
    ]
