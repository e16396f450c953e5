"""Resilience of the L2 pipeline through the public API: circuit breaker, retries, surfaced
errors, background writes and auto-recovery, with faults injected by a layer around a real L2.

The sync twin (tests/_sync/test_resilience.py) is generated from this file. The tests whose
L2 does real work (retries, replays, background writes) run on RedisCache and GlideCache
(``redis_l2``); those where the injected fault keeps every call from reaching the L2 run on
RedisCache only. Faults on real servers (frozen, killed, a closed port, a server that never
answers) are in tests/test_outage_real.py and, on both clients, tests/_async/test_facade.py.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import dataferry as df
from tests.chaos import Faults, Gate, async_until

BACKGROUND = df.EntryOptions(background_distributed_writes=True)
LOUD = df.EntryOptions(raise_distributed_errors=True)
# No breaker: tests of the queue alone (a breaker would skip the calls they make).
NO_BREAKER = df.Resilience(failure_threshold=0, recovery_interval=0.02)


def node(backend: Any, **kwargs: Any) -> df.AsyncDataFerry:
    kwargs.setdefault("namespace", "test")
    return df.AsyncDataFerry(distributed=backend, **kwargs)


def states(cache: df.AsyncDataFerry) -> list[str]:
    """The breaker's states as listeners see them (the list fills as events arrive)."""
    seen: list[str] = []

    def listener(event: str, attributes: dict[str, Any]) -> None:
        if event == "circuit_state":
            seen.append(attributes["state"])

    cache.subscribe(listener)
    return seen


