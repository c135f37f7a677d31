"""The sending side, written once as operations (see ``gproc._drive``) for both APIs.

A connection to a receiver (a *channel*) is expensive next to a small message, so channels are
kept per target pid and reused. A channel is used by one operation at a time (taken from the pool,
given back only when everything sent on it is accounted for), which keeps the protocol state of a
channel simple: every message on it is acknowledged, or refused as FULL, before the next one.
:func:`send_many` pipelines many messages on one channel instead.

What a sender can conclude, and what it raises:

- no process with that pid (or a zombie): ``ProcessNotFound`` at once;
- the process exists but has no socket yet (it has not started receiving), or the socket there
  is not that process's (wrong peer pid or start time: a stale file, a reused pid): retry with a
  short backoff until the timeout, then ``NotReceiving``;
- the message is bigger than the receiver takes: ``MessageTooLarge`` before a byte of it is sent;
- the queue is full: the receiver says so (FULL); wait and resend until the timeout, then
  ``QueueFull``. Nothing was queued;
- the connection breaks before the acknowledgement: ``ConnectionLost``, never success. (A cached
  connection found closed *before* a byte of the message was written is simply replaced.)

Forking: a child gets copies of the parent's connections; the at-fork hook drops the child's
copies (without a word on the wire) so parent and child never interleave bytes on one socket.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from collections import deque
from collections.abc import Iterable

from .._drive import Op, Wait, deadline_after, run_async, run_sync, sleep
from .._errors import (
    ConnectionLost,
    MessageTooLarge,
    MessagingError,
    NotReceiving,
    ProcessNotFound,
    QueueFull,
    ReceiveTimeout,
)
from .._procfs import start_ticks
from . import protocol as proto
from .listener import peer_credentials
from .runtime_dir import runtime_dir, socket_path

__all__ = ["request", "send", "send_async", "send_many", "send_sync", "status"]

#: Retry delays while a process is not receiving yet or its queue is full (doubling, capped).
_FIRST_BACKOFF = 0.001
_MAX_BACKOFF = 0.02
#: Idle channels kept per target pid.
_MAX_IDLE = 32
#: Small messages are joined to their header (one send); big ones go out without a copy.
_JOIN_BELOW = 64 * 1024
_RECV_CHUNK = 64 * 1024
#: Big sends keep this much in flight in the kernel (fewer context switches per MiB).
_SNDBUF = 1024 * 1024
#: The most data one frame can carry, whatever the group.
_WIRE_LIMIT = proto.MAX_PAYLOAD - proto.MAX_GROUP_BYTES - 16
#: A group name this short (in characters) cannot exceed the limit in UTF-8 bytes.
_SHORT_GROUP = proto.MAX_GROUP_BYTES // 4


class _PeerGone(Exception):
    """The connection closed or reset under us; ``unsent`` when no byte of the frame went out."""

    def __init__(self, unsent: bool) -> None:
        super().__init__()
        self.unsent = unsent


class _Channel:
    __slots__ = (
        "big",
        "decoder",
        "fd",
        "frames",
        "generation",
        "max_message",
        "pid",
        "poller",
        "prefix",
        "pushback",
        "seq",
        "sock",
    )

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pid = pid
        self.seq = 0
        self.max_message = 0
        self.prefix = b""  # the client hello, sent together with the first frame
        self.decoder = proto.FrameDecoder(
            proto.FROM_RECEIVER, proto.payload_limit(proto.DEFAULT_MAX_MESSAGE)
        )
        self.frames: deque[tuple[int, proto.Payload]] = deque()
        # Bytes that send()'s inline ack wait read but that were not the ack it expected (b"":
        # the connection ended): the operation decodes them before reading more.
        self.pushback: bytes | None = None
        self.generation = _generation
        self.big = False  # SO_SNDBUF raised for big messages
        # The sync driver waits for this channel's acks with this poll object (see Wait.poller):
        # a channel serves one operation at a time, so one poll object is never shared.
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN | select.POLLPRI)

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------- the channel pool

_idle: dict[int, list[_Channel]] = {}
_generation = 0

# No lock around the pool: every step is one list.pop/append or dict.setdefault, each atomic (under
# the GIL, and per object on free-threaded builds), so a channel is handed to exactly one taker.
# A lock cost a third of a microsecond per message, and one held by another thread at fork time
# would have to be replaced in the child. (The idle limit may be overshot by a racing thread:
# harmless.)


def _take(pid: int) -> _Channel | None:
    channels = _idle.get(pid)
    if channels:
        try:
            return channels.pop()
        except IndexError:  # another thread took the last one
            pass
    return None


def _give_back(channel: _Channel) -> None:
    if channel.generation == _generation:
        channels = _idle.setdefault(channel.pid, [])
        if len(channels) < _MAX_IDLE:
            channels.append(channel)
            return
    channel.close()


def _drain(channels: list[_Channel]) -> None:
    """Close every channel of ``channels``, each popped first so no sender can take it too."""
    while True:
        try:
            channel = channels.pop()
        except IndexError:
            return
        channel.close()


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1
    for channels in list(_idle.values()):
        _drain(channels)  # our copies only; the parent's connections are untouched
    _idle.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def forget_idle() -> None:
    """Close every idle channel (tests and long-lived programs that want to let go)."""
    for channels in list(_idle.values()):
        _drain(channels)


# --------------------------------------------------------------------------- validation


def _check_pid(pid: object) -> int:
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    if pid <= 0:
        raise ValueError(f"pid must be positive, not {pid}")
    return pid


_deadline = deadline_after


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _pause(delay: float, deadline: float | None) -> Op[None]:
    if deadline is not None:
        delay = min(delay, deadline - time.monotonic())
    if delay > 0:
        yield from sleep(delay)


# --------------------------------------------------------------------------- wire steps


def _write(
    channel: _Channel, data: bytes | memoryview, deadline: float | None, *, started: int = 0
) -> Op[bool]:
    """Write all of ``data``; False on timeout. Raises _PeerGone (``started``: bytes of this
    frame already written before ``data``)."""
    sock = channel.sock
    view: bytes | memoryview = data
    written = started
    while True:
        try:
            sent = sock.send(view, socket.MSG_NOSIGNAL)
        except BlockingIOError:
            sent = 0
        except (BrokenPipeError, ConnectionResetError):
            raise _PeerGone(unsent=written == 0) from None
        written += sent
        if sent == len(view):
            return True
        view = memoryview(view)[sent:]
        ready = yield Wait(writable=(channel.fd,), deadline=deadline)
        if not ready and _expired(deadline):
            return False


def _write_rest(
    channel: _Channel,
    frame: bytes,
    sent: int,
    payload: bytes | memoryview,
    big: bool,
    deadline: float | None,
) -> Op[bool]:
    """The slow path of writing a frame: the rest of ``frame`` after ``sent`` bytes, then (when
    ``big``) ``payload``; False on timeout."""
    if sent != len(frame) and not (
        yield from _write(channel, memoryview(frame)[sent:], deadline, started=sent)
    ):
        return False
    if not big:
        return True
    if not channel.big:
        channel.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
        channel.big = True
    return (yield from _write(channel, payload, deadline, started=len(frame)))


def _next_frame(channel: _Channel, deadline: float | None) -> Op[tuple[int, proto.Payload] | None]:
    """The next frame from the receiver; None on timeout. Raises _PeerGone, ProtocolError."""
    frames = channel.frames
    decoder = channel.decoder
    sock = channel.sock
    while not frames:
        pushback = channel.pushback
        if pushback is not None:
            channel.pushback = None
            if not pushback:
                raise _PeerGone(unsent=False)
            frames.extend(decoder.feed(pushback))
            continue
        ready = yield Wait(readable=(channel.fd,), deadline=deadline)
        if not ready:
            if _expired(deadline):
                return None
            continue
        try:
            body = decoder.body_view()
            if body is not None:
                with body:
                    count = sock.recv_into(body)
                if count == 0:
                    raise _PeerGone(unsent=False)
                frames.extend(decoder.advance(count))
            else:
                data = sock.recv(_RECV_CHUNK)
                if not data:
                    raise _PeerGone(unsent=False)
                frames.extend(decoder.feed(data))
        except BlockingIOError:
            continue
        except ConnectionResetError:
            raise _PeerGone(unsent=False) from None
    return frames.popleft()


def _try_connect(path: str, pid: int) -> _Channel | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if sock.connect_ex(path) != 0:  # ENOENT, ECONNREFUSED (stale file), EAGAIN (backlog)
            sock.close()
            return None
        peer_pid, peer_uid, _ = peer_credentials(sock)
        if peer_pid != pid or peer_uid != os.geteuid():
            # Not the process we mean: a socket file whose listener is another process.
            sock.close()
            return None
        return _Channel(sock, pid)
    except OSError:
        sock.close()
        raise


def _connect(pid: int, group: str, deadline: float | None, timeout: float | None) -> Op[_Channel]:
    delay = _FIRST_BACKOFF
    while True:
        ticks = start_ticks(pid)
        if ticks is None:
            raise ProcessNotFound(f"no process with pid {pid}", pid=pid)
        directory = runtime_dir(create=False)
        channel = None
        if directory is not None:
            try:
                channel = _try_connect(socket_path(directory, pid), pid)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EPERM):
                    raise
        if channel is not None:
            hello = None
            try:
                frame = yield from _next_frame(channel, deadline)
                if frame is not None and frame[0] == proto.SERVER_HELLO:
                    hello = proto.parse_server_hello(frame[1])
            except (_PeerGone, proto.ProtocolError, OSError):
                hello = None
            except BaseException:
                channel.close()
                raise
            if hello is not None and hello.pid == pid and hello.start_ticks == ticks:
                channel.max_message = hello.max_message
                channel.prefix = proto.client_hello(proto.DEFAULT_MAX_MESSAGE)
                return channel
            channel.close()  # refused us, or is not the process that has this pid now
        if _expired(deadline):
            raise NotReceiving(
                f"pid {pid} is not receiving messages (waited {timeout}s)", pid=pid, group=group
            )
        yield from _pause(delay, deadline)
        delay = min(delay * 2, _MAX_BACKOFF)


def _await_ack(channel: _Channel, seq: int, deadline: float | None) -> Op[int | None]:
    """ACK_OK, ACK_FULL, or None on timeout."""
    while True:
        frame = yield from _next_frame(channel, deadline)
        if frame is None:
            return None
        kind, payload = frame
        if kind == proto.ACK:
            status, acked = proto.parse_ack(payload)
            if acked == seq:
                return status
            if acked > seq:
                raise proto.ProtocolError(f"ack for seq {acked}, which was never sent")
        elif kind == proto.REPLY:
            channel.frames.appendleft(frame)  # a reply implies the request was queued
            return proto.ACK_OK
        else:
            raise proto.ProtocolError(f"unexpected frame kind {kind:#04x} while awaiting an ack")


def _read_ack(channel: _Channel, seq: int) -> int | None:
    """After a readiness wait: ACK_OK when what arrived is exactly the ack of ``seq`` (compared
    as bytes: cheaper than decoding); otherwise None, with whatever did arrive handed to the
    decoder, for :func:`_await_ack` to judge."""
    try:
        data = channel.sock.recv(_RECV_CHUNK)
    except BlockingIOError:
        return None
    except ConnectionResetError:
        raise _PeerGone(unsent=False) from None
    if data == proto.ok_ack(seq):
        return proto.ACK_OK
    if not data:
        raise _PeerGone(unsent=False)
    channel.frames.extend(channel.decoder.feed(data))
    return None


def _await_reply(channel: _Channel, seq: int, deadline: float | None) -> Op[bytes | None]:
    while True:
        frame = yield from _next_frame(channel, deadline)
        if frame is None:
            return None
        kind, payload = frame
        if kind != proto.REPLY:
            raise proto.ProtocolError(f"unexpected frame kind {kind:#04x} while awaiting a reply")
        replied, data = proto.parse_reply(payload)
        if replied == seq:
            return data
        raise proto.ProtocolError(f"reply for seq {replied}, expected {seq}")


# --------------------------------------------------------------------------- operations


def _lost(pid: int, group: str, why: str) -> ConnectionLost:
    return ConnectionLost(
        f"connection to pid {pid} broke {why}; the message may not have been queued",
        pid=pid,
        group=group,
    )


def _send_frame(
    channel: _Channel, kind: int, seq: int, raw_group: bytes, payload: bytes | memoryview, size: int
) -> tuple[bytes, int, bool]:
    """Frame a message and write what the socket takes now, without waiting: ``(frame, bytes
    written, big)``. A small message is one buffer; a big one's data is not in ``frame`` (it
    follows without a copy, see _write_rest). Raises _PeerGone when the connection is closed."""
    head = proto.message_head(kind, seq, raw_group, size)
    if channel.prefix:
        # The client hello rides with the first frame. Dropped from the channel now: a frame not
        # written whole closes the channel, and a resend (after FULL) must not repeat it.
        head = channel.prefix + head
        channel.prefix = b""
    big = size >= _JOIN_BELOW
    frame = head if big else head + payload
    try:
        sent = channel.sock.send(frame, socket.MSG_NOSIGNAL)
    except BlockingIOError:
        sent = 0
    except (BrokenPipeError, ConnectionResetError):
        raise _PeerGone(unsent=True) from None
    return frame, sent, big


def _arguments(
    pid: object, data: object, group: object, timeout: float | None
) -> tuple[int, bytes | memoryview, bytes, float | None]:
    """``(pid, payload, UTF-8 group, deadline)``, checked: TypeError/ValueError for bad ones,
    MessageTooLarge for what the wire format cannot carry.

    A small message costs little more than its syscalls, so the exact-type case is taken inline
    and the general (validating) helpers serve anything else.
    """
    target = pid if type(pid) is int and pid > 0 else _check_pid(pid)
    payload = data if type(data) is bytes else proto.to_payload(data)
    if type(group) is str and len(group) <= _SHORT_GROUP:
        raw_group = group.encode()  # cannot be too long: at most 4 UTF-8 bytes per character
    else:
        raw_group = proto.group_bytes(group)  # (``group: str`` is only what callers promise)
    if type(timeout) is float and timeout >= 0:
        deadline: float | None = time.monotonic() + timeout
    else:
        deadline = _deadline(timeout)
    if len(payload) > _WIRE_LIMIT:
        raise MessageTooLarge(
            f"message of {len(payload)} bytes is too large for the wire format",
            pid=target,
            group=str(group),
        )
    return target, payload, raw_group, deadline


#: What :func:`_begin` did: the channel, the seq of the message whose frame it wrote, the
#: deadline, and the part of the frame not written yet (None: all of it went out).
_Begun = tuple["_Channel", int, "float | None", "memoryview | None"]


def _exchange(
    pid: object,
    data: object,
    group: str,
    timeout: float | None,
    want_reply: bool,
    begun: _Begun | None = None,
) -> Op[bytes | None]:
    target, payload, raw_group, deadline = _arguments(pid, data, group, timeout)
    size = len(payload)
    kind = proto.REQUEST if want_reply else proto.MESSAGE
    if begun is None:
        channel = _take(target)
    else:
        channel, _, deadline, _ = begun  # its frame is written already: see below
    reused = channel is not None
    while True:
        if channel is None:
            channel = yield from _connect(target, group, deadline, timeout)
        if size > channel.max_message:
            _give_back(channel)
            raise MessageTooLarge(
                f"message of {size} bytes exceeds pid {target}'s limit of "
                f"{channel.max_message} bytes; nothing was sent",
                pid=target,
                group=group,
            )
        settled = True  # every byte sent on the channel is accounted for: it can be reused
        try:
            backoff = _FIRST_BACKOFF
            while True:
                settled = False
                if begun is not None:
                    # _begin wrote this message's frame (or the start of it): go on from there.
                    _, seq, _, rest = begun
                    begun = None
                    # (started=1: part of the frame went out, so a broken pipe is ConnectionLost.)
                    whole = rest is None or (yield from _write(channel, rest, deadline, started=1))
                else:
                    seq = channel.seq + 1
                    frame, sent, big = _send_frame(channel, kind, seq, raw_group, payload, size)
                    whole = not (big or sent != len(frame)) or (
                        yield from _write_rest(channel, frame, sent, payload, big, deadline)
                    )
                if not whole:
                    raise NotReceiving(
                        f"pid {target} did not read the message within {timeout}s",
                        pid=target,
                        group=group,
                    )
                status = None
                # The fast path of the usual round trip: one wait, one read, and what arrives is
                # exactly this message's ack. (Positional Wait: half the cost of keywords.)
                if (
                    not channel.frames
                    and channel.pushback is None
                    and channel.decoder.idle()
                    and (yield Wait((channel.fd,), (), deadline, channel.poller))
                ):
                    status = _read_ack(channel, seq)
                if status is None:
                    status = yield from _await_ack(channel, seq, deadline)
                    if status is None:
                        raise NotReceiving(
                            f"pid {target} did not acknowledge the message within {timeout}s "
                            "(it may or may not have been queued)",
                            pid=target,
                            group=group,
                        )
                settled = True
                if status == proto.ACK_OK:
                    channel.seq = seq
                    break
                # FULL: nothing was queued; wait a little and offer it again.
                yield from _pause(backoff, deadline)
                if _expired(deadline):
                    raise QueueFull(
                        f"pid {target}'s queue for group {group!r} stayed full for {timeout}s; "
                        "the message was not queued",
                        pid=target,
                        group=group,
                    )
                backoff = min(backoff * 2, _MAX_BACKOFF)
            if not want_reply:
                return None
            settled = False
            reply = yield from _await_reply(channel, seq, deadline)
            if reply is None:
                raise ReceiveTimeout(
                    f"no reply from pid {target} in group {group!r} within {timeout}s",
                    pid=target,
                    group=group,
                )
            settled = True
            return reply
        except _PeerGone as gone:
            settled = False
            if gone.unsent and reused:
                # A kept connection that the receiver had closed meanwhile: nothing of this
                # message went out, so a new connection is safe (and finds out if it still runs).
                channel.close()
                channel, reused = None, False
                continue
            raise _lost(target, group, "before the acknowledgement") from None
        except proto.ProtocolError as exc:
            settled = False
            raise MessagingError(
                f"pid {target} answered with something that is not gproc protocol: {exc}",
                pid=target,
                group=group,
            ) from None
        finally:
            if channel is not None:
                if settled:
                    _give_back(channel)
                else:
                    channel.close()


# --------------------------------------------------------------------------- send(): two faces


def _begin(pid: object, data: object, group: object, timeout: float | None) -> _Begun | None:
    """The start of ``send()`` in its commonest case, as a plain call: a small message and a
    kept connection. Checked (:func:`_arguments`, as the operation does), framed and written;
    the rest (the ack) is
    :func:`_exchange`'s, resumed with what this returns. None: nothing was done, and the
    operation does it all.

    Why: a generator and a driver round trip cost about as much as everything else a small
    send() does. Both faces start here; the sync face can then often finish with one inline
    wait (:func:`_ack_here`), never running the operation at all.
    """
    target, payload, raw_group, deadline = _arguments(pid, data, group, timeout)
    if type(payload) is not bytes or len(payload) >= _JOIN_BELOW:
        return None
    channel = _take(target)
    if channel is None:
        return None
    try:
        size = len(payload)
        if not (
            size > channel.max_message
            or channel.prefix
            or channel.frames
            or channel.pushback is not None
            or not channel.decoder.idle()
        ):
            seq = channel.seq + 1
            try:
                frame, sent, _ = _send_frame(channel, proto.MESSAGE, seq, raw_group, payload, size)
            except _PeerGone:
                channel.close()  # closed by the receiver while kept: the operation connects anew
                return None
            if sent:
                rest = memoryview(frame)[sent:] if sent != len(frame) else None
                return channel, seq, deadline, rest
            # Nothing written: the operation waits for room.
    except BaseException:
        channel.close()  # an exception mid-way (Ctrl+C): this channel's state is unknown
        raise
    # Given back outside the try: Ctrl+C just after it must not close a channel in the pool.
    _give_back(channel)
    return None


def _ack_here(begun: _Begun) -> bool:
    """The sync face's wait for the ack of the message :func:`_begin` wrote, done inline: True
    once that exact ack arrived (the channel is back in the pool). False for anything else (a
    partial write, a timeout, other bytes, the end of the connection): the operation takes it
    from there, with whatever was read left in ``channel.pushback``."""
    channel, seq, deadline, rest = begun
    if rest is not None:
        return False
    try:
        if deadline is None:
            ready = channel.poller.poll()
        else:
            remaining = (deadline - time.monotonic()) * 1000
            ready = channel.poller.poll(remaining if remaining > 0 else 0)  # (rounds up)
        if not ready:
            return False
        try:
            data = channel.sock.recv(_RECV_CHUNK)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            data = b""
        if data != proto.ok_ack(seq):
            channel.pushback = data
            return False
    except BaseException:
        channel.close()  # Ctrl+C while waiting: the message may or may not be queued
        raise
    # Given back outside the try: Ctrl+C just after it must not close a channel in the pool.
    channel.seq = seq
    _give_back(channel)
    return True


def send_sync(pid: int, data: bytes | str, group: str = "", *, timeout: float | None = 5.0) -> None:
    """Send ``data`` to process ``pid``; returns once the receiver has queued it."""
    begun = _begin(pid, data, group, timeout)
    if begun is None or not _ack_here(begun):
        run_sync(_exchange(pid, data, group, timeout, False, begun))


async def send_async(
    pid: int, data: bytes | str, group: str = "", *, timeout: float | None = 5.0
) -> None:
    """Send ``data`` to process ``pid``; returns once the receiver has queued it."""
    await run_async(_exchange(pid, data, group, timeout, False, _begin(pid, data, group, timeout)))


# They are gproc.send and gproc.aio.send.
send_sync.__name__ = send_sync.__qualname__ = "send"
send_async.__name__ = send_async.__qualname__ = "send"


def send(pid: int, data: bytes | str, group: str = "", *, timeout: float | None = 5.0) -> Op[None]:
    """Send ``data`` to process ``pid``; returns once the receiver has queued it."""
    # Returned, not delegated with ``yield from``: one generator less on the hot path.
    return _exchange(pid, data, group, timeout, False)  # type: ignore[return-value]


def request(
    pid: int, data: bytes | str, group: str = "", *, timeout: float | None = 5.0
) -> Op[bytes]:
    """Send ``data`` as a request and return the receiver's :meth:`Message.reply`."""
    reply = yield from _exchange(pid, data, group, timeout, True)
    assert reply is not None
    return reply


