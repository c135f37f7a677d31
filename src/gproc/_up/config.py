"""``gproc.toml``: optional supervision settings, per service, next to the Procfile.

.. code-block:: toml

    restart = "on-failure"       # top-level settings are defaults for every service
    [web]
    restart = "always"           # no | on-failure | always   (default: no)
    max_restarts = 5             # restarts allowed within restart_window seconds...
    restart_window = 60          # ...one more exit within the window declares a crash loop
    backoff = 0.5                # delay before the first restart; doubles on each restart
    backoff_max = 30             # ...up to this
    stop_signal = "SIGINT"       # the first signal of a stop (then SIGKILL after grace)
    grace = 10                   # seconds between stop_signal and SIGKILL
    cwd = "web"                  # relative to this file
    env = { DEBUG = "1" }

Everything is validated before anything starts: an unknown key, a value of the wrong type or out
of range, a table for a service the Procfile does not have, or a TOML syntax error is a
:class:`ConfigError` naming the file, the line and the key. ``tomllib`` does not report where a
value came from, so :class:`_Locator` finds the line by scanning the text.
"""

from __future__ import annotations

import os
import re
import signal as _signal
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .._errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["CONFIG_NAME", "RESTART_MODES", "ServiceConfig", "UpConfig", "load_config"]

CONFIG_NAME = "gproc.toml"

RestartMode = Literal["no", "on-failure", "always"]
RESTART_MODES: tuple[RestartMode, ...] = ("no", "on-failure", "always")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """How one service is supervised. ``grace=None`` means the command line's ``--grace``."""

    restart: RestartMode = "no"
    max_restarts: int = 5
    restart_window: float = 60.0
    backoff: float = 0.5
    backoff_max: float = 30.0
    stop_signal: int = _signal.SIGTERM
    grace: float | None = None
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UpConfig:
    """The settings of every service: ``defaults`` merged with the service's own table."""

    path: str | None = None
    defaults: ServiceConfig = field(default_factory=ServiceConfig)
    services: Mapping[str, ServiceConfig] = field(default_factory=dict)

    def for_service(self, name: str) -> ServiceConfig:
        return self.services.get(name, self.defaults)


def load_config(path: str | Path, services: Collection[str]) -> UpConfig:
    """Read ``path`` if it exists (an absent file means the defaults)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return UpConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(path)) from None
    return parse_config(text, str(path), services, base_dir=str(Path(path).parent))


def parse_config(
    text: str, path: str, services: Collection[str], *, base_dir: str = "."
) -> UpConfig:
    """Validate a ``gproc.toml`` text against the Procfile's ``services``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"line (\d+)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(
            f"invalid TOML: {message}", path=path, line=int(where[1]) if where else None
        ) from None
    checker = _Checker(path, _Locator(text), base_dir)
    top: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        # A table named after a service configures it (even a service called "env"); other
        # top-level keys are defaults for every service.
        if isinstance(value, dict) and key in services:
            tables[key] = value
        elif key in _SETTINGS:
            top[key] = value
        elif isinstance(value, dict):
            known = ", ".join(sorted(services))
            raise checker.error((key,), f"no service {key!r} in the Procfile (it has: {known})")
        else:
            raise checker.error(
                (key,),
                f"unknown setting {key!r}; settings are {', '.join(_SETTINGS)}, "
                "and tables are named after services",
            )
    defaults = checker.settings((), top, ServiceConfig())
    per_service = {
        name: checker.settings((name,), table, defaults) for name, table in tables.items()
    }
    return UpConfig(path=path, defaults=defaults, services=per_service)


_SETTINGS = (
    "restart",
    "max_restarts",
    "restart_window",
    "backoff",
    "backoff_max",
    "stop_signal",
    "grace",
    "cwd",
    "env",
)


