"""The wire format of gproc messaging: framing, encoding and validation, with no I/O at all.

Every frame is a 5-byte header, ``kind`` (1 byte) and ``length`` (unsigned 32-bit big-endian, the
size of the payload that follows), then the payload. Integers are big-endian. Nothing is ever
pickled or evaluated: a payload is a few fixed-size integers, a UTF-8 group name and raw bytes.

A connection goes like this (docs/messaging.md has the full table)::

    receiver -> sender   H  server hello: "GPRC", version, pid, start time, max message size
    sender   -> receiver h  client hello: "GPRC", version, max reply size
    sender   -> receiver M  message: seq, group, data        (Q: the same, expecting a reply)
    receiver -> sender   A  ack: status, seq                 (cumulative: all up to seq)
    receiver -> sender   R  reply: seq, data                 (answers the request seq)
    sender   -> receiver S  status query (empty)             (for ``gproc ps``)
    receiver -> sender   s  status: per group name and queued count

A decoder refuses unknown kinds and payloads over its size limit *from the header*, before it
buffers a byte of the payload, so a hostile peer cannot make a receiver allocate more than one
maximum-size message per connection.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ACK_FULL",
    "ACK_OK",
    "DEFAULT_MAX_MESSAGE",
    "MAGIC",
    "MAX_GROUP_BYTES",
    "VERSION",
    "ClientHello",
    "FrameDecoder",
    "ProtocolError",
    "ServerHello",
]

MAGIC = b"GPRC"
VERSION = 1

#: Messages up to this many bytes of data are accepted unless a receiver says otherwise.
DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
#: The longest group name, in UTF-8 bytes (its length travels as 16 bits).
MAX_GROUP_BYTES = 0xFFFF
#: The largest payload the 32-bit length can announce.
MAX_PAYLOAD = 0xFFFFFFFF

# Frame kinds. ASCII letters, so a hexdump of a capture is readable.
SERVER_HELLO = ord("H")
CLIENT_HELLO = ord("h")
MESSAGE = ord("M")
REQUEST = ord("Q")
ACK = ord("A")
REPLY = ord("R")
STATUS_QUERY = ord("S")
STATUS = ord("s")

#: What a receiver accepts from a sender, and what a sender accepts from a receiver.
FROM_SENDER = frozenset({CLIENT_HELLO, MESSAGE, REQUEST, STATUS_QUERY})
FROM_RECEIVER = frozenset({SERVER_HELLO, ACK, REPLY, STATUS})

ACK_OK = 0
ACK_FULL = 1

HEADER = struct.Struct("!BI")
_SERVER_HELLO = struct.Struct("!4sBxxxIQQ")
_CLIENT_HELLO = struct.Struct("!4sBxxxQ")
_MESSAGE_HEAD = struct.Struct("!BIQH")  # frame header + seq + group length
_MESSAGE_FIXED = _MESSAGE_HEAD.size - HEADER.size
_SEQ_GROUP = struct.Struct("!QH")
_ACK = struct.Struct("!BIBQ")
_ACK_BODY = struct.Struct("!BQ")
_REPLY_HEAD = struct.Struct("!BIQ")
_SEQ = struct.Struct("!Q")
_STATUS_COUNT = struct.Struct("!I")
_STATUS_ITEM = struct.Struct("!HQ")

#: Payloads at least this big are filled in place by the caller (see FrameDecoder.body_view).
BIG_PAYLOAD = 256 * 1024
#: A reusing decoder keeps a buffer for big payloads up to this size.
_KEEP_BIG = 8 * 1024 * 1024


Payload = bytes | bytearray | memoryview


class ProtocolError(ValueError):
    """A peer sent something that is not valid gproc wire format; the connection must close."""


@dataclass(frozen=True, slots=True)
class ServerHello:
    pid: int
    start_ticks: int
    max_message: int
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class ClientHello:
    max_reply: int
    version: int = VERSION


def payload_limit(max_message: int) -> int:
    """The largest frame payload a peer allowing ``max_message`` data bytes can receive."""
    return min(MAX_PAYLOAD, max_message + _MESSAGE_FIXED + MAX_GROUP_BYTES)


# --------------------------------------------------------------------------- encoding


def server_hello(pid: int, start_ticks: int, max_message: int) -> bytes:
    return HEADER.pack(SERVER_HELLO, _SERVER_HELLO.size) + _SERVER_HELLO.pack(
        MAGIC, VERSION, pid, start_ticks, max_message
    )


def client_hello(max_reply: int) -> bytes:
    return HEADER.pack(CLIENT_HELLO, _CLIENT_HELLO.size) + _CLIENT_HELLO.pack(
        MAGIC, VERSION, max_reply
    )


def message_head(kind: int, seq: int, group: bytes, size: int) -> bytes:
    """Header and group of a message (or request) frame whose data has ``size`` bytes.

    The data itself is not copied in: the caller sends it right after (scatter/gather for big
    messages, one concatenation for small ones).
    """
    return _MESSAGE_HEAD.pack(kind, _MESSAGE_FIXED + len(group) + size, seq, len(group)) + group


def ack(status: int, seq: int) -> bytes:
    return _ACK.pack(ACK, _ACK_BODY.size, status, seq)


#: ``ok_ack(seq)`` is ``ack(ACK_OK, seq)``, with the constant fields bound: a sender builds it
#: for every message, to compare what arrives with it.
ok_ack = functools.partial(_ACK.pack, ACK, _ACK_BODY.size, ACK_OK)


def reply_head(seq: int, size: int) -> bytes:
    return _REPLY_HEAD.pack(REPLY, _SEQ.size + size, seq)


def status_query() -> bytes:
    return HEADER.pack(STATUS_QUERY, 0)


def status(groups: Iterable[tuple[str, int]]) -> bytes:
    items = list(groups)
    parts = [_STATUS_COUNT.pack(len(items))]
    for name, queued in items:
        raw = name.encode()
        parts.append(_STATUS_ITEM.pack(len(raw), queued) + raw)
    body = b"".join(parts)
    return HEADER.pack(STATUS, len(body)) + body


# --------------------------------------------------------------------------- decoding payloads


def parse_server_hello(payload: Payload) -> ServerHello:
    if len(payload) != _SERVER_HELLO.size:
        raise ProtocolError(f"server hello of {len(payload)} bytes")
    magic, version, pid, start_ticks, max_message = _SERVER_HELLO.unpack(payload)
    if magic != MAGIC:
        raise ProtocolError("not a gproc receiver (bad magic)")
    if version != VERSION:
        raise ProtocolError(f"receiver speaks protocol version {version}, we speak {VERSION}")
    return ServerHello(pid=pid, start_ticks=start_ticks, max_message=max_message, version=version)


def parse_client_hello(payload: Payload) -> ClientHello:
    if len(payload) != _CLIENT_HELLO.size:
        raise ProtocolError(f"client hello of {len(payload)} bytes")
    magic, version, max_reply = _CLIENT_HELLO.unpack(payload)
    if magic != MAGIC:
        raise ProtocolError("not a gproc sender (bad magic)")
    if version != VERSION:
        raise ProtocolError(f"sender speaks protocol version {version}, we speak {VERSION}")
    return ClientHello(max_reply=max_reply, version=version)


def parse_message(payload: Payload) -> tuple[int, bytes, bytes]:
    """``(seq, group as raw UTF-8, data)`` of a message or request payload."""
    size = len(payload)
    if size < _MESSAGE_FIXED:
        raise ProtocolError(f"message payload of {size} bytes is shorter than its header")
    seq, group_len = _SEQ_GROUP.unpack_from(payload)
    data_at = _MESSAGE_FIXED + group_len
    if data_at > size:
        raise ProtocolError("group name runs past the end of the message")
    if isinstance(payload, bytes):
        return seq, payload[_MESSAGE_FIXED:data_at], payload[data_at:]
    # A big payload arrives in a bytearray: slice through a view so the data is copied once.
    with memoryview(payload) as view:
        return seq, bytes(view[_MESSAGE_FIXED:data_at]), bytes(view[data_at:])


# (Module constants, not attribute lookups: lone_message runs once per message received.)
_FRAME_HEAD = HEADER.size
_LONE_HEAD = _MESSAGE_HEAD.size


def lone_message(view: memoryview, count: int) -> tuple[int, bytes, bytes] | None:
    """``(seq, group as raw UTF-8, data)`` when the first ``count`` bytes of ``view`` are exactly
    one whole message frame; ``None`` for anything else (the caller then uses a FrameDecoder).

    The receiver's hot path: one small message per read is by far the commonest case, and this
    takes it apart with one unpack and two copies, without a frame list or a payload copy.
    """
    if count < _LONE_HEAD:
        return None
    kind, size, seq, group_len = _MESSAGE_HEAD.unpack_from(view)
    data_at = _LONE_HEAD + group_len
    if kind != MESSAGE or size != count - _FRAME_HEAD or data_at > count:
        return None
    return seq, bytes(view[_LONE_HEAD:data_at]), bytes(view[data_at:count])


def decode_group(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ProtocolError("group name is not valid UTF-8") from None


def parse_ack(payload: Payload) -> tuple[int, int]:
    """``(status, seq)``."""
    if len(payload) != _ACK_BODY.size:
        raise ProtocolError(f"ack of {len(payload)} bytes")
    status_code, seq = _ACK_BODY.unpack(payload)
    if status_code not in (ACK_OK, ACK_FULL):
        raise ProtocolError(f"unknown ack status {status_code}")
    return status_code, seq


def parse_reply(payload: Payload) -> tuple[int, bytes]:
    if len(payload) < _SEQ.size:
        raise ProtocolError("reply shorter than its header")
    (seq,) = _SEQ.unpack_from(payload)
    if isinstance(payload, bytes):
        return seq, payload[_SEQ.size :]
    with memoryview(payload) as view:
        return seq, bytes(view[_SEQ.size :])


def parse_status(payload: Payload) -> list[tuple[str, int]]:
    if len(payload) < _STATUS_COUNT.size:
        raise ProtocolError("status shorter than its header")
    (count,) = _STATUS_COUNT.unpack_from(payload)
    at = _STATUS_COUNT.size
    items = []
    for _ in range(count):
        if at + _STATUS_ITEM.size > len(payload):
            raise ProtocolError("status item runs past the end")
        name_len, queued = _STATUS_ITEM.unpack_from(payload, at)
        at += _STATUS_ITEM.size
        if at + name_len > len(payload):
            raise ProtocolError("status group name runs past the end")
        items.append((decode_group(bytes(payload[at : at + name_len])), queued))
        at += name_len
    if at != len(payload):
        raise ProtocolError("trailing bytes after the status")
    return items


# --------------------------------------------------------------------------- framing


class FrameDecoder:
    """Splits a byte stream into ``(kind, payload)`` frames, refusing what is not ours.

    Small frames are assembled in one growing buffer. A payload of :data:`BIG_PAYLOAD` bytes or
    more gets a buffer of its exact size, which the caller may fill in place with ``recv_into``
    (:meth:`body_view` then :meth:`advance`), so a 64 MiB message is copied from the kernel once.
    """

    __slots__ = (
        "_allowed",
        "_big",
        "_big_filled",
        "_big_kind",
        "_buf",
        "_limit",
        "_pos",
        "_reuse",
        "_store",
    )

    def __init__(self, allowed: frozenset[int], max_payload: int, *, reuse: bool = False) -> None:
        """``reuse``: big payloads are views into one buffer kept for the next big frame (saves
        an allocation and its page faults per big message); the caller must be done with a big
        frame before feeding more bytes."""
        self._allowed = allowed
        self._limit = max_payload
        self._buf = bytearray()
        self._pos = 0
        self._big: bytearray | memoryview | None = None
        self._big_kind = 0
        self._big_filled = 0
        self._reuse = reuse
        self._store: bytearray | None = None

    def _big_buffer(self, size: int) -> bytearray | memoryview:
        if not self._reuse or size > _KEEP_BIG:
            return bytearray(size)
        store = self._store
        if store is None or len(store) < size:
            store = self._store = bytearray(max(size, 2 * BIG_PAYLOAD))
        return memoryview(store)[:size]

    def idle(self) -> bool:
        """True when no part of a frame is buffered (the next byte starts a new frame)."""
        return self._big is None and not self._buf

    def body_view(self) -> memoryview | None:
        """The unfilled rest of a big payload, or ``None`` when no big payload is pending."""
        if self._big is None:
            return None
        return memoryview(self._big)[self._big_filled :]

    def advance(self, count: int) -> list[tuple[int, Payload]]:
        """Record ``count`` bytes written into :meth:`body_view`; returns the finished frame."""
        assert self._big is not None
        self._big_filled += count
        if self._big_filled < len(self._big):
            return []
        frame = (self._big_kind, self._big)
        self._big = None
        return [frame]

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, Payload]]:
        """Add received bytes; return every frame they complete, in order.

        Raises :class:`ProtocolError` on an unknown kind or an oversized payload.
        """
        frames: list[tuple[int, Payload]] = []
        if self._big is not None:
            big = self._big
            take = min(len(data), len(big) - self._big_filled)
            big[self._big_filled : self._big_filled + take] = data[:take]
            frames.extend(self.advance(take))
            if take == len(data):
                return frames
            data = data[take:]
        buf = self._buf
        if not buf and type(data) is bytes and len(data) >= 5:
            # The commonest case of all: exactly one small frame (an ack, a reply, a message).
            kind, size = HEADER.unpack_from(data)
            if len(data) == 5 + size and kind in self._allowed and size <= self._limit:
                frames.append((kind, data[5:]))
                return frames
        if not buf:
            # The common case: nothing left over, so frames are cut straight from ``data``.
            data = self._cut(data, frames)
            if not data:
                return frames
        buf += data
        pos = self._pos
        end = len(buf)
        allowed = self._allowed
        with memoryview(buf) as view:
            while end - pos >= 5:
                kind, size = HEADER.unpack_from(buf, pos)
                if kind not in allowed:
                    raise ProtocolError(f"unexpected frame kind {kind:#04x}")
                if size > self._limit:
                    raise ProtocolError(f"frame of {size} bytes exceeds the limit {self._limit}")
                start = pos + 5
                if end - start >= size:
                    frames.append((kind, bytes(view[start : start + size])))
                    pos = start + size
                    continue
                if size >= BIG_PAYLOAD:
                    big = self._big_buffer(size)
                    have = end - start
                    big[:have] = view[start:end]
                    self._big, self._big_kind, self._big_filled = big, kind, have
                    pos = end
                break
        if pos == end:
            buf.clear()
            pos = 0
        elif pos >= 65536:
            del buf[:pos]
            pos = 0
        self._pos = pos
        return frames

    def _cut(
        self, data: bytes | bytearray | memoryview, frames: list[tuple[int, Payload]]
    ) -> memoryview:
        """Take the whole frames at the start of ``data``; return the unconsumed rest."""
        view = memoryview(data)
        end = len(view)
        pos = 0
        allowed = self._allowed
        limit = self._limit
        while end - pos >= 5:
            kind, size = HEADER.unpack_from(view, pos)
            if kind not in allowed:
                raise ProtocolError(f"unexpected frame kind {kind:#04x}")
            if size > limit:
                raise ProtocolError(f"frame of {size} bytes exceeds the limit {limit}")
            start = pos + 5
            if end - start < size:
                if size >= BIG_PAYLOAD:  # straight into the big buffer, skipping _buf
                    big = self._big_buffer(size)
                    big[: end - start] = view[start:end]
                    self._big, self._big_kind, self._big_filled = big, kind, end - start
                    return view[end:]
                break
            frames.append((kind, bytes(view[start : start + size])))
            pos = start + size
        return view[pos:]

    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame (for end-of-stream checks)."""
        pending = len(self._buf) - self._pos
        if self._big is not None:
            pending += self._big_filled + HEADER.size
        return pending


def to_payload(data: object) -> bytes | memoryview:
    """The bytes to send for ``data``: ``str`` as UTF-8, bytes-like as is (never copied)."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytearray, memoryview)):
        view = memoryview(data)
        return view if view.format == "B" and view.ndim == 1 else view.cast("B")
    raise TypeError(f"message data must be bytes or str, not {type(data).__name__}")


def group_bytes(group: object) -> bytes:
    """The UTF-8 group name, checked."""
    if not isinstance(group, str):
        raise TypeError(f"group must be a str, not {type(group).__name__}")
    raw = group.encode()
    if len(raw) > MAX_GROUP_BYTES:
        raise ValueError(f"group name is {len(raw)} bytes long; the limit is {MAX_GROUP_BYTES}")
    return raw
