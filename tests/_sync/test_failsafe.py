# GENERATED from tests/_async/test_failsafe.py by scripts/unasync.py: do not edit.
"""Fail-safe, factory timeouts, eager refresh, XFetch, jitter and raise_distributed_errors.

The sync twin (tests/_sync/test_failsafe.py) is generated from this file. Time-based rules
(a ttl running out) use short real ttls or an injected L1 clock; background work that the test
can't directly is waited for with a bounded poll.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

import dataferry as df
from tests.chaos import Latch, Faults, sync_until, count_events


class Boom(Exception):
    pass


def node(backend: Any, **kwargs: Any) -> df.DataFerry:
    kwargs.setdefault("namespace", "fs")
    return df.DataFerry(distributed=backend, **kwargs)


SAFE = df.EntryOptions(ttl=60, fail_safe=True)


def failing() -> Any:
    raise Boom("database down")


class Clock:
    """An L1 clock the test moves (MemoryCache(clock=...)), for L1-only expiry."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def past(seconds: float) -> None:
    """Let ``seconds`` of wall-clock time pass (ttls count in real time)."""
    end = time.monotonic() + seconds
    sync_until(lambda: _after(end))


def _after(end: float) -> bool:
    return time.monotonic() >= end


# -- fail-safe ----------------------------------------------------------------------------------


def test_a_stale_l2_value_is_served_when_the_factory_raises(shared_backend: Any) -> None:
    cache = node(shared_backend)
    activations = count_events(cache, "failsafe_activations")
    seen: list[dict[str, Any]] = []
    cache.subscribe(lambda e, a: seen.append(a) if e == "failsafe_activations" else None)
    with cache:
        assert cache.get_or_set("k", lambda: "v1", options=SAFE) == "v1"
        cache.expire("k")  # stale now, but kept for fail-safe
        assert cache.get_or_set("k", failing, options=SAFE) == "v1"
        assert activations(1).is_set()
        assert seen[0]["reason"] == "factory_error"
        # Throttled: the stale value counts as fresh for a while; the factory isn't hammered.
        calls = cache.stats().factory_calls
        assert cache.get_or_set("k", failing, options=SAFE) == "v1"
        assert cache.stats().factory_calls == calls
        assert cache.stats().failsafe_activations == 1


def test_without_fail_safe_a_failing_factory_raises(shared_backend: Any) -> None:
    with node(shared_backend) as cache:
        cache.get_or_set("k", lambda: "v1", ttl=60)
        cache.expire("k")
        with pytest.raises(Boom):
            cache.get_or_set("k", failing, ttl=60)
        assert cache.stats().failsafe_activations == 0


def test_a_fresh_value_from_another_node_wins_over_the_stale_one(
    shared_backend: Any,
) -> None:
    a, b = node(shared_backend), node(shared_backend)
    with a, b:
        a.get_or_set("k", lambda: "old", options=SAFE)
        a.expire("k")
        b.set("k", "new", options=SAFE)
        assert a.get_or_set("k", failing, options=SAFE) == "new"
        assert a.stats().failsafe_activations == 0


def test_a_stale_l1_value_serves_when_l2_is_down_too(l2_backend: Any) -> None:
    clock = Clock()
    faults = Faults(ConnectionError("redis down"), "get")
    faults.failing = False
    cache = node(l2_backend, memory=df.MemoryCache(clock=clock), distributed_layers=[faults])
    with cache:
        cache.get_or_set("k", lambda: "v1", options=df.EntryOptions(ttl=5, fail_safe=True))
        clock.now += 10  # expired in L1 (kept for fail-safe)
        faults.failing = True
        value = cache.get_or_set("k", failing, options=SAFE)
        assert value == "v1"
        assert cache.stats().failsafe_activations == 1
        assert cache.stats().distributed_errors >= 1


def test_nothing_stale_is_served_past_fail_safe_max() -> None:
    clock = Clock()
    opts = df.EntryOptions(ttl=5, fail_safe=True, fail_safe_max=10)
    with node(None, memory=df.MemoryCache(clock=clock)) as cache:
        cache.get_or_set("k", lambda: "v1", options=opts)
        clock.now += 5 + 10 + 1
        with pytest.raises(Boom):
            cache.get_or_set("k", failing, options=opts)


