"""``gproc demo``: a short, readable end-to-end tour of gproc, printed to the terminal.

Each part of gproc adds a chapter; every chapter uses only the public API, as a user would.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import gproc


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


_CHILD = """
import gproc
for i in range(2):
    gproc.send(gproc.ppid(), f"hello #{i} from child {gproc.pid()}", "demo")
question = gproc.receive("ask", timeout=10)
question.reply(question.text.upper())
"""


def messaging() -> None:
    _title("Messaging by pid")
    gproc.start_receiving()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD], env={**os.environ, gproc.PPID_ENV: str(gproc.pid())}
        )
        for _ in range(3)
    ]
    try:
        for _ in range(2 * len(children)):
            message = gproc.receive("demo", timeout=10)
            print(f"parent got from pid {message.sender_pid}: {message.text!r}")
        for child in children:
            answer = gproc.request(child.pid, f"are you there, {child.pid}?", "ask")
            print(f"request to {child.pid} -> reply {answer.decode()!r}")
        try:
            gproc.receive("demo", timeout=0.1)
        except gproc.ReceiveTimeout as exc:
            is_timeout = isinstance(exc, TimeoutError)
            print(f"nothing more: {type(exc).__name__}, a TimeoutError: {is_timeout}")
    finally:
        for child in children:
            child.wait(10)
    print("every child sent, answered and exited")


CHAPTERS: list[Callable[[], None]] = [identity, shell_helpers, timeout_kills_tree, messaging]


def run(args: argparse.Namespace) -> int:
    print("gproc demo: process management and messaging, end to end")
    for chapter in CHAPTERS:
        chapter()
    print("\ndone: nothing left running.", flush=True)
    sys.stdout.flush()
    return 0
