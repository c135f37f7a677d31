"""Who this process is: pid, gproc parent, start time, uptime, and finding binaries in PATH."""

from __future__ import annotations

import datetime as _dt
import os
import stat

import psutil

__all__ = [
    "PPID_ENV",
    "is_child",
    "pid",
    "ppid",
    "ppid_os",
    "search_binary",
    "search_binary_path",
    "set_ppid",
    "start_time",
    "uptime",
]

#: The environment variable through which a gproc parent tells its children who it is.
PPID_ENV = "GPROC_PPID"


def pid() -> int:
    """This process's pid."""
    return os.getpid()


def ppid_os() -> int:
    """The operating system's parent pid (which becomes 1 or a subreaper when the parent dies)."""
    return os.getppid()


def _gproc_ppid() -> int | None:
    value = os.environ.get(PPID_ENV, "").strip()
    if not value or value == "0":
        return None
    try:
        parsed = int(value)
    except ValueError:
        return None
    return parsed if parsed > 0 else None


def ppid() -> int:
    """The pid of the gproc process that started this one (``GPROC_PPID``), else the OS parent.

    GoFrame returns the process's *own* pid when ``GPROC_PPID`` is unset; we return the OS parent,
    which is what the name promises.
    """
    gproc_parent = _gproc_ppid()
    return gproc_parent if gproc_parent is not None else os.getppid()


def is_child() -> bool:
    """True when a gproc parent started this process (``GPROC_PPID`` set, non-empty, not "0")."""
    value = os.environ.get(PPID_ENV, "")
    return value not in ("", "0")


def set_ppid(value: int | None) -> None:
    """Set ``GPROC_PPID`` for this process (and what it starts); 0 or ``None`` removes it."""
    if value is None or value == 0:
        os.environ.pop(PPID_ENV, None)
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"set_ppid() takes a positive pid, 0 or None, not {value!r}")
    os.environ[PPID_ENV] = str(value)


def start_time() -> _dt.datetime:
    """When this process started, per the OS (not when gproc was imported); an aware datetime."""
    created = psutil.Process(os.getpid()).create_time()
    return _dt.datetime.fromtimestamp(created, tz=_dt.timezone.utc).astimezone()


def uptime() -> _dt.timedelta:
    """How long this process has been running."""
    return _dt.datetime.now(tz=_dt.timezone.utc) - start_time()


def _is_executable_file(path: str) -> bool:
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: embedded NUL byte in the name
        return False
    return stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK)


def search_binary_path(name: str) -> str | None:
    """The first executable regular file called ``name`` in the directories of ``PATH``.

    Unlike GoFrame (and like a POSIX shell), directories and non-executable files are skipped; an
    empty ``PATH`` entry means the current directory, as POSIX says. ``None`` when not found.
    """
    if not name or os.sep in name:
        return None
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or os.curdir, name)
        if _is_executable_file(candidate):
            return candidate
    return None


def search_binary(name: str) -> str | None:
    """``name`` itself when it is a path to an executable file, else :func:`search_binary_path`.

    A bare name (no slash) is always looked up in ``PATH``, never in the current directory first:
    GoFrame checks the current directory first, which runs a stray ``./ls`` instead of ``/bin/ls``.
    """
    if os.sep in name:
        return name if _is_executable_file(name) else None
    return search_binary_path(name)
