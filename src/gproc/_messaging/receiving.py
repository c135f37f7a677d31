"""The receiving API: start listening, then take messages from the per-group queues.

Receiving is not an ``Op``: the waiting happens on the queues (a ``threading.Condition`` for the
sync API, a future completed with ``call_soon_threadsafe`` for asyncio), because what we wait for
is the listener thread, not a file descriptor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from .._drive import deadline_after
from . import listener
from .message import Message

__all__ = ["messages", "messages_async", "receive", "receive_async", "start_receiving"]


def start_receiving(
    *,
    max_message_size: int | None = None,
    queue_size: int | None = None,
    queue_bytes: int | None = None,
) -> str:
    """Start this process's listener now (``receive`` does it on first use); return its socket.

    From then on every group accepts messages, even one nobody has called ``receive`` for yet.
    ``max_message_size`` (default 64 MiB) is announced to senders, who refuse bigger messages
    before sending. ``queue_size`` (default 10000) and ``queue_bytes`` (default 256 MiB) bound
    each group's queue; an empty queue always takes one message.
    """
    return listener.ensure_listening(
        max_message=max_message_size, queue_size=queue_size, queue_bytes=queue_bytes
    ).path


def _check(group: object, timeout: float | None) -> str:
    if not isinstance(group, str):
        raise TypeError(f"group must be a str, not {type(group).__name__}")
    deadline_after(timeout)  # validates it
    return group


def receive(group: str = "", *, timeout: float | None = None) -> Message:
    """The next message of ``group``, waiting for it; ``ReceiveTimeout`` after ``timeout``."""
    _check(group, timeout)
    listener.ensure_listening()
    return listener.queues.get_sync(group, timeout)


async def receive_async(group: str = "", *, timeout: float | None = None) -> Message:
    _check(group, timeout)
    listener.ensure_listening()
    return await listener.queues.get_async(group, timeout)


def messages(group: str = "", *, timeout: float | None = None) -> Iterator[Message]:
    """Iterate over the messages of ``group`` as they arrive (forever, or until ``timeout``
    passes without one: ``ReceiveTimeout``)."""
    _check(group, timeout)
    while True:
        # receive() without its argument checks, done once above (this loop is per message).
        listener.ensure_listening()
        yield listener.queues.get_sync(group, timeout)


async def messages_async(
    group: str = "", *, timeout: float | None = None
) -> AsyncIterator[Message]:
    _check(group, timeout)
    while True:
        yield await receive_async(group, timeout=timeout)
