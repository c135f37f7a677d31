"""The ``gproc ctl`` protocol: JSON requests and replies over gproc messaging, pure code.

A request is a JSON object ``{"action": "status" | "info" | "start" | "stop" | "restart",
"name": "web" | "web.2"}`` sent with ``gproc.request`` to the supervisor's pid in group
:data:`GROUP`; the reply is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
JSON, never pickle: a peer's bytes are data, not code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["ACTIONS", "GROUP", "Controlled", "format_status", "format_uptime", "handle"]

#: The messaging group on which a ``gproc up`` supervisor takes ``gproc ctl`` requests.
GROUP = "gproc.up.ctl"
ACTIONS = ("status", "info", "start", "stop", "restart")


class Controlled(Protocol):
    """What the protocol needs from a supervisor."""

    def status(self) -> list[dict[str, Any]]: ...

    def info(self) -> dict[str, Any]: ...

    def command(self, action: str, name: str) -> list[str]: ...


def handle(supervisor: Controlled, data: bytes) -> bytes:
    """Answer one request; every failure is an ``{"ok": false}`` reply, never an exception."""
    try:
        request = json.loads(data)
        if not isinstance(request, dict):
            raise ValueError("a request is a JSON object")
        action = request.get("action")
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        result: Any
        if action == "status":
            result = supervisor.status()
        elif action == "info":
            result = supervisor.info()
        else:
            name = request.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError(f"{action} needs the name of a service")
            result = supervisor.command(action, name)
        reply: dict[str, Any] = {"ok": True, "result": result}
    except (ValueError, LookupError, RuntimeError) as exc:  # JSONDecodeError is a ValueError
        reply = {"ok": False, "error": str(exc).strip("'\"")}
    return json.dumps(reply).encode()


def format_uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _last_exit(last: Mapping[str, Any] | None) -> str:
    if not last:
        return "-"
    if last.get("signal"):
        return str(last["signal"])
    return f"code {last.get('code')}"


def format_status(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table of ``gproc ctl status``."""
    header = ("SERVICE", "PID", "STATE", "UPTIME", "RESTARTS", "LAST EXIT")
    table = [header] + [
        (
            str(row["name"]),
            str(row["pid"]) if row.get("pid") else "-",
            str(row["state"]),
            format_uptime(row.get("uptime")),
            str(row.get("restarts", 0)),
            _last_exit(row.get("last_exit")),
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip()
        for r in table
    )
