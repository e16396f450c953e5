"""Single-flight stampede protection: asyncio tasks (async facade) and threads (sync facade)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import dataferry as df


async def test_concurrent_callers_share_one_factory_call() -> None:
    cache = df.AsyncDataFerry()
    release = asyncio.Event()
    calls = 0

    async def load() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await release.wait()
        return {"n": calls}

    tasks = [asyncio.ensure_future(cache.get_or_set("hot", load)) for _ in range(100)]
    await asyncio.sleep(0)  # let every task reach the flight
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert all(r is results[0] for r in results)  # the very same object
    assert cache.stats().stampede_joins == 99


async def test_exception_reaches_every_waiter_and_is_not_cached() -> None:
    cache = df.AsyncDataFerry()
    release = asyncio.Event()
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        raise ConnectionError("db down")

    tasks = [asyncio.ensure_future(cache.get_or_set("k", load)) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await cache.get_or_set("k", lambda: "recovered") == "recovered"


async def test_cancelled_waiter_does_not_cancel_the_factory_for_others() -> None:
    cache = df.AsyncDataFerry()
    started = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "done"

    first = asyncio.ensure_future(cache.get_or_set("k", load))  # the one that starts it
    await started.wait()
    second = asyncio.ensure_future(cache.get_or_set("k", load))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    assert await second == "done"
    assert calls == 1
    assert await cache.get("k") == "done"  # and the result was cached


async def test_timeout_of_one_caller_leaves_the_work_running() -> None:
    cache = df.AsyncDataFerry()
    release = asyncio.Event()

    async def load() -> int:
        await release.wait()
        return 1

    with pytest.raises(asyncio.TimeoutError):  # builtin TimeoutError from 3.11 on
        await asyncio.wait_for(cache.get_or_set("k", load), timeout=0.01)
    release.set()
    assert await cache.get_or_set("k", load) == 1


async def test_different_keys_do_not_wait_for_each_other() -> None:
    cache = df.AsyncDataFerry()
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "slow"

    blocked = asyncio.ensure_future(cache.get_or_set("a", slow))
    assert await cache.get_or_set("b", lambda: "fast") == "fast"
    release.set()
    assert await blocked == "slow"


def _stampede(cache: df.DataFerry, n: int, load: Any, release: threading.Event) -> list[Any]:
    """Run ``n`` threads on one cold key; let ``load`` finish once all have joined the flight."""
    barrier = threading.Barrier(n)

    def worker() -> Any:
        barrier.wait()
        try:
            return cache.get_or_set("hot", load)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(worker) for _ in range(n)]
        for _ in range(500):  # bounded wait for the joiners (no event exists for "joined")
            if cache.stats().stampede_joins >= n - 1:
                break
            threading.Event().wait(0.01)
        release.set()
        return [f.result() for f in futures]


def test_threads_share_one_factory_call() -> None:
    cache = df.DataFerry()
    release = threading.Event()
    calls = 0

    def load() -> list[int]:
        nonlocal calls
        calls += 1
        release.wait(5)
        return [1, 2, 3]

    results = _stampede(cache, 16, load, release)
    assert calls == 1
    assert all(r is results[0] for r in results)
    assert cache.stats().stampede_joins == 15


def test_thread_exception_reaches_every_waiter_and_is_not_cached() -> None:
    cache = df.DataFerry()
    release = threading.Event()
    calls = 0

    def load() -> str:
        nonlocal calls
        calls += 1
        release.wait(5)
        raise ValueError("bad row")

    results = _stampede(cache, 8, load, release)
    assert calls == 1
    assert all(isinstance(r, ValueError) for r in results)
    assert cache.try_get("hot") == (False, None)


def test_sync_cache_refuses_async_factory() -> None:
    cache = df.DataFerry()

    async def load() -> int:
        return 1

    with pytest.raises(df.ConfigurationError, match="async factory"):
        cache.get_or_set("k", load)
    assert cache.try_get("k") == (False, None)


class GatedL2:
    """A chaos wrapper around a real backend: reads wait until the gate opens."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.reads = 0

    async def aget(self, key: str) -> Any:
        self.reads += 1
        await self.gate.wait()
        return await self.inner.aget(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_cancelling_the_first_caller_during_the_l2_read_hands_the_flight_over(
    tmp_path: Any,
) -> None:
    l2 = GatedL2(df.SQLiteCache(str(tmp_path / "l2.sqlite")))
    cache = df.AsyncDataFerry(distributed=l2)  # type: ignore[arg-type]
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        return "value"

    first = asyncio.ensure_future(cache.get_or_set("k", load))
    await asyncio.sleep(0)
    assert l2.reads == 1  # the first caller is inside the L2 read
    second = asyncio.ensure_future(cache.get_or_set("k", load))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    l2.gate.set()
    assert await second == "value"
    assert calls == 1
    assert cache.stats().stampede_joins == 1


async def test_l2_hit_is_shared_by_concurrent_callers(tmp_path: Any) -> None:
    inner = df.SQLiteCache(str(tmp_path / "l2.sqlite"))
    async with df.AsyncDataFerry(distributed=inner, namespace="n") as writer:
        await writer.set("k", {"from": "l2"})
    l2 = GatedL2(inner)
    cache = df.AsyncDataFerry(distributed=l2, namespace="n")  # type: ignore[arg-type]
    tasks = [asyncio.ensure_future(cache.get_or_set("k", lambda: "factory")) for _ in range(20)]
    await asyncio.sleep(0)
    l2.gate.set()
    results = await asyncio.gather(*tasks)
    assert results == [{"from": "l2"}] * 20
    assert l2.reads == 1  # one L2 round trip for twenty callers
    assert cache.stats().factory_calls == 0
