"""Helpers shared by the messaging tests."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

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


@contextmanager
def interrupted_at(
    function: Callable[..., object],
    line_text: str,
    when: Callable[[FrameType], bool] = lambda frame: True,
) -> Iterator[None]:
    """Raise KeyboardInterrupt in this thread when ``function`` reaches the line whose stripped
    text is ``line_text`` (and ``when(frame)`` holds). A real SIGINT lands on one chosen bytecode
    only by chance; a trace function puts it exactly there."""
    lines, first = inspect.getsourcelines(function)
    line = first + next(i for i, text in enumerate(lines) if text.strip() == line_text)
    code = getattr(function, "__code__", None)

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == line and when(frame):
            raise KeyboardInterrupt
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code is code else None

    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(None)
