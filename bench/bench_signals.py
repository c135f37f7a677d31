"""Signals: delivery-to-handler latency under listen vs a bare signal.signal handler.

Each side runs in a fresh interpreter. A sender thread sends SIGUSR1 to its own process and waits
until the handler has started (an Event), N times in a row; the latency is the time from kill()
to the handler's first line. The reference is the least a correct program can do by hand: a Python
handler installed with ``signal.signal`` that sets the Event, and a wakeup fd the main thread
selects on (without it, a signal the kernel hands to another thread waits until the main thread
wakes for some other reason); no thread, no dispatch. gproc
records the delivery in a pipe, dispatches it on the main thread and starts the handler in a
thread of its own (or as a task, under ``aio.listen``): that is the price of running handlers
outside the signal handler, concurrently and never blocking the listener.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

N = 300
#: gproc's median latency may be this many times the bare handler's.
RATIO_MAX = 5.0
#: ... and must stay under this many microseconds at the median in any case.
MEDIAN_US_MAX = 1000.0

_CHILD = r"""
import asyncio, json, os, signal, sys, threading, time
import gproc
from gproc import aio

N, mode = int(sys.argv[1]), sys.argv[2]
started = threading.Event()
lat = []

def sender():
    for _ in range(N):
        started.clear()
        t0 = time.perf_counter()
        os.kill(os.getpid(), signal.SIGUSR1)
        started.wait(5)
        lat.append(time.perf_counter() - t0)
    os.kill(os.getpid(), signal.SIGTERM)

def sync_handler(sig):
    started.set()

async def async_handler(sig):
    started.set()

if mode == "reference":
    # The lean, correct way by hand: Python handlers plus a wakeup fd, so the main thread wakes
    # even when the kernel hands the signal to the sender thread.
    import select
    finished = threading.Event()
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)
    signal.signal(signal.SIGUSR1, lambda signum, frame: started.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: finished.set())
    threading.Thread(target=sender).start()
    while not finished.is_set():
        select.select([r], [], [])
        os.read(r, 512)
elif mode == "gproc":
    gproc.add_sig_handler(sync_handler, signal.SIGUSR1)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    threading.Thread(target=sender).start()
    gproc.listen()
else:
    aio.add_sig_handler(async_handler, signal.SIGUSR1)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    threading.Thread(target=sender).start()
    asyncio.run(aio.listen())
print(json.dumps(lat))
"""


def _measure(mode: str) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(N), mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    samples: list[float] = json.loads(out)
    return samples[5:]  # the first deliveries pay for imports and first thread starts


def _us(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] * 1e6 if q < 100 else 0.0


def main() -> bool:
    reference = _measure("reference")
    ref_median = statistics.median(reference) * 1e6
    print(
        f"bare signal.signal handler: median {ref_median:.0f} us, p99 {_us(reference, 99):.0f} us"
    )
    ok = True
    for mode, label in (("gproc", "gproc.listen, thread handler"), ("aio", "aio.listen, task")):
        samples = _measure(mode)
        median = statistics.median(samples) * 1e6
        ratio = median / ref_median
        held = ratio <= RATIO_MAX and median <= MEDIAN_US_MAX
        ok = ok and held
        print(
            f"{label}: median {median:.0f} us, p99 {_us(samples, 99):.0f} us; "
            f"ratio {ratio:.1f}x (target <= {RATIO_MAX:g}x and <= {MEDIAN_US_MAX:g} us) "
            f"{'ok' if held else 'MISSED'}"
        )
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
