"""The gproc command line, run as a user runs it: a real process, its output and exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def gproc_cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gproc", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=30,
        check=False,
    )


def test_exec_prints_combined_output_and_exits_with_the_code() -> None:
    done = gproc_cli("exec", "echo out; echo err >&2; exit 3")
    assert done.returncode == 3
    assert done.stdout == "out\nerr\n"


def test_exec_quotes_several_words_as_argv() -> None:
    done = gproc_cli("exec", "printf", "%s|", "a b", "$HOME")
    assert done.stdout == "a b|$HOME|"


def test_exec_timeout_exits_124_with_one_line_on_stderr() -> None:
    done = gproc_cli("exec", "--timeout", "0.3", "--grace", "0.2", "echo started; sleep 30")
    assert done.returncode == 124
    assert done.stdout == "started\n"
    assert len(done.stderr.strip().splitlines()) == 1
    assert "timed out" in done.stderr


def test_run_streams_and_exits_with_the_code() -> None:
    done = gproc_cli("run", "-e", "GREETING=hello", "echo $GREETING; exit 2")
    assert done.returncode == 2
    assert done.stdout == "hello\n"


def test_run_reports_death_by_signal_like_a_shell() -> None:
    assert gproc_cli("run", "kill -TERM $$").returncode == 128 + 15


def test_which_finds_and_misses() -> None:
    found = gproc_cli("which", "sh")
    assert found.returncode == 0
    assert os.access(found.stdout.strip(), os.X_OK)
    missing = gproc_cli("which", "gproc-no-such-binary")
    assert missing.returncode == 1
    assert "not found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_info_json_describes_the_cli_process() -> None:
    done = gproc_cli("info", "--json")
    facts = json.loads(done.stdout)
    assert set(facts) >= {"pid", "ppid", "ppid_os", "is_child", "start_time", "uptime_seconds"}
    assert facts["ppid_os"] == os.getpid()


def test_version_and_help() -> None:
    version = gproc_cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("gproc ")
    for command in ("exec", "run", "which", "info", "demo"):
        assert gproc_cli(command, "--help").returncode == 0


@pytest.mark.parametrize(
    "args",
    [("exec",), ("exec", "--cwd", "/nonexistent/dir", "true"), ("run", "-e", "NOEQUALS", "true")],
)
def test_errors_are_one_clear_line_never_a_traceback(args: tuple[str, ...]) -> None:
    done = gproc_cli(*args)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("gproc: ")


def test_demo_runs_end_to_end() -> None:
    done = gproc_cli("demo")
    assert done.returncode == 0, done.stderr
    assert "ShellTimeout" in done.stdout
    assert "Traceback" not in done.stderr
