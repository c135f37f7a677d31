"""``gproc demo``: a short, readable end-to-end tour of gproc, printed to the terminal.

Each part of gproc adds a chapter; every chapter uses only the public API, as a user would.
"""

from __future__ import annotations

import argparse
import io
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import gproc

from .up_demo import up_chapter


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="a guided tour of gproc, end to end")
    p.set_defaults(handler=run)


def _title(text: str) -> None:
    print(f"\n== {text} ==", flush=True)


def identity() -> None:
    _title("Identity")
    print(f"pid={gproc.pid()} ppid={gproc.ppid()} is_child={gproc.is_child()}")
    print(f"started {gproc.start_time():%H:%M:%S}, up {gproc.uptime().total_seconds():.2f}s")
    print(f"search_binary('sh') -> {gproc.search_binary('sh')}")


def shell_helpers() -> None:
    _title("Shell helpers")
    out = gproc.shell_exec("echo out; echo err >&2; echo GPROC_PPID=$GPROC_PPID")
    print("shell_exec captured, in order:", out.splitlines())
    sink = io.StringIO()
    gproc.shell("printf 'a\\nb\\n'", stdout=sink)
    print("shell streamed into a StringIO:", sink.getvalue().splitlines())
    try:
        gproc.shell_exec("echo about to fail; exit 3")
    except gproc.ShellError as exc:
        print(f"a failure raises ShellError: returncode={exc.returncode}, output={exc.output!r}")


def timeout_kills_tree() -> None:
    _title("A timeout stops the whole tree")
    started = time.monotonic()
    try:
        # The shell starts a grandchild that holds the output pipe; neither survives the timeout.
        gproc.shell_exec("sleep 100 & echo started; wait", timeout=0.5, grace=0.5)
    except gproc.ShellTimeout as exc:
        took = time.monotonic() - started
        print(
            f"ShellTimeout after {took:.2f}s: {exc.signal or exc.returncode}, output={exc.output!r}"
        )


def processes_and_manager() -> None:
    _title("Processes and the Manager")
    said = io.StringIO()
    code = gproc.Process(
        "sh", ["-c", "echo child $$ got GPROC_PPID=$GPROC_PPID"], stdout=said
    ).run()
    print(f"Process(...).run() -> {code}; the child said: {said.getvalue().strip()!r}")
    worker = (
        "trap 'echo worker $GPROC_DEMO_N stopping cleanly; exit 0' TERM; "
        "echo worker $GPROC_DEMO_N ready; while :; do sleep 1 & wait $!; done"
    )
    with gproc.Manager(grace=2) as manager:
        workers = [
            manager.new_command(worker, {"GPROC_DEMO_N": str(n)}, stdout=gproc.PIPE)
            for n in range(3)
        ]
        for proc in workers:
            proc.start()
        for proc in workers:  # readiness handshake: each worker says so on its pipe
            assert proc.stdout is not None
            print(f"  [{proc.pid}] {proc.stdout.readline().decode().strip()}")
        print(f"running: {len(manager.running())} of {len(manager)}, pids {manager.pids()}")
        started = time.monotonic()
        codes = manager.terminate_all()
        took = time.monotonic() - started
        print(f"terminate_all() -> {codes} in {took:.3f}s (SIGTERM to all at once)")
        for proc in workers:
            assert proc.stdout is not None
            print(f"  [{proc.pid}] {proc.stdout.read().decode().strip()}")
            proc.stdout.close()
        print(f"still listed with exit codes: {len(manager)}; running: {manager.running()}")


