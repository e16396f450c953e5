"""Coalesced L2 reads (``coalesce_reads=True``): concurrent single-key reads, one batch read.

The sync twin (tests/_sync/test_coalesce.py) is generated from this file: the concurrent
readers are the tasks of one ``asyncio.gather`` here and threads there.
"""

from __future__ import annotations

# unasync: begin async-only
import asyncio

# unasync: end async-only
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import dataferry as df
from tests.chaos import EntryCalls, Faults

NO_L1: Any = None


# unasync: begin async-only
async def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Every call at once: the tasks of one gather (threads released together in the twin)."""
    return list(await asyncio.gather(*(call() for call in calls)))


# unasync: end async-only


def all_at_once_threads(calls: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(calls))

    def one(call: Callable[[], Any]) -> Any:
        barrier.wait(10)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result(30) for f in [pool.submit(one, call) for call in calls]]


async def crowd(calls: list[Callable[[], Any]]) -> list[Any]:
    # unasync: begin async-only
    return await all_at_once(calls)
    # unasync: end async-only
    return all_at_once_threads(calls)


async def test_concurrent_reads_go_to_the_l2_as_batches(l2_factory: Any) -> None:
    calls = EntryCalls()
    keys = [f"k{i}" for i in range(40)]
    async with df.AsyncDataFerry(memory=NO_L1, distributed=l2_factory(), namespace="co") as w:
        await w.set_many({k: {"n": k} for k in keys})
    async with df.AsyncDataFerry(
        memory=NO_L1,
        distributed=l2_factory(),
        namespace="co",
        coalesce_reads=True,
        distributed_layers=[calls],
    ) as cache:
        assert await cache.get("warm") is None  # the namespace's clear record is fetched once
        calls.ops.clear()
        got = await crowd([lambda k=k: cache.get(k) for k in [*keys, "absent"]])
        assert got == [{"n": k} for k in keys] + [None]
        # unasync: begin async-only
        assert calls.ops == {"get_many": 1}  # one gather, one batch read
        # unasync: end async-only
        assert calls.ops["get"] == 0
        assert 1 <= calls.ops["get_many"] < len(keys)
        # get_or_set's L2 read is coalesced too; the miss still computes once per key.
        values = await crowd(
            [lambda i=i: cache.get_or_set(f"new{i % 5}", lambda: 7) for i in range(20)]
        )
        assert values == [7] * 20
        # unasync: begin async-only
        # (Threads without an L1 may compute a key twice: a caller that arrives after a
        # flight settled and before its L2 write landed misses.)
        assert cache.stats().factory_calls == 5
        # unasync: end async-only
        assert calls.ops["get"] == 0


async def test_a_failed_batch_read_is_a_miss_for_every_reader_or_their_error(
    redis_url: str,
) -> None:
    faults = Faults(ConnectionError("the L2 is down"), "get_many")
    policy = df.Resilience(failure_threshold=0, retries=0)
    async with df.AsyncDataFerry(
        memory=NO_L1,
        distributed=df.RedisCache.from_url(redis_url),
        namespace="co",
        coalesce_reads=True,
        distributed_layers=[faults],
        resilience=policy,
    ) as cache:
        await cache.set("k", "v")
        assert await crowd([lambda: cache.get("k") for _ in range(8)]) == [None] * 8
        assert cache.stats().distributed_errors >= 1
        with pytest.raises(df.DistributedCacheError):
            await cache.get("k", options=df.EntryOptions(raise_distributed_errors=True))
        assert await crowd([lambda: cache.get_or_set("k", lambda: "computed")]) == ["computed"]
        faults.failing = False
        assert await cache.get("k") == "computed"


def test_coalesce_reads_must_be_a_bool() -> None:
    with pytest.raises(df.ConfigurationError, match="coalesce_reads"):
        df.AsyncDataFerry(coalesce_reads="yes")  # type: ignore[arg-type]
