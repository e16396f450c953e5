"""dataferry.testing: the chaos layer, through real caches on a real redis-server.

Hand-written for both colours (this module is not generated): the layer has an async half
(``arun``) and a sync half (``run``), and each is exercised through its facade.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import dataferry as df
from dataferry._layers import OPERATIONS
from dataferry.testing import ChaosLayer
from tests.redis_servers import BlackholeServer, wait_until


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the test's (flushed) server, to see what reached Redis."""
    with redis.Redis.from_url(redis_url) as client:
        yield client


def acache(redis_url: str, chaos: ChaosLayer, **kwargs: Any) -> df.AsyncDataFerry:
    return df.AsyncDataFerry(
        distributed=df.RedisCache.from_url(redis_url), distributed_layers=[chaos], **kwargs
    )


def scache(redis_url: str, chaos: ChaosLayer, **kwargs: Any) -> df.DataFerry:
    return df.DataFerry(
        distributed=df.RedisCache.from_url(redis_url), distributed_layers=[chaos], **kwargs
    )


def pattern(layer: ChaosLayer, calls: int, operation: str = "get") -> list[bool]:
    """Which of ``calls`` sync calls through ``layer`` failed."""
    failed = []
    for _ in range(calls):
        try:
            layer.run(operation, ("k",), lambda: None)
        except df.DistributedCacheError:
            failed.append(True)
        else:
            failed.append(False)
    return failed


# -- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_rate": -0.1},
        {"error_rate": 1.5},
        {"error_rate": "0.5"},
        {"error_rate": True},
        {"delay": -1},
        {"delay": (0.2, 0.1)},
        {"delay": (0.0, -1.0)},
        {"delay": float("nan")},
        {"operations": {"get", "gett"}},
        {"operations": 42},
        {"error": 42},
        {"enabled": "yes"},
    ],
)
def test_bad_arguments_raise_configuration_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(df.ConfigurationError):
        ChaosLayer(**kwargs)


def test_runtime_changes_are_validated_too() -> None:
    chaos = ChaosLayer()
    with pytest.raises(df.ConfigurationError, match="error_rate"):
        chaos.error_rate = 2.0
    with pytest.raises(df.ConfigurationError, match="delay"):
        chaos.delay = -0.5
    assert chaos.error_rate == 0.0
    assert chaos.delay == (0.0, 0.0)


def test_operation_names_default_to_every_operation_and_accept_a_bare_name() -> None:
    assert ChaosLayer().operations == frozenset(OPERATIONS)
    assert ChaosLayer(operations="get").operations == {"get"}
    assert isinstance(ChaosLayer(), df.DistributedLayer)


# -- determinism and counters -------------------------------------------------------------------


def test_the_same_seed_injects_the_same_failures() -> None:
    first = pattern(ChaosLayer(error_rate=0.3, seed=7), 300)
    again = pattern(ChaosLayer(error_rate=0.3, seed=7), 300)
    other = pattern(ChaosLayer(error_rate=0.3, seed=8), 300)
    assert first == again
    assert first != other
    assert 40 < sum(first) < 140  # about 90: the rate is honoured


async def test_the_async_half_draws_the_same_sequence_as_the_sync_half() -> None:
    async def noop() -> None:
        return None

    layer = ChaosLayer(error_rate=0.5, delay=(0.0, 0.001), seed=3)
    failed = []
    for _ in range(50):
        try:
            await layer.arun("set", ("k",), noop)
        except df.DistributedCacheError:
            failed.append(True)
        else:
            failed.append(False)
    twin = ChaosLayer(error_rate=0.5, delay=(0.0, 0.001), seed=3)
    assert failed == pattern(twin, 50, "set")
    assert layer.delayed_seconds == pytest.approx(twin.delayed_seconds)


def test_counters_switch_and_reset() -> None:
    chaos = ChaosLayer(error_rate=1.0, operations={"set"})
    pattern(chaos, 3, "get")  # not chosen: passes, counted
    assert pattern(chaos, 2, "set") == [True, True]
    chaos.enabled = False
    assert not chaos.enabled
    assert pattern(chaos, 2, "set") == [False, False]
    assert (chaos.calls, chaos.injected_errors) == (7, 2)
    assert "disabled" in repr(chaos)
    chaos.reset_counters()
    assert (chaos.calls, chaos.injected_errors, chaos.injected_delays) == (0, 0, 0)


def test_counters_are_exact_under_threads() -> None:
    chaos = ChaosLayer(error_rate=0.5, seed=1)
    raised = [0] * 8

    def worker(i: int) -> None:
        raised[i] = sum(pattern(chaos, 500))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert chaos.calls == 4000
    assert chaos.injected_errors == sum(raised)


def test_a_custom_error_is_raised_fresh_or_as_given() -> None:
    by_class = ChaosLayer(error_rate=1.0, error=ConnectionResetError)
    with pytest.raises(ConnectionResetError):
        by_class.run("get", ("k",), lambda: None)
    instance = TimeoutError("slow")
    by_instance = ChaosLayer(error_rate=1.0, error=instance)
    depths = []
    for _ in range(3):
        with pytest.raises(TimeoutError) as info:
            by_instance.run("get", ("k",), lambda: None)
        assert info.value is instance
        depths.append(len(info.traceback))
    # Raised again and again, the instance doesn't drag the earlier raises' frames along.
    assert depths[0] == depths[1] == depths[2]


