"""The asyncio twin of messaging, and the ``gproc send/recv/ps`` commands."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

import gproc
from gproc import aio

from .messaging_helpers import private_runtime_dir, receiver

__all__ = ["private_runtime_dir"]


# --------------------------------------------------------------------------- asyncio


def test_aio_send_request_and_receive_with_a_child() -> None:
    async def main() -> None:
        with receiver() as proc:
            reply = await aio.request(proc.pid, b"\x00abc", timeout=10)
            assert reply.endswith(b" 4")
            await aio.send(proc.pid, "quit")
            assert proc.wait(10) == 0
        aio.start_receiving()
        await aio.send(os.getpid(), "to myself", "g")
        message = await aio.receive("g", timeout=5)
        assert (message.text, message.sender_pid, message.group) == ("to myself", os.getpid(), "g")

    asyncio.run(main())


def test_aio_receive_times_out_as_timeout_error() -> None:
    async def main() -> None:
        with pytest.raises(gproc.ReceiveTimeout) as info:
            await aio.receive("none", timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        assert info.value.group == "none"

    asyncio.run(main())


def test_cancelled_aio_receive_loses_no_message() -> None:
    async def main() -> None:
        aio.start_receiving()
        waiting = asyncio.create_task(aio.receive("c"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await aio.send(os.getpid(), "kept", "c")
        assert (await aio.receive("c", timeout=5)).text == "kept"

    asyncio.run(main())


def test_aio_waiter_is_woken_by_a_message_from_another_process() -> None:
    async def main() -> None:
        aio.start_receiving()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import gproc; gproc.send(gproc.ppid(), 'ping', 'w')",
            env={**os.environ, "GPROC_PPID": str(os.getpid())},
        )
        message = await aio.receive("w", timeout=10)
        assert message.text == "ping"
        assert message.sender_pid == child.pid
        assert await child.wait() == 0

    asyncio.run(main())


def test_concurrent_aio_senders_keep_per_task_order() -> None:
    async def main() -> None:
        aio.start_receiving()
        me = os.getpid()

        async def sender(task: int) -> None:
            for i in range(50):
                await aio.send(me, f"{task}:{i}", "many")

        await asyncio.gather(*(sender(t) for t in range(16)))
        seen: dict[str, list[int]] = {}
        got = 0
        async for message in aio.messages("many", timeout=5):
            task, index = message.text.split(":")
            seen.setdefault(task, []).append(int(index))
            got += 1
            if got == 16 * 50:
                break
        assert all(v == list(range(50)) for v in seen.values())
        assert len(seen) == 16

    asyncio.run(main())


def test_aio_send_many_and_sync_receiver_thread() -> None:
    async def main() -> None:
        aio.start_receiving(queue_size=20)
        consumer = asyncio.get_running_loop().run_in_executor(
            None, lambda: [gproc.receive("mix", timeout=10).text for _ in range(500)]
        )
        assert await aio.send_many(os.getpid(), (str(i) for i in range(500)), "mix") == 500
        assert await consumer == [str(i) for i in range(500)]

    asyncio.run(main())


# --------------------------------------------------------------------------- CLI


def gproc_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gproc", *args],
        input=stdin,
        capture_output=True,
        timeout=30,
        check=False,
    )


def recv_cli(args: list[str], messages: list[tuple[bytes | str, str]]) -> tuple[int, bytes, bytes]:
    """Run ``gproc recv ARGS``, send it ``messages`` (data, group); its pid, stdout, stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gproc", "recv", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for data, group in messages:
            gproc.send(proc.pid, data, group, timeout=20)  # waits until the command receives
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    return proc.pid, out, err


def test_cli_recv_json_prints_text_or_base64() -> None:
    pid, out, err = recv_cli(
        ["--json", "-n", "2", "-g", "cli", "--timeout", "20"],
        [("héllo", "cli"), (b"\xff\x00", "cli")],
    )
    lines = [json.loads(line) for line in out.decode().splitlines()]
    me = os.getpid()
    assert lines == [
        {"sender_pid": me, "receiver_pid": pid, "group": "cli", "data": "héllo"},
        {
            "sender_pid": me,
            "receiver_pid": pid,
            "group": "cli",
            "data": "/wA=",
            "encoding": "base64",
        },
    ]
    assert f"pid {pid}" in err.decode()


def test_cli_recv_times_out_with_status_124() -> None:
    done = gproc_cli("recv", "--timeout", "0.2")
    assert done.returncode == 124
    assert b"no message" in done.stderr


def test_cli_send_from_argument_and_stdin_and_ps() -> None:
    gproc.start_receiving()
    me = str(os.getpid())
    assert gproc_cli("send", me, "from the CLI", "-g", "g1").returncode == 0
    assert gproc_cli("send", me, "-", stdin=b"\x00raw\xff").returncode == 0
    listing = gproc_cli("ps", "--json")
    assert listing.returncode == 0
    rows = [json.loads(line) for line in listing.stdout.decode().splitlines()]
    mine = [row for row in rows if row["pid"] == os.getpid()]
    assert len(mine) == 1
    assert mine[0]["groups"] == {"g1": 1, "": 1}
    assert mine[0]["command"][0] == sys.executable or "python" in mine[0]["command"][0]
    table = gproc_cli("ps").stdout.decode()
    assert me in table
    assert "g1:1" in table
    assert gproc.receive("g1", timeout=1).text == "from the CLI"
    assert gproc.receive(timeout=1).data == b"\x00raw\xff"


def test_cli_send_to_a_missing_pid_fails_in_one_line() -> None:
    done = gproc_cli("send", "999999999", "x")
    assert done.returncode == 1
    assert done.stderr.decode().strip() == "gproc: no process with pid 999999999"


def test_cli_recv_prints_raw_data_lines() -> None:
    _, out, _ = recv_cli(["-n", "2"], [("first", ""), (b"\x00second", "")])
    assert out == b"first\n\x00second\n"
