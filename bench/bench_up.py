"""gproc up: one supervisor, 200 processes printing a line every 100 ms each.

Figures: the supervisor's CPU use (% of one core; target < 5%) and its thread count (target: a
constant, not one per process), while it relays 2000 lines per second. The reference is the
cheapest possible relay written in the same language: a bare ``selectors`` loop that reads the
same 200 pipes and writes each line with a prefix, with no supervision at all.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

COPIES = 200
WARMUP = 2.0
MEASURE = 5.0
CPU_TARGET = 5.0
THREAD_TARGET = 4

CHILD = (
    "import sys, time\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1\n"
    "    sys.stdout.write(f'line {n} of a worker, long enough to look like a log line\\n')\n"
    "    sys.stdout.flush()\n"
    "    time.sleep(0.1)\n"
)

#: The reference: start the same children, relay their lines with a prefix. Nothing else.
RELAY = """
import os, selectors, subprocess, sys, time
child, copies = sys.argv[1], int(sys.argv[2])
sel = selectors.DefaultSelector()
procs = []
for i in range(copies):
    r, w = os.pipe()
    procs.append(subprocess.Popen([sys.executable, "-S", "-c", child], stdout=w, stderr=w,
                                  start_new_session=True))
    os.close(w)
    sel.register(r, selectors.EVENT_READ, (f"worker.{i + 1} | ".encode(), [b""]))
print("ready", flush=True)
out = sys.stdout.buffer
try:
    while True:
        batch = []
        for key, _ in sel.select():
            prefix, partial = key.data
            data = partial[0] + os.read(key.fd, 65536)
            *lines, partial[0] = data.split(b"\\n")
            stamp = time.strftime("%H:%M:%S ").encode()
            batch.extend(stamp + prefix + line + b"\\n" for line in lines)
        out.write(b"".join(batch))
        out.flush()
except KeyboardInterrupt:
    for p in procs:
        os.killpg(p.pid, 9)
    for p in procs:
        p.wait()
"""


class Reader:
    """Drains the supervisor's output (as a terminal would) and counts lines."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.fd, selectors.EVENT_READ)
        self.lines = 0
        self.text = b""

    def pump(self, seconds: float, until: bytes | None = None, count: int = 1) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.selector.select(deadline - time.monotonic()):
                continue
            try:
                chunk = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                return False
            self.lines += chunk.count(b"\n")
            if until is not None:
                self.text += chunk
                if self.text.count(until) >= count:
                    return True
        return until is None


def measure(argv: list[str], cwd: Path, ready: bytes, count: int) -> tuple[float, int, float]:
    """CPU % of one core, threads, and lines per second of the relaying process."""
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE)
    reader = Reader(proc)
    try:
        if not reader.pump(60, until=ready, count=count):
            raise RuntimeError(f"{argv[:4]} did not start its children")
        reader.text = b""
        reader.pump(WARMUP)
        me = psutil.Process(proc.pid)
        before = me.cpu_times()
        lines_before = reader.lines
        started = time.monotonic()
        reader.pump(MEASURE)
        elapsed = time.monotonic() - started
        after = me.cpu_times()
        threads = me.num_threads()
        used = (after.user - before.user) + (after.system - before.system)
        return 100 * used / elapsed, threads, (reader.lines - lines_before) / elapsed
    finally:
        proc.send_signal(2)
        reader.pump(30, until=b"\0never")  # drain until it exits
        proc.wait(timeout=30)


def main() -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        child = root / "worker.py"
        child.write_text(CHILD)
        (root / "Procfile").write_text(f"worker: exec {sys.executable} -S {child}\n")
        cpu, threads, rate = measure(
            [sys.executable, "-m", "gproc", "up", "-c", f"worker={COPIES}"],
            root,
            b" started (pid",
            COPIES,
        )
        ref_cpu, ref_threads, ref_rate = measure(
            [sys.executable, "-c", RELAY, CHILD, str(COPIES)], root, b"ready", 1
        )
    ok_cpu = cpu < CPU_TARGET
    ok_threads = threads <= THREAD_TARGET
    print(
        f"supervisor CPU, {COPIES} processes, {rate:.0f} lines/s: {cpu:.2f}% of one core "
        f"(bare selectors relay: {ref_cpu:.2f}%, {ref_rate:.0f} lines/s; "
        f"ratio {cpu / max(ref_cpu, 0.01):.2f}x) target < {CPU_TARGET:g}%: "
        f"{'ok' if ok_cpu else 'MISSED'}"
    )
    print(
        f"supervisor threads with {COPIES} processes: {threads} "
        f"(bare relay: {ref_threads}) target <= {THREAD_TARGET}: "
        f"{'ok' if ok_threads else 'MISSED'}"
    )
    return ok_cpu and ok_threads


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
