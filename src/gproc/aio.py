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
from ._messaging import sender as _sender
from ._messaging.message import Message
from ._messaging.receiving import messages_async as messages
from ._messaging.receiving import receive_async as receive
from ._messaging.receiving import start_receiving
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
send = _sender.send_async
send_many = async_face(_sender.send_many)
request = async_face(_sender.request)

__all__ = [
    "Manager",
    "Process",
    "add_sig_handler",
    "add_sig_handler_shutdown",
    "is_child",
    "listen",
    "Message",
    "messages",
    "pid",
    "ppid",
    "ppid_os",
    "receive",
    "remove_sig_handler",
    "request",
    "search_binary",
    "search_binary_path",
    "send",
    "send_many",
    "set_ppid",
    "set_shutdown_signals",
    "set_shutdown_timeout",
    "shell",
    "shell_exec",
    "shell_run",
    "start_receiving",
    "start_time",
    "uptime",
]
