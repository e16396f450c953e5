"""What an AsyncDataFerry owns: background factories, worker threads, and its event loops."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

import dataferry as df
from tests.redis_servers import RedisServer


def connected_clients(server: RedisServer) -> int:
    probe = server.client()
    try:
        return int(probe.info("clients")["connected_clients"]) - 1  # minus the probe itself
    finally:
        probe.close()


async def until(predicate: Callable[[], bool]) -> None:
    # No event exists for these states; poll them with a bound.
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


@pytest.mark.parametrize("release_during_close", [True, False])
async def test_an_orphaned_factory_never_reopens_the_l2_after_close(
    redis_server: RedisServer, release_during_close: bool
) -> None:
    cache = df.AsyncDataFerry(
        distributed=df.RedisCache.from_url(redis_server.url),
        close_timeout=5.0 if release_during_close else 0.0,
    )
    await cache.set("warm", 1)  # the cache has a connection now
    assert connected_clients(redis_server) == 1
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "late"

    caller = asyncio.ensure_future(cache.get_or_set("k", slow))
    await started.wait()
    caller.cancel()  # nobody waits for the factory any more: the cache owns it
    closing = asyncio.ensure_future(cache.aclose())
    await until(lambda: cache.closed)
    release.set()
    await closing
    assert connected_clients(redis_server) == 0  # the factory's value was not written
    probe = redis_server.client()
    try:
        assert not probe.exists("dataferry:k:k")
    finally:
        probe.close()


async def test_sync_factories_can_run_in_worker_threads() -> None:
    cache = df.AsyncDataFerry(offload_sync_factories=True)
    inside = threading.Barrier(4, timeout=10)

    def blocking(n: int) -> int:
        inside.wait()  # all four run at once, in threads: the loop was never blocked
        return n

    results = await asyncio.gather(
        *(cache.get_or_set(f"k{n}", lambda n=n: blocking(n)) for n in range(4))  # type: ignore[misc]
    )
    assert results == [0, 1, 2, 3]

    async def native() -> str:  # async factories still run on the loop
        return threading.current_thread().name

    assert await cache.get_or_set("async", native) == threading.current_thread().name
    await cache.aclose()
    with pytest.raises(df.CacheClosedError):
        await cache.get_or_set("k9", lambda: 9)


# -- one cache, many event loops ------------------------------------------------------------------

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def run(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], coro: Coroutine[Any, Any, Any]
) -> Any:
    """What asyncio.run does, for any loop kind: a new loop, closed at the end."""
    loop = loop_factory()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def backends(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if kind == "redis":
        return df.RedisCache.from_url(request.getfixturevalue("redis_url"))
    if kind == "sqlite":
        return df.SQLiteCache(str(tmp_path / "l2.sqlite"))
    return None


@pytest.mark.parametrize("kind", ["memory-only", "sqlite", "redis"])
@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_one_cache_serves_event_loops_in_turn(
    kind: str, loop: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Created outside any loop, as a module-level cache would be.
    cache = df.AsyncDataFerry(distributed=backends(kind, request, tmp_path), namespace="loops")

    async def use(n: int) -> None:
        await cache.set(f"set{n}", n)
        assert await cache.get_or_set(f"computed{n}", lambda: n * 10) == n * 10
        assert await cache.get_many([f"set{n}", f"computed{n}"]) == {
            f"set{n}": n,
            f"computed{n}": n * 10,
        }
        await cache.expire(f"set{n}")
        assert await cache.try_get(f"set{n}") == (False, None)

    for n in range(3):
        run(LOOPS[loop], use(n))
    assert cache.stats().distributed_errors == 0
    run(LOOPS[loop], cache.aclose())


@pytest.mark.parametrize("kind", ["memory-only", "sqlite", "redis"])
def test_one_cache_serves_loops_in_two_threads_at_once(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cache = df.AsyncDataFerry(distributed=backends(kind, request, tmp_path), namespace="threads")
    both = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    async def use(name: str) -> None:
        both.wait()  # both loops are running now
        for i in range(50):
            await cache.set(f"{name}{i}", i)
            assert await cache.get_or_set(f"shared{i % 5}", lambda: "same") == "same"
            assert await cache.get(f"{name}{i}") == i

    def thread(name: str, factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
        try:
            run(factory, use(name))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=thread, args=("a", asyncio.new_event_loop)),
        threading.Thread(target=thread, args=("b", uvloop.new_event_loop)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert cache.stats().distributed_errors == 0
    run(asyncio.new_event_loop, cache.aclose())
