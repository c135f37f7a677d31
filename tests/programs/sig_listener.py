"""A program that registers signal handlers and listens, for tests/test_signals.py.

Usage: sig_listener.py SCENARIO. Every line it prints is one fact the test waits for.

Readiness without a race: the program blocks the signals it handles *before* it prints "ready",
so a signal sent right after "ready" stays pending (it cannot kill the program with the default
action) until ``listen`` installs its handlers and unblocks it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time

import gproc
from gproc import aio
from gproc._drive import Op, sleep
from gproc._signals import OpHandler

USR1, USR2, TERM, INT = signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT


_say_lock = threading.Lock()


def say(*parts: object) -> None:
    # One write per line under a lock: handlers print from several threads at once.
    with _say_lock:
        sys.stdout.write(" ".join(map(str, parts)) + "\n")
        sys.stdout.flush()


def block() -> None:
    # Threads inherit the mask: block before starting any, or the kernel may hand a signal to a
    # thread that does not block it, where the default action would end the program.
    signal.pthread_sigmask(signal.SIG_BLOCK, {USR1, USR2, TERM, INT})


def ready() -> None:
    block()
    say("ready")


def basic() -> None:
    """One handler for two signals; a shutdown handler; non-shutdown signals keep it alive."""
    gproc.add_sig_handler(lambda sig: say("handler", sig.name), USR1, USR2)
    gproc.add_sig_handler_shutdown(lambda sig: say("shutdown", sig.name))
    ready()
    say("listen returned", gproc.listen().name)  # type: ignore[union-attr]


def concurrent() -> None:
    """Two handlers for one signal that can only finish if they run at the same time."""
    both = threading.Barrier(2, timeout=10)

    def make(name: str) -> gproc._signals.SignalHandler:
        def handler(sig: signal.Signals) -> None:
            say("start", name)
            both.wait()
            say("done", name)

        handler.__qualname__ = f"handler_{name}"
        return handler

    gproc.add_sig_handler_shutdown(make("a"), make("b"))
    ready()
    say("listen returned", gproc.listen().name)  # type: ignore[union-attr]


def threads() -> None:
    """Listeners in several threads, before and after the main thread listens, all return."""
    block()
    results: list[str] = []
    lock = threading.Lock()

    def listener(name: str) -> None:
        sig = gproc.listen()
        with lock:
            results.append(f"{name}={sig.name if sig else None}")

    def aio_listener() -> None:
        sig = asyncio.run(aio.listen())  # a loop in another thread: a follower too
        with lock:
            results.append(f"aio={sig.name if sig else None}")

    early = [threading.Thread(target=listener, args=(f"early{i}",)) for i in range(2)]
    early.append(threading.Thread(target=aio_listener))
    for t in early:
        t.start()
    late: list[threading.Thread] = []

    def on_usr1(sig: signal.Signals) -> None:
        # Started while the main thread listens: a late listener and a late registration.
        t = threading.Thread(target=listener, args=("late",))
        late.append(t)
        t.start()
        gproc.add_sig_handler(lambda s: say("handler", s.name), USR2)
        say("late listener started")

    gproc.add_sig_handler(on_usr1, USR1)
    ready()
    main_result = gproc.listen()
    for t in early + late:
        t.join()
    say("main returned", main_result.name if main_result else None)
    say("threads returned", " ".join(sorted(results)))
    # A call after shutdown returns at once, on any thread.
    again: list[object] = []
    t = threading.Thread(target=lambda: again.append(gproc.listen()))
    t.start()
    t.join()
    say("after shutdown", gproc.listen().name, again[0].name)  # type: ignore[union-attr, attr-defined]


def burst() -> None:
    """Each delivery runs the handler, even while earlier runs are still busy."""
    count = 0
    lock = threading.Lock()
    release = threading.Event()

    def busy(sig: signal.Signals) -> None:
        nonlocal count
        with lock:
            count += 1
            say("run", count)
        release.wait(20)

    gproc.add_sig_handler(busy, USR1)
    gproc.add_sig_handler_shutdown(lambda sig: release.set())
    ready()
    gproc.listen()
    say("count", count)


def misbehaving() -> None:
    """One handler raises, one overruns the shutdown timeout, one behaves."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    gproc.set_shutdown_timeout(0.5)

    def raising(sig: signal.Signals) -> None:
        raise ValueError("boom from the raising handler")

    def overrunning(sig: signal.Signals) -> None:
        say("overrunning started")
        time.sleep(30)

    def good(sig: signal.Signals) -> None:
        say("good ran")

    gproc.add_sig_handler_shutdown(raising, overrunning, good)
    ready()
    say("listen returned", gproc.listen().name)  # type: ignore[union-attr]


def ctrl_c_before_listen() -> None:
    """A registered shutdown handler does not swallow Ctrl+C when nobody listens."""
    gproc.add_sig_handler_shutdown(lambda sig: say("handler ran (wrong)"))
    gproc.add_sig_handler(lambda sig: say("handler ran (wrong)"), INT)
    try:
        say("ready")  # inside the try: the interrupt may come as soon as this line is out
        threading.Event().wait(20)
        say("no interrupt (wrong)")
    except KeyboardInterrupt:
        say("KeyboardInterrupt")


