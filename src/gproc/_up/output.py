"""What ``gproc up`` prints: every line of every process, and its own lifecycle events.

Text mode (for people)::

    14:02:11 web.1    | listening on 5000
    14:02:11 gproc    | worker.1 exited with code 1; restarting in 0.5s

Each line is written whole, prefix and all, in one write of a batch: lines of different processes
never interleave mid-line. A process's output is cut into lines here (:class:`LineSplitter`), not
by the process, so a partial line waits for its end; it is printed when the process exits (with a
newline added), and a line longer than :data:`MAX_LINE` bytes is printed in pieces rather than
held forever. The prefix is coloured per service only when the output is a terminal, and never with
``--no-color`` or ``NO_COLOR`` set (https://no-color.org). Lines are passed through as bytes, so a
process's encoding is never mangled.

JSON mode (``--json``, for machines): one object per line, for each output line
(``"event": "output"``) and each lifecycle event (``started``, ``exited``, ``restarting``,
``stopping``, ``stopped``, ``failed``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Sequence
from typing import Any, BinaryIO, Protocol

__all__ = ["MAX_LINE", "JsonOutput", "Label", "LineSplitter", "Output", "TextOutput", "wants_color"]

#: The longest line kept whole; a longer one is printed in pieces of this size.
MAX_LINE = 64 * 1024
#: The name under which gproc's own messages appear.
SYSTEM = "gproc"

# Colours per service, as honcho cycles them: cyan, yellow, green, magenta, red, blue, then bright.
_PALETTE = (36, 33, 32, 35, 31, 34, 96, 93, 92, 95, 91, 94)


def wants_color(stream: Any, no_color: bool) -> bool:
    """Colour only for a terminal, and not when the user said no (``--no-color``, ``NO_COLOR``)."""
    if no_color or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


class LineSplitter:
    """Cuts a byte stream into lines, keeping an unfinished last line until its end arrives."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The complete lines in ``self``'s buffer plus ``data``, without their line ends."""
        if self._partial:
            data = self._partial + data
        lines = data.split(b"\n")
        rest = lines.pop()
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._partial = rest
        return [_chomp(line) for line in lines] if lines else lines

    def flush(self) -> bytes | None:
        """The unfinished last line, if any (the stream ended without a newline)."""
        rest, self._partial = self._partial, b""
        return _chomp(rest) if rest else None


def _chomp(line: bytes) -> bytes:
    # A line may also be cut into pieces longer than MAX_LINE; those are complete as they are.
    return line[:-1] if line.endswith(b"\r") else line


class Label(Protocol):
    """Who a line or an event is about."""

    @property
    def name(self) -> str: ...  # web.1

    @property
    def service(self) -> str: ...  # web

    @property
    def slot(self) -> int: ...  # colour index

    @property
    def pid(self) -> int | None: ...


class Output(Protocol):
    """Where the supervisor sends lines and events; written out on :meth:`flush`."""

    def lines(self, label: Label, lines: Sequence[bytes]) -> None: ...

    def event(self, event: str, message: str, label: Label | None = None, **facts: Any) -> None:
        """``message`` is for people; ``facts`` (JSON-serialisable) for machines."""

    def flush(self) -> None: ...


class _Clock:
    """``HH:MM:SS`` of now, formatted once per second rather than once per line."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = time.strftime("%H:%M:%S", time.localtime(second)).encode()
        return self._text


class _Buffered:
    """Output collected during one turn of the supervisor's loop, written in one go."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        #: The reader went away (``gproc up | head``): output is dropped from then on.
        self.broken = False

    def flush(self) -> None:
        """Write what was collected; BrokenPipeError once when the reader has gone away."""
        data = b"".join(self._pending)
        self._pending.clear()
        if self.broken:
            return
        try:
            if data:
                self._stream.write(data)
            self._stream.flush()
        except BrokenPipeError:
            self.broken = True
            raise


class TextOutput(_Buffered):
    """Lines prefixed ``HH:MM:SS name.N | ``, the prefix coloured per service on a terminal."""

    def __init__(self, stream: BinaryIO, names: Sequence[str], *, color: bool) -> None:
        super().__init__(stream)
        self._color = color
        self._width = max([len(SYSTEM), *(len(n) for n in names)])
        self._clock = _Clock()
        self._labels: dict[str, tuple[bytes, bytes]] = {}

    def _label(self, name: str, slot: int | None) -> tuple[bytes, bytes]:
        """The parts of the prefix before and after the time, cached per name."""
        cached = self._labels.get(name)
        if cached is None:
            padded = name.ljust(self._width).encode()
            if self._color and slot is not None:
                code = _PALETTE[slot % len(_PALETTE)]
                cached = (f"\x1b[{code}m".encode(), b" " + padded + b" |\x1b[0m ")
            elif self._color:
                cached = (b"\x1b[1m", b" " + padded + b" |\x1b[0m ")
            else:
                cached = (b"", b" " + padded + b" | ")
            self._labels[name] = cached
        return cached

    def lines(self, label: Label, lines: Sequence[bytes]) -> None:
        before, after = self._label(label.name, label.slot)
        prefix = before + self._clock.now() + after
        self._pending.extend(prefix + line + b"\n" for line in lines)

    def event(self, event: str, message: str, label: Label | None = None, **facts: Any) -> None:
        before, after = self._label(SYSTEM, None)
        prefix = before + self._clock.now() + after
        for text in message.splitlines() or [""]:
            self._pending.append(prefix + text.encode("utf-8", "replace") + b"\n")


class JsonOutput(_Buffered):
    """One JSON object per line: ``{"time", "event", "name", "service", "pid", ...}``."""

    def _record(self, event: str, label: Label | None, facts: dict[str, Any]) -> None:
        record: dict[str, Any] = {
            "time": _dt.datetime.now().astimezone().isoformat(timespec="milliseconds"),
            "event": event,
        }
        if label is not None:
            record.update(name=label.name, service=label.service, pid=label.pid)
        record.update(facts)
        self._pending.append(json.dumps(record, ensure_ascii=False).encode() + b"\n")

    def lines(self, label: Label, lines: Sequence[bytes]) -> None:
        for line in lines:
            self._record("output", label, {"line": line.decode("utf-8", "replace")})

    def event(self, event: str, message: str, label: Label | None = None, **facts: Any) -> None:
        self._record(event, label, {"message": message, **facts})
