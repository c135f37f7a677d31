"""gproc up, end to end: real Procfiles, real processes, real signals."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_gone
from tests.up_helpers import PREFIX, Up, procfile, text_lines, up_runs


@pytest.fixture
def up(tmp_path: Path) -> Iterator[type[Up]]:
    yield from up_runs(tmp_path)


# ------------------------------------------------------------------ output, env, ports


def test_prefixed_lines_env_and_ports_then_ctrl_c_exits_0(tmp_path: Path, up) -> None:
    procfile(
        tmp_path,
        "# services\nweb: $SERVICE env FROM_DOTENV\n\nworker: $SERVICE env FROM_DOTENV\n",
        env="FROM_DOTENV='from .env'\n",
    )
    run = up("-c", "worker=2")
    for name in ("web.1", "worker.1", "worker.2"):
        run.wait_for(rf"^\d\d:\d\d:\d\d {re.escape(name)} +\| FROM_DOTENV=from \.env$")
    run.signal(signal.SIGINT)
    assert run.finish() == 0
    assert "ready web.1 pid=" in text_lines(run, "web.1")[0]
    assert text_lines(run, "web.1")[0].endswith("port=5000")
    assert text_lines(run, "worker.1")[0].endswith("port=5100")
    assert text_lines(run, "worker.2")[0].endswith("port=5101")
    assert all(PREFIX.match(line) for line in run.lines), run.lines
    assert not any("\x1b" in line for line in run.lines)  # not a terminal: no colours
    system = text_lines(run, "gproc")
    assert any("stopping all services: Ctrl+C received" in t for t in system)
    assert system[-1] == "all services stopped (exit status 0)"


def test_colours_on_a_terminal_but_not_with_no_color(tmp_path: Path, up) -> None:
    procfile(tmp_path, "web: $SERVICE exit 0\n")
    for extra, coloured in (((), True), (("--no-color",), False)):
        main, secondary = os.openpty()
        try:
            run = up(*extra, stdout=secondary)
            os.close(secondary)
            output = b""
            while True:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # EIO: the terminal's other side is closed
                    break
                if not chunk:
                    break
                output += chunk
            assert run.proc.wait(timeout=20) == 0
        finally:
            os.close(main)
        assert b"ready web.1" in output
        assert (b"\x1b[36m" in output) is coloured


def test_selected_services_only(tmp_path: Path, up) -> None:
    procfile(tmp_path, "web: $SERVICE serve\nclock: $SERVICE exit 0\n")
    run = up("clock")
    assert run.finish() == 0
    assert text_lines(run, "clock.1")[0].endswith("port=5100")  # its Procfile port
    assert not text_lines(run, "web.1")


def test_crash_shows_its_last_lines_and_stops_everything(tmp_path: Path, up) -> None:
    procfile(tmp_path, "web: $SERVICE serve\nworker: $SERVICE crash\n")
    run = up()
    assert run.finish() == 1
    worker = text_lines(run, "worker.1")
    assert worker[-3:] == ["about to fail", "Traceback: something broke", "unfinished line"]
    system = text_lines(run, "gproc")
    assert "worker.1 exited with code 1" in system
    exited = run.lines.index(next(line for line in run.lines if "worker.1 exited" in line))
    assert run.lines.index(next(line for line in run.lines if "unfinished line" in line)) < exited
    assert any('worker.1 exited with code 1 (restart = "no")' in line for line in system)
    assert any("web.1 killed by SIGTERM" in line for line in system)


# ------------------------------------------------------------------ stopping


def test_stop_reaches_the_whole_tree(tmp_path: Path, up) -> None:
    procfile(tmp_path, "web: $SERVICE tree\n")
    run = up()
    tree = run.wait_for(r"web\.1 +\| tree (\d+) (\d+)$")
    ready = run.wait_for(r"web\.1 +\| ready web\.1 pid=(\d+)")
    pids = [int(tree[1]), int(tree[2]), int(ready[1])]
    run.signal(signal.SIGTERM)
    assert run.finish() == 0
    assert all(wait_gone(pid) for pid in pids)


def test_second_ctrl_c_skips_the_grace_period(tmp_path: Path, up) -> None:
    procfile(tmp_path, "web: $SERVICE stubborn\n", toml="[web]\ngrace = 60\n")
    run = up("--json")
    pid = int(run.wait_for(r'"line": "ready web\.1 pid=(\d+)')[1])
    run.signal(signal.SIGINT)
    run.wait_for(r'"event": "stopping"')
    started = time.monotonic()
    run.signal(signal.SIGINT)
    assert run.finish() == 0
    assert time.monotonic() - started < 30  # far from the 60 s grace period
    exited = [e for e in run.events() if e["event"] == "exited"]
    assert exited[0]["signal"] == "SIGKILL"
    assert wait_gone(pid)


def test_ctrl_c_during_a_failure_shutdown_skips_the_grace_period(tmp_path: Path, up) -> None:
    procfile(
        tmp_path,
        "web: $SERVICE stubborn web-ready\nbad: $SERVICE exit 3 web-ready\n",
        toml="grace = 60\n",
    )
    run = up("--json")
    run.wait_for(r'"event": "stopping"')
    run.signal(signal.SIGINT)
    assert run.finish() == 3  # the failing service's status, not the interruption's
    exited = {e["name"]: e["signal"] for e in run.events() if e["event"] == "exited"}
    assert exited["web.1"] == "SIGKILL"


def test_grace_then_sigkill(tmp_path: Path, up) -> None:
    procfile(tmp_path, "web: $SERVICE stubborn\nok: $SERVICE serve\n")
    run = up("--grace", "0.3", "--json")
    run.wait_for(r'"line": "ready web\.1')
    run.wait_for(r'"line": "ready ok\.1')
    run.signal(signal.SIGTERM)
    assert run.finish() == 0
    signals = {e["name"]: e["signal"] for e in run.events() if e["event"] == "exited"}
    assert signals == {"web.1": "SIGKILL", "ok.1": "SIGTERM"}


def test_stop_signal_per_service(tmp_path: Path, up) -> None:
    procfile(
        tmp_path,
        "web: $SERVICE report\nworker: $SERVICE report\n",
        toml='[web]\nstop_signal = "SIGINT"\n',
    )
    run = up()
    run.wait_for(r"web\.1 +\| ready")
    run.wait_for(r"worker\.1 +\| ready")
    run.signal(signal.SIGTERM)
    assert run.finish() == 0
    assert text_lines(run, "web.1")[-1] == "got SIGINT"
    assert text_lines(run, "worker.1")[-1] == "got SIGTERM"


# ------------------------------------------------------------------ restart policies


def test_restart_on_failure_with_backoff_then_crash_loop(tmp_path: Path, up) -> None:
    procfile(
        tmp_path,
        "web: $SERVICE serve\nworker: $SERVICE exit 2\n",
        toml='[worker]\nrestart = "on-failure"\nmax_restarts = 2\nbackoff = 0.1\n',
    )
    run = up("--json")
    assert run.finish() == 1
    events = run.events()
    worker = run.lifecycle("worker.1")
    assert [e["event"] for e in worker] == [
        "started",
        "exited",
        "restarting",
        "started",
        "exited",
        "restarting",
        "started",
        "exited",
        "failed",
    ]
    assert [e["delay"] for e in worker if e["event"] == "restarting"] == [0.1, 0.2]
    assert all(e["code"] == 2 for e in worker if e["event"] == "exited")
    failed = worker[-1]
    assert "exited 3 times within 60s" in str(failed["message"])
    assert failed["tail"] == ["ready worker.1 pid=" + str(worker[6]["pid"]) + " port=5100"]
    assert [e["event"] for e in events[-3:]] == ["stopping", "exited", "stopped"]
    assert events[-1]["status"] == 1


def test_on_failure_leaves_a_clean_exit_down(tmp_path: Path, up) -> None:
    procfile(
        tmp_path,
        "web: $SERVICE exit 0\nother: $SERVICE exit 0\n",
        toml='restart = "on-failure"\n',
    )
    run = up("--json")
    assert run.finish() == 0  # every service finished: nothing left to supervise
    kinds = [e["event"] for e in run.lifecycle()]
    assert "restarting" not in kinds
    assert kinds.count("exited") == 2
    assert run.events()[-1]["message"] == "all services stopped (exit status 0)"


def test_restart_always_restarts_a_clean_exit(tmp_path: Path, up) -> None:
    procfile(
        tmp_path,
        "web: $SERVICE exit 0\n",
        toml='[web]\nrestart = "always"\nmax_restarts = 1\nbackoff = 0\n',
    )
    run = up("--json")
    assert run.finish() == 1
    assert [e["event"] for e in run.lifecycle()] == [
        *("started", "exited", "restarting", "started", "exited", "failed"),
        *("stopping", "stopped"),
    ]


# ------------------------------------------------------------------ bad configuration


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"Procfile": "web: x\nnot an entry\n"}, "Procfile:2: expected 'name: command'"),
        ({"Procfile": "web: x\n", "gproc.toml": "[web]\nrestart = 'often'\n"}, "gproc.toml:2:"),
        ({"Procfile": "web: x\n", "gproc.toml": "[web]\nretries = 3\n"}, "unknown setting"),
        ({"Procfile": "web: x\n", ".env": "NOT AN ASSIGNMENT\n"}, ".env:1: expected KEY=VALUE"),
        ({}, "Procfile: no such file"),
    ],
)
def test_bad_files_are_refused_before_anything_starts(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "gproc", "up"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""  # nothing started
    assert message in done.stderr
    assert done.stderr.startswith("gproc: ")
    assert "Traceback" not in done.stderr


def test_unknown_names_on_the_command_line(tmp_path: Path) -> None:
    procfile(tmp_path, "web: $SERVICE serve\n")
    for args in (["db"], ["-c", "db=2"], ["-c", "web"]):
        done = subprocess.run(
            [sys.executable, "-m", "gproc", "up", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 1
        assert done.stderr.startswith("gproc: ")


def test_output_reader_going_away_stops_everything_quietly(tmp_path: Path) -> None:
    chatty = "import time\nwhile True:\n    print('chat', flush=True)\n    time.sleep(0.02)\n"
    (tmp_path / "chatty.py").write_text(chatty)
    procfile(tmp_path, f"talk: {shlex.quote(sys.executable)} chatty.py\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gproc", "up"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert b"started" in proc.stdout.readline()  # `gproc up | head -1`
    proc.stdout.close()
    assert proc.wait(timeout=20) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()


def test_env_files_named_with_e_and_base_port_from_env(tmp_path: Path, up) -> None:
    procfile(tmp_path, "web: $SERVICE env ONE TWO\n", env="ONE=ignored\n")
    (tmp_path / "one.env").write_text("ONE=1\nPORT=7000\n")
    (tmp_path / "two.env").write_text("TWO='2'\n")
    run = up("-e", "one.env,two.env")
    run.wait_for(r"web\.1 +\| TWO=2$")
    run.signal(signal.SIGTERM)
    assert run.finish() == 0
    assert text_lines(run, "web.1")[0].endswith("port=7000")
    assert "ONE=1" in text_lines(run, "web.1")
