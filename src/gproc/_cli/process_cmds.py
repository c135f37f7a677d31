"""``gproc spawn -n N CMD``: N copies of a command under a Manager, output prefixed per copy."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from .._errors import signal_name
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
        f"{INDEX_ENV}=INDEX; stdin is ours for one copy, /dev/null for several. Ctrl+C stops "
        "every copy's process tree (SIGTERM, then SIGKILL after --grace seconds). Exits 1 if "
        "any copy failed.",
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
    cmd = _command_line(args)
    env = _env(args)
    sinks: list[LinePrefixer] = []
    # Several copies reading one stdin would steal each other's input: only a single copy gets it.
    stdin = None if args.n == 1 else DEVNULL
    with Manager(grace=args.grace) as manager:
        for index in range(args.n):
            sink = LinePrefixer(sys.stdout)
            proc = manager.new_command(
                cmd, {**env, INDEX_ENV: str(index)}, stdin=stdin, stdout=sink, stderr=sink
            )
            sink.prefix = f"[{index} {proc.start()}] "
            sinks.append(sink)
        codes = manager.wait_all()
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
    return 1 if failed else 0