# -- through real caches on a real redis-server -------------------------------------------------
#
# The cache's own timeout, retry and circuit breaker sit above the chaos layer, so these tests
# assert what a user sees (answers, what reached Redis, errors counted) rather than exact
# ratios between the layer's counters and the cache's.


async def test_an_outage_is_answered_from_the_factory_and_counted(
    redis_url: str, raw: redis.Redis
) -> None:
    chaos = ChaosLayer(error_rate=1.0, seed=1)
    # close_timeout: writes queued for replay are given up at close while the outage lasts.
    async with acache(redis_url, chaos, memory=None, close_timeout=0.5) as cache:
        assert await cache.get_or_set("user:1", lambda: {"id": 1}) == {"id": 1}
        await cache.set("user:2", {"id": 2})
        assert cache.stats().distributed_errors > 0
        assert chaos.injected_errors > 0
        assert raw.dbsize() == 0  # nothing reached Redis

    chaos.enabled = False  # Redis "comes back"
    async with acache(redis_url, chaos, memory=None) as cache:
        await cache.set("user:3", {"id": 3})
        assert await cache.get("user:3") == {"id": 3}
        assert cache.stats().distributed_errors == 0
    assert raw.dbsize() == 1


async def test_error_rate_zero_passes_everything_through(redis_url: str, raw: redis.Redis) -> None:
    chaos = ChaosLayer(error_rate=0.0, seed=1)
    async with acache(redis_url, chaos, memory=None) as cache:
        assert await cache.get_or_set("a", lambda: 1) == 1
        await cache.set_many({"b": 2, "c": 3})
        assert await cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2, "c": 3}
        await cache.remove("c")
        assert raw.dbsize() == 2
        assert chaos.calls_per_operation.keys() >= {"get", "set", "set_many", "get_many"}
        assert chaos.injected_errors == 0
        assert cache.stats().distributed_errors == 0


async def test_only_the_chosen_operations_fail(redis_url: str, raw: redis.Redis) -> None:
    chaos = ChaosLayer(error_rate=1.0, operations={"delete", "delete_many"})
    async with acache(redis_url, chaos, memory=None, close_timeout=0.5) as cache:
        await cache.set("k", "v")
        await cache.remove("k")  # fails in L2: the entry is still there
        assert raw.dbsize() == 1
        await cache.set("other", 1)  # writes and reads still work
        assert await cache.get("other") == 1
        assert raw.dbsize() == 2
        assert set(chaos.errors_per_operation) == {"delete"}
        assert chaos.calls_per_operation["set"] == 2
        assert cache.stats().distributed_errors > 0


async def test_an_async_delay_sleeps_without_blocking_the_loop(redis_url: str) -> None:
    chaos = ChaosLayer(delay=0.1, operations={"get"})
    async with acache(redis_url, chaos, memory=None) as cache:
        started = time.perf_counter()
        found = await asyncio.gather(*(cache.get(f"k{i}") for i in range(10)))
        elapsed = time.perf_counter() - started
        assert found == [None] * 10
        # Ten 0.1 s delays side by side: well under the 1 s that blocking sleeps would take.
        assert 0.1 <= elapsed < 0.8
        assert chaos.injected_delays >= 10
        assert chaos.delayed_seconds == pytest.approx(0.1 * chaos.injected_delays)
        await cache.set("k0", 0)  # not chosen: not delayed
        assert chaos.calls_per_operation["set"] == 1
        assert chaos.injected_delays == chaos.calls_per_operation["get"]


def test_a_sync_cache_fails_over_to_the_factory(redis_url: str, raw: redis.Redis) -> None:
    chaos = ChaosLayer(error_rate=1.0)
    with scache(redis_url, chaos, memory=None, close_timeout=0.5) as cache:
        assert cache.get_or_set("k", lambda: [1, 2]) == [1, 2]
        assert cache.get_or_set("j", lambda: [3]) == [3]
        assert cache.stats().factory_calls == 2
        assert cache.stats().distributed_errors > 0
        assert chaos.injected_errors > 0
        assert raw.dbsize() == 0


def test_a_sync_delay_is_applied_per_chosen_call(redis_url: str) -> None:
    chaos = ChaosLayer(delay=0.05, operations={"get"})
    with scache(redis_url, chaos, memory=None) as cache:
        cache.set("k", 1)
        started = time.perf_counter()
        for _ in range(4):
            assert cache.get("k") == 1
        assert time.perf_counter() - started >= 0.2
        assert chaos.injected_delays == chaos.calls_per_operation["get"] >= 4
        assert chaos.calls_per_operation["set"] == 1


# -- the test harness's never-answering server ---------------------------------------------------


def test_a_blackhole_server_accepts_and_never_answers() -> None:
    with BlackholeServer() as hole:
        assert hole.url == f"redis://127.0.0.1:{hole.port}"
        with redis.Redis.from_url(hole.url, socket_timeout=0.2, retry=None) as client:
            started = time.perf_counter()
            with pytest.raises(redis.TimeoutError):
                client.ping()
            assert time.perf_counter() - started >= 0.2
        wait_until(lambda: hole.accepted == 1, timeout=5, what="the accept")
    # Closed: nothing listens any more.
    with (
        redis.Redis.from_url(hole.url, socket_connect_timeout=1, retry=None) as client,
        pytest.raises(redis.ConnectionError),
    ):
        client.ping()
