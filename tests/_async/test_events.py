"""Typed events: ``cache.on(EventType, handler)`` (the sync twin is generated from this file)."""

from __future__ import annotations

from typing import Any

import pytest

import dataferry as df
from dataferry.events import (
    CacheEvent,
    CircuitStateChange,
    DecodeFailure,
    DistributedFailure,
    Eviction,
    FactoryCall,
    FactoryError,
    FailSafeActivation,
    Hit,
    Miss,
)
from tests.chaos import Faults, async_until

NS = "ev"


def node(backend: Any, **kwargs: Any) -> df.AsyncDataFerry:
    return df.AsyncDataFerry(distributed=backend, namespace=NS, **kwargs)


async def test_hits_misses_and_factory_events(l2_backend: Any) -> None:
    seen: list[CacheEvent] = []
    async with node(l2_backend) as cache:
        stop = cache.on(CacheEvent, seen.append)
        assert await cache.get_or_set("k", lambda: 1) == 1
        assert await cache.get_or_set("k", lambda: 2) == 1
        assert seen == [
            Miss(f"{NS}:k:k", "memory"),
            Miss(f"{NS}:k:k", "distributed"),
            FactoryCall(f"{NS}:k:k"),
            Hit(f"{NS}:k:k", "memory"),
        ]
        stop()
        stop()  # twice is fine
        await cache.get("k")
        assert len(seen) == 4  # unsubscribed: nothing more


async def test_l2_hits_and_batches_are_reported(l2_backend: Any) -> None:
    async with node(l2_backend) as writer, node(l2_backend, memory=None) as reader:
        await writer.set_many({"a": 1, "b": 2})
        hits: list[Hit] = []
        misses: list[Miss] = []
        reader.on(Hit, hits.append)
        reader.on(Miss, misses.append)
        assert await reader.get("a") == 1
        assert await reader.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
        assert hits == [Hit(f"{NS}:k:{k}", "distributed") for k in ("a", "a", "b")]
        assert misses == [Miss(f"{NS}:k:c", "distributed")]


async def test_only_the_chosen_type_is_delivered(l2_backend: Any) -> None:
    errors: list[FactoryError] = []
    async with node(l2_backend) as cache:
        cache.on(FactoryError, errors.append)

        def broken() -> Any:
            raise KeyError("gone")

        with pytest.raises(KeyError):
            await cache.get_or_set("k", broken)
        await cache.get_or_set("ok", lambda: 1)
        assert errors == [FactoryError(f"{NS}:k:k", "KeyError")]


async def test_fail_safe_and_breaker_events(l2_backend: Any) -> None:
    faults = Faults(ConnectionError("down"))
    faults.failing = False
    policy = df.Resilience(failure_threshold=1, retries=0, cooldown=60)
    safe = df.EntryOptions(fail_safe=True, ttl=0.05)
    activations: list[FailSafeActivation] = []
    states: list[CircuitStateChange] = []
    failures: list[DistributedFailure] = []
    async with node(l2_backend, distributed_layers=[faults], resilience=policy) as cache:
        cache.on(FailSafeActivation, activations.append)
        cache.on(CircuitStateChange, states.append)
        cache.on(DistributedFailure, failures.append)
        await cache.set("k", "old", options=safe)
        faults.failing = True

        async def expired() -> bool:
            return await cache.try_get("k", options=df.EntryOptions(skip_distributed=True)) == (
                False,
                None,
            )

        await async_until(expired)

        def broken() -> str:
            raise RuntimeError("database down")

        assert await cache.get_or_set("k", broken, options=safe) == "old"
        assert activations == [FailSafeActivation(f"{NS}:k:k", "factory_error")]
        assert states == [CircuitStateChange("open")]
        assert failures[0].error == "ConnectionError"


async def test_decode_failures_and_stampede_joins(l2_backend: Any) -> None:
    decode: list[DecodeFailure] = []
    async with node(l2_backend) as cache:
        cache.on(DecodeFailure, decode.append)
        await l2_backend.aset(f"{NS}:k:bad", b"garbage", 60)
        assert await cache.get("bad") is None
        assert decode == [DecodeFailure(f"{NS}:k:bad", decode[0].error)]


async def test_evictions_are_events_while_someone_listens() -> None:
    evicted: list[Eviction] = []
    async with df.AsyncDataFerry(memory=df.MemoryCache(max_entries=2, policy="lru")) as cache:
        await cache.set("a", 1)
        await cache.set("b", 2)
        stop = cache.on(Eviction, evicted.append)
        await cache.set("c", 3)
        assert evicted == [Eviction("dataferry:k:a")]
        stop()
        await cache.set("d", 4)
        assert len(evicted) == 1


async def test_a_raising_handler_never_breaks_a_call(l2_backend: Any) -> None:
    def broken(event: Hit) -> None:
        raise RuntimeError("handler bug")

    async with node(l2_backend) as cache:
        cache.on(Hit, broken)
        await cache.set("k", 1)
        assert await cache.get("k") == 1


async def test_bad_subscriptions_are_refused() -> None:
    async with df.AsyncDataFerry() as cache:
        with pytest.raises(df.ConfigurationError):
            cache.on(str, print)  # type: ignore[type-var]
        with pytest.raises(df.ConfigurationError):
            cache.on(Hit, "not callable")  # type: ignore[arg-type]
