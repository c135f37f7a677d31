"""``gproc send``, ``gproc recv`` and ``gproc ps``."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from typing import Any

import psutil

from .._drive import run_sync
from .._errors import GprocError, ReceiveTimeout
from .._messaging import sender
from .._messaging.message import Message
from .._messaging.receiving import receive, start_receiving
from .._messaging.runtime_dir import pid_of, runtime_dir
from .._procfs import start_ticks
from .shell_cmds import EXIT_TIMEOUT


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "send",
        help="send a message to a process",
        description="Send DATA to process PID; returns once it is queued there. "
        "DATA '-' reads the message from stdin (bytes, as is).",
    )
    p.add_argument("pid", type=int)
    p.add_argument("data")
    _group_option(p)
    p.add_argument("--timeout", type=float, default=5.0, help="give up after S seconds")
    p.set_defaults(handler=_send)

    p = subparsers.add_parser(
        "recv",
        help="receive messages sent to this process and print them",
        description="Start receiving (the pid is printed on stderr), then print each message of "
        "GROUP: its data and a newline, or one JSON object per line with --json.",
    )
    _group_option(p)
    p.add_argument("-n", "--count", type=int, help="stop after COUNT messages")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--timeout", type=float, help="exit 124 when no message comes for S seconds")
    p.set_defaults(handler=_recv)

    p = subparsers.add_parser(
        "ps",
        help="list this user's receiving gproc processes",
        description="Every process of this user that receives gproc messages: pid, uptime, "
        "groups with their queued counts, and command line.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=_ps)


def _group_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-g", "--group", default="", help="the group (default: the default group)")


def _send(args: argparse.Namespace) -> int:
    data: bytes | str = sys.stdin.buffer.read() if args.data == "-" else args.data
    run_sync(sender.send(args.pid, data, args.group, timeout=args.timeout))
    return 0


def message_json(message: Message) -> str:
    """The ``--json`` line of a message: text when it is UTF-8, else base64 (and says so)."""
    record: dict[str, Any] = {
        "sender_pid": message.sender_pid,
        "receiver_pid": message.receiver_pid,
        "group": message.group,
    }
    try:
        record["data"] = message.data.decode()
    except UnicodeDecodeError:
        record["data"] = base64.b64encode(message.data).decode()
        record["encoding"] = "base64"
    return json.dumps(record, ensure_ascii=False)


def _recv(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 0:
        raise ValueError("--count must be >= 0")
    path = start_receiving()
    print(f"gproc: receiving as pid {os.getpid()} ({path})", file=sys.stderr, flush=True)
    out = sys.stdout.buffer
    received = 0
    while args.count is None or received < args.count:
        try:
            message = receive(args.group, timeout=args.timeout)
        except ReceiveTimeout:
            print(
                f"gproc: no message in group {args.group!r} within {args.timeout}s",
                file=sys.stderr,
            )
            return EXIT_TIMEOUT
        if args.json:
            out.write(message_json(message).encode() + b"\n")
        else:
            out.write(message.data + b"\n")
        out.flush()
        received += 1
    return 0


def receivers() -> list[dict[str, Any]]:
    """This user's receiving processes, as ``gproc ps`` shows them."""
    directory = runtime_dir(create=False)
    if directory is None:
        return []
    found = []
    for name in sorted(os.listdir(directory), key=lambda n: (len(n), n)):
        pid = pid_of(name)
        if pid is None or start_ticks(pid) is None:
            continue  # not ours, or a stale file of a process that is gone
        try:
            groups = run_sync(sender.status(pid, timeout=1.0))
        except GprocError:
            continue  # not receiving (any more), or not answering
        try:
            proc = psutil.Process(pid)
            command = proc.cmdline()
            uptime = time.time() - proc.create_time()
        except psutil.Error:
            continue
        found.append(
            {
                "pid": pid,
                "uptime_seconds": round(uptime, 1),
                "groups": dict(groups),
                "command": command,
            }
        )
    return found


def _ps(args: argparse.Namespace) -> int:
    rows = receivers()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'PID':>7}  {'UPTIME':>9}  {'GROUPS (queued)':24}  COMMAND")
    for row in rows:
        groups = " ".join(f"{g or '-'}:{n}" for g, n in row["groups"].items()) or "-"
        command = " ".join(row["command"])
        print(f"{row['pid']:>7}  {_duration(row['uptime_seconds']):>9}  {groups:24}  {command}")
    return 0


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
