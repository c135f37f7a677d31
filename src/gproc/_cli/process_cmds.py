"""``gproc spawn -n N CMD``: N copies of a command under a Manager, output prefixed per copy."""

from __future__ import annotations

import argparse
import signal as _signal
import sys
import threading
from typing import Any, TextIO

from .._drive import run_sync
from .._errors import signal_name
from .._listen import listen_op, stop_listening
from .._manager import Manager
from .._process import DEFAULT_GRACE
from .._streams import DEVNULL
from .shell_cmds import _command_line, _env

#: Each copy finds its number (0 .. N-1) in this variable.
INDEX_ENV = "GPROC_INDEX"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "spawn",
        help="start N copies of a command, prefix their output, stop all on Ctrl+C",
        description="Start N copies of CMD (through the shell) under one Manager. Each line "
        "a copy writes (stdout and stderr) is printed as '[INDEX PID] line'; each copy gets "
        f"{INDEX_ENV}=INDEX; stdin is ours for one copy, /dev/null for several. Ctrl+C or "
        "SIGTERM stops every copy's process tree (SIGTERM, then SIGKILL after --grace seconds) "
        "and exits 128 + the signal's number (130, 143). Otherwise exits 1 if any copy failed.",
    )
    p.add_argument("-n", type=int, default=1, metavar="N", help="how many copies (default 1)")
    p.add_argument(
        "--grace", type=float, default=DEFAULT_GRACE, help="seconds between SIGTERM and SIGKILL"
    )
    p.add_argument(
        "-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="set a variable"
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD", help="the command")
    p.set_defaults(handler=_spawn)


class LinePrefixer:
    """A text sink that writes whole lines to ``out``, each behind ``prefix``.

    A partial line waits for its end, so lines of different copies never mix; :meth:`finish`
    writes what is left once the copy has exited.
    """

    def __init__(self, out: TextIO, prefix: str = "") -> None:
        self.out = out
        self.prefix = prefix
        self._pending = ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        if lines:
            self.out.write("".join(f"{self.prefix}{line}\n" for line in lines))
            self.out.flush()
        return len(text)

    def finish(self) -> None:
        if self._pending:
            self.write("\n")


def _spawn(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ValueError(f"-n takes a count >= 1, not {args.n}")
    # Until listen() takes over, SIGTERM's default action would end us at once and orphan the
    # copies started so far. Record it instead (raising from the handler could land inside a
    # Popen, between the fork and the moment the child is known); the start loop and the
    # listening hook look at the record. (Ctrl+C is covered by KeyboardInterrupt.)
    pending: list[int] = []
    previous = _signal.signal(_signal.SIGTERM, lambda signum, frame: pending.append(signum))
    try:
        return _spawn_copies(args, pending)
    finally:
        _signal.signal(_signal.SIGTERM, previous)


def _spawn_copies(args: argparse.Namespace, pending: list[int]) -> int:
    cmd = _command_line(args)
    env = _env(args)
    sinks: list[LinePrefixer] = []
    # Several copies reading one stdin would steal each other's input: only a single copy gets it.
    stdin = None if args.n == 1 else DEVNULL
    with Manager(grace=args.grace) as manager:
        for index in range(args.n):
            if pending:
                break  # SIGTERM while starting: leaving the `with` stops the copies started
            sink = LinePrefixer(sys.stdout)
            proc = manager.new_command(
                cmd, {**env, INDEX_ENV: str(index)}, stdin=stdin, stdout=sink, stderr=sink
            )
            sink.prefix = f"[{index} {proc.start()}] "
            sinks.append(sink)
        if pending:
            codes: dict[int, int | None] = {}
            stopped_by: _signal.Signals | None = _signal.Signals(pending[0])
        else:
            codes, stopped_by = _wait_or_shutdown(manager, args.grace, pending)
    for sink in sinks:
        sink.finish()
    failed = 0
    for index, (pid, code) in enumerate(codes.items()):
        if code != 0:
            failed += 1
            how = (
                f"was killed by {signal_name(-code)}"
                if code and code < 0
                else f"exited with {code}"
            )
            print(f"gproc: [{index} {pid}] {how}", file=sys.stderr)
    if stopped_by is not None:
        print(f"gproc: {stopped_by.name}: stopped every copy", file=sys.stderr)
        return 128 + stopped_by  # the shell's convention: 130 for Ctrl+C, 143 for SIGTERM
    return 1 if failed else 0


def _wait_or_shutdown(
    manager: Manager, grace: float, pending: list[int]
) -> tuple[dict[int, int | None], _signal.Signals | None]:
    """Wait for every copy to exit, or for a shutdown signal that stops them all (with the grace
    policy) first. Returns the exit codes and the signal, if one ended it."""
    manager.shutdown_on_signals(grace)
    outcome: dict[int, int | None] = {}
    failure: list[BaseException] = []

    def wait_all() -> None:
        # The copies' output is pumped by this wait; the main thread must listen for signals.
        try:
            outcome.update(manager.wait_all())
        except BaseException as exc:
            failure.append(exc)
        finally:
            stop_listening()  # every copy exited by itself: listening is over

    waiter = threading.Thread(target=wait_all, name="gproc spawn: wait_all", daemon=True)
    waiter.start()
    n = len(manager)

    def listening() -> None:
        if pending:  # SIGTERM came after the start loop but before listen was in place
            stop_listening()
            return
        print(f"gproc: {n} running; Ctrl+C or SIGTERM stops them all", file=sys.stderr, flush=True)

    stopped_by = run_sync(listen_op(on_listening=listening))
    if stopped_by is None and pending:
        stopped_by = _signal.Signals(pending[0])
        manager.terminate_all(grace)
    # After a shutdown the copies are gone (or SIGKILLed): the wait ends promptly.
    waiter.join()
    if failure:
        raise failure[0]
    return outcome, stopped_by
