"""Messaging by pid, between real processes over real sockets."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import gproc
from gproc._messaging import listener, protocol, sender

from .conftest import python_program
from .messaging_helpers import child, private_runtime_dir, receiver, sleeper

__all__ = ["private_runtime_dir"]


def run_child_code(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GPROC_PPID": str(os.getpid())},
    )


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


# --------------------------------------------------------------------------- delivery


@pytest.mark.parametrize(
    "data",
    [b"", bytes(range(256)) * 4, b"\x00\xff" * 5 + b"\n\r", 64 * 1024 * 1024],
    ids=["empty", "all-bytes", "binary", "64MiB"],
)
def test_exact_bytes_arrive(data: bytes | int) -> None:
    payload = os.urandom(data) if isinstance(data, int) else data
    with receiver() as proc:
        reply = gproc.request(proc.pid, payload, timeout=30)
        assert reply == f"{hashlib.sha256(payload).hexdigest()} {len(payload)}".encode()
        gproc.send(proc.pid, "quit")
        assert proc.wait(10) == 0


def test_child_sends_to_parent_before_parent_receives() -> None:
    # The child sends the moment it starts; the parent only starts receiving later.
    proc = run_child_code(
        "import gproc, sys\n"
        "print('sending', flush=True)\n"
        "gproc.send(gproc.ppid(), b'\\x00early\\xff', 'boot', timeout=20)\n"
        "gproc.send(gproc.ppid(), 'later text', 'other', timeout=20)\n"
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "sending\n"
    time.sleep(0.2)  # not a synchronisation: only makes "before" likely for this test's meaning
    gproc.start_receiving()
    assert finish(proc) == ""  # both sends succeeded, though nobody has received from 'other'
    first = gproc.receive("boot", timeout=5)
    assert first.data == b"\x00early\xff"
    assert first.sender_pid == proc.pid
    assert first.receiver_pid == os.getpid()
    assert first.group == "boot"
    other = gproc.receive("other", timeout=5)
    assert other.text == "later text"
    assert isinstance(other.data, bytes)


def test_groups_are_separate_queues_and_str_is_utf8() -> None:
    gproc.start_receiving()
    me = os.getpid()
    gproc.send(me, "a1", "a")
    gproc.send(me, b"b1", "b")
    gproc.send(me, "héllo", "a")
    gproc.send(me, "default")
    assert gproc.receive("b", timeout=1).data == b"b1"
    assert gproc.receive("a", timeout=1).text == "a1"
    assert gproc.receive("a", timeout=1).data == "héllo".encode()
    assert gproc.receive(timeout=1).group == ""


def test_receive_timeout_is_a_timeout_error_naming_the_group() -> None:
    started = time.monotonic()
    with pytest.raises(gproc.ReceiveTimeout) as info:
        gproc.receive("quiet", timeout=0.2)
    assert 0.15 < time.monotonic() - started < 3
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, gproc.MessagingError)
    assert info.value.group == "quiet"
    assert "quiet" in str(info.value)
    clone = pickle.loads(pickle.dumps(info.value))
    assert (clone.group, str(clone)) == ("quiet", str(info.value))


def test_dead_pid_is_process_not_found_at_once() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    started = time.monotonic()
    with pytest.raises(gproc.ProcessNotFound) as info:
        gproc.send(proc.pid, b"x", timeout=10)
    assert time.monotonic() - started < 1
    assert info.value.pid == proc.pid
    assert isinstance(info.value, ProcessLookupError)


def test_live_process_not_receiving_times_out_with_not_receiving() -> None:
    proc = sleeper()
    try:
        started = time.monotonic()
        with pytest.raises(gproc.NotReceiving) as info:
            gproc.send(proc.pid, b"x", "g", timeout=0.3)
        assert 0.25 < time.monotonic() - started < 3
        assert (info.value.pid, info.value.group) == (proc.pid, "g")
    finally:
        proc.kill()
        proc.wait()


def test_request_without_reply_times_out() -> None:
    gproc.start_receiving()
    with pytest.raises(gproc.ReceiveTimeout) as info:
        gproc.request(os.getpid(), b"anyone?", "q", timeout=0.3)
    assert info.value.pid == os.getpid()
    message = gproc.receive("q", timeout=1)
    assert message.is_request
    # The requester gave up and hung up: the reply goes nowhere (ConnectionLost once the
    # listener has seen the hang-up), and nothing else is disturbed.
    with contextlib.suppress(gproc.ConnectionLost):
        message.reply(b"too late")
    gproc.send(os.getpid(), b"next", "q")
    assert gproc.receive("q", timeout=5).data == b"next"


def test_reply_rules() -> None:
    gproc.start_receiving()
    gproc.send(os.getpid(), b"plain")
    plain = gproc.receive(timeout=1)
    assert not plain.is_request
    with pytest.raises(gproc.MessagingError, match="not a request"):
        plain.reply(b"x")
    answers: list[bytes] = []
    asker = threading.Thread(target=lambda: answers.append(gproc.request(os.getpid(), "2+2")))
    asker.start()
    question = gproc.receive(timeout=5)
    question.reply("4")
    with pytest.raises(gproc.MessagingError):
        question.reply("again")
    asker.join(10)
    assert answers == [b"4"]


def test_bad_arguments_are_rejected_clearly() -> None:
    with pytest.raises(TypeError):
        gproc.send("123", b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        gproc.send(os.getpid(), 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        gproc.send(os.getpid(), b"x", b"group")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        gproc.send(os.getpid(), b"x", timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        gproc.receive(timeout=-1)


def test_data_and_argument_forms_off_the_fast_path() -> None:
    # send() checks the common forms (bytes, str group, float timeout) inline; the rest goes
    # through the general checks and must behave exactly the same.
    gproc.start_receiving()
    me = os.getpid()
    gproc.send(me, bytearray(b"ba"), timeout=2)  # type: ignore[arg-type]  # (int timeout)
    gproc.send(me, memoryview(b"mv"), "grüppe", timeout=None)  # type: ignore[arg-type]
    assert gproc.receive(timeout=1).data == b"ba"
    assert gproc.receive("grüppe", timeout=1).data == b"mv"
    with pytest.raises(ValueError, match="group name"):
        gproc.send(me, b"x", "é" * 40000)  # 80000 UTF-8 bytes
    with pytest.raises(ValueError, match="timeout"):
        gproc.send(me, b"x", timeout=True)
    with pytest.raises(ValueError, match="timeout"):
        gproc.send(me, b"x", timeout=-0.5)
    with pytest.raises(ValueError, match="pid"):
        gproc.send(0, b"x")


def test_too_large_fails_before_sending() -> None:
    gproc.start_receiving(max_message_size=1000)
    with pytest.raises(gproc.MessageTooLarge) as info:
        gproc.send(os.getpid(), b"x" * 1001, "big")
    assert isinstance(info.value, ValueError)
    assert (info.value.pid, info.value.group) == (os.getpid(), "big")
    gproc.send(os.getpid(), b"x" * 1000, "big")
    assert len(gproc.receive("big", timeout=1).data) == 1000
    assert listener.queues.snapshot() == [("big", 0)]  # the refused one never arrived


# --------------------------------------------------------------------------- many senders


def test_32_senders_2000_messages_each_lose_and_duplicate_nothing_in_order() -> None:
    gproc.start_receiving()
    senders = [
        subprocess.Popen(python_program("msg_sender", str(os.getpid()), "2000", "load"))
        for _ in range(32)
    ]
    try:
        last: dict[int, int] = {p.pid: -1 for p in senders}
        for _ in range(32 * 2000):
            message = gproc.receive("load", timeout=30)
            pid_text, index_text = message.text.split(":")
            pid, index = int(pid_text), int(index_text)
            assert pid == message.sender_pid
            assert index == last[pid] + 1, "out of order, lost or duplicated"
            last[pid] = index
        assert all(v == 1999 for v in last.values())
        for proc in senders:
            assert proc.wait(30) == 0
        with pytest.raises(gproc.ReceiveTimeout):
            gproc.receive("load", timeout=0.1)  # no duplicate after the last one
    finally:
        for proc in senders:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_threads_sending_to_one_pid_each_use_their_own_connection() -> None:
    # The channel pool has no lock: a channel shared by two threads would interleave frames
    # (protocol errors, lost or duplicated messages), so check each arrives once, in order.
    gproc.start_receiving()
    me = os.getpid()
    errors: list[BaseException] = []

    def blast(name: str) -> None:
        try:
            for index in range(500):
                gproc.send(me, f"{name}:{index}", "threads")
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=blast, args=(str(n),)) for n in range(8)]
    for thread in threads:
        thread.start()
    last = dict.fromkeys((str(n) for n in range(8)), -1)
    for _ in range(8 * 500):
        name, index = gproc.receive("threads", timeout=30).text.split(":")
        assert int(index) == last[name] + 1, "out of order, lost or duplicated"
        last[name] = int(index)
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(sender._idle[me]) <= 8  # every channel given back once, none twice
    sender.forget_idle()
    assert sender._idle[me] == []


def test_full_queue_pushes_back_until_room_or_timeout() -> None:
    gproc.start_receiving(queue_size=3)
    me = os.getpid()
    proc = run_child_code(
        "import gproc, time\n"
        "p = gproc.ppid()\n"
        "for i in range(3): gproc.send(p, str(i), 'bp')\n"
        "try:\n"
        "    gproc.send(p, '3', 'bp', timeout=0.3)\n"
        "except gproc.QueueFull as e:\n"
        "    print('full', e.pid, e.group, flush=True)\n"
        "print('waiting', flush=True)\n"
        "gproc.send(p, '3', 'bp', timeout=20)\n"
        "print('sent', flush=True)\n"
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == f"full {me} bp\n"
    assert proc.stdout.readline() == "waiting\n"
    assert gproc.receive("bp", timeout=5).text == "0"  # makes room: the blocked send goes through
    assert proc.stdout.readline() == "sent\n"
    assert finish(proc) == ""
    assert [gproc.receive("bp", timeout=5).text for _ in range(3)] == ["1", "2", "3"]


def test_send_many_pipelines_in_order_through_backpressure() -> None:
    gproc.start_receiving(queue_size=50)
    items = [f"m{i}" for i in range(3000)]
    received: list[str] = []

    def consume() -> None:
        for _ in items:
            received.append(gproc.receive("pipe", timeout=20).text)

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert gproc.send_many(os.getpid(), items, "pipe", timeout=20) == 3000
    consumer.join(30)
    assert received == items


# --------------------------------------------------------------------------- failures


def test_receiver_killed_mid_stream_makes_the_sender_fail_not_hang() -> None:
    with receiver() as proc:
        gproc.send(proc.pid, "die")  # the child kills itself once it takes this message
        big = b"y" * (1 << 20)
        started = time.monotonic()

        def send_until_it_fails() -> None:
            for _ in range(10_000):
                gproc.send(proc.pid, big, timeout=5)

        with pytest.raises((gproc.ConnectionLost, gproc.ProcessNotFound)):
            send_until_it_fails()
        assert time.monotonic() - started < 10
        assert proc.wait(5) == -signal.SIGKILL


def test_sender_killed_mid_message_leaves_the_receiver_unharmed() -> None:
    path = gproc.start_receiving()
    proc = run_child_code(
        "import socket, struct, sys, time\n"
        f"s = socket.socket(socket.AF_UNIX); s.connect({path!r}); s.recv(100)\n"
        "s.sendall(b'h' + struct.pack('!I', 16) + b'GPRC\\x01' + bytes(3)"
        " + struct.pack('!Q', 1<<20))\n"
        "s.sendall(b'M' + struct.pack('!I', 10 + 1000000) + struct.pack('!QH', 1, 0)"
        " + b'z' * 5000)\n"
        "print('partial', flush=True); time.sleep(60)\n"
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "partial\n"
    proc.kill()
    proc.communicate()
    gproc.send(os.getpid(), b"still fine")
    assert gproc.receive(timeout=5).data == b"still fine"
    with pytest.raises(gproc.ReceiveTimeout):
        gproc.receive(timeout=0.1)  # the half message was never queued


def raw_connection(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    hello = sock.recv(100)
    assert hello[:1] == b"H"
    assert hello[5:9] == b"GPRC"
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00\x00\x00\x00",  # unknown kind
        b"M" + b"\xff\xff\xff\xff",  # far over the size limit
        protocol.message_head(protocol.MESSAGE, 1, b"", 1) + b"x",  # message before hello
        protocol.client_hello(10) + protocol.message_head(protocol.MESSAGE, 1, b"\xff", 0),
        b"hXXXX" + bytes(16),  # hello of the wrong size and magic
        protocol.client_hello(10) + protocol.client_hello(10),  # second hello
        protocol.ack(protocol.ACK_OK, 1),  # a receiver's frame from a sender
    ],
)
def test_malformed_frame_closes_only_that_connection(garbage: bytes) -> None:
    path = gproc.start_receiving()
    good = gproc.send  # a well-behaved sender on its own connection, before and after
    good(os.getpid(), b"before")
    bad = raw_connection(path)
    bad.sendall(garbage)
    assert closed_by_peer(bad)
    bad.close()
    good(os.getpid(), b"after")
    assert [gproc.receive(timeout=5).data for _ in range(2)] == [b"before", b"after"]


def test_random_garbage_from_many_connections_never_hurts_the_listener() -> None:
    path = gproc.start_receiving()
    rng = __import__("random").Random(4)
    for _ in range(50):
        sock = raw_connection(path)
        sock.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        sock.close()
    gproc.send(os.getpid(), b"alive")
    assert gproc.receive(timeout=5).data == b"alive"


# --------------------------------------------------------------------------- security & identity


def test_runtime_dir_and_socket_are_private(private_runtime_dir: Path) -> None:
    private_runtime_dir.rmdir()
    path = Path(gproc.start_receiving())
    assert path == private_runtime_dir / f"{os.getpid()}.sock"
    assert private_runtime_dir.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_mode & 0o777 == 0o600
    listener.stop()
    assert not path.exists()  # removed when we stop (and at exit)


@pytest.mark.parametrize("mode", [0o770, 0o702])
def test_runtime_dir_writable_by_others_is_refused(private_runtime_dir: Path, mode: int) -> None:
    private_runtime_dir.chmod(mode)
    with pytest.raises(gproc.UnsafeRuntimeDir) as info:
        gproc.start_receiving()
    assert isinstance(info.value, PermissionError)
    with pytest.raises(gproc.UnsafeRuntimeDir):
        gproc.send(os.getpid(), b"x")


def test_runtime_dir_of_another_user_is_refused(private_runtime_dir: Path) -> None:
    os.chown(private_runtime_dir, 65534, 65534)
    with pytest.raises(gproc.UnsafeRuntimeDir, match="uid 65534"):
        gproc.start_receiving()


@pytest.mark.parametrize(
    ("mode", "outcome"), [("full", "permission denied"), ("fsuid", "closed without a word")]
)
def test_another_uid_is_refused(mode: str, outcome: str) -> None:
    path = gproc.start_receiving()
    with child("msg_other_uid", path, mode) as proc:
        out, _ = proc.communicate(timeout=20)
    assert out.strip() == outcome
    gproc.send(os.getpid(), b"ok")
    assert gproc.receive(timeout=5).data == b"ok"
    assert listener.queues.snapshot() == [("", 0)]  # nothing from the other user


def test_stale_socket_file_is_replaced_by_the_new_receiver(private_runtime_dir: Path) -> None:
    # A socket file for our pid left by a "dead process": nobody listens on it.
    stale = private_runtime_dir / f"{os.getpid()}.sock"
    ghost = socket.socket(socket.AF_UNIX)
    ghost.bind(str(stale))
    ghost.close()
    gproc.start_receiving()
    current = listener.current()
    assert current is not None
    assert current.replaced_stale
    gproc.send(os.getpid(), b"fresh")
    assert gproc.receive(timeout=5).data == b"fresh"


def test_stale_socket_of_a_pid_that_does_not_receive_is_not_success(
    private_runtime_dir: Path,
) -> None:
    proc = sleeper()
    try:
        ghost = socket.socket(socket.AF_UNIX)
        ghost.bind(str(private_runtime_dir / f"{proc.pid}.sock"))
        ghost.close()
        with pytest.raises(gproc.NotReceiving):
            gproc.send(proc.pid, b"for the old process", timeout=0.3)
    finally:
        proc.kill()
        proc.wait()


def test_socket_held_by_another_process_never_gets_the_message(private_runtime_dir: Path) -> None:
    # As if the pid had been reused: <pid>.sock answers, but the kernel says the listener is a
    # different process (us), so the sender refuses to deliver there.
    proc = sleeper()
    impostor = socket.socket(socket.AF_UNIX)
    try:
        impostor.bind(str(private_runtime_dir / f"{proc.pid}.sock"))
        impostor.listen()
        with pytest.raises(gproc.NotReceiving):
            gproc.send(proc.pid, b"secret", timeout=0.3)
        impostor.settimeout(0.01)
        try:
            conn, _ = impostor.accept()
        except TimeoutError:
            pass
        else:
            conn.settimeout(0.5)
            assert conn.recv(100) == b""  # connected, checked the peer, hung up, sent nothing
            conn.close()
    finally:
        impostor.close()
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- fork safety


def test_fork_child_gets_its_own_connections_and_listener() -> None:
    with receiver() as proc:
        gproc.send(proc.pid, "from parent 1")  # leaves a cached connection
        gproc.start_receiving()
        parent_socket = listener.current()
        assert parent_socket is not None
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's result travels through the pipe
            status = 1
            try:
                assert listener.current() is None
                gproc.send(proc.pid, "from child")
                own = gproc.start_receiving()
                assert own.endswith(f"{os.getpid()}.sock")
                gproc.send(os.getppid(), "child here")
                status = 0
            finally:
                os.write(write_end, bytes([status]))
                os._exit(status)
        os.close(write_end)
        assert os.read(read_end, 1) == b"\0"
        os.close(read_end)
        os.waitpid(pid, 0)
        gproc.send(proc.pid, "from parent 2")
        assert gproc.receive(timeout=5).sender_pid == pid
        assert Path(parent_socket.path).exists()  # the child did not remove ours
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines == ["from parent 1\n", "from child\n", "from parent 2\n"]


def test_no_descriptor_leaks_across_listen_send_request_and_stop() -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def cycle() -> None:
        gproc.start_receiving()
        me = os.getpid()
        gproc.send(me, b"x")
        gproc.send_many(me, [b"y"] * 10)
        asker = threading.Thread(target=lambda: gproc.request(me, b"?", timeout=5))
        asker.start()
        for _ in range(11):
            gproc.receive(timeout=5)
        gproc.receive(timeout=5).reply(b"!")
        asker.join(10)
        listener.stop()
        sender.forget_idle()

    cycle()  # warm up lazily created objects (selectors, the asyncio-free pool)
    before = open_fds()
    for _ in range(5):
        cycle()
    assert open_fds() == before


def test_sending_to_many_runs_concurrently_and_reports_each_failure() -> None:
    from gproc._drive import run_sync
    from gproc._messaging.broadcast import send_each

    dead = subprocess.Popen(["true"])
    dead.wait()
    quiet = sleeper()
    try:
        with receiver() as first, receiver() as second:
            started = time.monotonic()
            failures = run_sync(
                send_each([first.pid, quiet.pid, second.pid, dead.pid], "all", "", 0.5)
            )
            assert time.monotonic() - started < 2  # one timeout, not one per target
            assert set(failures) == {quiet.pid, dead.pid}
            assert isinstance(failures[quiet.pid], gproc.NotReceiving)
            assert isinstance(failures[dead.pid], gproc.ProcessNotFound)
            assert getattr(failures[quiet.pid], "pid", None) == quiet.pid
            for proc in (first, second):
                assert proc.stdout is not None
                assert proc.stdout.readline() == "all\n"
    finally:
        quiet.kill()
        quiet.wait()


def test_ctrl_c_in_receive_leaves_cleanly_and_loses_nothing() -> None:
    proc = run_child_code(
        "import gproc, signal\n"
        # A shell without job control starts background jobs with SIGINT ignored; undo that.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "gproc.start_receiving()\n"
        "try:\n"
        "    print('ready', flush=True)\n"
        "    gproc.receive('g')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "print(gproc.receive('g', timeout=10).text, flush=True)\n"
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline() == "interrupted\n"
    gproc.send(proc.pid, "after", "g")
    assert finish(proc) == "after\n"
