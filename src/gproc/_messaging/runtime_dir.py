"""Where receiving processes put their sockets, and who a pid really is.

The runtime directory is per user: ``$GPROC_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/gproc``, else
``<tempdir>/gproc-<uid>``. It is created with mode 0700 and refused when it is a symlink, is owned
by another uid, or is writable by group or others: whoever can write there could plant a socket
that impersonates a receiver (the sender checks the peer's credentials too, see sender.py).

Each receiving process has one socket, ``<pid>.sock``. A pid alone is not an identity (pids are
reused), so the receiver also announces its *start time* (``_procfs.start_ticks``: clock ticks since
boot, as psutil uses) and a sender compares it with the start time of the pid it
means.
"""

from __future__ import annotations

import os
import stat
import tempfile

from .._errors import MessagingError, UnsafeRuntimeDir

__all__ = [
    "RUNTIME_DIR_ENV",
    "UnsafeRuntimeDir",
    "runtime_dir",
    "socket_path",
]

RUNTIME_DIR_ENV = "GPROC_RUNTIME_DIR"
SUFFIX = ".sock"


def _candidate() -> str:
    explicit = os.environ.get(RUNTIME_DIR_ENV)
    if explicit:
        return explicit
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "gproc")
    return os.path.join(tempfile.gettempdir(), f"gproc-{os.geteuid()}")


def _check(path: str, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeRuntimeDir(f"gproc runtime directory {path} is not a plain directory")
    if st.st_uid != os.geteuid():
        raise UnsafeRuntimeDir(
            f"gproc runtime directory {path} belongs to uid {st.st_uid}, not to us "
            f"(uid {os.geteuid()}); set {RUNTIME_DIR_ENV} to a directory of your own"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeRuntimeDir(
            f"gproc runtime directory {path} is writable by others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); it must be private (0700)"
        )


def runtime_dir(*, create: bool) -> str | None:
    """The checked runtime directory; ``None`` when it does not exist and ``create`` is false."""
    path = _candidate()
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return None
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # created by a concurrent process of ours: check it below
            pass
        st = os.lstat(path)
    _check(path, st)
    return path


#: sun_path holds 108 bytes on Linux, including the final NUL (plus room for the temporary name).
_MAX_SOCKET_PATH = 107 - 16


def socket_path(directory: str, pid: int) -> str:
    path = os.path.join(directory, f"{pid}{SUFFIX}")
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise MessagingError(
            f"gproc runtime directory {directory} is too long a path for a Unix socket; "
            f"set {RUNTIME_DIR_ENV} to a shorter one",
            pid=pid,
        )
    return path


def pid_of(name: str) -> int | None:
    """The pid a socket file name stands for (``"123.sock"`` -> 123), else ``None``."""
    if not name.endswith(SUFFIX):
        return None
    digits = name[: -len(SUFFIX)]
    return int(digits) if digits.isdigit() else None
