"""Reading a ``.env`` file: ``KEY=VALUE`` lines, as foreman, honcho and docker compose take them.

- ``#`` starts a comment line; after an unquoted value, `` #`` starts a trailing comment.
- ``export KEY=VALUE`` is accepted, so the same file can be ``source``\\ d by a shell.
- ``'single quotes'`` keep the text as it is; ``"double quotes"`` understand ``\\n``, ``\\t``,
  ``\\r``, ``\\"``, ``\\\\`` and ``\\$``. Both may span several lines.
- Unquoted values are stripped; there is no ``${VAR}`` expansion (foreman and honcho have none
  either, and a value should mean the same whoever reads the file).

Anything else (no ``=``, an invalid key, an unterminated quote) is a :class:`ConfigError` naming
the file and line: a silently skipped line means a service started without its setting.
"""

from __future__ import annotations

import re
from pathlib import Path

from .._errors import ConfigError

__all__ = ["load_dotenv", "parse_dotenv"]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def parse_dotenv(text: str, path: str = ".env") -> dict[str, str]:
    """The variables of a ``.env`` text, later lines overriding earlier ones."""
    result: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number = index + 1
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export") :].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"expected KEY=VALUE, got {line[:60]!r}", path=path, line=number)
        if not _KEY.fullmatch(key):
            raise ConfigError(
                f"invalid variable name {key!r}: use letters, digits and '_', not starting "
                "with a digit",
                path=path,
                line=number,
                key=key or None,
            )
        rest = rest.lstrip()
        if rest[:1] in ("'", '"'):
            value, index = _quoted(rest, lines, index, path=path, number=number, key=key)
        else:
            value = _unquoted(rest)
        result[key] = value
    return result


def _unquoted(rest: str) -> str:
    comment = re.search(r"\s#", rest)
    if comment is not None:
        rest = rest[: comment.start()]
    return rest.strip()


def _quoted(
    rest: str, lines: list[str], index: int, *, path: str, number: int, key: str
) -> tuple[str, int]:
    """Parse a quoted value that may continue on the following lines; returns it and the index of
    the next line to read."""
    quote = rest[0]
    text = rest[1:]
    out: list[str] = []
    while True:
        position = 0
        while position < len(text):
            char = text[position]
            if char == quote:
                _check_trailer(text[position + 1 :], path=path, number=number, key=key)
                return "".join(out), index
            if char == "\\" and quote == '"' and position + 1 < len(text):
                following = text[position + 1]
                if following in _ESCAPES:
                    out.append(_ESCAPES[following])
                    position += 2
                    continue
            out.append(char)
            position += 1
        if index >= len(lines):
            raise ConfigError(
                f"unterminated {quote} quote in the value of {key}",
                path=path,
                line=number,
                key=key,
            )
        out.append("\n")
        text = lines[index]
        index += 1


def _check_trailer(trailer: str, *, path: str, number: int, key: str) -> None:
    trailer = trailer.strip()
    if trailer and not trailer.startswith("#"):
        raise ConfigError(
            f"unexpected text after the quoted value of {key}: {trailer[:40]!r}",
            path=path,
            line=number,
            key=key,
        )


def load_dotenv(path: str | Path, *, required: bool = False) -> dict[str, str]:
    """The variables of the ``.env`` file at ``path``; empty when it is absent and not required."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError("no such file", path=str(path)) from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(path)) from None
    return parse_dotenv(text, str(path))
