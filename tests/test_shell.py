"""The shell helpers, against real shells and real process trees."""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import signal
import subprocess
import time
from pathlib import Path

import pytest

import gproc
from gproc import aio

from .conftest import gone, our_zombies, wait_gone, wait_group_gone


def test_shell_exec_interleaves_stdout_and_stderr_in_write_order() -> None:
    out = gproc.shell_exec("echo one; echo two >&2; echo three; echo four >&2")
    assert out == "one\ntwo\nthree\nfour\n"


def test_child_gets_gproc_ppid_of_the_parent() -> None:
    assert gproc.shell_exec("echo $GPROC_PPID").strip() == str(os.getpid())


def test_env_adds_overrides_and_removes_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPROC_T_KEEP", "kept")
    monkeypatch.setenv("GPROC_T_DROP", "dropped")
    out = gproc.shell_exec(
        'echo "$GPROC_T_KEEP|$GPROC_T_NEW|${GPROC_T_DROP-unset}"',
        env={"GPROC_T_NEW": "new", "GPROC_T_DROP": None},
    )
    assert out == "kept|new|unset\n"


def test_cwd_sets_the_working_directory(tmp_path: Path) -> None:
    assert gproc.shell_exec("pwd", cwd=tmp_path).strip() == str(tmp_path)


def test_missing_cwd_is_a_spawn_error_naming_the_command(tmp_path: Path) -> None:
    with pytest.raises(gproc.SpawnError) as info:
        gproc.shell_exec("true", cwd=tmp_path / "missing")
    assert isinstance(info.value, OSError)
    assert "true" in str(info.value)


@pytest.mark.parametrize("data", ["héllo\nworld", b"\x00\x01binary\xff"])
def test_input_is_fed_to_stdin(data: str | bytes) -> None:
    out = gproc.shell_exec("od -An -tx1 | tr -d ' \\n'", input=data)
    raw = data.encode() if isinstance(data, str) else data
    assert out == raw.hex()


def test_stdin_is_empty_not_the_terminal() -> None:
    assert gproc.shell_exec("cat; echo end") == "end\n"


def test_invalid_utf8_is_replaced() -> None:
    assert gproc.shell_exec("printf 'a\\377b'") == "a\ufffdb"


def test_failure_raises_shell_error_with_the_facts() -> None:
    with pytest.raises(gproc.ShellError) as info:
        gproc.shell_exec("echo line1; echo line2 >&2; exit 3")
    err = info.value
    assert isinstance(err, subprocess.CalledProcessError)
    assert isinstance(err, gproc.GprocError)
    assert err.returncode == 3
    assert err.cmd == "echo line1; echo line2 >&2; exit 3"
    assert err.output == "line1\nline2\n"
    assert err.signal is None
    assert not err.timed_out
    assert err.pid is not None
    assert err.duration > 0
    text = str(err)
    assert "exit 3" in text
    assert "status 3" in text
    assert "line2" in text


def test_check_false_returns_the_output_of_a_failure() -> None:
    assert gproc.shell_exec("echo partial; exit 1", check=False) == "partial\n"


def test_killed_by_signal_is_reported_by_name() -> None:
    with pytest.raises(gproc.ShellError) as info:
        gproc.shell_exec("kill -KILL $$")
    assert info.value.returncode == -9
    assert info.value.signal == "SIGKILL"
    assert "SIGKILL" in str(info.value)


def test_missing_command_exits_127_with_the_shell_message() -> None:
    with pytest.raises(gproc.ShellError) as info:
        gproc.shell_exec("gproc-no-such-command-xyz")
    assert info.value.returncode == 127
    assert "gproc-no-such-command-xyz" in (info.value.output or "")