class FailOnce:
    """A layer that fails the first call of each operation on entries, then lets all through.

    Calls on the cache's own records (the namespace's clear record, read on first use) pass
    untouched and uncounted.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def _check(self, operation: str, keys: Sequence[str]) -> None:
        if not any(":k:" in key for key in keys):
            return
        self.calls[operation] += 1
        if self.calls[operation] == 1:
            raise ConnectionError("connection reset by peer")

    # Both halves of the layer protocol, kept as they are in the generated sync twin.
    async def arun(self, operation: str, keys: Any, call: Any) -> Any:  # unasync: keep
        self._check(operation, keys)
        return await call()  # unasync: keep

    def run(self, operation: str, keys: Sequence[str], call: Callable[[], Any]) -> Any:
        self._check(operation, keys)
        return call()


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1.0},
        {"timeout": float("nan")},
        {"timeout": "1"},
        {"retries": -1},
        {"retries": 1.5},
        {"retry_backoff": (0.1, 0.01)},
        {"retry_backoff": 0.1},
        {"failure_threshold": True},
        {"cooldown": -1},
        {"recovery_queue": -5},
        {"recovery_interval": 0},
    ],
)
async def test_bad_resilience_values_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(df.ConfigurationError):
        df.Resilience(**kwargs)


async def test_resilience_is_frozen_keyword_only_and_checked_by_the_cache() -> None:
    policy = df.Resilience(timeout=1, cooldown=2)
    assert policy.timeout == 1.0
    assert isinstance(policy.timeout, float)
    assert df.Resilience().timeout == 0.25  # the documented defaults
    assert df.Resilience().failure_threshold == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.timeout = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        df.Resilience(1.0)  # type: ignore[misc]
    with pytest.raises(df.ConfigurationError):
        df.AsyncDataFerry(resilience="fast")  # type: ignore[arg-type]


# -- circuit breaker ------------------------------------------------------------------------------


async def test_the_breaker_opens_after_the_threshold_and_skips_the_l2(
    l2_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    faults = Faults(ConnectionError("redis down"))
    policy = df.Resilience(failure_threshold=3, retries=0, cooldown=60)
    cache = node(l2_backend, memory=None, distributed_layers=[faults], resilience=policy)
    seen = states(cache)
    async with cache:
        for i in range(3):
            assert await cache.get(f"k{i}") is None
        assert seen == ["open"]
        assert cache.stats().circuit_breaks == 1
        caplog.clear()
        started = time.monotonic()
        for i in range(20):  # skipped at once: the layer (and the L2) never sees them
            assert await cache.get_or_set(f"new{i}", lambda: "computed") == "computed"
        assert time.monotonic() - started < 2.0
        # Three calls reached the layer: the first get also asked for the namespace's clear
        # record (a get_many), which failed too; later ones don't during the outage.
        assert faults.calls["get_many"] == 1
        assert faults.calls["get"] == 2
        assert faults.calls["set"] == 0
        # Each skipped call is still a distributed error, but not a log line; the writes
        # (in the background, as the reads failed) wait in the recovery queue (a background
        # write counts as an error once, when its first attempt fails: maybe not yet).
        assert 3 + 20 <= cache.stats().distributed_errors <= 3 + 40
        assert cache.stats().recovery_pending == 20
        assert not [r for r in caplog.records if r.levelno >= logging.INFO]
        # A caller who asks for errors learns why: the breaker, chained to the L2's failure.
        with pytest.raises(df.CircuitOpenError) as raised:
            await cache.get("k0", options=LOUD)
        assert isinstance(raised.value.__cause__, ConnectionError)


async def test_a_probe_after_the_cooldown_closes_the_breaker(l2_backend: Any) -> None:
    faults = Faults(ConnectionError("redis down"))
    faults.failing = False
    policy = df.Resilience(failure_threshold=2, retries=0, cooldown=0.2)
    cache = node(l2_backend, memory=None, distributed_layers=[faults], resilience=policy)
    seen = states(cache)
    async with cache:
        await cache.set("k", "stored")
        faults.failing = True
        await cache.get("a")
        await cache.get("b")
        assert seen == ["open"]

        # A failed probe opens it again, for another cooldown.
        async def reopened() -> bool:
            await cache.get("c")
            return seen == ["open", "half_open", "open"]

        await async_until(reopened)
        assert cache.stats().circuit_breaks == 2

        faults.failing = False
        assert await cache.get("k") is None  # still open: skipped, no wait for the cooldown

        async def recovered() -> bool:
            return await cache.get("k") == "stored"

        await async_until(recovered)
        assert seen == ["open", "half_open", "open", "half_open", "closed"]


async def test_reads_are_retried_writes_are_not(redis_l2: Any) -> None:
    flaky = FailOnce()
    cache = node(redis_l2, memory=None, distributed_layers=[flaky], resilience=NO_BREAKER)
    async with cache:
        assert await cache.get("missing") is None
        assert flaky.calls["get"] == 2  # failed, then retried
        assert await cache.get_many(["a", "b"]) == {}
        assert flaky.calls["get_many"] == 2
        assert cache.stats().distributed_errors == 0  # the retries answered
        await cache.set("k", "v")
        assert flaky.calls["set"] == 1  # not retried: queued for recovery instead
        assert cache.stats().distributed_errors == 1

        async def replayed() -> bool:
            return cache.stats().recovery_replays == 1

        await async_until(replayed)
        assert flaky.calls["set"] == 2
    async with node(redis_l2, memory=None) as fresh:
        assert await fresh.get("k") == "v"


async def test_raise_errors_surfaces_the_failure_after_queueing_it(redis_l2: Any) -> None:
    faults = Faults(ConnectionError("redis down"))
    policy = df.Resilience(failure_threshold=0, recovery_interval=60)
    async with node(redis_l2, distributed_layers=[faults], resilience=policy) as cache:
        with pytest.raises(df.DistributedCacheError) as raised:
            await cache.set("k", "v", options=LOUD)
        assert not isinstance(raised.value, df.CircuitOpenError)
        assert isinstance(raised.value.__cause__, ConnectionError)
        assert cache.stats().distributed_errors == 1
        assert cache.stats().recovery_pending == 1  # still queued for recovery
        await cache.set("quiet", "v")  # the default: no exception
        faults.failing = False
    # Closing wrote the queue out.
    async with node(redis_l2) as fresh:
        assert await fresh.get("k") == "v"
        assert await fresh.get("quiet") == "v"


async def test_without_resilience_nothing_is_skipped_or_queued(l2_backend: Any) -> None:
    faults = Faults(ConnectionError("redis down"))
    async with node(l2_backend, distributed_layers=[faults], resilience=None) as cache:
        for i in range(10):
            await cache.set(f"k{i}", i)
        assert faults.calls["set"] == 10
        stats = cache.stats()
        assert stats.circuit_breaks == 0
        assert stats.recovery_pending == 0
        assert stats.distributed_errors == 10


# -- background writes ----------------------------------------------------------------------------


async def test_background_writes_return_at_once_and_land_in_order(redis_l2: Any) -> None:
    gate = Gate("set")
    policy = df.Resilience(timeout=5, recovery_interval=0.02)
    cache = node(redis_l2, memory=None, distributed_layers=[gate], resilience=policy)
    async with cache:
        await cache.set("k", 1, options=BACKGROUND)  # held at the gate, yet returned

        async def in_flight() -> bool:
            return gate.calls["set"] == 1

        await async_until(in_flight)
        await cache.set("k", 2, options=BACKGROUND)
        await cache.set("k", 3, options=BACKGROUND)
        assert await cache.get("k") == 3  # the cache reads its own queued write
        assert cache.stats().recovery_pending == 2  # one in flight, one queued (latest)
        gate.open()

        async def landed() -> bool:
            return cache.stats().recovery_pending == 0

        await async_until(landed)
        assert gate.calls["set"] == 2  # 1, then 3: 2 was replaced before it was sent
        assert cache.stats().recovery_replays == 0  # nothing failed: no replay
    async with node(redis_l2, memory=None) as fresh:
        assert await fresh.get("k") == 3


async def test_a_direct_write_is_never_overtaken_by_an_older_background_one(
    redis_l2: Any,
) -> None:
    gate = Gate("set")
    policy = df.Resilience(timeout=5, recovery_interval=0.02)
    cache = node(redis_l2, memory=None, distributed_layers=[gate], resilience=policy)
    async with cache:
        await cache.set("k", "old", options=BACKGROUND)

        async def in_flight() -> bool:
            return gate.calls["set"] == 1

        await async_until(in_flight)
        await cache.set("j", "old", options=BACKGROUND)  # queued behind the held batch
        await cache.remove("j")  # takes the queued write of j out: it is never sent
        gate.open()
        await cache.remove("k")  # waits for the older write of k, then deletes
        assert gate.calls["set"] == 1
        assert cache.stats().recovery_pending == 0
    async with node(redis_l2, memory=None) as fresh:
        assert await fresh.get("k") is None
        assert await fresh.get("j") is None


# -- auto-recovery --------------------------------------------------------------------------------


async def test_writes_and_removes_that_failed_are_replayed_latest_first(
    redis_l2: Any,
) -> None:
    faults = Faults(ConnectionError("redis down"))
    faults.failing = False
    async with node(redis_l2, distributed_layers=[faults], resilience=NO_BREAKER) as cache:
        await cache.set("gone", "old")
        faults.failing = True
        await cache.set("k", 1)
        await cache.set("k", 2)
        await cache.set_many({"j": 3, "i": 4})
        await cache.remove("gone")
        await cache.remove_many(["i"])
        assert cache.stats().recovery_pending == 4  # k=2, j=3, i deleted, gone deleted
        faults.failing = False

        async def replayed() -> bool:
            return cache.stats().recovery_pending == 0

        await async_until(replayed)
        assert cache.stats().recovery_replays == 4
    async with node(redis_l2) as fresh:
        assert await fresh.get_many(["k", "j", "i", "gone"]) == {"k": 2, "j": 3}


async def test_a_successful_direct_write_replaces_the_queued_one(redis_l2: Any) -> None:
    faults = Faults(ConnectionError("redis down"))
    policy = df.Resilience(failure_threshold=0, recovery_interval=60)  # no replay by time
    async with node(redis_l2, distributed_layers=[faults], resilience=policy) as cache:
        await cache.set("k", "queued")
        assert cache.stats().recovery_pending == 1
        faults.failing = False
        await cache.set("k", "newer")  # succeeds: the queued write must never land after it
        assert cache.stats().recovery_pending == 0
    async with node(redis_l2) as fresh:
        assert await fresh.get("k") == "newer"


async def test_the_bound_turns_the_oldest_writes_into_deletes(redis_l2: Any) -> None:
    faults = Faults(ConnectionError("redis down"))
    faults.failing = False
    policy = df.Resilience(failure_threshold=0, recovery_queue=2, recovery_interval=0.02)
    async with node(redis_l2, distributed_layers=[faults], resilience=policy) as cache:
        await cache.set_many({"a": "old", "b": "old", "c": "old"})
        faults.failing = True
        for key in ("a", "b", "c"):
            await cache.set(key, "new")
        stats = cache.stats()
        assert stats.recovery_drops == 1  # a: its value dropped, its delete kept
        assert stats.recovery_pending == 3
        faults.failing = False

        async def replayed() -> bool:
            return cache.stats().recovery_pending == 0

        await async_until(replayed)
    async with node(redis_l2) as fresh:
        # Never the old value of a: a miss, which the factory fills.
        assert await fresh.get_many(["a", "b", "c"]) == {"b": "new", "c": "new"}


async def test_close_writes_the_queue_out(redis_l2: Any) -> None:
    faults = Faults(ConnectionError("redis down"))
    policy = df.Resilience(failure_threshold=1, cooldown=60, recovery_interval=60)
    cache = node(redis_l2, distributed_layers=[faults], resilience=policy)
    async with cache:
        await cache.set("k", "v")
        await cache.remove("other")
        faults.failing = False  # the breaker is open for a minute: only close probes now
    assert cache.stats().recovery_pending == 0
    assert cache.stats().recovery_drops == 0
    async with node(redis_l2) as fresh:
        assert await fresh.get("k") == "v"


async def test_close_gives_up_quickly_on_an_l2_that_stays_down(l2_backend: Any) -> None:
    faults = Faults(ConnectionError("redis down"))
    cache = node(l2_backend, distributed_layers=[faults], close_timeout=30)
    await cache.set("k", "v")
    await cache.remove("j")
    started = time.monotonic()
    await cache.aclose()
    assert time.monotonic() - started < 5.0  # three tries, not close_timeout
    assert cache.stats().recovery_drops == 2
    assert cache.stats().recovery_pending == 0
