# GENERATED from tests/_async/test_events.py by scripts/unasync.py: do not edit.
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
from tests.chaos import Faults, sync_until

NS = "ev"


def node(backend: Any, **kwargs: Any) -> df.DataFerry:
    return df.DataFerry(distributed=backend, namespace=NS, **kwargs)


def test_hits_misses_and_factory_events(l2_backend: Any) -> None:
    seen: list[CacheEvent] = []
    with node(l2_backend) as cache:
        stop = cache.on(CacheEvent, seen.append)
        assert cache.get_or_set("k", lambda: 1) == 1
        assert cache.get_or_set("k", lambda: 2) == 1
        assert seen == [
            Miss(f"{NS}:k:k", "memory"),
            Miss(f"{NS}:k:k", "distributed"),
            FactoryCall(f"{NS}:k:k"),
            Hit(f"{NS}:k:k", "memory"),
        ]
        stop()
        stop()  # twice is fine
        cache.get("k")
        assert len(seen) == 4  # unsubscribed: nothing more


def test_l2_hits_and_batches_are_reported(l2_backend: Any) -> None:
    with node(l2_backend) as writer, node(l2_backend, memory=None) as reader:
        writer.set_many({"a": 1, "b": 2})
        hits: list[Hit] = []
        misses: list[Miss] = []
        reader.on(Hit, hits.append)
        reader.on(Miss, misses.append)
        assert reader.get("a") == 1
        assert reader.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
        assert hits == [Hit(f"{NS}:k:{k}", "distributed") for k in ("a", "a", "b")]
        assert misses == [Miss(f"{NS}:k:c", "distributed")]


def test_only_the_chosen_type_is_delivered(l2_backend: Any) -> None:
    errors: list[FactoryError] = []
    with node(l2_backend) as cache:
        cache.on(FactoryError, errors.append)

        def broken() -> Any:
            raise KeyError("gone")

        with pytest.raises(KeyError):
            cache.get_or_set("k", broken)
        cache.get_or_set("ok", lambda: 1)
        assert errors == [FactoryError(f"{NS}:k:k", "KeyError")]


def test_fail_safe_and_breaker_events(l2_backend: Any) -> None:
    faults = Faults(ConnectionError("down"))
    faults.failing = False
    policy = df.Resilience(failure_threshold=1, retries=0, cooldown=60)
    safe = df.EntryOptions(fail_safe=True, ttl=0.05)
    activations: list[FailSafeActivation] = []
    states: list[CircuitStateChange] = []
    failures: list[DistributedFailure] = []
    with node(l2_backend, distributed_layers=[faults], resilience=policy) as cache:
        cache.on(FailSafeActivation, activations.append)
        cache.on(CircuitStateChange, states.append)
        cache.on(DistributedFailure, failures.append)
        cache.set("k", "old", options=safe)
        faults.failing = True

        def expired() -> bool:
            return cache.try_get("k", options=df.EntryOptions(skip_distributed=True)) == (
                False,
                None,
            )

        sync_until(expired)

        def broken() -> str:
            raise RuntimeError("database down")

        assert cache.get_or_set("k", broken, options=safe) == "old"
        assert activations == [FailSafeActivation(f"{NS}:k:k", "factory_error")]
        assert states == [CircuitStateChange("open")]
        assert failures[0].error == "ConnectionError"


def test_decode_failures_and_stampede_joins(l2_backend: Any) -> None:
    decode: list[DecodeFailure] = []
    with node(l2_backend) as cache:
        cache.on(DecodeFailure, decode.append)
        l2_backend.set(f"{NS}:k:bad", b"garbage", 60)
        assert cache.get("bad") is None
        assert decode == [DecodeFailure(f"{NS}:k:bad", decode[0].error)]


def test_evictions_are_events_while_someone_listens() -> None:
    evicted: list[Eviction] = []
    with df.DataFerry(memory=df.MemoryCache(max_entries=2, policy="lru")) as cache:
        cache.set("a", 1)
        cache.set("b", 2)
        stop = cache.on(Eviction, evicted.append)
        cache.set("c", 3)
        assert evicted == [Eviction("dataferry:k:a")]
        stop()
        cache.set("d", 4)
        assert len(evicted) == 1


def test_a_raising_handler_never_breaks_a_call(l2_backend: Any) -> None:
    def broken(event: Hit) -> None:
        raise RuntimeError("handler bug")

    with node(l2_backend) as cache:
        cache.on(Hit, broken)
        cache.set("k", 1)
        assert cache.get("k") == 1


def test_bad_subscriptions_are_refused() -> None:
    with df.DataFerry() as cache:
        with pytest.raises(df.ConfigurationError):
            cache.on(str, print)  # type: ignore[type-var]
        with pytest.raises(df.ConfigurationError):
            cache.on(Hit, "not callable")  # type: ignore[arg-type]
