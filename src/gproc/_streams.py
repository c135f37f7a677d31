"""Connecting a child's standard streams to whatever the caller hands us.

A stream that has a real file descriptor is given to the child directly: the data never passes
through Python. Anything else (``io.StringIO``, a logger adapter, a socket file object, an object
that only has ``write()`` or ``read()``) gets a pipe, and a *pump* moves the data in bounded chunks
from inside the operation's wait loop, so memory stays flat whatever the volume.
"""

from __future__ import annotations

import codecs
import fcntl
import io
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "Capture",
    "InputPump",
    "OutputPump",
    "Plumbing",
    "TailBuffer",
    "real_fileno",
    "wants_text",
]

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

#: Bytes read per wake-up. Pipes we create are widened to this size where the kernel allows, so a
#: fast writer needs few wake-ups.
CHUNK = 1 << 20
#: How much output to keep for error messages when output goes to the caller's own sink.
TAIL_BYTES = 8192
#: After the command exits, how much more to read from a pipe a background job may still hold.
DRAIN_LIMIT = 4 << 20

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_DEFAULT_PIPE_SIZE = 65536


def real_fileno(stream: Any) -> int | None:
    """The stream's file descriptor if it has a usable one, else None (StringIO, pytest capture)."""
    fileno = getattr(stream, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
        os.fstat(fd)
    except (OSError, ValueError, io.UnsupportedOperation, AttributeError):
        return None
    return int(fd) if isinstance(fd, int) else None


def wants_text(sink: Any) -> bool:
    """Whether ``sink.write`` takes ``str`` (True) or ``bytes`` (False).

    Known binary streams (raw and buffered I/O, ``BytesIO``, files opened with ``b``) take bytes;
    every other writer takes text, as ``print(file=...)`` assumes.
    """
    if isinstance(sink, io.TextIOBase):
        return True
    if isinstance(sink, (io.RawIOBase, io.BufferedIOBase)):
        return False
    mode = getattr(sink, "mode", None)
    if isinstance(mode, str):
        return "b" not in mode
    return True


def _nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)


def widen_pipe(fd: int) -> None:
    """Ask for a larger pipe buffer; fewer wake-ups for chatty children. Best effort."""
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, CHUNK)
    except OSError:
        pass


