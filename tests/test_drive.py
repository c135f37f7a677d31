"""The two drivers that run every gproc operation, on real descriptors."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from gproc._drive import Op, Wait, run_async, run_sync, sleep, wait_readable


def _read_when_ready(fd: int) -> Op[bytes]:
    assert (yield from wait_readable(fd, time.monotonic() + 5))
    return os.read(fd, 100)


def test_sync_driver_returns_what_the_operation_returns() -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"hello")
        assert run_sync(_read_when_ready(r)) == b"hello"
    finally:
        os.close(r)
        os.close(w)


def test_a_deadline_with_nothing_ready_wakes_with_an_empty_set() -> None:
    r, w = os.pipe()
    try:

        def op() -> Op[frozenset[int]]:
            return (yield Wait(readable=[r], deadline=time.monotonic() + 0.05))

        assert run_sync(op()) == frozenset()
        assert asyncio.run(run_async(op())) == frozenset()
    finally:
        os.close(r)
        os.close(w)


def test_two_tasks_waiting_on_one_descriptor_both_wake() -> None:
    # One loop keeps one reader callback per descriptor; the driver must not let the second
    # waiter replace the first (that waiter would hang).
    r, w = os.pipe()

    def watch() -> Op[bool]:
        return (yield from wait_readable(r, time.monotonic() + 5))

    async def main() -> tuple[bool, bool]:
        first = asyncio.create_task(run_async(watch()))
        second = asyncio.create_task(run_async(watch()))
        await asyncio.sleep(0.01)
        os.write(w, b"x")
        return await asyncio.wait_for(first, 5), await asyncio.wait_for(second, 5)

    try:
        assert asyncio.run(main()) == (True, True)
    finally:
        os.close(r)
        os.close(w)


def test_one_waiter_leaving_keeps_the_other_registered() -> None:
    r, w = os.pipe()

    def watch(seconds: float) -> Op[bool]:
        return (yield from wait_readable(r, time.monotonic() + seconds))

    async def main() -> tuple[bool, bool]:
        short = asyncio.create_task(run_async(watch(0.01)))
        long = asyncio.create_task(run_async(watch(5)))
        assert await short is False
        os.write(w, b"x")
        return False, await asyncio.wait_for(long, 5)

    try:
        assert asyncio.run(main()) == (False, True)
    finally:
        os.close(r)
        os.close(w)


def test_cancellation_is_thrown_into_the_operation_which_may_clean_up() -> None:
    events: list[str] = []

    def op() -> Op[None]:
        try:
            yield from sleep(10)
        except asyncio.CancelledError:
            events.append("cleanup started")
            yield from sleep(0.01)  # cleanup may still wait
            events.append("cleanup done")
            raise

    async def main() -> None:
        task = asyncio.create_task(run_async(op()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert events == ["cleanup started", "cleanup done"]


def test_a_wait_for_nothing_forever_is_refused() -> None:
    def op() -> Op[None]:
        yield Wait()

    with pytest.raises(RuntimeError, match="nothing to wait for"):
        run_sync(op())