def send_many(
    pid: int,
    items: Iterable[bytes | str],
    group: str = "",
    *,
    timeout: float | None = 5.0,
    window: int = 512,
) -> Op[int]:
    """Send every item of ``items`` in order, pipelined on one connection; returns the count.

    Up to ``window`` messages are in flight before their acknowledgements (which come batched).
    On failure the exception's ``delivered`` says how many leading items were queued.
    """
    target = _check_pid(pid)
    raw_group = proto.group_bytes(group)
    assert isinstance(group, str)
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    deadline = _deadline(timeout)
    channel = _take(target)
    if channel is None:
        channel = yield from _connect(target, group, deadline, timeout)
    source = iter(items)
    exhausted = False
    in_flight: deque[tuple[int, bytes]] = deque()  # (seq, frame) written, not yet acknowledged
    delivered = 0
    resend: deque[tuple[int, bytes]] = deque()
    out = bytearray()
    resend_at = 0.0
    backoff = _FIRST_BACKOFF
    settled = False
    sock = channel.sock
    try:
        while True:
            # 1. Fill the output buffer: resends first (after a FULL), then new items.
            now = time.monotonic()
            if resend and now >= resend_at and not out:
                while resend:
                    seq, frame = resend.popleft()
                    in_flight.append((seq, frame))
                    out += frame
            while not resend and not exhausted and len(in_flight) < window and len(out) < 262144:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                payload = proto.to_payload(item)
                if len(payload) > channel.max_message:
                    raise MessageTooLarge(
                        f"message #{delivered + len(in_flight)} of {len(payload)} bytes exceeds "
                        f"pid {target}'s limit of {channel.max_message} bytes",
                        pid=target,
                        group=group,
                    )
                channel.seq += 1
                frame = proto.message_head(proto.MESSAGE, channel.seq, raw_group, len(payload))
                frame += payload
                in_flight.append((channel.seq, frame))
                out += frame
            if exhausted and not in_flight and not resend:
                settled = True
                return delivered
            # 2. Write what we can.
            if out:
                if channel.prefix:
                    out[:0] = channel.prefix
                    channel.prefix = b""
                try:
                    sent = sock.send(out, socket.MSG_NOSIGNAL)
                except BlockingIOError:
                    sent = 0
                except (BrokenPipeError, ConnectionResetError):
                    raise _lost(target, group, "while sending") from None
                del out[:sent]
            # 3. Wait for acks (and for room to write, or for the backoff to pass).
            wait_deadline = deadline
            if resend and (deadline is None or resend_at < deadline):
                wait_deadline = resend_at
            ready = yield Wait(
                readable=(channel.fd,),
                writable=(channel.fd,) if out else (),
                deadline=wait_deadline,
            )
            if channel.fd in ready:
                data: bytes | None
                try:
                    data = sock.recv(_RECV_CHUNK)
                except BlockingIOError:
                    data = None  # a spurious wake-up
                except ConnectionResetError:
                    raise _lost(target, group, "before the acknowledgement") from None
                if data is not None:
                    if not data:
                        raise _lost(target, group, "before the acknowledgement")
                    for kind, body in channel.decoder.feed(data):
                        if kind != proto.ACK:
                            raise proto.ProtocolError(f"unexpected frame kind {kind:#04x}")
                        status, acked = proto.parse_ack(body)
                        while in_flight and in_flight[0][0] < acked:
                            in_flight.popleft()
                            delivered += 1
                        if status == proto.ACK_OK:
                            if in_flight and in_flight[0][0] == acked:
                                in_flight.popleft()
                                delivered += 1
                            backoff = _FIRST_BACKOFF
                        else:
                            # Refused from `acked` on: resend those, in order, after a pause.
                            resend.extend(in_flight)
                            in_flight.clear()
                            resend_at = time.monotonic() + backoff
                            backoff = min(backoff * 2, _MAX_BACKOFF)
            elif not ready and _expired(deadline):
                if resend:
                    raise QueueFull(
                        f"pid {target}'s queue for group {group!r} stayed full for {timeout}s",
                        pid=target,
                        group=group,
                    )
                raise NotReceiving(
                    f"pid {target} did not acknowledge within {timeout}s", pid=target, group=group
                )
    except MessagingError as exc:
        exc.delivered = delivered
        raise
    except proto.ProtocolError as exc:
        err = MessagingError(f"pid {target} broke the protocol: {exc}", pid=target, group=group)
        err.delivered = delivered
        raise err from None
    finally:
        if settled:
            _give_back(channel)
        else:
            channel.close()


def status(pid: int, *, timeout: float | None = 2.0) -> Op[list[tuple[str, int]]]:
    """The groups of a receiving process and how many messages each has queued."""
    target = _check_pid(pid)
    deadline = _deadline(timeout)
    channel = yield from _connect(target, "", deadline, timeout)
    try:
        if not (yield from _write(channel, channel.prefix + proto.status_query(), deadline)):
            raise NotReceiving(f"pid {target} did not answer within {timeout}s", pid=target)
        frame = yield from _next_frame(channel, deadline)
        if frame is None or frame[0] != proto.STATUS:
            raise NotReceiving(f"pid {target} did not answer within {timeout}s", pid=target)
        return proto.parse_status(frame[1])
    except _PeerGone:
        raise _lost(target, "", "before the answer") from None
    finally:
        channel.close()