def test_fail_safe_keeps_the_entry_in_l2_past_its_ttl(redis_url: str) -> None:
    backend = df.RedisCache.from_url(redis_url)
    opts = df.EntryOptions(ttl=60, fail_safe=True, fail_safe_max=600)
    with node(backend) as cache:
        cache.set("k", 1, options=opts)
        cache.set("plain", 1, ttl=60)
    client = redis.Redis.from_url(redis_url)
    try:
        assert 600_000 < client.pttl("fs:k:k") <= 660_000
        assert client.pttl("fs:k:plain") <= 60_000
    finally:
        client.close()


# -- factory timeouts ---------------------------------------------------------------------------


def test_a_soft_timeout_serves_stale_and_the_factory_finishes_in_the_background(
    sqlite_backend: Any,
) -> None:
    latch = Latch()

    def slow() -> str:
        latch.wait()
        return "v2"

    opts = df.EntryOptions(ttl=60, fail_safe=True, factory_soft_timeout=0.05)
    with node(sqlite_backend) as cache:
        cache.get_or_set("k", lambda: "v1", options=opts)
        cache.expire("k")
        assert cache.get_or_set("k", slow, options=opts) == "v1"
        stats = cache.stats()
        assert (stats.failsafe_activations, stats.factory_timeouts) == (1, 1)
        latch.open()

        def updated() -> bool:
            return cache.get("k") == "v2"

        sync_until(updated)
    # The background completion reached L2 as well: a fresh node reads it.
    with node(sqlite_backend) as fresh:
        assert fresh.get("k") == "v2"


def test_a_soft_timeout_without_a_stale_value_waits_for_the_factory(
    sqlite_backend: Any,
) -> None:
    def slowish() -> str:
        past(0.1)
        return "v"

    opts = df.EntryOptions(ttl=60, fail_safe=True, factory_soft_timeout=0.01)
    with node(sqlite_backend) as cache:
        assert cache.get_or_set("k", slowish, options=opts) == "v"
        assert cache.stats().factory_timeouts == 0


def test_a_hard_timeout_raises_without_stale_and_the_value_still_lands() -> None:
    latch = Latch()

    def slow() -> str:
        latch.wait()
        return "late"

    with node(None) as cache:
        with pytest.raises(df.FactoryTimeoutError) as info:
            cache.get_or_set("k", slow, options=df.EntryOptions(factory_hard_timeout=0.05))
        assert isinstance(info.value, TimeoutError)
        latch.open()

        def landed() -> bool:
            return cache.get("k") == "late"

        sync_until(landed)


def test_a_hard_timeout_serves_stale_when_there_is_one(sqlite_backend: Any) -> None:
    latch = Latch()

    def slow() -> str:
        latch.wait()
        return "v2"

    opts = df.EntryOptions(ttl=60, fail_safe=True, factory_hard_timeout=0.05)
    seen: list[str] = []
    with node(sqlite_backend) as cache:
        cache.subscribe(lambda e, a: seen.append(a["reason"]) if e == "failsafe_activations" else 0)
        cache.get_or_set("k", lambda: "v1", options=opts)
        cache.expire("k")
        assert cache.get_or_set("k", slow, options=opts) == "v1"
        assert seen == ["hard_timeout"]
        latch.open()


def test_a_factory_within_its_timeouts_is_simply_cached() -> None:
    opts = df.EntryOptions(factory_soft_timeout=5, factory_hard_timeout=10)
    with node(None) as cache:
        assert cache.get_or_set("k", lambda: 41, options=opts) == 41
        assert cache.get_or_set("k", failing, options=opts) == 41
        stats = cache.stats()
        assert (stats.factory_calls, stats.factory_timeouts) == (1, 0)


def test_an_error_under_a_timeout_reaches_the_caller() -> None:
    with node(None) as cache:
        with pytest.raises(Boom):
            cache.get_or_set("k", failing, options=df.EntryOptions(factory_hard_timeout=5))


# -- eager refresh and XFetch -------------------------------------------------------------------


def test_eager_refresh_returns_at_once_and_refreshes_once_in_the_background(
    backend: Any,
) -> None:
    versions = iter(range(1, 100))
    latch = Latch()

    def load() -> int:
        version = next(versions)
        if version > 1:
            latch.wait()
        return version

    opts = df.EntryOptions(ttl=1.0, eager_refresh=0.1)
    with node(backend) as cache:
        assert cache.get_or_set("k", load, options=opts) == 1
        past(0.15)  # past the refresh point, far from the expiry
        for _ in range(5):  # every caller gets the current value at once
            assert cache.get_or_set("k", load, options=opts) == 1
        assert cache.stats().refreshes == 1
        latch.open()

        def refreshed() -> bool:
            return cache.get_or_set("k", load, options=opts) == 2

        sync_until(refreshed)
        assert cache.stats().factory_calls == 2


