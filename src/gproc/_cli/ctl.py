"""``gproc ctl``: control a running ``gproc up`` through gproc messaging (see docs/up.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .. import request
from .._errors import GprocError, ProcessNotFound
from .._up.control import GROUP, format_status
from .messaging_cmds import receivers


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ctl",
        help="control a running `gproc up`: status, start, stop, restart",
        description="Talk to the `gproc up` of this directory (or --pid) through gproc messaging. "
        "NAME is a service (every copy) or one copy (web.2).",
    )
    p.add_argument("action", choices=("status", "start", "stop", "restart"))
    p.add_argument("name", nargs="?", metavar="NAME", help="the service or copy")
    p.add_argument("--pid", type=int, help="the pid of the `gproc up` to talk to")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    p.add_argument("--timeout", type=float, default=5.0, help="give up after S seconds")
    p.set_defaults(handler=run)


def ask(pid: int, message: dict[str, Any], timeout: float) -> Any:
    """Send one request to the supervisor ``pid``; its result, or ValueError with its error."""
    reply = json.loads(request(pid, json.dumps(message), GROUP, timeout=timeout))
    if not reply.get("ok"):
        raise ValueError(str(reply.get("error")))
    return reply.get("result")


def _same_dir(a: object, b: str) -> bool:
    try:
        return isinstance(a, str) and os.path.samefile(a, b)
    except OSError:
        return False


def find_supervisor(directory: str, timeout: float) -> int:
    """The pid of the one ``gproc up`` whose Procfile directory (or working directory) is
    ``directory``; ProcessNotFound when there is none, ValueError when there are several."""
    found: list[dict[str, Any]] = []
    for row in receivers():
        if GROUP not in row["groups"] or row["pid"] == os.getpid():
            continue
        try:
            found.append(ask(row["pid"], {"action": "info"}, min(timeout, 2.0)))
        except (GprocError, ValueError):
            continue  # gone meanwhile, or not answering
    here = [info for info in found if _same_dir(info.get("root"), directory)]
    if not here:
        here = [info for info in found if _same_dir(info.get("cwd"), directory)]
    if len(here) == 1:
        return int(here[0]["pid"])
    listing = ", ".join(f"pid {info['pid']} ({info.get('root')})" for info in here or found)
    if here:
        raise ValueError(f"several `gproc up` run for {directory}: {listing}; choose with --pid")
    if found:
        raise ProcessNotFound(f"no `gproc up` runs for {directory} (running: {listing}); use --pid")
    raise ProcessNotFound("no `gproc up` is running (start one with `gproc up`)")


def run(args: argparse.Namespace) -> int:
    if args.action == "status" and args.name:
        raise ValueError("`gproc ctl status` takes no NAME")
    if args.action != "status" and not args.name:
        raise ValueError(f"`gproc ctl {args.action}` needs the NAME of a service")
    pid = args.pid if args.pid is not None else find_supervisor(os.getcwd(), args.timeout)
    message: dict[str, Any] = {"action": args.action}
    if args.name:
        message["name"] = args.name
    try:
        result = ask(pid, message, args.timeout)
    except ValueError as exc:
        print(f"gproc: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    elif args.action == "status":
        print(format_status(result))
    else:
        for line in result:
            print(line)
    return 0
