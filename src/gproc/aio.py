"""The asyncio twin of :mod:`gproc`: the same names and parameters, awaited instead of blocking.

Functions that never block (identity, errors, constants) are the very same objects as in
:mod:`gproc`; everything that waits is a coroutine function driven on the running loop over the
same implementation. Cancelling a task that waits on a command stops the command's whole process
tree (with the grace policy) before the cancellation propagates.
"""

from __future__ import annotations

from . import _shell
from ._drive import async_face
from ._identity import (
    is_child,
    pid,
    ppid,
    ppid_os,
    search_binary,
    search_binary_path,
    set_ppid,
    start_time,
    uptime,
)
from ._manager import AsyncManager as Manager
from ._process import AsyncProcess as Process

shell = async_face(_shell.shell)
shell_exec = async_face(_shell.shell_exec)
shell_run = async_face(_shell.shell_run)

__all__ = [
    "Manager",
    "Process",
    "is_child",
    "pid",
    "ppid",
    "ppid_os",
    "search_binary",
    "search_binary_path",
    "set_ppid",
    "shell",
    "shell_exec",
    "shell_run",
    "start_time",
    "uptime",
]