def test_a_value_past_its_refresh_point_is_still_a_hit_for_get() -> None:
    opts = df.EntryOptions(ttl=1.0, eager_refresh=0.1)
    with node(None) as cache:
        cache.set("k", "v", options=opts)
        past(0.15)
        assert cache.get("k", options=opts) == "v"
        assert cache.exists("k", options=opts)


def test_eager_refresh_from_l2_on_another_node(shared_backend: Any) -> None:
    opts = df.EntryOptions(ttl=1.0, eager_refresh=0.1)
    a, b = node(shared_backend), node(shared_backend)
    with a, b:
        a.get_or_set("k", lambda: "v1", options=opts)
        past(0.15)
        # b reads the entry from L2, past its refresh point: served, and refreshed.
        assert b.get_or_set("k", lambda: "v2", options=opts) == "v1"

        def refreshed() -> bool:
            return b.get("k") == "v2"

        sync_until(refreshed)
        assert b.stats().refreshes == 1


def test_xfetch_refreshes_a_costly_entry_before_it_expires() -> None:
    versions = iter(range(1, 100))

    def costly() -> int:
        past(0.01)  # a measured cost
        return next(versions)

    # A huge beta makes XFetch's early point certain: refresh on the next read.
    opts = df.EntryOptions(ttl=60, early_expiration=1e9)
    with node(None) as cache:
        assert cache.get_or_set("k", costly, options=opts) == 1
        past(0.005)
        assert cache.get_or_set("k", costly, options=opts) == 1

        def refreshed() -> bool:
            return cache.get("k", options=opts) == 2

        sync_until(refreshed)
        assert cache.stats().refreshes >= 1


def test_jitter_spreads_l2_expiries(redis_url: str) -> None:
    opts = df.EntryOptions(ttl=100, jitter=50)
    with node(df.RedisCache.from_url(redis_url)) as cache:
        cache.set_many({f"k{i}": i for i in range(20)}, options=opts)
        for i in range(20):
            cache.set(f"s{i}", i, options=opts)
    client = redis.Redis.from_url(redis_url)
    try:
        ttls = [client.pttl(f"fs:k:s{i}") for i in range(20)]
        assert all(90_000 < t <= 150_000 for t in ttls)
        assert len(set(t // 1000 for t in ttls)) > 5  # spread, not all the same second
    finally:
        client.close()


# -- raise_distributed_errors -------------------------------------------------------------------


def test_raise_distributed_errors_surfaces_l2_failures(l2_backend: Any) -> None:
    faults = Faults(ConnectionError("redis down"))
    cache = node(l2_backend, distributed_layers=[faults], raise_distributed_errors=True)
    with cache:
        with pytest.raises(df.DistributedCacheError):
            cache.get_or_set("k", lambda: 1)
        with pytest.raises(df.DistributedCacheError):
            cache.set("k", 1)
        with pytest.raises(df.DistributedCacheError):
            cache.get_many(["a", "b"])
        # A call can still ask for the quiet default.
        quiet = df.EntryOptions(raise_distributed_errors=False)
        assert cache.get_or_set("q", lambda: 2, options=quiet) == 2


def test_raise_distributed_errors_per_call(l2_backend: Any) -> None:
    faults = Faults(ConnectionError("redis down"))
    with node(l2_backend, distributed_layers=[faults]) as cache:
        assert cache.get_or_set("k", lambda: 1) == 1
        loud = df.EntryOptions(raise_distributed_errors=True)
        with pytest.raises(df.DistributedCacheError):
            cache.remove("k", options=loud)


# -- option checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"eager_refresh": 1.0},
        {"eager_refresh": 0},
        {"eager_refresh": True},
        {"early_expiration": -1},
        {"early_expiration": float("nan")},
        {"fail_safe": "yes"},
        {"fail_safe_max": -1},
        {"fail_safe_throttle": float("inf")},
        {"factory_soft_timeout": 0},
        {"factory_hard_timeout": -0.5},
        {"jitter": -1},
        {"raise_distributed_errors": 1},
        {"background_distributed_writes": None},
    ],
)
def test_bad_resilience_options_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(df.ConfigurationError):
        df.EntryOptions(**kwargs)


def test_raise_distributed_errors_must_be_a_bool() -> None:
    with pytest.raises(df.ConfigurationError):
        df.DataFerry(raise_distributed_errors="yes")  # type: ignore[arg-type]
