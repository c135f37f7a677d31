"""Messaging: gproc.send/aio.send_many against raw AF_UNIX, a GoFrame emulation and mp.connection.

Every figure is measured in this run, with both processes pinned to one CPU
(``os.sched_setaffinity``) so the numbers are CPU cost, not wake-up latency between cores.

- round trip: one message, wait for its acknowledgement, next message (``gproc.send``) against a
  raw Python request/ack loop over AF_UNIX with 4-byte length-prefixed frames whose receiver
  drops each message (the issue's reference, which judges the target). The gproc receiving
  process is what a user writes: a thread blocked in ``for m in gproc.messages()`` (that thread
  reads the socket itself, see gproc/_messaging/leadership.py). Printed beside it: the raw
  receiver handing each message to a consumer thread blocked on a ``queue.SimpleQueue`` (the
  cheapest stdlib hand-off), and both receivers draining their inbox in batches;
- pipelined: ``gproc.aio.send_many`` (acks batched, many in flight) against a raw one-way stream
  of the same frames (no acks at all);
- GoFrame: what GoFrame's Send/Receive do per message, in Python: read the receiver's port file,
  TCP on 127.0.0.1 (reused connection, TCP_NODELAY as Go sets it), a JSON body with base64 data,
  the receiver decodes it, checks the receiver pid, pushes it to a queue that a consumer thread
  takes from (GoFrame's Receive() runs in the user's goroutine), and answers with a JSON reply.
  GoFrame's frame length is 2 bytes, so at 1 MiB the emulation gets a 4-byte one (GoFrame itself
  cannot send that much);
- multiprocessing.connection: send_bytes/recv_bytes with a 1-byte ack, printed for reference.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Client, Listener

HERE = os.path.dirname(os.path.abspath(__file__))
SMALL = 64
BIG = 1 << 20
LEN = struct.Struct("!I")


# --------------------------------------------------------------------------- servers (children)


def _recv_exact(sock: socket.socket, size: int, buf: bytearray) -> memoryview:
    view = memoryview(buf)[:size]
    got = 0
    while got < size:
        count = sock.recv_into(view[got:])
        if not count:
            raise EOFError
        got += count
    return view


def _accept_one(path: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    print("ready", flush=True)
    conn, _ = server.accept()
    server.close()
    return conn


def serve_raw_ack(path: str, mode: str = "drop") -> None:
    """The raw reference receiver. ``drop``: the message is read and thrown away. ``blocking``
    and ``batch`` hand it on the way gproc's receiver does in the same mode, with the cheapest
    stdlib means: a ``queue.SimpleQueue`` that a consumer thread blocks on, or a deque that the
    application empties every few milliseconds."""
    conn = _accept_one(path)
    head = bytearray(4)
    body = bytearray(BIG + 16)
    hand_on: Callable[[bytes], None] | None = None
    if mode == "blocking":
        handoff: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        hand_on = handoff.put

        def consume() -> None:
            while True:
                handoff.get()

        threading.Thread(target=consume, daemon=True).start()
    elif mode == "batch":
        inbox: deque[bytes] = deque()
        hand_on = inbox.append

        def drain() -> None:
            while True:
                time.sleep(0.005)
                while inbox:
                    inbox.popleft()

        threading.Thread(target=drain, daemon=True).start()
    try:
        while True:
            (size,) = LEN.unpack(_recv_exact(conn, 4, head))
            data = bytes(_recv_exact(conn, size, body))
            if hand_on is not None:
                hand_on(data)
            del data
            conn.sendall(b"k")
    except EOFError:
        return


def serve_raw_stream(path: str) -> None:
    conn = _accept_one(path)
    while True:
        buf = bytearray()
        head = conn.recv(4)
        if len(head) < 4:
            return
        (count,) = LEN.unpack(head)
        seen = 0
        pos = 0
        while seen < count:
            chunk = conn.recv(262144)
            if not chunk:
                return
            buf += chunk
            while len(buf) - pos >= 4:
                (size,) = LEN.unpack_from(buf, pos)
                if len(buf) - pos - 4 < size:
                    break
                data = bytes(buf[pos + 4 : pos + 4 + size])
                del data
                pos += 4 + size
                seen += 1
            del buf[:pos]
            pos = 0
        conn.sendall(b"k")


def serve_goframe(port_file: str) -> None:
    server = socket.socket(socket.AF_INET)
    server.bind(("127.0.0.1", 0))
    server.listen()
    with open(port_file, "w") as f:
        f.write(str(server.getsockname()[1]))
    print("ready", flush=True)
    conn, _ = server.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = bytearray(4)
    body = bytearray(2 * BIG)
    inbox: queue.Queue[tuple[int, str, bytes]] = queue.Queue(10000)

    def consume() -> None:  # the user's Receive() loop
        while True:
            inbox.get()

    threading.Thread(target=consume, daemon=True).start()
    me = os.getpid()
    try:
        while True:
            (size,) = LEN.unpack(_recv_exact(conn, 4, head))
            request = json.loads(bytes(_recv_exact(conn, size, body)))
            if request["ReceiverPid"] != me:
                answer = {"Code": 0, "Message": "receiver pid not match", "Data": None}
            else:
                inbox.put(
                    (request["SenderPid"], request["Group"], base64.b64decode(request["Data"]))
                )
                answer = {"Code": 1, "Message": "", "Data": None}
            reply = json.dumps(answer).encode()
            conn.sendall(LEN.pack(len(reply)) + reply)
    except EOFError:
        return


def serve_mp(path: str) -> None:
    with Listener(path, "AF_UNIX") as listener:
        print("ready", flush=True)
        with listener.accept() as conn:
            try:
                while True:
                    conn.recv_bytes()
                    conn.send_bytes(b"k")
            except EOFError:
                return


def serve_gproc(mode: str = "blocking") -> None:
    """A receiving process. ``blocking``: a thread blocked in receive() takes each message as it
    arrives (reading the socket itself). ``batch``: the application is busy elsewhere and empties
    its inbox every few milliseconds (the listener thread reads and queues each message)."""
    import gproc

    gproc.start_receiving()
    print("ready", flush=True)
    if mode == "blocking":
        for _ in gproc.messages():
            pass
    while True:
        time.sleep(0.005)
        try:
            while True:
                gproc.receive(timeout=0)
        except gproc.ReceiveTimeout:
            pass


SERVERS: dict[str, Callable[..., None]] = {
    "raw_ack": serve_raw_ack,
    "raw_stream": serve_raw_stream,
    "goframe": serve_goframe,
    "mp": serve_mp,
    "gproc": serve_gproc,
}


# --------------------------------------------------------------------------- clients


class Server:
    def __init__(self, kind: str, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.path.dirname(HERE)}
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), kind, *args],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == "ready\n"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def best_of(runs: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(runs))


def per_message(count: int, body: Callable[[], None]) -> float:
    started = time.perf_counter()
    for _ in range(count):
        body()
    return (time.perf_counter() - started) / count


_serial = 0


def _path(tmp: str, name: str) -> str:
    global _serial
    _serial += 1
    return os.path.join(tmp, f"{name}{_serial}")


class Contender:
    """A server process and the client step that sends it one message and waits for the reply."""

    def __init__(self, server: Server, one: Callable[[], None], close: Callable[[], None]) -> None:
        self.server = server
        self.one = one
        self._close = close

    def close(self) -> None:
        self._close()
        self.server.close()


def raw_contender(tmp: str, size: int, mode: str = "drop") -> Contender:
    path = _path(tmp, "raw")
    server = Server("raw_ack", path, mode)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    data = os.urandom(size)
    frame_head = LEN.pack(size)

    def one() -> None:
        if size < 65536:
            sock.sendall(frame_head + data)
        else:
            sock.sendall(frame_head)
            sock.sendall(data)
        sock.recv(1)

    return Contender(server, one, sock.close)


def gproc_contender(size: int, mode: str) -> Contender:
    import gproc

    server = Server("gproc", mode)
    data = os.urandom(size)
    pid = server.proc.pid
    gproc.send(pid, data)

    def one() -> None:
        gproc.send(pid, data)

    return Contender(server, one, lambda: None)


def goframe_contender(tmp: str, size: int) -> Contender:
    port_file = _path(tmp, "port")
    server = Server("goframe", port_file)
    with open(port_file) as f:
        port = int(f.read())
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = os.urandom(size)
    me = os.getpid()
    head = bytearray(4)
    body = bytearray(4096)

    def one() -> None:
        with open(port_file) as f:  # GoFrame looks the port up on every Send
            int(f.read())
        request = json.dumps(
            {
                "SenderPid": me,
                "ReceiverPid": server.proc.pid,
                "Group": "",
                "Data": base64.b64encode(data).decode(),
            }
        ).encode()
        sock.sendall(LEN.pack(len(request)) + request)
        (reply_size,) = LEN.unpack(_recv_exact(sock, 4, head))
        reply = json.loads(bytes(_recv_exact(sock, reply_size, body)))
        assert reply["Code"] == 1

    return Contender(server, one, sock.close)


def mp_contender(tmp: str, size: int) -> Contender:
    path = _path(tmp, "mp")
    server = Server("mp", path)
    conn = Client(path, "AF_UNIX")
    data = os.urandom(size)

    def one() -> None:
        conn.send_bytes(data)
        conn.recv_bytes()

    return Contender(server, one, conn.close)


def interleaved(contenders: dict[str, Contender], count: int, rounds: int) -> dict[str, float]:
    """Best time per message of each contender, their runs taking turns (so a burst of load on
    this shared machine hits them alike)."""
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(rounds):
        for name, contender in contenders.items():
            best[name] = min(best[name], per_message(count, contender.one))
    return best


def raw_stream_rate(tmp: str, count: int) -> float:
    path = _path(tmp, "stream")
    server = Server("raw_stream", path)
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        frame = LEN.pack(SMALL) + os.urandom(SMALL)

        def run() -> float:
            started = time.perf_counter()
            sock.sendall(LEN.pack(count))
            for _ in range(count):
                sock.sendall(frame)
            assert sock.recv(1) == b"k"
            return time.perf_counter() - started

        elapsed = best_of(3, run)
        sock.close()
        return count / elapsed
    finally:
        server.close()


def gproc_pipelined_rate(count: int) -> float:
    from gproc import aio

    server = Server("gproc")
    try:
        data = os.urandom(SMALL)
        pid = server.proc.pid

        async def run() -> float:
            await aio.send(pid, data)
            started = time.perf_counter()
            sent = await aio.send_many(pid, [data] * count, timeout=60)
            assert sent == count
            return time.perf_counter() - started

        elapsed = min(asyncio.run(run()) for _ in range(3))
        return count / elapsed
    finally:
        server.close()


def gproc_concurrent_rate(count: int, tasks: int) -> float:
    from gproc import aio

    server = Server("gproc")
    try:
        data = os.urandom(SMALL)
        pid = server.proc.pid

        async def worker(n: int) -> None:
            for _ in range(n):
                await aio.send(pid, data)

        async def run() -> float:
            await aio.send(pid, data)
            started = time.perf_counter()
            await asyncio.gather(*(worker(count // tasks) for _ in range(tasks)))
            return time.perf_counter() - started

        elapsed = min(asyncio.run(run()) for _ in range(3))
        return (count // tasks * tasks) / elapsed
    finally:
        server.close()


# --------------------------------------------------------------------------- report


def line(name: str, ours: str, theirs: str, ratio: float, target: str, ok: bool | None) -> None:
    verdict = "" if ok is None else ("  ok" if ok else "  MISSED")
    print(f"{name:44} {ours:>14} {theirs:>14}  ratio {ratio:6.2f}  target {target}{verdict}")


def main() -> bool:
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    runtime = tempfile.mkdtemp(prefix="gproc-bench-")
    old_runtime = os.environ.get("GPROC_RUNTIME_DIR")
    os.environ["GPROC_RUNTIME_DIR"] = runtime
    ok = True
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for size, count in ((SMALL, 2000), (BIG, 100)):
                label = "64 B" if size == SMALL else "1 MiB"
                contenders = {
                    "raw": raw_contender(tmp, size, "blocking"),
                    "raw_batch": raw_contender(tmp, size, "batch"),
                    "raw_drop": raw_contender(tmp, size, "drop"),
                    "ours": gproc_contender(size, "batch"),
                    "blocking": gproc_contender(size, "blocking"),
                    "goframe": goframe_contender(tmp, size),
                    "mp": mp_contender(tmp, size),
                }
                try:
                    best = interleaved(contenders, count, 5)
                finally:
                    for contender in contenders.values():
                        contender.close()
                raw, ours, batch = best["raw_drop"], best["blocking"], best["ours"]
                gf, mp = best["goframe"], best["mp"]
                # Judged against the reference as written: a plain request/ack loop whose
                # receiver drops each message. The like-for-like pairs below are information.
                ratio = ours / raw
                good = ratio <= 1.5
                ok &= good
                line(
                    f"send() round trip {label} vs raw request/ack",
                    f"{ours * 1e6:.1f} us",
                    f"{raw * 1e6:.1f} us",
                    ratio,
                    "<= 1.5",
                    good,
                )
                line(
                    f"  same, raw receiver also hands off {label}",
                    f"{ours * 1e6:.1f} us",
                    f"{best['raw'] * 1e6:.1f} us",
                    ours / best["raw"],
                    "(info)",
                    None,
                )
                line(
                    f"  same, receivers draining in batches {label}",
                    f"{batch * 1e6:.1f} us",
                    f"{best['raw_batch'] * 1e6:.1f} us",
                    batch / best["raw_batch"],
                    "(info)",
                    None,
                )
                speedup = gf / ours
                need = 1.5 if size == SMALL else 10.0
                good = speedup >= need
                ok &= good
                line(
                    f"GoFrame emulation {label} / send()",
                    f"{ours * 1e6:.1f} us",
                    f"{gf * 1e6:.1f} us",
                    speedup,
                    f">= {need}",
                    good,
                )
                line(
                    f"multiprocessing.connection {label}",
                    f"{ours * 1e6:.1f} us",
                    f"{mp * 1e6:.1f} us",
                    ours / mp,
                    "(info: send()/mp)",
                    None,
                )
            raw_rate = raw_stream_rate(tmp, 200_000)
            piped = gproc_pipelined_rate(200_000)
            share = piped / raw_rate
            good = share >= 0.25
            ok &= good
            line(
                "aio.send_many 64 B vs raw one-way stream",
                f"{piped:,.0f}/s",
                f"{raw_rate:,.0f}/s",
                share,
                ">= 0.25",
                good,
            )
            concurrent = gproc_concurrent_rate(20_000, 32)
            line(
                "aio.send x32 tasks 64 B vs raw stream",
                f"{concurrent:,.0f}/s",
                f"{raw_rate:,.0f}/s",
                concurrent / raw_rate,
                "(info)",
                None,
            )
    finally:
        os.sched_setaffinity(0, cpus)
        if old_runtime is None:
            os.environ.pop("GPROC_RUNTIME_DIR", None)
        else:
            os.environ["GPROC_RUNTIME_DIR"] = old_runtime
        os.rmdir(runtime) if not os.listdir(runtime) else None
    return ok


if __name__ == "__main__":
    if len(sys.argv) > 1:
        SERVERS[sys.argv[1]](*sys.argv[2:])
    else:
        raise SystemExit(0 if main() else 1)
