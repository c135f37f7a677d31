"""The ``gproc`` command line: one module per group of subcommands, each with ``register()``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._errors import GprocError
from . import ctl, demo, messaging_cmds, process_cmds, shell_cmds, up

#: Modules that add subcommands; each has ``register(subparsers)``.
COMMAND_MODULES = (shell_cmds, process_cmds, messaging_cmds, up, ctl, demo)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="gproc",
        description="Process management and inter-process messaging (Python gproc).",
    )
    parser.add_argument("--version", action="version", version=f"gproc {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status. Errors are one line on stderr, never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        print("gproc: interrupted", file=sys.stderr)
        return 130
    except GprocError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"gproc: {first_line}", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError) as exc:
        print(f"gproc: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # pragma: no cover - e.g. `gproc exec ... | head -1`
        return 141
    return status
