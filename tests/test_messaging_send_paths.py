"""send() starts with a plain call (sender._begin) and hands anything unusual to the operation.

These drive the hand-over points with real sockets and processes: a frame the socket takes only
in part, a kept connection the receiver closed meanwhile, and the asyncio face.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading

import gproc
from gproc import aio
from gproc._drive import run_sync
from gproc._messaging import listener, sender

from .messaging_helpers import interrupted_at, private_runtime_dir, receiver

__all__ = ["private_runtime_dir"]


def test_a_frame_the_socket_takes_only_in_part_is_finished_by_the_operation() -> None:
    payload = b"p" * 60_000  # small enough for the plain start, bigger than the buffer below
    with receiver() as proc:
        assert proc.stdout is not None
        gproc.send(proc.pid, "warm-up")  # leaves a kept connection in the pool
        assert proc.stdout.readline() == "warm-up\n"
        kept = sender._idle[proc.pid][-1]
        kept.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        os.kill(proc.pid, signal.SIGSTOP)  # reads nothing: the socket takes part of the frame
        try:
            begun = sender._begin(proc.pid, payload, "", 30.0)
            assert begun is not None
            channel, _seq, _deadline, rest = begun
            assert channel is kept
            assert rest is not None
            assert 0 < len(rest) < len(payload)
            errors: list[BaseException] = []

            def finish() -> None:
                try:
                    run_sync(sender._exchange(proc.pid, payload, "", 30.0, False, begun))
                except BaseException as exc:  # reported below
                    errors.append(exc)

            thread = threading.Thread(target=finish)
            thread.start()
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        thread.join(30)
        assert not thread.is_alive()
        assert not errors
        assert proc.stdout.readline() == payload.decode() + "\n"
        gproc.send(proc.pid, "quit")  # the channel went back to the pool in a usable state


def test_a_kept_connection_closed_by_the_receiver_is_replaced_silently() -> None:
    gproc.start_receiving()
    me = os.getpid()
    gproc.send(me, "one", "g")
    assert gproc.receive("g", timeout=5).text == "one"
    listener.stop()  # closes every connection, ours included; our kept end does not know yet
    gproc.start_receiving()
    gproc.send(me, "two", "g")  # the kept connection fails before a byte goes out: reconnect
    listener.stop()
    gproc.start_receiving()
    asyncio.run(aio.send(me, "three", "g"))  # the same, from the asyncio face
    assert [gproc.receive("g", timeout=5).text for _ in range(2)] == ["two", "three"]


def test_bad_arguments_are_refused_before_anything_is_taken_or_sent() -> None:
    gproc.start_receiving()
    me = os.getpid()
    gproc.send(me, "kept", "g")  # a kept connection exists
    for bad in (-1.0, -3):
        try:
            gproc.send(me, "x", "g", timeout=bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"timeout={bad} accepted")
    # The kept connection survived the refusals and still works.
    assert len(sender._idle[me]) == 1
    gproc.send(me, "after", "g")
    assert [gproc.receive("g", timeout=5).text for _ in range(2)] == ["kept", "after"]


def test_ctrl_c_right_after_a_channel_went_back_to_the_pool_leaves_it_usable() -> None:
    # Ctrl+C can land at any bytecode, also just after send() put its connection back in the
    # pool (the check after the append). The pooled connection must not then be closed under
    # the pool: the next send() would fail with a raw "Bad file descriptor". Raised by a trace
    # function at exactly that line (a real SIGINT lands there only by chance).
    gproc.start_receiving()
    me = os.getpid()
    gproc.send(me, "kept", "g")  # a kept connection: the next send takes the plain start
    try:
        with interrupted_at(sender._give_back, "return"):
            gproc.send(me, "interrupted", "g")
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("not interrupted")
    gproc.send(me, "after", "g")
    assert [gproc.receive("g", timeout=5).text for _ in range(3)] == [
        "kept",
        "interrupted",  # its ack had arrived: it was queued
        "after",
    ]
