"""Real faults on real servers, through the public API: a frozen Redis (SIGSTOP), a killed and
restarted one, a closed port, and a server that accepts connections but never answers.

Each test runs on both Redis clients DataFerry offers, RedisCache (redis-py) and GlideCache
(GLIDE); where they differ (GLIDE waits its request timeout on a refused connection), the
fixture says so. Both colours are tested here by hand (asyncio tasks and threads under load
don't share a shape that unasync could generate). Timed bounds are generous: the machine is
shared.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import dataferry as df
from tests.chaos import async_until, sync_until
from tests.redis_servers import BlackholeServer, RedisServer, free_port

TIMEOUT = 0.25  # the default Resilience timeout and RedisCache socket timeouts
COOLDOWN = 1.0
MARGIN = 0.5  # scheduling noise on a loaded 2-core machine


def expected(key: str) -> str:
    return f"value of {key}"


def states(cache: Any) -> list[str]:
    seen: list[str] = []

    def listener(event: str, attributes: dict[str, Any]) -> None:
        if event == "circuit_state":
            seen.append(attributes["state"])

    cache.subscribe(listener)
    return seen


def policy() -> df.Resilience:
    return df.Resilience(timeout=TIMEOUT, cooldown=COOLDOWN, recovery_interval=0.1)


class L2:
    """One of the Redis clients DataFerry offers, built for a URL, and what sets it apart."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self, url: str) -> Any:
        # Both default to a 0.25 s timeout (TIMEOUT): socket_timeout, request_timeout.
        if self.kind == "glide":
            return df.GlideCache.from_url(url)
        return df.RedisCache.from_url(url)

    def refused_costs(self) -> float:
        """What the calls that open the breaker on a closed port cost in all, at most.

        redis-py fails at once on a refused connection; GLIDE waits its request timeout for
        each (it keeps reconnecting in the background), so the breaker opens after
        ``failure_threshold`` timeouts.
        """
        return 0.0 if self.kind == "redis" else df.Resilience().failure_threshold * TIMEOUT


@pytest.fixture(params=["redis", "glide"])
def l2(request: pytest.FixtureRequest) -> L2:
    """Builds the L2 client of the test's kind: RedisCache (redis-py) or GlideCache (GLIDE)."""
    return L2(str(request.param))


# -- a frozen Redis (SIGSTOP) ------------------------------------------------------------------


async def test_async_frozen_redis_costs_one_timeout_then_nothing(
    redis_server: RedisServer, l2: L2
) -> None:
    cache = df.AsyncDataFerry(distributed=l2(redis_server.url), resilience=policy())
    seen = states(cache)
    worst: list[float] = []
    stop = asyncio.Event()

    async def load(task: int) -> None:
        n = 0
        while not stop.is_set():
            key = f"load:{task}:{n}"
            started = time.monotonic()
            assert await cache.get_or_set(key, lambda k=key: expected(k)) == expected(key)
            worst.append(time.monotonic() - started)
            n += 1
            await asyncio.sleep(0.002)

    async with cache:
        await cache.set("warm", 1)
        tasks = [asyncio.create_task(load(i)) for i in range(10)]
        await asyncio.sleep(0.1)
        redis_server.freeze()
        try:

            async def opened() -> bool:
                return "open" in seen

            await async_until(opened)
            started = time.monotonic()
            for i in range(50):
                key = f"during:{i}"
                assert await cache.get_or_set(key, lambda k=key: expected(k)) == expected(key)
            assert time.monotonic() - started < 1.0  # "well under 3 s": L1/factory time
        finally:
            redis_server.resume()
        resumed = time.monotonic()

        async def closed() -> bool:
            return seen[-1] == "closed"

        await async_until(closed)
        assert time.monotonic() - resumed < COOLDOWN + 1.0 + MARGIN
        stop.set()
        await asyncio.gather(*tasks)
    # One timeout at most: a get_or_set whose read timed out writes in the background, and
    # the breaker opens after the first wave of timeouts.
    assert max(worst) < TIMEOUT + MARGIN
    assert cache.stats().circuit_breaks >= 1


def test_sync_frozen_redis_costs_one_timeout_then_nothing(
    redis_server: RedisServer, l2: L2
) -> None:
    cache = df.DataFerry(distributed=l2(redis_server.url), resilience=policy())
    seen = states(cache)
    worst: list[float] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def load(task: int) -> None:
        try:
            n = 0
            while not stop.is_set():
                key = f"load:{task}:{n}"
                started = time.monotonic()
                assert cache.get_or_set(key, lambda k=key: expected(k)) == expected(key)
                worst.append(time.monotonic() - started)
                n += 1
                time.sleep(0.002)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    with cache, ThreadPoolExecutor(8) as pool:
        cache.set("warm", 1)
        for i in range(8):
            pool.submit(load, i)
        time.sleep(0.1)
        redis_server.freeze()
        try:
            sync_until(lambda: "open" in seen)
            started = time.monotonic()
            for i in range(50):
                key = f"during:{i}"
                assert cache.get_or_set(key, lambda k=key: expected(k)) == expected(key)
            assert time.monotonic() - started < 1.0
        finally:
            redis_server.resume()
        resumed = time.monotonic()
        sync_until(lambda: seen[-1] == "closed")
        assert time.monotonic() - resumed < COOLDOWN + 1.0 + MARGIN
        stop.set()
    assert errors == []
    assert max(worst) < TIMEOUT + MARGIN  # one timeout at most (see above)


