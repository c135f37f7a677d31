"""Helpers shared by the messaging tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gproc._messaging import listener, sender

from .conftest import python_program


@pytest.fixture(autouse=True)
def private_runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Each test gets its own runtime directory, and ends with nothing listening or cached."""
    directory = tmp_path_factory.mktemp("runtime")
    directory.chmod(0o700)
    old = os.environ.get("GPROC_RUNTIME_DIR")
    os.environ["GPROC_RUNTIME_DIR"] = str(directory)
    try:
        yield directory
    finally:
        listener.stop()
        listener.queues.clear()
        listener.queues.max_count = listener.DEFAULT_MAX_COUNT
        listener.queues.max_bytes = listener.DEFAULT_MAX_BYTES
        sender.forget_idle()
        if old is None:
            del os.environ["GPROC_RUNTIME_DIR"]
        else:
            os.environ["GPROC_RUNTIME_DIR"] = old


@contextmanager
def child(name: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """Run tests/programs/<name>.py with piped stdout; killed and reaped on the way out."""
    proc = subprocess.Popen(
        python_program(name, *args), stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stdin):
            if stream is not None:
                stream.close()


@contextmanager
def receiver(*args: str) -> Iterator[subprocess.Popen[str]]:
    """A msg_receiver child that has started receiving."""
    with child("msg_receiver", *args) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        yield proc


def sleeper() -> subprocess.Popen[bytes]:
    """A live process that never receives."""
    return subprocess.Popen(["sleep", "30"])
