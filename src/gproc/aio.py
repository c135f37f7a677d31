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
from ._listen import listen_async as listen
from ._manager import AsyncManager as Manager
from ._process import AsyncProcess as Process
from ._signals import (
    add_sig_handler,
    add_sig_handler_shutdown,
    remove_sig_handler,
    set_shutdown_signals,
    set_shutdown_timeout,
)

shell = async_face(_shell.shell)
shell_exec = async_face(_shell.shell_exec)
shell_run = async_face(_shell.shell_run)

__all__ = [
    "Manager",
    "Process",
    "add_sig_handler",
    "add_sig_handler_shutdown",
    "is_child",
    "listen",
    "pid",
    "ppid",
    "ppid_os",
    "remove_sig_handler",
    "search_binary",
    "search_binary_path",
    "set_ppid",
    "set_shutdown_signals",
    "set_shutdown_timeout",
    "shell",
    "shell_exec",
    "shell_run",
    "start_time",
    "uptime",
]
