"""The wire format on its own: no sockets, no processes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gproc._messaging import protocol as proto

LIMIT = proto.payload_limit(1024)


def decode_all(stream: bytes, cuts: list[int], allowed: frozenset[int] = proto.FROM_SENDER):
    decoder = proto.FrameDecoder(allowed, LIMIT)
    frames = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        frames.extend(decoder.feed(stream[start:cut]))
        start = max(start, cut)
    return frames, decoder


def test_message_round_trip() -> None:
    head = proto.message_head(proto.MESSAGE, 7, b"grp", 5)
    frames, decoder = decode_all(head + b"hello", [])
    assert len(frames) == 1
    kind, payload = frames[0]
    assert kind == proto.MESSAGE
    assert proto.parse_message(payload) == (7, b"grp", b"hello")
    assert decoder.buffered() == 0


def test_hellos_round_trip() -> None:
    raw = proto.server_hello(1234, 987654321, 64 << 20)
    frames, _ = decode_all(raw, [], proto.FROM_RECEIVER)
    assert proto.parse_server_hello(frames[0][1]) == proto.ServerHello(1234, 987654321, 64 << 20)
    frames, _ = decode_all(proto.client_hello(99), [])
    assert proto.parse_client_hello(frames[0][1]).max_reply == 99


def test_ack_reply_and_status_round_trip() -> None:
    stream = (
        proto.ack(proto.ACK_FULL, 3)
        + proto.reply_head(3, 2)
        + b"ok"
        + proto.status([("", 2), ("grüße", 0)])
    )
    frames, _ = decode_all(stream, [1, 7, 20], proto.FROM_RECEIVER)
    assert [k for k, _ in frames] == [proto.ACK, proto.REPLY, proto.STATUS]
    assert proto.parse_ack(frames[0][1]) == (proto.ACK_FULL, 3)
    assert proto.parse_reply(frames[1][1]) == (3, b"ok")
    assert proto.parse_status(frames[2][1]) == [("", 2), ("grüße", 0)]


def test_oversized_frame_is_refused_from_its_header() -> None:
    decoder = proto.FrameDecoder(proto.FROM_SENDER, LIMIT)
    with pytest.raises(proto.ProtocolError, match="exceeds"):
        decoder.feed(proto.HEADER.pack(proto.MESSAGE, LIMIT + 1))


def test_unknown_or_wrong_direction_kind_is_refused() -> None:
    decoder = proto.FrameDecoder(proto.FROM_SENDER, LIMIT)
    with pytest.raises(proto.ProtocolError, match="kind"):
        decoder.feed(proto.ack(proto.ACK_OK, 1))


def test_big_payload_is_filled_in_place() -> None:
    data = bytes(range(256)) * 2048  # 512 KiB
    decoder = proto.FrameDecoder(proto.FROM_SENDER, proto.payload_limit(len(data)))
    stream = proto.message_head(proto.MESSAGE, 1, b"", len(data)) + data
    assert decoder.feed(stream[:1000]) == []
    view = decoder.body_view()
    assert view is not None
    rest = stream[1000:]
    view[: len(rest)] = rest
    view.release()
    frames = decoder.advance(len(rest))
    assert proto.parse_message(frames[0][1]) == (1, b"", data)


@pytest.mark.parametrize(
    ("parse", "payload"),
    [
        (proto.parse_server_hello, b"XXXX" + bytes(24)),
        (proto.parse_client_hello, b"GPRC\x09" + bytes(11)),
        (proto.parse_message, b"\x00" * 9),
        (proto.parse_message, bytes(8) + b"\x00\x05ab"),
        (proto.parse_ack, b"\x07" + bytes(8)),
        (proto.parse_status, b"\x00\x00\x00\x02"),
    ],
)
def test_malformed_payloads_raise_protocol_error(parse, payload: bytes) -> None:
    with pytest.raises(proto.ProtocolError):
        parse(payload)


def test_bad_group_utf8_is_a_protocol_error() -> None:
    with pytest.raises(proto.ProtocolError):
        proto.decode_group(b"\xff")


def test_to_payload_accepts_bytes_like_and_str_only() -> None:
    assert proto.to_payload("é") == "é".encode()
    assert bytes(proto.to_payload(bytearray(b"ab"))) == b"ab"
    with pytest.raises(TypeError):
        proto.to_payload(42)
    with pytest.raises(TypeError):
        proto.group_bytes(b"g")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
def test_decoder_never_fails_other_than_protocol_error(stream: bytes, cuts: list[int]) -> None:
    try:
        frames, decoder = decode_all(stream, cuts)
    except proto.ProtocolError:
        return
    for kind, payload in frames:
        assert kind in proto.FROM_SENDER
        assert len(payload) <= LIMIT
        try:
            if kind in (proto.MESSAGE, proto.REQUEST):
                proto.parse_message(payload)
            elif kind == proto.CLIENT_HELLO:
                proto.parse_client_hello(payload)
        except proto.ProtocolError:
            pass
    assert decoder.buffered() <= len(stream)


messages = st.lists(
    st.tuples(
        st.sampled_from([proto.MESSAGE, proto.REQUEST]), st.text(max_size=8), st.binary(max_size=64)
    ),
    max_size=8,
)


@settings(max_examples=100, deadline=None)
@given(messages, st.lists(st.integers(0, 2000), max_size=8))
def test_any_chunking_yields_the_same_frames(items, cuts: list[int]) -> None:
    stream = b"".join(
        proto.message_head(kind, seq, group.encode(), len(data)) + data
        for seq, (kind, group, data) in enumerate(items, 1)
    )
    frames, decoder = decode_all(stream, cuts)
    assert decoder.buffered() == 0
    decoded = [(k, *proto.parse_message(p)) for k, p in frames]
    assert decoded == [
        (kind, seq, group.encode(), data) for seq, (kind, group, data) in enumerate(items, 1)
    ]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_lone_message_agrees_with_the_decoder(stream: bytes) -> None:
    # The receiver's shortcut for "this read is exactly one message" must accept exactly what the
    # decoder would return as one MESSAGE frame (and that parse_message accepts), nothing else.
    lone = proto.lone_message(memoryview(stream), len(stream))
    try:
        frames, decoder = decode_all(stream, [])
        whole = decoder.buffered() == 0 and len(frames) == 1 and frames[0][0] == proto.MESSAGE
        expected = proto.parse_message(frames[0][1]) if whole else None
    except proto.ProtocolError:
        expected = None
    assert lone == expected


def test_lone_message_takes_one_message_only() -> None:
    frame = proto.message_head(proto.MESSAGE, 3, b"g", 2) + b"hi"
    assert proto.lone_message(memoryview(frame), len(frame)) == (3, b"g", b"hi")
    two = frame + frame
    assert proto.lone_message(memoryview(two), len(two)) is None  # two frames: the decoder's job
    assert proto.lone_message(memoryview(frame), len(frame) - 1) is None  # incomplete
    request = proto.message_head(proto.REQUEST, 3, b"g", 2) + b"hi"
    assert proto.lone_message(memoryview(request), len(request)) is None
