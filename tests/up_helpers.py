"""Helpers for the gproc up tests: a running ``gproc up`` read line by line, and Procfiles."""

from __future__ import annotations

import json
import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import PROGRAMS

SERVICE = f"{shlex.quote(sys.executable)} {shlex.quote(str(PROGRAMS / 'up_service.py'))}"
PREFIX = re.compile(r"^\d\d:\d\d:\d\d (?P<name>\S+) +\| (?P<text>.*)$")


class Up:
    """A running ``gproc up`` whose output a test reads line by line, with deadlines."""

    def __init__(self, root: Path, *args: str, stdout: int | None = None) -> None:
        self.root = root
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gproc", "up", *args],
            cwd=root,
            stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self._partial = b""

    def _read_more(self, deadline: float) -> bool:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if not selector.select(max(0.0, deadline - time.monotonic())):
                return True
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            return False
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        self.lines.extend(line.decode() for line in complete)
        return True

    def wait_for(self, pattern: str, timeout: float = 15.0, *, start: int = 0) -> re.Match[str]:
        """The first line from line ``start`` on (read so far or to come) matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = start
        while True:
            for line in self.lines[checked:]:
                found = regex.search(line)
                if found is not None:
                    return found
            checked = len(self.lines)
            if time.monotonic() >= deadline:
                raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))
            if not self._read_more(deadline):
                raise AssertionError(
                    f"gproc up ended before {pattern!r}:\n" + "\n".join(self.lines) + self.stderr()
                )

    def finish(self, timeout: float = 20.0) -> int:
        """Read everything until gproc up exits; its exit status."""
        deadline = time.monotonic() + timeout
        while self._read_more(deadline):
            if time.monotonic() >= deadline:
                self.proc.kill()
                raise AssertionError("gproc up did not exit:\n" + "\n".join(self.lines))
        if self._partial:
            self.lines.append(self._partial.decode())
        return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read().decode()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def lifecycle(self, name: str | None = None) -> list[dict[str, object]]:
        """The ``--json`` events other than output lines, of copy ``name`` or of all."""
        return [
            e
            for e in self.events()
            if e["event"] != "output" and (name is None or e.get("name") == name)
        ]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.finish(timeout=10)
            except AssertionError:
                pass
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def up_runs(tmp_path: Path) -> Iterator[type[Up]]:
    """The body of an ``up`` fixture: a class whose instances are closed after the test."""
    started: list[Up] = []

    class Tracked(Up):
        def __init__(self, *args: str, root: Path = tmp_path, stdout: int | None = None) -> None:
            super().__init__(root, *args, stdout=stdout)
            started.append(self)

    yield Tracked
    for run in started:
        run.close()


def procfile(root: Path, text: str, toml: str | None = None, env: str | None = None) -> None:
    (root / "Procfile").write_text(text.replace("$SERVICE", SERVICE))
    if toml is not None:
        (root / "gproc.toml").write_text(toml)
    if env is not None:
        (root / ".env").write_text(env)


def text_lines(run: Up, name: str) -> list[str]:
    found = []
    for line in run.lines:
        match = PREFIX.match(line)
        if match and match["name"] == name:
            found.append(match["text"])
    return found
