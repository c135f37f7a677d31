"""Manager at scale: 1000 children started, killed, waited; spawn rate vs raw subprocess.Popen.

Every measurement runs in a fresh interpreter pinned to one CPU (children inherit the pinning),
so peak RSS is comparable and the two sides compete for the same core. The reference is written
here: ``subprocess.Popen`` + a pidfd per child + one epoll loop, the lean way to do it by hand.
Runs alternate (reference, gproc, reference, gproc, ...); each ratio is the median of the ratios of
back-to-back pairs, which cancels most of the drift of a shared, loaded machine.
"""

from __future__ import annotations

import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

N_CHILDREN = 1000
N_SPAWN = 300
ROUNDS = 7

TIME_RATIO_MAX = 1.10
RSS_EXTRA_KB_MAX = 4.0
THREADS_MAX = 4
SPAWN_RATIO_MIN = 0.90


# ---------------------------------------------------------------------- inside the fresh process


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


class _ThreadSampler:
    """Samples the thread count on a timer signal (the handler only records)."""

    def __init__(self) -> None:
        self.peak = 0
        self._fd = os.open("/proc/self/task", os.O_RDONLY | os.O_DIRECTORY)

    def _sample(self, *_: object) -> None:
        self.peak = max(self.peak, len(os.listdir(self._fd)))

    def __enter__(self) -> _ThreadSampler:
        self._sample()
        signal.signal(signal.SIGALRM, self._sample)
        signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
        return self

    def __exit__(self, *_: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        self._sample()
        os.close(self._fd)


def _reference_scale(n: int) -> None:
    epoll = select.epoll()
    children: dict[int, subprocess.Popen[bytes]] = {}
    for _ in range(n):
        child = subprocess.Popen(["sleep", "60"], start_new_session=True)
        fd = os.pidfd_open(child.pid)
        epoll.register(fd, select.EPOLLIN)
        children[fd] = child
    for fd in children:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    codes = {}
    while children:
        for fd, _ in epoll.poll():
            child = children.pop(fd)
            epoll.unregister(fd)
            os.close(fd)
            codes[child.pid] = child.wait()
    epoll.close()
    assert set(codes.values()) == {-signal.SIGKILL}


def _gproc_scale(n: int) -> None:
    import gproc

    manager = gproc.Manager()
    for _ in range(n):
        manager.new_process("sleep", ["60"]).start()
    manager.kill_all()
    codes = manager.wait_all()
    assert len(codes) == n
    assert set(codes.values()) == {-signal.SIGKILL}


def _reference_spawn(n: int) -> list[int]:
    return [subprocess.Popen(["true"]).pid for _ in range(n)]


def _gproc_spawn(n: int) -> list[int]:
    import gproc

    return [gproc.Process("true").start() for _ in range(n)]


def child_main(mode: str) -> None:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    import gproc  # both sides pay the import before the baseline  # noqa: F401

    baseline = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    result: dict[str, float] = {}
    if mode.endswith("scale"):
        run: Callable[[int], object] = _reference_scale if mode == "ref-scale" else _gproc_scale
        with _ThreadSampler() as sampler:
            started = time.perf_counter()
            run(N_CHILDREN)
            result["seconds"] = time.perf_counter() - started
        result["threads"] = sampler.peak
        result["rss_per_child_kb"] = (_status_kb("VmHWM") - baseline) / N_CHILDREN
    else:
        spawn = _reference_spawn if mode == "ref-spawn" else _gproc_spawn
        started = time.perf_counter()
        pids = spawn(N_SPAWN)
        result["rate"] = N_SPAWN / (time.perf_counter() - started)
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:  # already reaped by subprocess's own cleanup
                pass
    print(json.dumps(result))


# ---------------------------------------------------------------------- the driver


def _measure(mode: str) -> dict[str, float]:
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=f"{root / 'src'}{os.pathsep}{root}")
    done = subprocess.run(
        [sys.executable, __file__, mode],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=300,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _line(name: str, text: str, ok: bool) -> bool:
    print(f"{name:<34} {text}  {'OK' if ok else 'MISSED'}", flush=True)
    return ok


def main() -> bool:
    scale: dict[str, list[dict[str, float]]] = {"ref-scale": [], "gproc-scale": []}
    spawn: dict[str, list[dict[str, float]]] = {"ref-spawn": [], "gproc-spawn": []}
    for _ in range(ROUNDS):
        for mode, runs in (*scale.items(), *spawn.items()):
            runs.append(_measure(mode))

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    def paired(ours: list[dict[str, float]], ref: list[dict[str, float]], key: str) -> float:
        return statistics.median(o[key] / r[key] for o, r in zip(ours, ref, strict=True))

    time_ratio = paired(scale["gproc-scale"], scale["ref-scale"], "seconds")
    rate_ratio = paired(spawn["gproc-spawn"], spawn["ref-spawn"], "rate")
    ref_s, gp_s = median(scale["ref-scale"], "seconds"), median(scale["gproc-scale"], "seconds")
    ref_kb = median(scale["ref-scale"], "rss_per_child_kb")
    gp_kb = median(scale["gproc-scale"], "rss_per_child_kb")
    threads = max(r["threads"] for r in scale["gproc-scale"])
    ref_threads = max(r["threads"] for r in scale["ref-scale"])
    ref_rate = median(spawn["ref-spawn"], "rate")
    gp_rate = median(spawn["gproc-spawn"], "rate")

    ok = _line(
        f"{N_CHILDREN} children start+kill+wait",
        f"gproc {gp_s:.2f}s, reference {ref_s:.2f}s, ratio {time_ratio:.2f} "
        f"(target <= {TIME_RATIO_MAX})",
        time_ratio <= TIME_RATIO_MAX,
    )
    ok &= _line(
        "peak RSS growth per child",
        f"gproc {gp_kb:.2f} kB, reference {ref_kb:.2f} kB, extra {gp_kb - ref_kb:+.2f} kB "
        f"(target <= +{RSS_EXTRA_KB_MAX} kB)",
        gp_kb - ref_kb <= RSS_EXTRA_KB_MAX,
    )
    ok &= _line(
        "threads while waiting (peak)",
        f"gproc {threads:.0f}, reference {ref_threads:.0f} (target <= {THREADS_MAX})",
        threads <= THREADS_MAX,
    )
    ok &= _line(
        "spawn rate Process().start()",
        f"gproc {gp_rate:.0f}/s, Popen {ref_rate:.0f}/s, ratio {rate_ratio:.2f} "
        f"(target >= {SPAWN_RATIO_MIN})",
        rate_ratio >= SPAWN_RATIO_MIN,
    )
    return ok


if __name__ == "__main__":
    if len(sys.argv) == 2:
        child_main(sys.argv[1])
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        raise SystemExit(0 if main() else 1)
