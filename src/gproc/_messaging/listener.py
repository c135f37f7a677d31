"""The receiving side: one background thread serving every sender over one Unix socket.

One thread with an epoll set serves the listening socket and all connections, so a process that
receives costs one thread however many processes talk to it. The thread never runs user code and
never blocks on a queue: a full queue is answered with a FULL ack (the sender waits and retries),
so one slow group cannot stall the others.

Safety, in the order a connection meets it:

- the socket lives in the private runtime directory (runtime_dir.py) with mode 0600;
- on accept, the peer's pid and uid come from the kernel (``SO_PEERCRED``); another uid is
  disconnected before a byte is exchanged, and the pid stamped on each message is the kernel's;
- the hello tells the sender our pid *and start time*, so a sender can tell us from an earlier
  process that had our pid;
- every frame is validated (protocol.py); a malformed one closes that connection only.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import select
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable

from .._errors import ConnectionLost, MessageTooLarge
from .._procfs import start_ticks
from . import protocol as proto
from .leadership import EXIT, SERVE
from .message import Message
from .queues import DEFAULT_MAX_BYTES, DEFAULT_MAX_COUNT, Group, GroupQueues
from .runtime_dir import runtime_dir, socket_path

__all__ = ["Listener", "current", "ensure_listening", "queues", "stop"]

_PEERCRED = struct.Struct("3i")
_SCRATCH = 256 * 1024
#: The longest a big message's body may stall the listener (a struct timeval: 50 ms).
_BODY_STALL = struct.pack("ll", 0, 50_000)
#: Readable, or the peer hung up or failed (recv then reports EOF or the error).
_READ = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the other end, as the kernel recorded it at connect/listen time."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return pid, uid, gid


class _Conn:
    __slots__ = (
        "closed",
        "decoder",
        "expected",
        "fast",
        "fd",
        "hello",
        "max_reply",
        "out",
        "pid",
        "sock",
    )

    def __init__(self, sock: socket.socket, pid: int, max_payload: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pid = pid
        self.decoder = proto.FrameDecoder(proto.FROM_SENDER, max_payload, reuse=True)
        self.expected = 1  # the seq of the next message this connection may queue
        self.hello = False
        self.fast = False  # hello done and no partial frame buffered: see Listener._serve
        self.max_reply = 0
        self.out: deque[bytes | memoryview] = deque()
        self.closed = False


class Listener:
    """A started listener; build it with :func:`ensure_listening`."""

    def __init__(self, queues: GroupQueues, max_message: int) -> None:
        self.pid = os.getpid()
        ticks = start_ticks(self.pid)
        assert ticks is not None
        self.start_ticks = ticks
        self.max_message = max_message
        self.queues = queues
        directory = runtime_dir(create=True)
        assert directory is not None
        self.path = socket_path(directory, self.pid)
        self.replaced_stale = os.path.lexists(self.path)
        self._lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Bind under a private temporary name and rename over <pid>.sock: the switch is atomic,
            # and whatever was there (a socket left by a dead process that had our pid) is replaced.
            # Any file named after our pid is stale by definition: only we can be that pid now.
            tmp = os.path.join(directory, f".{self.pid}.{secrets.token_hex(6)}.tmp")
            self._lsock.bind(tmp)
            try:
                os.chmod(tmp, 0o600)
                self._lsock.listen(socket.SOMAXCONN)
                os.rename(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._inode = os.stat(self.path).st_ino
            self._lsock.setblocking(False)
            self._wake_r, self._wake_w = os.pipe()
        except BaseException:
            self._lsock.close()
            raise
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._hello = proto.server_hello(self.pid, self.start_ticks, max_message)
        self._max_payload = proto.payload_limit(max_message)
        self._posted: deque[tuple[_Conn, list[bytes | memoryview]]] = deque()
        self._post_lock = threading.Lock()
        self._conns: dict[int, _Conn] = {}
        self._group_names: dict[bytes, str] = {}
        self._stopping = False
        self._scratch = bytearray(_SCRATCH)
        self._scratch_view = memoryview(self._scratch)
        self._want: Group | None = None  # the group a leading thread waits for
        self._handed: Message | None = None  # a message of that group, acknowledged
        self._epoll = select.epoll()
        self._listen_fd = self._lsock.fileno()
        self._epoll.register(self._listen_fd, select.EPOLLIN)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        queues.lead.attach(self)
        self._thread = threading.Thread(target=self._run, name="gproc-listener", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        self._stopping = True
        self.queues.lead.detach()
        # Not drained once stopping (see _drain_wake): whoever polls keeps waking up and leaves.
        self._wake()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._remove_socket_file()

    def _remove_socket_file(self) -> None:
        # Only if the file is still ours (by inode): never remove a newer receiver's socket.
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    def abandon_after_fork(self) -> None:
        """In a forked child: drop our copies of the descriptors, touch nothing shared."""
        for conn in self._conns.values():
            conn.sock.close()
        self._lsock.close()
        self._epoll.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wake(self) -> None:
        # Under the lock that _run closes the pipe under: a reply() or stop() racing the end of
        # the thread must never write into a descriptor that was closed and reused meanwhile.
        with self._post_lock:
            if self._wake_w >= 0:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._wake_w, b"\0")

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        lead = self.queues.lead
        try:
            while True:
                duty = lead.listener_duty(self._stopping)
                if duty == SERVE:
                    self.serve_once(None)
                elif duty == EXIT:
                    return
                else:
                    lead.stand_by(duty)
        finally:
            for conn in list(self._conns.values()):
                self._close(conn)
            self._epoll.close()
            self._lsock.close()
            with self._post_lock:  # (see _wake)
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_w = -1

    def serve_once(self, timeout: float | None, want: Group | None = None) -> Message | None:
        """Wait up to ``timeout`` seconds (None: no limit) for the socket set and serve whatever
        is ready. Run by one thread at a time: the listener's own, or a thread leading from
        ``receive()`` for the group ``want`` (see leadership.py). A message for ``want`` that
        finds its queue empty is acknowledged and returned here rather than queued: the leader
        would take it from the queue at once anyway, and this spares a put, a wake and a take
        per message."""
        if self._stopping:
            return None
        self._want = want
        conns = self._conns
        try:
            for fd, events in self._epoll.poll(-1 if timeout is None else timeout):
                conn = conns.get(fd)
                if conn is not None:
                    self._serve(conn, events)
                elif fd == self._listen_fd:
                    self._accept()
                elif fd == self._wake_r:
                    self._drain_wake()
        except BaseException:
            # Interrupted (Ctrl+C in a leading main thread): an acknowledged message is queued,
            # never dropped.
            handed, self._handed = self._handed, None
            if handed is not None:
                self.queues.put_back(handed)
            raise
        finally:
            self._want = None
        handed, self._handed = self._handed, None
        return handed

    @property
    def stopping(self) -> bool:
        return self._stopping

    def call_for_lead(self) -> None:
        self._wake()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and friends: keep serving the connections we have
                return
            try:
                pid, uid, _gid = peer_credentials(sock)
                if uid != os.geteuid():
                    # Another user: hang up before saying anything at all.
                    sock.close()
                    continue
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _BODY_STALL)
                sock.setblocking(False)
            except OSError:
                sock.close()
                continue
            conn = _Conn(sock, pid, self._max_payload)
            self._conns[conn.fd] = conn
            try:
                self._epoll.register(conn.fd, _READ)
                self._write(conn, self._hello)
            except OSError:
                self._close(conn)

    def _drain_wake(self) -> None:
        if self._stopping:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass
        while True:
            with self._post_lock:
                if not self._posted:
                    return
                conn, parts = self._posted.popleft()
            if conn.closed:
                continue
            try:
                for part in parts:
                    self._write(conn, part)
            except OSError:
                self._close(conn)
            except BaseException:  # Ctrl+C in a leading main thread: a half-written reply
                self._close(conn)
                raise

    def _serve(self, conn: _Conn, events: int) -> None:
        try:
            if events == select.EPOLLIN and conn.fast:
                # The commonest event of all, kept short: readable, and most likely one whole
                # small message in one read.
                try:
                    count = conn.sock.recv_into(self._scratch)
                except BlockingIOError:  # a spurious wake-up
                    return
                lone = proto.lone_message(self._scratch_view, count)
                if lone is not None:
                    self._handle_lone(conn, *lone)
                    return
                if count == 0:
                    self._close(conn)
                    return
                frames = conn.decoder.feed(self._scratch_view[:count])
            else:
                frames = self._read(conn, events)
            if frames:
                self._handle(conn, frames)
            conn.fast = conn.hello and conn.decoder.idle()
        except (OSError, proto.ProtocolError, ValueError):
            self._close(conn)
        except Exception:  # pragma: no cover - defensive: one connection never kills the thread
            self._close(conn)
        except BaseException:
            # Ctrl+C (or a signal handler's exception) in a main thread that leads: the frame
            # may be half read, or queued without its ack. Closing the connection tells its
            # sender (ConnectionLost: maybe queued, never "sent") instead of leaving it hanging.
            self._close(conn)
            raise

    def _read(self, conn: _Conn, events: int) -> list[tuple[int, proto.Payload]]:
        """Everything but the common case: pending output, a big body, a partial frame, EOF."""
        if events & select.EPOLLOUT:
            self._flush(conn)
        if not events & _READ or conn.closed:
            return []
        decoder = conn.decoder
        body = decoder.body_view()
        if body is not None:
            with body:
                count = self._read_body(conn.sock, body)
            if count == 0:
                self._close(conn)  # the sender died mid-message: that message is not queued
                return []
            if count < 0:
                return []
            return decoder.advance(count)
        try:
            count = conn.sock.recv_into(self._scratch)
        except BlockingIOError:  # a spurious wake-up
            return []
        if count == 0:
            self._close(conn)
            return []
        return decoder.feed(self._scratch_view[:count])

    def _read_body(self, sock: socket.socket, body: memoryview) -> int:
        """Read the rest of a big message with one blocking ``MSG_WAITALL`` call.

        Done the non-blocking way, a MiB arrives in dozens of chunks, each costing a trip through
        this loop (the sender refills the socket as soon as we drain it). Blocking in the kernel
        until the whole body is there is ~2x faster. ``SO_RCVTIMEO`` bounds how long one stalled
        sender can hold up the others: after _BODY_STALL seconds we take what came and go back to
        serving everyone.
        """
        sock.setblocking(True)
        try:
            return sock.recv_into(body, 0, socket.MSG_WAITALL)
        except BlockingIOError:  # the stall timer ran out with nothing new
            return -1
        finally:
            sock.setblocking(False)

    def _offer(
        self, conn: _Conn, kind: int, seq: int, raw_group: bytes, data: bytes
    ) -> tuple[str, bool | None]:
        """Queue one message (or hand it to the leader waiting for it): ``(group, True)``; its
        queue is full: ``(group, False)``; a message to ignore: ``(group, None)``."""
        if len(data) > self.max_message:
            raise proto.ProtocolError("message over the announced limit")
        group = self._group_names.get(raw_group)
        if group is None:
            group = proto.decode_group(raw_group)
            if len(self._group_names) < 4096:
                self._group_names[raw_group] = group
        if seq != conn.expected:
            # Sent after a message we refused as FULL: the sender resends from there.
            return group, None
        replier = self._replier(conn, seq) if kind == proto.REQUEST else None
        message = Message(conn.pid, self.pid, group, data, replier)
        want = self._want
        if want is not None and self._handed is None and group == want.name and not want.items:
            # Straight to the thread leading from receive() for this group (see serve_once).
            # Like a put, this happens before the ack is written: a failed ack write never
            # takes a message back.
            self._handed = message
        elif not self.queues.put(message):
            return group, False
        conn.expected = seq + 1
        return group, True

    def _handle_lone(self, conn: _Conn, seq: int, raw_group: bytes, data: bytes) -> None:
        """:meth:`_handle` for the commonest read of all: exactly one message."""
        group, queued = self._offer(conn, proto.MESSAGE, seq, raw_group, data)
        if queued is None:
            return
        try:
            self._write(conn, proto.ack(proto.ACK_OK if queued else proto.ACK_FULL, seq))
        finally:
            if queued:
                self.queues.wake_group(group)

    def _handle(self, conn: _Conn, frames: list[tuple[int, proto.Payload]]) -> None:
        ok_seq = 0
        woken: set[str] = set()
        for kind, payload in frames:
            if kind in (proto.MESSAGE, proto.REQUEST):
                if not conn.hello:
                    raise proto.ProtocolError("message before hello")
                seq, raw_group, data = proto.parse_message(payload)
                group, queued = self._offer(conn, kind, seq, raw_group, data)
                if queued:
                    ok_seq = seq
                    woken.add(group)
                elif queued is not None:
                    # FULL(seq) also acknowledges everything before seq.
                    ok_seq = 0
                    self._write(conn, proto.ack(proto.ACK_FULL, seq))
            elif kind == proto.CLIENT_HELLO:
                if conn.hello:
                    raise proto.ProtocolError("second hello")
                conn.max_reply = proto.parse_client_hello(payload).max_reply
                conn.hello = True
            elif kind == proto.STATUS_QUERY:
                if not conn.hello or payload:
                    raise proto.ProtocolError("bad status query")
                self._write(conn, proto.status(self.queues.snapshot()))
            else:  # pragma: no cover - the decoder admits only the kinds above
                raise proto.ProtocolError(f"unexpected frame kind {kind}")
        try:
            if ok_seq:
                # One cumulative ack for everything this read completed.
                self._write(conn, proto.ack(proto.ACK_OK, ok_seq))
        finally:
            if woken:
                self.queues.wake(woken)

    def _replier(self, conn: _Conn, seq: int) -> Callable[[bytes | memoryview], None]:
        def reply(payload: bytes | memoryview) -> None:
            if len(payload) > conn.max_reply:
                raise MessageTooLarge(
                    f"reply of {len(payload)} bytes exceeds pid {conn.pid}'s limit of "
                    f"{conn.max_reply}",
                    pid=conn.pid,
                )
            parts: list[bytes | memoryview] = [proto.reply_head(seq, len(payload)), payload]
            with self._post_lock:
                if conn.closed:
                    raise ConnectionLost(
                        f"pid {conn.pid} is no longer connected; the reply was not sent",
                        pid=conn.pid,
                    )
                self._posted.append((conn, parts))
            self._wake()

        return reply

    # ------------------------------------------------------------------ writing

    def _write(self, conn: _Conn, data: bytes | memoryview) -> None:
        if conn.out:
            conn.out.append(data)
            return
        try:
            sent = conn.sock.send(data, socket.MSG_NOSIGNAL) if data else 0
        except BlockingIOError:  # the peer is not reading: keep it for when it does
            sent = 0
        if sent < len(data):
            conn.out.append(memoryview(data)[sent:])
            self._epoll.modify(conn.fd, _READ | select.EPOLLOUT)

    def _flush(self, conn: _Conn) -> None:
        out = conn.out
        while out:
            head = out[0]
            try:
                sent = conn.sock.send(head, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                return
            if sent < len(head):
                out[0] = memoryview(head)[sent:]
                return
            out.popleft()
        self._epoll.modify(conn.fd, _READ)

    def _close(self, conn: _Conn) -> None:
        with self._post_lock:
            conn.closed = True
        self._conns.pop(conn.fd, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._epoll.unregister(conn.fd)
        conn.sock.close()


# --------------------------------------------------------------------------- process-wide state

_lock = threading.Lock()
_listener: Listener | None = None
queues = GroupQueues()


def current() -> Listener | None:
    return _listener


def ensure_listening(
    *,
    max_message: int | None = None,
    queue_size: int | None = None,
    queue_bytes: int | None = None,
) -> Listener:
    """Start this process's listener if it is not running; apply queue limits given."""
    global _listener
    listener = _listener
    if listener is not None and max_message is queue_size is queue_bytes is None:
        return listener  # the common case, once per receive(): no lock
    if queue_size is not None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, not {queue_size}")
        queues.max_count = queue_size
    if queue_bytes is not None:
        if queue_bytes < 1:
            raise ValueError(f"queue_bytes must be at least 1, not {queue_bytes}")
        queues.max_bytes = queue_bytes
    if max_message is not None and not 0 <= max_message <= proto.MAX_PAYLOAD - 0x10000 - 10:
        raise ValueError(f"max_message_size out of range: {max_message}")
    with _lock:
        listener = _listener
        if listener is not None and listener.pid == os.getpid():
            if max_message is not None and max_message != listener.max_message:
                raise ValueError(
                    f"already receiving with max_message_size={listener.max_message}; "
                    "it cannot change while receiving"
                )
            return listener
        _listener = Listener(
            queues, proto.DEFAULT_MAX_MESSAGE if max_message is None else max_message
        )
        return _listener


def stop() -> None:
    """Stop receiving: close every connection and remove the socket file (queued messages stay)."""
    global _listener
    with _lock:
        listener, _listener = _listener, None
    if listener is not None and listener.pid == os.getpid():
        listener.stop()
        queues.wake_all()


def _after_fork_in_child() -> None:
    global _listener, _lock, queues
    _lock = threading.Lock()
    listener, _listener = _listener, None
    # The child's own messages start from empty: the queued ones belong to the parent.
    queues = GroupQueues(queues.max_count, queues.max_bytes)
    if listener is not None:
        listener.abandon_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(stop)

__all__ += ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_COUNT", "peer_credentials"]
