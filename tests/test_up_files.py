"""gproc up: reading the Procfile, .env and gproc.toml, and planning what runs (pure logic)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from gproc import ConfigError
from gproc._up.config import ServiceConfig, load_config, parse_config, parse_signal
from gproc._up.dotenv import load_dotenv, parse_dotenv
from gproc._up.plan import base_port, build_plan, parse_concurrency
from gproc._up.procfile import load_procfile, parse_procfile

# ------------------------------------------------------------------ Procfile


def test_procfile_entries_comments_and_blank_lines() -> None:
    text = "# services\n\nweb: python -m http.server $PORT\n  worker :  run --queue=a:b  \n"
    entries = parse_procfile(text)
    assert [(e.name, e.command, e.line) for e in entries] == [
        ("web", "python -m http.server $PORT", 3),
        ("worker", "run --queue=a:b", 4),
    ]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("web: ok\nthis is not an entry\n", 2, "expected 'name: command'"),
        ("web.1: x\n", 1, "invalid service name 'web.1'"),
        ("my web: x\n", 1, "invalid service name 'my web'"),
        (": x\n", 1, "invalid service name ''"),
        ("web:\n", 1, "has no command"),
        ("web: a\n\nweb: b\n", 3, "defined twice (first on line 1)"),
    ],
)
def test_procfile_errors_name_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_procfile(text, "/x/Procfile")
    assert info.value.path == "/x/Procfile"
    assert info.value.line == line
    assert words in str(info.value)
    assert str(info.value).startswith(f"/x/Procfile:{line}: ")


def test_procfile_empty_or_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no services"):
        parse_procfile("# nothing\n")
    with pytest.raises(ConfigError, match="no such file"):
        load_procfile(tmp_path / "Procfile")


# ------------------------------------------------------------------ .env


def test_dotenv_forms() -> None:
    text = (
        "# comment\n"
        "PLAIN=value\n"
        "SPACED = spaced value   # trailing comment\n"
        "export EXPORTED=1\n"
        "EMPTY=\n"
        "SINGLE='no $escapes\\n here # not a comment'\n"
        'DOUBLE="tab\\there \\"quoted\\" \\\\ \\$HOME"  # comment\n'
        'MULTI="line one\n'
        'line two"\n'
        "HASH=a#b\n"
        "PLAIN=overridden\n"
    )
    assert parse_dotenv(text) == {
        "PLAIN": "overridden",
        "SPACED": "spaced value",
        "EXPORTED": "1",
        "EMPTY": "",
        "SINGLE": "no $escapes\\n here # not a comment",
        "DOUBLE": 'tab\there "quoted" \\ $HOME',
        "MULTI": "line one\nline two",
        "HASH": "a#b",
    }


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("A=1\nJUSTAKEY\n", 2, "expected KEY=VALUE"),
        ("1A=x\n", 1, "invalid variable name '1A'"),
        ("A-B=x\n", 1, "invalid variable name"),
        ('A="open\nB=2\n', 1, "unterminated"),
        ("A='x' junk\n", 1, "unexpected text"),
    ],
)
def test_dotenv_errors(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_dotenv(text, "app/.env")
    assert (info.value.path, info.value.line) == ("app/.env", line)
    assert words in str(info.value)


def test_dotenv_missing_file(tmp_path: Path) -> None:
    assert load_dotenv(tmp_path / ".env") == {}
    with pytest.raises(ConfigError, match="no such file"):
        load_dotenv(tmp_path / ".env", required=True)


# ------------------------------------------------------------------ gproc.toml

SERVICES = ("web", "worker", "env")


def test_config_defaults_and_per_service(tmp_path: Path) -> None:
    (tmp_path / "webdir").mkdir()
    text = """
restart = "on-failure"
backoff = 0.1
env = { SHARED = "1" }

