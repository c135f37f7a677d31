"""Reading a Procfile: one ``name: command`` per line, ``#`` comments and blank lines allowed.

honcho and foreman skip a line they cannot parse without a word, so a typo silently drops a
service. Here every line must be a comment, blank, or a valid entry; anything else is a
:class:`ConfigError` naming the file and line, raised before anything starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .._errors import ConfigError

__all__ = ["NAME_PATTERN", "ProcfileEntry", "load_procfile", "parse_procfile"]

#: A service name: letters, digits, ``_`` and ``-``. No dot, because ``name.N`` names a copy.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")

_ENTRY = re.compile(r"^(?P<name>[^:]*):(?P<command>.*)$")


@dataclass(frozen=True, slots=True)
class ProcfileEntry:
    """One service of a Procfile."""

    name: str
    command: str
    line: int


def parse_procfile(text: str, path: str = "Procfile") -> list[ProcfileEntry]:
    """The entries of a Procfile, in file order; :class:`ConfigError` on any invalid line."""
    entries: list[ProcfileEntry] = []
    first_seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENTRY.match(line)
        if match is None:
            raise ConfigError(
                f"expected 'name: command', got {_quote(line)}", path=path, line=number
            )
        name = match["name"].strip()
        command = match["command"].strip()
        if not NAME_PATTERN.fullmatch(name):
            raise ConfigError(
                f"invalid service name {name!r}: use letters, digits, '_' and '-' "
                "(no dots or spaces)",
                path=path,
                line=number,
                key=name or None,
            )
        if not command:
            raise ConfigError(f"service {name!r} has no command", path=path, line=number, key=name)
        if name in first_seen:
            raise ConfigError(
                f"service {name!r} is defined twice (first on line {first_seen[name]})",
                path=path,
                line=number,
                key=name,
            )
        first_seen[name] = number
        entries.append(ProcfileEntry(name, command, number))
    if not entries:
        raise ConfigError("no services defined", path=path)
    return entries


def load_procfile(path: str | Path) -> list[ProcfileEntry]:
    """Read and parse the Procfile at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(path)) from None
    return parse_procfile(text, str(path))


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