#: The program the signals chapter starts: a Manager with two workers that it stops on shutdown,
#: a reload handler and two cleanup handlers.
_LISTENER = """
import signal, sys, time
import gproc

def say(text):
    sys.stdout.write(text + "\\n")
    sys.stdout.flush()

def reload_config(sig):
    say(f"reload_config ran for {sig.name}")

def close_database(sig):
    time.sleep(0.2)  # slow cleanup; runs alongside the others, not before them
    say(f"close_database ran for {sig.name}")

def flush_logs(sig):
    say(f"flush_logs ran for {sig.name}")

worker = ("trap 'echo worker $N: got SIGTERM, exiting; exit 0' TERM; echo worker $N: up; "
          "while :; do sleep 1 & wait $!; done")
with gproc.Manager() as workers:
    for n in range(2):
        workers.new_command(worker, {"N": str(n)}).start()
    workers.shutdown_on_signals(grace=2)  # SIGTERM to each tree, SIGKILL after 2 s
    gproc.add_sig_handler(reload_config, signal.SIGHUP)
    gproc.add_sig_handler_shutdown(close_database, flush_logs)
    # Hold the signals until listen() takes them, so "ready" cannot race its installation. Only
    # now: children started while signals are blocked would inherit the block.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP, signal.SIGTERM})
    say("ready")
    started = time.monotonic()
    sig = gproc.listen()
    codes = [p.returncode for p in workers.processes()]
    say(f"listen() returned {sig.name} after {time.monotonic() - started:.2f}s; workers: {codes}")
"""


def graceful_shutdown() -> None:
    _title("Signals and graceful shutdown")
    child = subprocess.Popen([sys.executable, "-c", _LISTENER], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    with child:
        waiting_for = {"ready", "worker 0: up", "worker 1: up"}
        while waiting_for:  # readiness handshake: the program and both workers say so
            line = child.stdout.readline().rstrip()
            if not line:
                break
            waiting_for.discard(line)
            print("child:", line)
        print(f"child {child.pid} is listening; sending SIGHUP, then SIGTERM")
        child.send_signal(signal.SIGHUP)
        print("child:", child.stdout.readline().rstrip())
        child.send_signal(signal.SIGTERM)
        for line in child.stdout:
            print("child:", line.rstrip())
    print(
        f"child exited with status {child.returncode}: handlers ran, workers stopped, then it ended"
    )


_CHILD = """
import gproc
for i in range(2):
    gproc.send(gproc.ppid(), f"hello #{i} from child {gproc.pid()}", "demo")
question = gproc.receive("ask", timeout=10)
question.reply(question.text.upper())
gproc.receive("ctl", timeout=10)  # the parent's broadcast: time to go
"""


def messaging() -> None:
    _title("Messaging by pid (GoFrame's example)")
    gproc.start_receiving()
    with gproc.Manager(grace=2) as manager:
        children = [manager.new_process(sys.executable, ["-c", _CHILD]) for _ in range(3)]
        for child in children:
            child.start()  # each child sends to ppid() at once, receiving or not
        for _ in range(2 * len(children)):
            message = gproc.receive("demo", timeout=10)
            print(f"parent got from pid {message.sender_pid}: {message.text!r}")
        for child in children:
            answer = gproc.request(child.pid or 0, f"are you there, {child.pid}?", "ask")
            print(f"request to {child.pid} -> reply {answer.decode()!r}")
        failures = manager.send(b"bye", "ctl")  # broadcast: {pid: error} for any that failed
        assert not failures, failures
        codes = manager.wait_all(timeout=10)
        print(f"broadcast 'bye'; the children exited with {list(codes.values())}")
    try:
        gproc.receive("demo", timeout=0.1)
    except gproc.ReceiveTimeout as exc:
        is_timeout = isinstance(exc, TimeoutError)
        print(f"nothing more: {type(exc).__name__}, a TimeoutError: {is_timeout}")


CHAPTERS: list[Callable[[], None]] = [
    identity,
    shell_helpers,
    timeout_kills_tree,
    processes_and_manager,
    graceful_shutdown,
    messaging,
    up_chapter,
]


def run(args: argparse.Namespace) -> int:
    print("gproc demo: process management and messaging, end to end")
    for chapter in CHAPTERS:
        chapter()
    print("\ndone: nothing left running.", flush=True)
    sys.stdout.flush()
    return 0
