"""The public surface: explicit exports, the asyncio twin in step with the sync API, errors."""

from __future__ import annotations

import asyncio
import inspect
import os
import pickle
import subprocess
import threading

import pytest

import gproc
from gproc import aio


def test_every_export_exists_and_nothing_private_leaks() -> None:
    for name in gproc.__all__:
        assert hasattr(gproc, name), name
    for name in aio.__all__:
        assert hasattr(aio, name), name
    assert not [n for n in gproc.__all__ if n.startswith("_") and n != "__version__"]


def test_aio_twin_has_the_same_names_and_parameters() -> None:
    for name in aio.__all__:
        ours, theirs = getattr(aio, name), getattr(gproc, name)
        if inspect.isclass(ours):
            for attr, member in inspect.getmembers(ours, callable):
                if attr.startswith("_") and attr not in ("__init__", "__enter__"):
                    continue
                twin = getattr(theirs, attr, None)
                assert twin is not None, f"gproc.{name}.{attr} is missing"
                assert inspect.signature(member) == inspect.signature(twin), f"{name}.{attr}"
        elif inspect.iscoroutinefunction(ours) or inspect.isasyncgenfunction(ours):
            # Parameters must match; the return type differs for iterators (async vs sync).
            ours_params = inspect.signature(ours).parameters
            assert ours_params == inspect.signature(theirs).parameters, name
            assert not inspect.iscoroutinefunction(theirs), name
        else:
            assert ours is theirs, f"{name}: non-blocking helpers are shared, not copied"


def test_sync_functions_that_wait_have_an_async_twin() -> None:
    waiting = {
        "shell",
        "shell_exec",
        "shell_run",
        "listen",
        "send",
        "send_many",
        "request",
        "receive",
    }
    for name in waiting:
        assert inspect.iscoroutinefunction(getattr(aio, name))


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (gproc.ShellError, (subprocess.CalledProcessError,)),
        (gproc.ShellTimeout, (gproc.ShellError, TimeoutError)),
        (gproc.ProcessNotFound, (ProcessLookupError,)),
        (gproc.ProcessTimeout, (TimeoutError,)),
        (gproc.SpawnError, (OSError,)),
        (gproc.ReceiveTimeout, (gproc.MessagingError, TimeoutError)),
        (gproc.ConnectionLost, (gproc.MessagingError, ConnectionError)),
        (gproc.MessageTooLarge, (gproc.MessagingError, ValueError)),
        (gproc.ConfigError, (ValueError,)),
    ],
)
def test_errors_share_one_root_and_the_stdlib_errors_users_catch(
    error: type[BaseException], bases: tuple[type[BaseException], ...]
) -> None:
    assert issubclass(error, gproc.GprocError)
    for base in bases:
        assert issubclass(error, base)


def test_errors_pickle_with_their_facts() -> None:
    errors: list[gproc.GprocError] = [
        gproc.ProcessNotFound("no process 12", pid=12, cmd="x"),
        gproc.QueueFull("full", pid=3, group="jobs"),
        gproc.ManyErrors("2 failed", [gproc.ProcessNotFound("a", pid=1), ValueError("b")]),
        gproc.ConfigError("bad key", path="gproc.toml", line=3, key="restart"),
    ]
    for err in errors:
        clone = pickle.loads(pickle.dumps(err))
        assert type(clone) is type(err)
        assert str(clone) == str(err)
        assert repr(vars(clone)) == repr(vars(err))  # nested errors compare by identity


def _fd_count() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


def test_no_descriptor_or_thread_leak_over_many_commands() -> None:
    gproc.shell_exec("true")  # warm up lazy state (shell lookup, psutil caches)
    fds, threads = _fd_count(), threading.active_count()
    for _ in range(100):
        gproc.shell_exec("echo x", input="data")
    for _ in range(20):
        with pytest.raises(gproc.ShellTimeout):
            gproc.shell_exec("sleep 10", timeout=0.01, grace=0.5)

    async def many() -> None:
        for _ in range(80):
            await aio.shell_exec("true")

    asyncio.run(many())
    assert _fd_count() == fds
    assert threading.active_count() == threads
