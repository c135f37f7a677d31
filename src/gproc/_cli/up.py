"""``gproc up``: run a Procfile under supervision (see docs/up.md)."""

from __future__ import annotations

import argparse
import os
import resource
import sys
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from .._up import loop
from .._up.config import CONFIG_NAME, load_config
from .._up.dotenv import load_dotenv
from .._up.output import JsonOutput, Output, TextOutput, wants_color
from .._up.plan import Instance, base_port, build_plan, parse_concurrency
from .._up.procfile import load_procfile
from .._up.supervisor import Supervisor


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "up",
        help="run a Procfile under supervision",
        description="Run the services of a Procfile with their output prefixed, restart them as "
        "gproc.toml says, and stop them all (with their children) on Ctrl+C. Control them from "
        "another terminal with `gproc ctl`.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="run only these services")
    p.add_argument("-f", "--procfile", default="Procfile", help="the Procfile (default: Procfile)")
    p.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="FILE",
        help="a .env file to load (default: .env next to the Procfile, when present)",
    )
    p.add_argument(
        "-c",
        "--concurrency",
        action="append",
        default=[],
        metavar="NAME=N,...",
        help="run N copies of a service (0: none)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="S",
        help="seconds between the stop signal and SIGKILL, for every service "
        "(default: gproc.toml's grace, else 5)",
    )
    p.add_argument("--no-color", action="store_true", help="never colour the prefixes")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object per line and per event"
    )
    p.set_defaults(handler=run)


def load_plan(args: argparse.Namespace) -> tuple[list[Instance], Path]:
    """Read and check every file before anything starts; returns the plan and its directory."""
    procfile = Path(args.procfile).absolute()
    root = procfile.parent
    entries = load_procfile(procfile)
    names = [entry.name for entry in entries]
    config = load_config(root / CONFIG_NAME, names)
    dotenv: dict[str, str] = {}
    if args.env:
        for item in args.env:
            for path in item.split(","):
                dotenv.update(load_dotenv(path.strip(), required=True))
    else:
        dotenv = load_dotenv(root / ".env")
    if args.grace is not None and args.grace < 0:
        raise ConfigError(f"--grace must be >= 0 seconds, not {args.grace}")
    plan = build_plan(
        entries,
        concurrency=parse_concurrency(args.concurrency),
        selected=args.names,
        config=config,
        dotenv=dotenv,
        port=base_port(dotenv, os.environ),
    )
    return plan, root


def _make_output(args: argparse.Namespace, plan: list[Instance]) -> Output:
    stream = sys.stdout.buffer
    if args.json:
        return JsonOutput(stream)
    color = wants_color(sys.stdout, args.no_color)
    return TextOutput(stream, [instance.name for instance in plan], color=color)


def _allow_descriptors(count: int) -> None:
    """Each copy holds two descriptors (output pipe, pidfd); raise a low soft limit to fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * count + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def run(args: argparse.Namespace) -> int:
    plan, root = load_plan(args)
    _allow_descriptors(len(plan))
    sys.stdout.flush()
    output = _make_output(args, plan)
    supervisor = Supervisor(plan, output, grace=args.grace, cwd=str(root))
    status = loop.run(supervisor.run())
    if getattr(output, "broken", False):
        # Nobody reads our stdout any more; keep Python's exit-time flush from complaining.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return status