class TailBuffer:
    """The last few KiB that went through the pumps, for error messages."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = bytearray()

    def add(self, chunk: bytes) -> None:
        self._data += chunk[-TAIL_BYTES:]
        if len(self._data) > 2 * TAIL_BYTES:
            del self._data[:-TAIL_BYTES]

    def text(self) -> str | None:
        if not self._data:
            return None
        return bytes(self._data[-TAIL_BYTES:]).decode("utf-8", "replace")


class Capture:
    """A sink that keeps everything, as chunks, for ``shell_exec``.

    Chunks (not a growing bytearray) so that the final ``join`` + ``decode`` never holds more
    than the bytes and the string at once.
    """

    __slots__ = ("chunks",)

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def text(self) -> str:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data.decode("utf-8", "replace")


class OutputPump:
    """Reads a child's output pipe and writes it to a sink (text or binary)."""

    __slots__ = ("_decoder", "_flush", "_tail", "_widened", "_write", "fd")

    def __init__(self, fd: int, sink: Any, tail: TailBuffer | None) -> None:
        self.fd: int | None = fd
        self._widened = False
        _nonblocking(fd)
        self._tail = tail
        write: Callable[[Any], Any] = sink.write
        self._write = write
        flush = getattr(sink, "flush", None)
        self._flush: Callable[[], Any] | None = flush if callable(flush) else None
        self._decoder = (
            codecs.getincrementaldecoder("utf-8")("replace")
            if not isinstance(sink, Capture) and wants_text(sink)
            else None
        )

    def on_readable(self) -> None:
        """Move one chunk; closes the pump at end of file."""
        if self.fd is None:
            return
        try:
            chunk = os.read(self.fd, CHUNK)
        except BlockingIOError:
            return
        if not chunk:
            self._finish()
            return
        if not self._widened and len(chunk) >= _DEFAULT_PIPE_SIZE:
            # A full pipe: this child is chatty. Widen the pipe so it needs fewer wake-ups; quiet
            # children never pay for the larger buffer.
            self._widened = True
            widen_pipe(self.fd)
        self._deliver(chunk)

    def drain(self) -> None:
        """Read what is already there without waiting (the command has exited), then close."""
        moved = 0
        while self.fd is not None and moved < DRAIN_LIMIT:
            try:
                chunk = os.read(self.fd, CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                break
            moved += len(chunk)
            self._deliver(chunk)
        self._finish()

    def _deliver(self, chunk: bytes) -> None:
        if self._tail is not None:
            self._tail.add(chunk)
        if self._decoder is not None:
            text = self._decoder.decode(chunk)
            if text:
                self._write(text)
        else:
            self._write(chunk)
        if self._flush is not None:
            self._flush()

    def _finish(self) -> None:
        if self._decoder is not None:
            rest = self._decoder.decode(b"", final=True)
            self._decoder = None
            if rest:
                self._write(rest)
        if self._flush is not None:
            self._flush()
        self.close()

    def close(self) -> None:
        fd, self.fd = self.fd, None  # forget first: never close a number twice
        if fd is not None:
            os.close(fd)


class InputPump:
    """Feeds a child's stdin pipe from bytes, a string or an object with ``read()``."""

    __slots__ = ("_buffer", "_reader", "fd")

    def __init__(self, fd: int, source: Any) -> None:
        self.fd: int | None = fd
        _nonblocking(fd)
        self._reader: Callable[[int], Any] | None = None
        if isinstance(source, str):
            self._buffer = memoryview(source.encode("utf-8"))
        elif isinstance(source, (bytes, bytearray, memoryview)):
            self._buffer = memoryview(bytes(source))
        else:
            self._reader = source.read
            self._buffer = memoryview(b"")
        if not self._buffer and self._reader is None:
            self.close()

    def on_writable(self) -> None:
        if self.fd is None:
            return
        if not self._buffer:
            if self._reader is None:
                self.close()
                return
            chunk = self._reader(CHUNK)
            if not chunk:
                self.close()
                return
            self._buffer = memoryview(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
        try:
            written = os.write(self.fd, self._buffer)
        except BlockingIOError:
            return
        except BrokenPipeError:  # the child stopped reading; that is its right
            self.close()
            return
        self._buffer = self._buffer[written:]
        if not self._buffer and self._reader is None:
            self.close()

    def close(self) -> None:
        fd, self.fd = self.fd, None  # forget first: never close a number twice
        if fd is not None:
            os.close(fd)


@dataclass
class Plumbing:
    """How the child's three streams are connected, and the pumps that serve the pipes."""

    popen_args: dict[str, Any] = field(default_factory=dict)
    child_ends: list[int] = field(default_factory=list)
    outputs: list[OutputPump] = field(default_factory=list)
    stdin_pump: InputPump | None = None
    tail: TailBuffer = field(default_factory=TailBuffer)

    def add_output(self, name: str, sink: Any) -> None:
        if sink is None or isinstance(sink, int):
            self.popen_args[name] = sink
            return
        fd = real_fileno(sink)
        if fd is not None:
            flush = getattr(sink, "flush", None)
            if callable(flush):
                flush()  # what the caller wrote before must come before the child's output
            self.popen_args[name] = fd
            return
        if not callable(getattr(sink, "write", None)):
            raise TypeError(
                f"{name}= takes a file, an object with write(), an fd or None, "
                f"not {type(sink).__name__}"
            )
        r, w = os.pipe()
        self.child_ends.append(w)
        self.outputs.append(OutputPump(r, sink, None if isinstance(sink, Capture) else self.tail))
        self.popen_args[name] = w

    def add_input(self, source: Any) -> None:
        if source is None or isinstance(source, int):
            self.popen_args["stdin"] = source
            return
        if isinstance(source, (str, bytes, bytearray, memoryview)):
            if len(source) == 0:
                self.popen_args["stdin"] = DEVNULL
                return
        else:
            fd = real_fileno(source)
            if fd is not None:
                self.popen_args["stdin"] = fd
                return
            if not callable(getattr(source, "read", None)):
                raise TypeError(
                    "stdin= takes str, bytes, a file, an object with read(), an fd or None, "
                    f"not {type(source).__name__}"
                )
        r, w = os.pipe()
        self.child_ends.append(r)
        self.stdin_pump = InputPump(w, source)
        self.popen_args["stdin"] = r

    def close_child_ends(self) -> None:
        # Pop before closing: an interruption between the two may leak a descriptor, but can
        # never close a number that was meanwhile reused by someone else.
        while self.child_ends:
            os.close(self.child_ends.pop())

    @classmethod
    def connect(cls, stdin: Any, stdout: Any, stderr: Any) -> Plumbing:
        """Plumbing for the three streams; the same object as stdout and stderr shares one pipe."""
        plumbing = cls()
        try:
            plumbing.add_input(stdin)
            plumbing.add_output("stdout", stdout)
            if stderr is not None and stderr is stdout and not isinstance(stdout, int):
                plumbing.popen_args["stderr"] = STDOUT
            else:
                plumbing.add_output("stderr", stderr)
        except BaseException:
            plumbing.close()
            raise
        return plumbing

    def has_pumps(self) -> bool:
        return bool(self.outputs) or self.stdin_pump is not None

    def drain_and_close(self) -> None:
        """The child has exited: deliver what its pipes still hold (bounded), then close."""
        for pump in self.outputs:
            pump.drain()
        self.close()

    def close(self) -> None:
        self.close_child_ends()
        for pump in self.outputs:
            pump.close()
        if self.stdin_pump is not None:
            self.stdin_pump.close()