[web]
restart = "always"
max_restarts = 3
restart_window = 10
backoff_max = 2
stop_signal = "INT"
grace = 1.5
cwd = "webdir"
env = { DEBUG = 1, NAME = "web" }
"""
    config = parse_config(text, "gproc.toml", ["web", "worker"], base_dir=str(tmp_path))
    web = config.for_service("web")
    assert web == ServiceConfig(
        restart="always",
        max_restarts=3,
        restart_window=10.0,
        backoff=0.1,
        backoff_max=2.0,
        stop_signal=signal.SIGINT,
        grace=1.5,
        cwd=str(tmp_path / "webdir"),
        env={"SHARED": "1", "DEBUG": "1", "NAME": "web"},
    )
    worker = config.for_service("worker")
    assert worker.restart == "on-failure"
    assert worker.backoff == 0.1
    assert worker.env == {"SHARED": "1"}
    assert worker.grace is None


def test_config_absent_means_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "gproc.toml", SERVICES).for_service("web") == ServiceConfig()


def test_config_table_named_like_a_setting_is_the_service() -> None:
    config = parse_config('[env]\nrestart = "always"\n', "gproc.toml", SERVICES)
    assert config.for_service("env").restart == "always"
    assert config.defaults.env == {}


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        ('[web]\nrestart = "sometimes"\n', 2, "web.restart", "'no', 'on-failure' or 'always'"),
        ("[web]\n\nrestrat = 1\n", 3, "web.restrat", "unknown setting 'restrat'"),
        ("[db]\nrestart = 'no'\n", 1, "db", "no service 'db' in the Procfile"),
        ("colour = 1\n", 1, "colour", "unknown setting 'colour'"),
        ("[web]\nmax_restarts = -1\n", 2, "web.max_restarts", "integer >= 0"),
        ("[web]\nmax_restarts = 1.5\n", 2, "web.max_restarts", "integer >= 0"),
        ("[worker]\nrestart_window = 0\n", 2, "worker.restart_window", "must be > 0"),
        ("grace = -1\n", 1, "grace", "must be >= 0"),
        ("[web]\ngrace = true\n", 2, "web.grace", "number of seconds"),
        ("[web]\nbackoff = '1s'\n", 2, "web.backoff", "number of seconds"),
        ("[web]\nbackoff = 5\nbackoff_max = 1\n", 3, "web.backoff_max", "smaller than backoff"),
        ("[web]\nstop_signal = 'SIGNOPE'\n", 2, "web.stop_signal", "signal name"),
        ("[web]\ncwd = 'no/such/dir'\n", 2, "web.cwd", "not a directory"),
        ("[web]\nenv = 'A=1'\n", 2, "web.env", "table"),
        ("[web]\nenv = { 1X = 'a' }\n", 2, "web.env.1X", "invalid variable name"),
        ("[web.env]\nOK = 'a'\nBAD = [1]\n", 3, "web.env.BAD", "string or a number"),
        ("web = { restart = 'maybe' }\n", 1, "web.restart", "'no', 'on-failure'"),
        ("[web]\nrestart = \n", 2, None, "invalid TOML"),
    ],
)
def test_config_errors_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str | None, words: str
) -> None:
    path = tmp_path / "gproc.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, SERVICES)
    assert info.value.path == str(path)
    assert info.value.line == line
    assert info.value.key == key
    assert words in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_parse_signal() -> None:
    assert parse_signal("SIGTERM") == signal.SIGTERM
    assert parse_signal("hup") == signal.SIGHUP
    assert parse_signal(2) == signal.SIGINT
    for bad in ("SIG_DFL", "", 0, True, 1.5):
        with pytest.raises(ValueError, match="stop_signal"):
            parse_signal(bad)


# ------------------------------------------------------------------ plan

ENTRIES = parse_procfile("web: serve\nworker: work\nclock: tick\n")


def test_concurrency_specs() -> None:
    assert parse_concurrency(["web=2,worker=3", " clock = 0 "]) == {
        "web": 2,
        "worker": 3,
        "clock": 0,
    }
    for bad in ("web", "web=-1", "=2", "web=two"):
        with pytest.raises(ConfigError, match="name=N"):
            parse_concurrency([bad])


def test_ports_and_service_names_as_foreman() -> None:
    plan = build_plan(ENTRIES, concurrency={"worker": 3, "clock": 0}, port=5000)
    assert [(i.name, i.port, i.env["PORT"], i.env["GPROC_SERVICE"]) for i in plan] == [
        ("web.1", 5000, "5000", "web.1"),
        ("worker.1", 5100, "5100", "worker.1"),
        ("worker.2", 5101, "5101", "worker.2"),
        ("worker.3", 5102, "5102", "worker.3"),
    ]
    assert [i.slot for i in plan] == [0, 1, 1, 1]


def test_selection_keeps_ports_and_checks_names() -> None:
    plan = build_plan(ENTRIES, selected=["clock"], port=6000)
    assert [(i.name, i.port, i.slot) for i in plan] == [("clock.1", 6200, 0)]
    with pytest.raises(ConfigError, match="no service 'db'"):
        build_plan(ENTRIES, selected=["db"])
    with pytest.raises(ConfigError, match="no service 'db'"):
        build_plan(ENTRIES, concurrency={"db": 1})
    with pytest.raises(ConfigError, match="nothing to run"):
        build_plan(ENTRIES, selected=["web"], concurrency={"web": 0})


def test_environment_layers() -> None:
    config = parse_config("[web]\nenv = { PORT = '80', FROM = 'toml' }\n", "gproc.toml", ["web"])
    plan = build_plan(ENTRIES, config=config, dotenv={"FROM": "dotenv", "DB": "x"}, port=5000)
    web, worker, _ = plan
    assert web.env == {"FROM": "toml", "DB": "x", "PORT": "80", "GPROC_SERVICE": "web.1"}
    assert worker.env == {"FROM": "dotenv", "DB": "x", "PORT": "5100", "GPROC_SERVICE": "worker.1"}


def test_base_port_from_dotenv_then_environment() -> None:
    assert base_port({}, {}) == 5000
    assert base_port({}, {"PORT": "7000"}) == 7000
    assert base_port({"PORT": "8000"}, {"PORT": "7000"}) == 8000
    with pytest.raises(ConfigError, match="port number"):
        base_port({"PORT": "http"}, {})
