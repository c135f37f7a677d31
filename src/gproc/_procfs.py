"""The one reader of ``/proc/<pid>/stat``: parent pids for the stop policy's tree scan, start
times for messaging's identity check.

psutil reads the same file, but through a generic per-process object that costs about ten times
as much; with a thousand children the tree scan of every stop would feel it.
"""

from __future__ import annotations

import errno
import os

__all__ = ["available", "parent_map", "start_ticks", "stat_fields"]

#: Enough for the fields we read (up to field 22, starttime) whatever the command name: the name
#: is at most 16 bytes, and the numbers before field 22 at most 20 digits each.
_READ = 1024


def available() -> bool:
    """Whether this system has a Linux-style ``/proc`` to read."""
    return os.path.exists("/proc/self/stat")


def stat_fields(pid: int | str) -> list[bytes] | None:
    """Fields 3 (state) onwards of ``/proc/<pid>/stat``, so field N is at index N - 3.

    ``None`` when the process is gone. The command name (field 2) may hold spaces and
    parentheses, so the fields are counted from the *last* ``)``.
    """
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ESRCH):
            return None
        raise
    try:
        raw = os.read(fd, _READ)
    except ProcessLookupError:  # it died between open and read
        return None
    finally:
        os.close(fd)
    return raw[raw.rfind(b")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22, as psutil uses); ``None`` if it
    is gone or a zombie."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def parent_map() -> dict[int, list[int]]:
    """ppid -> child pids, from one scan of the process table (fields 4 of every stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = stat_fields(entry)
        except OSError:  # not ours to read
            continue
        if fields is not None and len(fields) >= 2:
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children