class _Checker:
    def __init__(self, path: str, locator: _Locator, base_dir: str) -> None:
        self.path = path
        self.locator = locator
        self.base_dir = base_dir

    def error(self, keys: tuple[str, ...], message: str) -> ConfigError:
        return ConfigError(
            message, path=self.path, line=self.locator.line(keys), key=".".join(keys) or None
        )

    def settings(
        self, table: tuple[str, ...], values: Mapping[str, Any], base: ServiceConfig
    ) -> ServiceConfig:
        changes: dict[str, Any] = {}
        for key, value in values.items():
            keys = (*table, key)
            if key not in _SETTINGS:
                raise self.error(keys, f"unknown setting {key!r}; known: {', '.join(_SETTINGS)}")
            changes[key] = getattr(self, f"_check_{key}")(keys, value)
        if "env" in changes:
            changes["env"] = {**base.env, **changes["env"]}
        merged = replace(base, **changes)
        if merged.backoff_max < merged.backoff:
            raise self.error(
                (*table, "backoff_max"),
                f"backoff_max ({merged.backoff_max}) is smaller than backoff ({merged.backoff})",
            )
        return merged

    def _number(self, keys: tuple[str, ...], value: Any, *, positive: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(keys, f"{keys[-1]} must be a number of seconds, not {value!r}")
        if value < 0 or (positive and value == 0):
            bound = "> 0" if positive else ">= 0"
            raise self.error(keys, f"{keys[-1]} must be {bound}, not {value!r}")
        return float(value)

    def _check_restart(self, keys: tuple[str, ...], value: Any) -> RestartMode:
        for mode in RESTART_MODES:
            if value == mode:
                return mode
        raise self.error(keys, f"restart must be 'no', 'on-failure' or 'always', not {value!r}")

    def _check_max_restarts(self, keys: tuple[str, ...], value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(keys, f"max_restarts must be an integer >= 0, not {value!r}")
        return value

    def _check_restart_window(self, keys: tuple[str, ...], value: Any) -> float:
        return self._number(keys, value, positive=True)

    def _check_backoff(self, keys: tuple[str, ...], value: Any) -> float:
        return self._number(keys, value, positive=False)

    def _check_backoff_max(self, keys: tuple[str, ...], value: Any) -> float:
        return self._number(keys, value, positive=False)

    def _check_grace(self, keys: tuple[str, ...], value: Any) -> float:
        return self._number(keys, value, positive=False)

    def _check_stop_signal(self, keys: tuple[str, ...], value: Any) -> int:
        try:
            return parse_signal(value)
        except ValueError as exc:
            raise self.error(keys, str(exc)) from None

    def _check_cwd(self, keys: tuple[str, ...], value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(keys, f"cwd must be a directory name, not {value!r}")
        full = os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(value)))
        if not os.path.isdir(full):
            raise self.error(keys, f"cwd {value!r} is not a directory ({full})")
        return full

    def _check_env(self, keys: tuple[str, ...], value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise self.error(keys, f'env must be a table of NAME = "value", not {value!r}')
        env: dict[str, str] = {}
        for name, item in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise self.error((*keys, name), f"invalid variable name {name!r}")
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise self.error(
                    (*keys, name), f"the value of {name} must be a string or a number, not {item!r}"
                )
            env[name] = str(item)
        return env


def parse_signal(value: object) -> int:
    """A signal from ``"SIGTERM"``, ``"TERM"``, ``"term"`` or ``15``; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"stop_signal must be a signal name like 'SIGTERM', not {value!r}")
    if isinstance(value, int):
        try:
            return int(_signal.Signals(value))
        except ValueError:
            raise ValueError(f"stop_signal {value} is not a signal number") from None
    if isinstance(value, str):
        name = value.strip().upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        if name in _signal.Signals.__members__ and not name.startswith("SIG_"):
            return int(_signal.Signals[name])
    raise ValueError(f"stop_signal must be a signal name like 'SIGTERM', not {value!r}")


class _Locator:
    """Finds the line where a (dotted) key was written, by a light scan of the TOML text.

    It understands ``[table]`` headers and ``a.b = ...`` keys, which is what a gproc.toml holds;
    for a key inside an inline table it answers the line of the enclosing key.
    """

    _HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
    _KEY = re.compile(
        r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*="""
    )

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header is not None:
                table = self._split(header[1])
                self._lines.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key is not None:
                parts = self._split(key[1])
                for end in range(1, len(parts) + 1):
                    self._lines.setdefault((*table, *parts[:end]), number)

    @staticmethod
    def _split(dotted: str) -> tuple[str, ...]:
        parts = re.findall(r"""\s*("[^"]*"|'[^']*'|[^.\s]+)\s*(?:\.|$)""", dotted)
        return tuple(p[1:-1] if p[:1] in ("'", '"') else p for p in parts)

    def line(self, keys: tuple[str, ...]) -> int | None:
        for end in range(len(keys), 0, -1):
            found = self._lines.get(keys[:end])
            if found is not None:
                return found
        return None
