"""The ``gproc demo`` chapter for ``gproc up``: the example Procfile, run for a few seconds."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

#: examples/ at the root of a source checkout (the demo runs from one: ``make demo``).
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _gproc(*args: str) -> list[str]:
    return [sys.executable, "-m", "gproc", *args]


class _Lines:
    """The output of a running command, read with deadlines (no sleeping)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.partial = b""

    def show(self, seconds: float, *, until: str | None = None) -> bool:
        """Print lines for up to ``seconds``; True once a line contains ``until``."""
        deadline = time.monotonic() + seconds
        with selectors.DefaultSelector() as selector:
            selector.register(self.fd, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not selector.select(left):
                    continue
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return False
                *lines, self.partial = (self.partial + chunk).split(b"\n")
                for line in lines:
                    text = line.decode("utf-8", "replace")
                    print(f"    {text}", flush=True)
                    if until is not None and until in text:
                        return True
        return False


def up_chapter() -> None:
    print("\n== gproc up: a Procfile under supervision ==", flush=True)
    if not (EXAMPLES / "Procfile").is_file():
        print("(examples/Procfile is not here: run the demo from a source checkout)")
        return
    print(f"$ cd {EXAMPLES.name} && gproc up    # Procfile, .env and gproc.toml from {EXAMPLES}")
    env = dict(os.environ)
    # The Procfile says `python`: make that the interpreter running this demo (it has gproc).
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.Popen(
        _gproc("up", "--no-color"), cwd=EXAMPLES, env=env, stdout=subprocess.PIPE
    )
    lines = _Lines(proc)
    try:
        if lines.show(10, until="listening on"):
            with urllib.request.urlopen("http://127.0.0.1:5000/", timeout=5) as response:
                answer = response.read().decode().strip()
            print(f"  (GET http://127.0.0.1:5000/ -> {answer!r})", flush=True)
        lines.show(2.5)
        print("$ gproc ctl status    # from another terminal, through gproc messaging")
        status = subprocess.run(
            _gproc("ctl", "status"), cwd=EXAMPLES, capture_output=True, text=True, check=False
        )
        for text in (status.stdout + status.stderr).splitlines():
            print(f"    {text}")
        print("$ gproc ctl restart worker")
        restart = subprocess.run(
            _gproc("ctl", "restart", "worker"),
            cwd=EXAMPLES,
            capture_output=True,
            text=True,
            check=False,
        )
        for text in (restart.stdout + restart.stderr).splitlines():
            print(f"    {text}")
        lines.show(0.8)
        print("$ kill -INT <gproc up>    # Ctrl+C: every service and its children stop")
        proc.send_signal(signal.SIGINT)
        lines.show(15)
    finally:
        if proc.poll() is None:
            proc.kill()
        status_code = proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    print(f"gproc up exited with status {status_code} (0: stopped on request)", flush=True)
