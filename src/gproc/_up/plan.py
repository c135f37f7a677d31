"""What runs: services from the Procfile, copies from ``-c``, and each copy's environment.

Each copy gets ``PORT`` as foreman assigns it (base port, +100 per service in Procfile order, +1 per
copy; the base is ``PORT`` from the environment or ``.env``, else 5000) and ``GPROC_SERVICE`` =
``name.N`` (N from 1). Service order, hence ports, follows the Procfile whatever is selected, so a
service keeps its port when run alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .._errors import ConfigError
from .config import ServiceConfig, UpConfig
from .procfile import ProcfileEntry

__all__ = ["DEFAULT_BASE_PORT", "Instance", "base_port", "build_plan", "parse_concurrency"]

DEFAULT_BASE_PORT = 5000
SERVICE_ENV = "GPROC_SERVICE"


@dataclass(frozen=True, slots=True)
class Instance:
    """One copy of a service: ``web.1``, ``web.2``..."""

    service: str
    number: int
    command: str
    port: int
    env: Mapping[str, str]
    config: ServiceConfig
    #: Position of the service among those that run, to pick its colour.
    slot: int

    @property
    def name(self) -> str:
        return f"{self.service}.{self.number}"


def parse_concurrency(specs: Sequence[str]) -> dict[str, int]:
    """``["web=2,worker=3", "clock=0"]`` -> ``{"web": 2, "worker": 3, "clock": 0}``."""
    counts: dict[str, int] = {}
    for spec in specs:
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, number = item.partition("=")
            name = name.strip()
            try:
                count = int(number)
            except ValueError:
                count = -1
            if not sep or not name or count < 0:
                raise ConfigError(f"-c takes name=N with N >= 0, not {item!r}")
            counts[name] = count
    return counts


def base_port(dotenv: Mapping[str, str], environ: Mapping[str, str]) -> int:
    """``PORT`` from ``.env``, else from the environment, else 5000 (foreman's rule)."""
    for source, where in ((dotenv, ".env"), (environ, "the environment")):
        value = source.get("PORT")
        if value is not None and value.strip():
            try:
                port = int(value)
            except ValueError:
                port = -1
            if not 0 < port < 65536:
                raise ConfigError(f"PORT in {where} must be a port number, not {value!r}")
            return port
    return DEFAULT_BASE_PORT


def build_plan(
    entries: Sequence[ProcfileEntry],
    *,
    concurrency: Mapping[str, int] | None = None,
    selected: Sequence[str] = (),
    config: UpConfig | None = None,
    dotenv: Mapping[str, str] | None = None,
    port: int = DEFAULT_BASE_PORT,
) -> list[Instance]:
    """Every copy to run, in Procfile order."""
    concurrency = dict(concurrency or {})
    config = config or UpConfig()
    dotenv = dotenv or {}
    known = [entry.name for entry in entries]
    for name in [*selected, *concurrency]:
        if name not in known:
            raise ConfigError(
                f"no service {name!r} in the Procfile (it has: {', '.join(known)})", key=name
            )
    wanted = set(selected) if selected else set(known)
    plan: list[Instance] = []
    slot = 0
    for index, entry in enumerate(entries):
        copies = concurrency.get(entry.name, 1)
        if entry.name not in wanted or copies == 0:
            continue
        settings = config.for_service(entry.name)
        for number in range(1, copies + 1):
            service_port = port + 100 * index + number - 1
            env = {
                **dotenv,
                "PORT": str(service_port),
                SERVICE_ENV: f"{entry.name}.{number}",
                **settings.env,
            }
            plan.append(
                Instance(entry.name, number, entry.command, service_port, env, settings, slot)
            )
        slot += 1
    if not plan:
        raise ConfigError("nothing to run: every selected service has 0 copies")
    return plan