async def test_a_remove_while_redis_is_frozen_is_applied_after_it_resumes(
    redis_server: RedisServer, l2: L2
) -> None:
    backend = l2(redis_server.url)
    async with df.AsyncDataFerry(distributed=backend, resilience=policy()) as cache:
        await cache.set("k", "stale soon")
        redis_server.freeze()
        try:
            started = time.monotonic()
            await cache.remove("k")  # times out, queued
            assert time.monotonic() - started < TIMEOUT + MARGIN
            assert cache.stats().recovery_pending == 1
        finally:
            redis_server.resume()

        async def replayed() -> bool:
            return cache.stats().recovery_pending == 0

        await async_until(replayed)  # by the probe: this cache makes no call meanwhile
        assert cache.stats().recovery_replays == 1
    async with df.AsyncDataFerry(distributed=l2(redis_server.url)) as fresh:
        assert await fresh.try_get("k") == (False, None)


# -- a killed and restarted Redis ------------------------------------------------------------------


def _mixed_call(cache: Any, worker: int, n: int) -> tuple[str, Callable[[], Any]]:
    key = f"key:{(worker * 7 + n) % 40}"
    if n % 5 == 0:
        return key, lambda: cache.set(key, expected(key))
    if n % 11 == 0:
        return key, lambda: cache.remove(key)
    return key, lambda: cache.get_or_set(key, lambda: expected(key))


async def test_async_redis_killed_and_restarted_mid_load(redis_server: RedisServer, l2: L2) -> None:
    cache = df.AsyncDataFerry(distributed=l2(redis_server.url), resilience=policy())
    seen = states(cache)
    errors: list[BaseException] = []
    wrong: list[tuple[str, Any]] = []
    stop = asyncio.Event()

    async def load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            key, call = _mixed_call(cache, worker, n)
            try:
                got = await call()
            except BaseException as exc:
                errors.append(exc)
                return
            if n % 5 and n % 11 and got != expected(key):
                wrong.append((key, got))
            n += 1
            await asyncio.sleep(0.001)

    async with cache:
        tasks = [asyncio.create_task(load(i)) for i in range(10)]
        await asyncio.sleep(0.2)
        redis_server.kill()
        await asyncio.sleep(0.3)
        redis_server.restart()  # empty: no persistence in tests

        async def l2_again() -> bool:  # writes reach the restarted server
            return seen[-1:] != ["open"] and redis_server.execute("DBSIZE") > 0

        await async_until(l2_again)
        stop.set()
        await asyncio.gather(*tasks)
    assert errors == []
    assert wrong == []
    assert cache.stats().distributed_errors > 0  # the outage did happen


def test_sync_redis_killed_and_restarted_mid_load(redis_server: RedisServer, l2: L2) -> None:
    cache = df.DataFerry(distributed=l2(redis_server.url), resilience=policy())
    seen = states(cache)
    errors: list[BaseException] = []
    wrong: list[tuple[str, Any]] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            key, call = _mixed_call(cache, worker, n)
            try:
                got = call()
            except BaseException as exc:
                errors.append(exc)
                return
            if n % 5 and n % 11 and got != expected(key):
                wrong.append((key, got))
            n += 1
            time.sleep(0.001)

    with cache, ThreadPoolExecutor(8) as pool:
        for i in range(8):
            pool.submit(load, i)
        time.sleep(0.2)
        redis_server.kill()
        time.sleep(0.3)
        redis_server.restart()
        sync_until(lambda: seen[-1:] != ["open"] and redis_server.execute("DBSIZE") > 0)
        stop.set()
    assert errors == []
    assert wrong == []
    assert cache.stats().distributed_errors > 0


# -- nothing listening, or a listener that never answers -----------------------------------------


async def test_a_closed_port_is_answered_from_the_factory_at_once(l2: L2) -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    cache = df.AsyncDataFerry(distributed=l2(url), resilience=policy())
    async with cache:
        started = time.monotonic()
        for i in range(50):
            assert await cache.get_or_set(f"k{i}", lambda i=i: i) == i
        assert time.monotonic() - started < 1.0 + l2.refused_costs()
        assert cache.stats().circuit_breaks == 1


def test_sync_closed_port_is_answered_from_the_factory_at_once(l2: L2) -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    with df.DataFerry(distributed=l2(url), resilience=policy()) as cache:
        started = time.monotonic()
        for i in range(50):
            assert cache.get_or_set(f"k{i}", lambda i=i: i) == i
        assert time.monotonic() - started < 1.0 + l2.refused_costs()
        assert cache.stats().circuit_breaks == 1


async def test_a_server_that_never_answers_costs_one_timeout(l2: L2) -> None:
    with BlackholeServer() as hole:
        cache = df.AsyncDataFerry(distributed=l2(hole.url), resilience=policy())
        async with cache:
            started = time.monotonic()
            assert await cache.try_get("k") == (False, None)
            assert time.monotonic() - started < TIMEOUT + MARGIN
            # Five concurrent callers time out together and open the breaker...
            await asyncio.gather(*(cache.try_get(f"k{i}") for i in range(5)))
            assert cache.stats().circuit_breaks == 1
            # ...then calls cost L1 and factory time.
            started = time.monotonic()
            for i in range(50):
                assert await cache.get_or_set(f"n{i}", lambda i=i: i) == i
            assert time.monotonic() - started < 1.0


def test_sync_server_that_never_answers_costs_one_timeout(l2: L2) -> None:
    with BlackholeServer() as hole:
        cache = df.DataFerry(distributed=l2(hole.url), resilience=policy())
        with cache:
            started = time.monotonic()
            assert cache.try_get("k") == (False, None)
            assert time.monotonic() - started < TIMEOUT + MARGIN
            with ThreadPoolExecutor(5) as pool:
                list(pool.map(lambda i: cache.try_get(f"k{i}"), range(5)))
            assert cache.stats().circuit_breaks == 1
            started = time.monotonic()
            for i in range(50):
                assert cache.get_or_set(f"n{i}", lambda i=i: i) == i
            assert time.monotonic() - started < 1.0