def restored_after_listen() -> None:
    """After listen returns, Ctrl+C is KeyboardInterrupt again and SIGTERM kills."""
    gproc.add_sig_handler_shutdown(lambda sig: say("shutdown", sig.name))
    gproc.add_sig_handler(lambda sig: say("handler", sig.name), USR1)
    ready()
    say("listen returned", gproc.listen().name)  # type: ignore[union-attr]
    default = signal.getsignal(INT) is signal.default_int_handler
    restored = default and all(signal.getsignal(s) == signal.SIG_DFL for s in (TERM, USR1))
    try:
        say("restored", restored)  # the interrupt may come as soon as this line is out
        threading.Event().wait(20)
        say("no interrupt (wrong)")
    except KeyboardInterrupt:
        say("KeyboardInterrupt")
    say("waiting for SIGTERM")
    threading.Event().wait(20)
    say("still alive (wrong)")


def second_ctrl_c() -> None:
    """A second Ctrl+C during a slow cleanup ends the program."""
    stuck = threading.Event()

    def slow_cleanup(sig: signal.Signals) -> None:
        say("cleanup started")
        stuck.wait(20)

    gproc.add_sig_handler_shutdown(slow_cleanup)
    ready()
    try:
        gproc.listen()
        say("listen returned (wrong)")
    except KeyboardInterrupt:
        say("KeyboardInterrupt during cleanup")


def asyncio_listen() -> None:
    """aio.listen awaits coroutine handlers on its loop and runs plain ones in threads."""
    loop_thread = threading.current_thread()

    async def on_usr1(sig: signal.Signals) -> None:
        await asyncio.sleep(0)
        say("async handler", sig.name, threading.current_thread() is loop_thread)

    async def async_cleanup(sig: signal.Signals) -> None:
        await asyncio.sleep(0.05)
        say("async shutdown", sig.name)

    def sync_cleanup(sig: signal.Signals) -> None:
        say("sync shutdown", sig.name, threading.current_thread() is loop_thread)

    def op_cleanup(sig: signal.Signals) -> Op[None]:
        yield from sleep(0.01)  # waits like every gproc operation: on the loop, not in a thread
        say("op shutdown", sig.name, threading.current_thread() is loop_thread)

    async def main() -> None:
        aio.add_sig_handler(on_usr1, USR1)
        aio.add_sig_handler_shutdown(async_cleanup, sync_cleanup, OpHandler(op_cleanup, "op"))
        ready()
        sig = await aio.listen()
        say("aio.listen returned", sig.name if sig else None)

    asyncio.run(main())


def asyncio_overrun() -> None:
    """An async shutdown handler that overruns the timeout is cancelled and named."""
    gproc.set_shutdown_timeout(0.3)

    async def hanging(sig: signal.Signals) -> None:
        try:
            say("hanging started")
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            say("hanging cancelled")
            raise

    async def main() -> None:
        aio.add_sig_handler_shutdown(hanging)
        ready()
        sig = await aio.listen()
        await asyncio.sleep(0)  # let the cancelled handler see its cancellation
        say("aio.listen returned", sig.name if sig else None)

    asyncio.run(main())


def custom_shutdown_set() -> None:
    """With SIGUSR2 as the only shutdown signal, SIGTERM is an ordinary signal."""
    gproc.set_shutdown_signals(USR2)
    gproc.add_sig_handler(lambda sig: say("handler", sig.name), TERM)
    gproc.add_sig_handler_shutdown(lambda sig: say("shutdown", sig.name))
    ready()
    say("listen returned", gproc.listen().name)  # type: ignore[union-attr]


def async_handler_under_sync_listen() -> None:
    async def on_usr1(sig: signal.Signals) -> None:
        await asyncio.sleep(0)
        say("async handler", sig.name)

    gproc.add_sig_handler(on_usr1, USR1)
    ready()
    say("listen returned", gproc.listen().name)  # type: ignore[union-attr]


def no_main_listener() -> None:
    """Listening in a thread when the main thread never will raises instead of hanging."""

    def waiting_listener() -> None:
        try:
            gproc.listen()
            say("returned (wrong)")
        except gproc.SignalError as exc:
            say("waiting listener: SignalError:", exc)

    def late_listener() -> None:
        threading.main_thread().join()
        try:
            gproc.listen(timeout=5)
            say("returned (wrong)")
        except gproc.SignalError as exc:
            say("late listener: SignalError:", exc)

    threading.Thread(target=waiting_listener).start()
    threading.Thread(target=late_listener).start()
    say("main thread done")


SCENARIOS = {
    f.__name__: f
    for f in (
        basic,
        concurrent,
        threads,
        burst,
        misbehaving,
        ctrl_c_before_listen,
        restored_after_listen,
        second_ctrl_c,
        asyncio_listen,
        asyncio_overrun,
        custom_shutdown_set,
        async_handler_under_sync_listen,
        no_main_listener,
    )
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