def test_shell_error_pickles_with_its_facts() -> None:
    with pytest.raises(gproc.ShellError) as info:
        gproc.shell_exec("echo x; exit 4")
    clone = pickle.loads(pickle.dumps(info.value))
    assert type(clone) is gproc.ShellError
    assert (clone.returncode, clone.output, clone.pid) == (4, "x\n", info.value.pid)
    assert str(clone) == str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"cmd": ["echo", "hi"]}, TypeError),
        ({"cmd": "true", "timeout": -1}, ValueError),
        ({"cmd": "true", "grace": -1}, ValueError),
        ({"cmd": "true", "input": 42}, TypeError),
    ],
)
def test_bad_arguments_are_rejected_clearly(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        gproc.shell_exec(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ timeouts and process trees


def _pids(output: str) -> list[int]:
    return [int(word) for word in output.split() if word.isdigit()]


def test_timeout_stops_the_tree_even_when_a_grandchild_holds_the_pipe() -> None:
    started = time.monotonic()
    with pytest.raises(gproc.ShellTimeout) as info:
        gproc.shell_exec("sleep 100 & echo $!; wait", timeout=0.5, grace=1.0)
    elapsed = time.monotonic() - started
    err = info.value
    assert isinstance(err, TimeoutError)
    assert isinstance(err, gproc.ShellError)
    assert err.timed_out
    assert elapsed < 0.5 + 1.0 + 1.0
    [grandchild] = _pids(err.output or "")
    assert wait_gone(grandchild)
    assert our_zombies() == []
    assert "timed out" in str(err)


def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored() -> None:
    started = time.monotonic()
    with pytest.raises(gproc.ShellTimeout) as info:
        gproc.shell_exec(
            "trap '' TERM; echo ready; while :; do sleep 0.1; done", timeout=0.3, grace=0.3
        )
    assert time.monotonic() - started < 0.3 + 0.3 + 1.0
    assert info.value.returncode == -9
    assert info.value.output == "ready\n"


def test_timeout_reaches_descendants_that_left_the_process_group() -> None:
    with pytest.raises(gproc.ShellTimeout) as info:
        gproc.shell_exec("setsid sleep 100 & echo $!; wait", timeout=0.5, grace=0.5)
    [escaped] = _pids(info.value.output or "")
    assert wait_gone(escaped)


def test_background_job_does_not_hold_up_a_finished_command() -> None:
    started = time.monotonic()
    out = gproc.shell_exec("(sleep 5; echo late) & echo $$; echo early")
    assert time.monotonic() - started < 3
    assert out.endswith("early\n")
    # A background job outlives its shell, by design; it is still in the shell's process group.
    [group, *_] = _pids(out)
    os.killpg(group, signal.SIGKILL)
    assert wait_group_gone(group)


def test_shell_timeout_is_raised_even_with_check_false() -> None:
    with pytest.raises(gproc.ShellTimeout):
        gproc.shell_exec("sleep 10", timeout=0.2, check=False, grace=0.2)


# ------------------------------------------------------------------ custom streams (shell)


class _TextWriter:
    """A writer with only write(): no fileno, no flush."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        assert isinstance(text, str)
        self.parts.append(text)
        return len(text)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(n)


def test_shell_streams_to_objects_without_file_descriptors() -> None:
    out = io.StringIO()
    err = _TextWriter()
    code = gproc.shell("echo out; echo err >&2", stdout=out, stderr=err)
    assert code == 0
    assert out.getvalue() == "out\n"
    assert "".join(err.parts) == "err\n"


def test_shell_writes_bytes_to_binary_sinks() -> None:
    sink = io.BytesIO()
    gproc.shell("printf '\\001\\002\\377'", stdout=sink)
    assert sink.getvalue() == b"\x01\x02\xff"


def test_shell_same_sink_for_both_streams_keeps_write_order() -> None:
    sink = io.StringIO()
    gproc.shell("for i in 1 2 3; do echo o$i; echo e$i >&2; done", stdout=sink, stderr=sink)
    assert sink.getvalue().split() == ["o1", "e1", "o2", "e2", "o3", "e3"]


def test_shell_reads_stdin_from_an_object_with_read_and_from_a_file(tmp_path: Path) -> None:
    payload = b"x" * 300_000 + b"end"
    sink = io.BytesIO()
    gproc.shell("cat", stdout=sink, stdin=_Reader(payload))
    assert sink.getvalue() == payload
    path = tmp_path / "in.txt"
    path.write_bytes(b"from a file")
    with path.open("rb") as f:
        assert gproc.shell("cat", stdout=(out := io.StringIO()), stdin=f) == 0
    assert out.getvalue() == "from a file"


def test_shell_writes_straight_to_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    with path.open("w") as f:
        f.write("before\n")
        gproc.shell("echo child", stdout=f)
        f.write("after\n")
    assert path.read_text() == "before\nchild\nafter\n"


def test_shell_returns_the_code_with_check_false_and_raises_with_the_tail() -> None:
    assert gproc.shell("exit 5", stdout=io.StringIO(), check=False) == 5
    with pytest.raises(gproc.ShellError) as info:
        gproc.shell("echo why; exit 5", stdout=io.StringIO())
    assert info.value.output == "why\n"


def test_a_sink_that_raises_stops_the_command_and_propagates() -> None:
    class Broken:
        def write(self, data: str) -> None:
            raise OSError("disk full")

    started = time.monotonic()
    with pytest.raises(OSError, match="disk full"):
        gproc.shell("echo first; sleep 100", stdout=Broken(), grace=0.5)
    assert time.monotonic() - started < 5


def test_large_output_passes_through_a_pumped_sink_intact() -> None:
    class Counter:
        size = 0

        def write(self, data: bytes) -> None:
            self.size += len(data)

        mode = "wb"

    counter = Counter()
    gproc.shell("head -c 20000000 /dev/zero", stdout=counter)
    assert counter.size == 20_000_000


def test_shell_run_returns_the_exit_code() -> None:
    assert gproc.shell_run("exit 0") == 0
    assert gproc.shell_run("exit 7", check=False) == 7
    with pytest.raises(gproc.ShellError):
        gproc.shell_run("exit 7")


# ------------------------------------------------------------------ asyncio twin


def test_aio_shell_exec_runs_commands_concurrently() -> None:
    async def main() -> list[str]:
        return await asyncio.gather(*(aio.shell_exec(f"sleep 0.3; echo {i}") for i in range(5)))

    started = time.monotonic()
    assert asyncio.run(main()) == [f"{i}\n" for i in range(5)]
    assert time.monotonic() - started < 1.4


def test_aio_cancellation_stops_the_tree() -> None:
    async def main() -> int:
        sink = io.StringIO()
        task = asyncio.create_task(aio.shell("sleep 100 & echo $!; wait", stdout=sink, grace=0.5))
        while not sink.getvalue():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return int(sink.getvalue())

    grandchild = asyncio.run(main())
    assert wait_gone(grandchild)
    assert our_zombies() == []


def test_aio_timeout_raises_shell_timeout() -> None:
    async def main() -> None:
        await aio.shell_exec("sleep 10", timeout=0.2, grace=0.2)

    with pytest.raises(gproc.ShellTimeout):
        asyncio.run(main())


def test_gone_helper_agrees_with_reality() -> None:
    proc = subprocess.Popen(["sleep", "10"])
    assert not gone(proc.pid)
    proc.kill()
    proc.wait()
    assert gone(proc.pid)
