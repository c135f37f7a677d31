"""``gproc exec``, ``gproc run``, ``gproc which`` and ``gproc info``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from .. import _identity
from .._drive import run_sync
from .._errors import ShellError, ShellTimeout
from .._shell import DEFAULT_GRACE, shell, shell_exec

#: Exit status for a command that timed out, as timeout(1) uses.
EXIT_TIMEOUT = 124


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "exec",
        help="run a command, print its combined output, exit with its status",
        description="Run CMD through the shell and print its stdout and stderr, interleaved. "
        "One argument is a shell command line, passed unparsed; several are quoted as argv.",
    )
    _common(p)
    p.set_defaults(handler=_exec)

    p = subparsers.add_parser(
        "run",
        help="run a command with its output streamed, exit with its status",
        description="Run CMD through the shell with gproc's own stdin, stdout and stderr.",
    )
    _common(p)
    p.set_defaults(handler=_run)

    p = subparsers.add_parser("which", help="find an executable in PATH")
    p.add_argument("name")
    p.set_defaults(handler=_which)

    p = subparsers.add_parser("info", help="this process's pid, gproc parent and start time")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_info)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD", help="the command")
    p.add_argument("--timeout", type=float, help="stop the command's tree after S seconds")
    p.add_argument(
        "--grace", type=float, default=DEFAULT_GRACE, help="seconds between SIGTERM and SIGKILL"
    )
    p.add_argument("--cwd", help="run in this directory")
    p.add_argument(
        "-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="set a variable"
    )


def _command_line(args: argparse.Namespace) -> str:
    words: list[str] = list(args.cmd)
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise ValueError("no command given")
    return words[0] if len(words) == 1 else shlex.join(words)


def _env(args: argparse.Namespace) -> dict[str, str | None]:
    env: dict[str, str | None] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env takes KEY=VALUE, not {item!r}")
        env[key] = value
    return env


def exit_status(returncode: int | None) -> int:
    """A shell-style exit status: 128 + N for a command killed by signal N."""
    if returncode is None:
        return 1
    return 128 - returncode if returncode < 0 else returncode


def _exec(args: argparse.Namespace) -> int:
    cmd = _command_line(args)
    status = 0
    try:
        output = run_sync(
            shell_exec(cmd, env=_env(args), cwd=args.cwd, timeout=args.timeout, grace=args.grace)
        )
    except ShellTimeout as exc:
        sys.stdout.write(exc.output or "")
        print(f"gproc: {cmd!r} timed out after {args.timeout}s and was stopped", file=sys.stderr)
        return EXIT_TIMEOUT
    except ShellError as exc:
        output = exc.output or ""
        status = exit_status(exc.returncode)
    sys.stdout.write(output)
    sys.stdout.flush()
    return status


def _run(args: argparse.Namespace) -> int:
    cmd = _command_line(args)
    sys.stdout.flush()
    try:
        return exit_status(
            run_sync(
                shell(
                    cmd,
                    sys.stdout,
                    None,
                    stderr=sys.stderr,
                    env=_env(args),
                    cwd=args.cwd,
                    timeout=args.timeout,
                    grace=args.grace,
                    check=False,
                )
            )
        )
    except ShellTimeout:
        print(f"gproc: {cmd!r} timed out after {args.timeout}s and was stopped", file=sys.stderr)
        return EXIT_TIMEOUT
    except ShellError as exc:  # pragma: no cover - check=False never raises for an exit code
        return exit_status(exc.returncode)


def _which(args: argparse.Namespace) -> int:
    found = _identity.search_binary(args.name)
    if found is None:
        print(f"gproc: {args.name!r} not found in PATH", file=sys.stderr)
        return 1
    print(found)
    return 0


def _info(args: argparse.Namespace) -> int:
    facts = {
        "pid": _identity.pid(),
        "ppid": _identity.ppid(),
        "ppid_os": _identity.ppid_os(),
        "is_child": _identity.is_child(),
        "start_time": _identity.start_time().isoformat(),
        "uptime_seconds": round(_identity.uptime().total_seconds(), 3),
    }
    if args.json:
        print(json.dumps(facts))
    else:
        for key, value in facts.items():
            print(f"{key:15} {value}")
    return 0
