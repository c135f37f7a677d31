"""The thread blocked in receive() serves the socket itself (leadership.py): what users rely on.

Whoever serves, every message is acknowledged while the receiving thread is busy elsewhere,
every thread that receives gets its own group's messages, and a stop or a Ctrl+C in a leading
main thread leaves nobody hanging.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import gproc
from gproc import aio
from gproc._messaging import listener
from gproc._messaging.queues import GroupQueues

from .conftest import python_program
from .messaging_helpers import interrupted_at, private_runtime_dir

__all__ = ["private_runtime_dir"]


def sender_child(count: int, group: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen(
        python_program("msg_sender", str(os.getpid()), str(count), group),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def wait_until_a_thread_leads() -> None:
    """Until some thread blocked in receive() serves the socket itself (bounded)."""
    lead = listener.queues.lead
    deadline = time.monotonic() + 10
    while lead._leader is None or not lead._present:
        assert time.monotonic() < deadline, "no receiving thread took the lead"
        time.sleep(0.001)


def test_senders_are_acknowledged_while_the_leading_thread_is_busy() -> None:
    gproc.start_receiving()
    first = threading.Event()
    busy = threading.Event()
    got: list[str] = []

    def consumer() -> None:
        got.append(gproc.receive("g", timeout=30).text)  # leads while it waits
        first.set()
        busy.wait(60)  # away from receive(): the listener thread must take the socket back
        got.extend(gproc.receive("g", timeout=30).text for _ in range(200))

    thread = threading.Thread(target=consumer)
    thread.start()
    try:
        wait_until_a_thread_leads()
        gproc.send(os.getpid(), "first", "g")
        assert first.wait(30)
        sender = sender_child(200, "g")
        # Every send is acknowledged (queued) although the only receiving thread is not in
        # receive(); a sender left unserved would fail with NotReceiving after its timeout.
        finish(sender)
    finally:
        busy.set()
        thread.join(60)
    assert got == ["first"] + [f"{sender.pid}:{i}" for i in range(200)]


def test_many_threads_each_receive_their_own_group_in_order() -> None:
    gproc.start_receiving()
    count, groups = 300, ["a", "b", "c", "d"]
    got: dict[str, list[str]] = {group: [] for group in groups}

    def consumer(group: str) -> None:
        for _ in range(count):
            got[group].append(gproc.receive(group, timeout=30).text)

    threads = [threading.Thread(target=consumer, args=(group,)) for group in groups]
    for thread in threads:
        thread.start()
    senders = [sender_child(count, group) for group in groups]
    for proc in senders:
        finish(proc)
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    for group, proc in zip(groups, senders, strict=True):
        assert got[group] == [f"{proc.pid}:{i}" for i in range(count)]


def test_a_receive_with_a_timeout_never_strands_the_socket() -> None:
    # A thread leads for a moment and gives up (timeouts); the socket must be served afterwards.
    gproc.start_receiving()
    for _ in range(20):
        try:
            gproc.receive("quiet", timeout=0.001)
        except gproc.ReceiveTimeout:
            pass
    finish(sender_child(50, "later"))
    assert [gproc.receive("later", timeout=5).text for _ in range(50)][-1].endswith(":49")


def test_stop_while_a_thread_leads_lets_it_wait_for_the_next_listener() -> None:
    gproc.start_receiving()
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(gproc.receive("g", timeout=30).text))
    thread.start()
    try:
        wait_until_a_thread_leads()
        listener.stop()
        assert listener.current() is None
        gproc.start_receiving()  # a new listener; the old waiter must get this message
        gproc.send(os.getpid(), "after stop", "g")
    finally:
        thread.join(30)
    assert result == ["after stop"]


def test_ctrl_c_in_a_leading_main_thread_never_leaves_a_sender_hanging() -> None:
    # The receiving child leads from its main thread and is interrupted again and again while
    # a sender streams to it: each send either succeeds or fails with ConnectionLost, nothing
    # hangs, order is kept. (An interrupt that lands between receive() returning and the
    # assignment of its result loses that message in the program itself, as it would with any
    # API: so at most one acknowledged message per interrupt may be missing.)
    code = (
        "import gproc, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "gproc.start_receiving()\n"
        "print('ready', flush=True)\n"
        "got = []\n"
        "while True:\n"
        "    try:\n"
        "        m = gproc.receive('g', timeout=20)\n"
        "        if m.data == b'end':\n"
        "            break\n"
        "        got.append(m.text)\n"
        "    except KeyboardInterrupt:\n"
        "        continue\n"
        "print(' '.join(got), flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        acked: list[str] = []
        for i in range(300):
            if i % 10 == 0:
                proc.send_signal(signal.SIGINT)
            try:
                gproc.send(proc.pid, str(i), "g", timeout=10)
                acked.append(str(i))
            except gproc.ConnectionLost:
                pass
        gproc.send(proc.pid, "end", "g", timeout=10)
        received = finish(proc).split()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert len(set(acked) - set(received)) <= 30
    assert received == sorted(received, key=int)  # FIFO kept
    assert set(received) <= {str(i) for i in range(300)}


def test_mixed_receivers_with_timeouts_get_every_message_exactly_once() -> None:
    # Three threads share group "a", two share "b", an asyncio task takes "c"; the sync ones use
    # short and long timeouts at random and sometimes go off to do other work, so the lead
    # changes hands all the time. Every message must arrive once, none twice, none lost.
    gproc.start_receiving()
    count = 1500
    want = {"a": 2 * count, "b": count, "c": count}
    got: dict[str, list[str]] = {group: [] for group in want}
    guard = threading.Lock()
    stop = threading.Event()

    def have(group: str) -> int:
        with guard:
            return len(got[group])

    def sync_receiver(group: str, seed: int) -> None:
        chance = random.Random(seed)
        while have(group) < want[group] and not stop.is_set():
            timeout = chance.choice([0.0, 0.0005, 0.002, 0.01, 0.2])
            try:
                message = gproc.receive(group, timeout=timeout)
            except gproc.ReceiveTimeout:
                continue
            with guard:
                got[group].append(message.text)
            if chance.random() < 0.01:
                stop.wait(0.005)  # busy elsewhere for a moment

    def async_receiver() -> None:
        async def main() -> None:
            while have("c") < want["c"] and not stop.is_set():
                try:
                    message = await aio.receive("c", timeout=0.3)
                except gproc.ReceiveTimeout:
                    continue
                with guard:
                    got["c"].append(message.text)

        asyncio.run(main())

    threads = [
        threading.Thread(target=sync_receiver, args=(group, seed))
        for seed, group in enumerate("aaabb")
    ]
    threads.append(threading.Thread(target=async_receiver))
    for thread in threads:
        thread.start()
    try:
        senders = [sender_child(count, group) for group in "aabc"]
        for proc in senders:
            finish(proc)
        for thread in threads:
            thread.join(30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    for group, texts in got.items():
        assert len(texts) == want[group], group
        assert len(set(texts)) == want[group], group
    expected = {f"{proc.pid}:{i}" for proc in senders[:2] for i in range(count)}
    assert set(got["a"]) == expected


def test_ctrl_c_just_after_taking_the_lead_leaves_the_socket_served() -> None:
    # A leading main thread can be interrupted at any bytecode, also right after it took the lead
    # and before it serves (the check after the lock's release). It must not stay the leader
    # "present in receive()": nobody would serve again, every send would time out, and stop()
    # at exit would wait for that leader forever. The interrupt is raised by a trace function at
    # exactly that line (a real SIGINT lands there only by chance).
    code = (
        "import inspect, os, sys, gproc\n"
        "from gproc._messaging.queues import GroupQueues\n"
        "get_sync = GroupQueues.get_sync\n"
        "lines, first = inspect.getsourcelines(get_sync)\n"
        "line = first + next(i for i, text in enumerate(lines)\n"
        "                    if text.strip() == 'if server is not None:')\n"
        "def local(frame, event, arg):\n"
        "    if event == 'line' and frame.f_lineno == line and frame.f_locals['server']:\n"
        "        raise KeyboardInterrupt\n"
        "    return local\n"
        "sys.settrace(lambda frame, event, arg: local if frame.f_code is get_sync.__code__ "
        "else None)\n"
        "try:\n"
        "    gproc.receive('g', timeout=10)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "sys.settrace(None)\n"
        "try:\n"
        "    gproc.send(os.getpid(), 'after', 'g', timeout=3)\n"
        "    print(gproc.receive('g', timeout=3).text, flush=True)\n"
        "except gproc.GprocError as exc:\n"
        "    print(type(exc).__name__, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "interrupted\n"
        assert proc.stdout.readline() == "after\n"
        finish(proc)  # and it exits: stop() at exit does not wait for a leader that left
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_ctrl_c_just_after_registering_as_a_follower_swallows_no_wake_up() -> None:
    # The main thread waits as a follower (another thread leads) and is interrupted right after
    # it registered, before it sleeps (trace function, as above). Its registration must not stay
    # behind: the next message's wake-up would go to it, and a real waiter would sleep on.
    gproc.start_receiving()
    leader_result: list[str] = []
    leader = threading.Thread(
        target=lambda: leader_result.append(gproc.receive("h", timeout=30).text)
    )
    leader.start()
    got: list[str] = []
    done = threading.Event()

    def follower() -> None:
        got.append(gproc.receive("g", timeout=30).text)
        done.set()

    thread = threading.Thread(target=follower)
    try:
        wait_until_a_thread_leads()
        try:
            with interrupted_at(
                GroupQueues.get_sync,
                "if server is not None:",
                lambda frame: frame.f_locals["server"] is None,
            ):
                gproc.receive("g", timeout=10)
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("not interrupted")
        before = listener.queues._sync_waiting
        thread.start()
        deadline = time.monotonic() + 10
        while listener.queues._sync_waiting == before:  # until the follower sleeps
            assert time.monotonic() < deadline
            time.sleep(0.001)
        gproc.send(os.getpid(), "for the follower", "g")
        delivered = done.wait(10)  # (a bound, not a timing: it is queued and must be taken)
    finally:
        gproc.send(os.getpid(), "for the leader", "h")
        leader.join(30)
        if not done.is_set():
            gproc.send(os.getpid(), "release", "g")
        thread.join(30)
    assert delivered
    assert got == ["for the follower"]


def test_a_reply_racing_stop_never_writes_into_a_reused_descriptor(tmp_path: Path) -> None:
    # reply() posts under the lock, then wakes the server through the wake pipe. If stop()
    # closes that pipe in between and the descriptor number is reused (a file opened by any
    # thread), the wake-up byte must not land in that file. The reply is held at that line by a
    # trace function while stop() runs.
    gproc.start_receiving()
    me = os.getpid()
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            gproc.request(me, "question", "q", timeout=10)
        except gproc.ConnectionLost as exc:  # stop() closes its connection: expected
            errors.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    message = gproc.receive("q", timeout=10)
    running = listener.current()
    assert running is not None
    wake_fd = running._wake_w
    paused, go = threading.Event(), threading.Event()

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_code.co_name == "reply":
            source = inspect.getframeinfo(frame).code_context or [""]
            if source[0].strip() == "self._wake()":
                paused.set()
                go.wait(30)
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_name == "reply" else None

    def answer() -> None:
        sys.settrace(tracer)
        try:
            message.reply(b"answer")
        except gproc.ConnectionLost:
            pass
        finally:
            sys.settrace(None)

    replier = threading.Thread(target=answer)
    replier.start()
    opened: list[int] = []
    try:
        assert paused.wait(30)
        listener.stop()
        asker.join(30)
        target = tmp_path / "unrelated"
        while not opened or opened[-1] < wake_fd:
            opened.append(os.open(target, os.O_WRONLY | os.O_CREAT, 0o600))
        go.set()
        replier.join(30)
        assert wake_fd in opened  # the number was reused, by our file
        assert target.read_bytes() == b""  # and nothing of gproc's landed in it
    finally:
        go.set()
        replier.join(30)
        for fd in opened:
            os.close(fd)
