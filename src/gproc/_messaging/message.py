"""What :func:`gproc.receive` returns."""

from __future__ import annotations

from collections.abc import Callable

from .._errors import MessagingError
from .protocol import to_payload

__all__ = ["Message"]

Replier = Callable[["bytes | memoryview"], None]


class Message:
    """One received message.

    ``sender_pid`` comes from the kernel (``SO_PEERCRED``), never from the message itself.
    ``data`` is the exact bytes sent; ``text`` decodes them as UTF-8 (strictly: invalid UTF-8
    raises ``UnicodeDecodeError`` rather than being silently altered).
    """

    __slots__ = ("_replier", "data", "group", "receiver_pid", "sender_pid")

    def __init__(
        self,
        sender_pid: int,
        receiver_pid: int,
        group: str,
        data: bytes,
        replier: Replier | None = None,
    ) -> None:
        self.sender_pid = sender_pid
        self.receiver_pid = receiver_pid
        self.group = group
        self.data = data
        self._replier = replier

    @property
    def text(self) -> str:
        return self.data.decode()

    @property
    def is_request(self) -> bool:
        """True when the sender used :func:`gproc.request` and waits for :meth:`reply`."""
        return self._replier is not None

    def reply(self, data: bytes | str) -> None:
        """Answer a request; returns at once (the reply is written in the background).

        Raises :class:`~gproc.MessagingError` when the message is not a request or was already
        answered, :class:`~gproc.ConnectionLost` when the requester has gone away, and
        :class:`~gproc.MessageTooLarge` when the requester cannot take that much.
        """
        replier = self._replier
        if replier is None:
            raise MessagingError(
                f"message from pid {self.sender_pid} in group {self.group!r} is not a request "
                "(or was answered already)",
                pid=self.sender_pid,
                group=self.group,
            )
        payload = to_payload(data)
        replier(payload)
        self._replier = None

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 40 else self.data[:40] + b"..."
        kind = " request" if self._replier is not None else ""
        return (
            f"<Message{kind} from pid {self.sender_pid} to {self.receiver_pid} "
            f"group={self.group!r} {len(self.data)} bytes: {shown!r}>"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.sender_pid, self.receiver_pid, self.group, self.data) == (
            other.sender_pid,
            other.receiver_pid,
            other.group,
            other.data,
        )

    __hash__ = None  # type: ignore[assignment]
