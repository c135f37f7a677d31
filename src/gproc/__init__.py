"""gproc: process management and inter-process messaging, after GoFrame's gproc.

The synchronous API lives here; :mod:`gproc.aio` has the asyncio twin with the same names and
parameters. Both are thin faces over one implementation (see ``gproc._drive``).
"""

from __future__ import annotations

from . import _shell
from ._drive import sync_face
from ._errors import (
    ConfigError,
    ConnectionLost,
    GprocError,
    ManyErrors,
    MessageTooLarge,
    MessagingError,
    NotReceiving,
    ProcessError,
    ProcessNotFound,
    ProcessNotStarted,
    ProcessTimeout,
    QueueFull,
    ReceiveTimeout,
    ShellError,
    ShellTimeout,
    SignalError,
    SpawnError,
    UnsafeRuntimeDir,
)
from ._identity import (
    PPID_ENV,
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
from ._listen import listen
from ._manager import Manager
from ._messaging import sender as _sender
from ._messaging.message import Message
from ._messaging.receiving import messages, receive, start_receiving
from ._process import Process
from ._signals import (
    add_sig_handler,
    add_sig_handler_shutdown,
    remove_sig_handler,
    set_shutdown_signals,
    set_shutdown_timeout,
)
from ._stop import StopPolicy
from ._streams import DEVNULL, PIPE, STDOUT

__version__ = "0.1.0"

shell = sync_face(_shell.shell)
shell_exec = sync_face(_shell.shell_exec)
shell_run = sync_face(_shell.shell_run)
send = _sender.send_sync
send_many = sync_face(_sender.send_many)
request = sync_face(_sender.request)

__all__ = [
    "DEVNULL",
    "PIPE",
    "PPID_ENV",
    "STDOUT",
    "ConfigError",
    "ConnectionLost",
    "GprocError",
    "Manager",
    "ManyErrors",
    "Message",
    "MessageTooLarge",
    "MessagingError",
    "NotReceiving",
    "Process",
    "ProcessError",
    "ProcessNotFound",
    "ProcessNotStarted",
    "ProcessTimeout",
    "QueueFull",
    "ReceiveTimeout",
    "ShellError",
    "ShellTimeout",
    "SignalError",
    "SpawnError",
    "StopPolicy",
    "UnsafeRuntimeDir",
    "__version__",
    "add_sig_handler",
    "add_sig_handler_shutdown",
    "is_child",
    "listen",
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
