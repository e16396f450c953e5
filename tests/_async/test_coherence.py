"""L1 coherence across nodes: the backplane, versioned invalidation, distrust after a gap.

The sync twin (tests/_sync/test_coherence.py) is generated from this file. Every node is a
cache of its own with its own backplane, on one real redis-server: as two processes would.
The tests whose L2 calls matter (reads raced by invalidations, batches, a killed server) run
with RedisCache and RedisBackplane, and with GlideCache and GlideBackplane (``l2_client``). The
others use RedisCache and RedisBackplane.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

import dataferry as df
from tests.chaos import (
    AsyncLatch,
    AsyncReading,
    Faults,
    Gate,
    HoldAfter,
    async_until,
    async_wait,
    count_events,
)


def node(url: str, l2_client: Any = df.RedisCache.from_url, **kwargs: Any) -> df.AsyncDataFerry:
    kwargs.setdefault("namespace", "coh")
    return df.AsyncDataFerry(
        distributed=l2_client(url),
        # The backplane of the L2's client library (L2Client.backplane), else redis-py's.
        backplane=getattr(l2_client, "backplane", df.RedisBackplane.from_url)(url),
        **kwargs,
    )


async def test_a_write_on_one_node_drops_the_key_from_the_others_l1(
    redis_url: str, l2_client: Any
) -> None:
    a, b = node(redis_url, l2_client), node(redis_url, l2_client)
    heard = count_events(b, "backplane_messages")
    async with a, b:
        assert await a.get_or_set("price", lambda: 100) == 100  # message 1
        await async_wait(heard(1))
        assert await b.get("price") == 100  # now in b's L1
        await a.set("price", 120)
        await async_wait(heard(2))
        assert await b.get("price") == 120
        await a.remove("price")
        await async_wait(heard(3))
        assert await b.get("price") is None
        await a.set_many({"x": 1, "y": 2})
        await async_wait(heard(5))
        assert await b.get_many(["x", "y"]) == {"x": 1, "y": 2}
        await a.expire("x")
        await async_wait(heard(6))
        assert await b.get("x") is None
        # A node never hears itself; messages were sent.
        assert a.stats().backplane_messages == 0
        assert a.stats().backplane_sent >= 5
        # Each message received is in the latency histogram (publish -> L1 drop).
        latency = b.stats().backplane_latency
        assert latency.count == b.stats().backplane_messages == 6
        assert 0 < latency.mean_ms < 10_000
        assert latency.quantile(0.0) <= latency.quantile(0.5) <= latency.quantile(1.0)
        assert a.stats().backplane_latency.count == 0


async def test_tenant_views_publish_too(redis_url: str) -> None:
    a, b = node(redis_url), node(redis_url)
    heard = count_events(b, "backplane_messages")
    async with a, b:
        await a.tenant("acme").set("k", 1)
        await async_wait(heard(1))
        assert await b.tenant("acme").get("k") == 1
        await a.tenant("acme").set("k", 2)
        await async_wait(heard(2))
        assert await b.tenant("acme").get("k") == 2


async def test_a_slow_read_never_refills_l1_with_the_value_another_node_replaced(
    redis_url: str, l2_client: Any
) -> None:
    hold = HoldAfter()
    a, b = node(redis_url, l2_client), node(redis_url, l2_client, distributed_layers=[hold])
    heard = count_events(b, "backplane_messages")
    async with a, b:
        await a.set("k", "old")
        await async_wait(heard(1))
        hold.holding = True
        # b reads "old" from L2; its answer is held while a writes "new" and b hears of it.
        reading = AsyncReading(lambda: b.get("k"))
        await async_wait(hold.answered)
        await a.set("k", "new")
        await async_wait(heard(2))
        hold.release()
        assert await reading.result() == "old"  # what L2 held when the read began
        # ...but it did not go into b's L1: the next read sees the new value.
        assert await b.get("k") == "new"


async def test_a_local_write_during_a_slow_read_wins_too(redis_url: str) -> None:
    hold = HoldAfter()
    cache = node(redis_url, distributed_layers=[hold])
    async with cache:  # one node: no backplane message is involved
        await cache.set("k", "old", options=df.EntryOptions(skip_memory=True))  # L2 only
        hold.holding = True
        reading = AsyncReading(lambda: cache.get("k"))
        await async_wait(hold.answered)
        await cache.set("k", "new")
        hold.release()
        assert await reading.result() == "old"
        assert await cache.get("k") == "new"


async def test_a_write_during_a_slow_factory_is_not_overwritten_by_its_value(
    redis_url: str,
) -> None:
    # A read-through load began before a write-through save of the same key: the load's
    # value (read from the database before the save) answers its callers but is not stored.
    latch = AsyncLatch()

    async def load_old() -> str:
        await latch.wait()
        return "old"

    async with node(redis_url) as cache:
        started = count_events(cache, "factory_calls")
        loading = AsyncReading(lambda: cache.get_or_set("k", load_old))
        await async_wait(started(1))
        await cache.set("k", "new")
        latch.open()
        assert await loading.result() == "old"
        assert await cache.get("k") == "new"  # L1
        assert await cache.get("k", options=df.EntryOptions(skip_memory=True)) == "new"  # L2


async def test_another_nodes_write_during_a_slow_factory_wins_too(redis_url: str) -> None:
    latch = AsyncLatch()

    async def load_old() -> str:
        await latch.wait()
        return "old"

    a, b = node(redis_url), node(redis_url)
    heard = count_events(a, "backplane_messages")
    async with a, b:
        started = count_events(a, "factory_calls")
        loading = AsyncReading(lambda: a.get_or_set("k", load_old))
        await async_wait(started(1))
        await b.set("k", "new")
        await async_wait(heard(1))
        latch.open()
        assert await loading.result() == "old"
        assert await a.get("k") == "new"
        assert await b.get("k", options=df.EntryOptions(skip_memory=True)) == "new"


async def test_l1_is_emptied_when_the_backplane_comes_back(
    redis_server: Any, l2_client: Any
) -> None:
    a = node(redis_server.url, l2_client, resilience=df.Resilience(cooldown=0.2))
    states: list[str] = []
    back = threading.Event()

    def listener(event: str, attributes: dict[str, Any]) -> None:
        if event == "backplane_state":
            states.append(attributes["state"])
            if attributes["state"] == "reconnected":
                back.set()

    a.subscribe(listener)
    async with a:
        await a.set("k", 1)
        assert a.stats().memory_entries == 1
        redis_server.kill()
        redis_server.restart()
        await async_wait(back)
        assert "disconnected" in states
        # Invalidations sent while it was away are lost: nothing in L1 is trusted.
        assert a.stats().memory_entries == 0


async def test_a_failed_publish_is_sent_again(redis_server: Any, l2_client: Any) -> None:
    url = redis_server.url
    a = node(url, l2_client, resilience=df.Resilience(cooldown=0.2))
    async with a:
        await a.set("k", 1)
        sent = a.stats().backplane_sent
        redis_server.kill()
        await a.set("k", 2)  # L2 write queued, publish kept
        assert a.stats().backplane_sent == sent
        redis_server.restart()
        b = node(url, l2_client)
        heard = count_events(b, "backplane_messages")
        async with b:
            await a.set("other", 3)  # a publish that works sends the kept one too
            await async_wait(heard(2))

            # (GLIDE may deliver a publish it reported as timed out, once it reconnects:
            # b can hear both before a counts them as sent.)
            async def both_sent() -> bool:
                return a.stats().backplane_sent >= sent + 2

            await async_until(both_sent)


@pytest.mark.parametrize("operation", ["remove", "expire"])
async def test_a_read_during_a_remove_never_puts_the_old_value_back(
    redis_url: str, l2_client: Any, operation: str
) -> None:
    # The L2 call of remove (a DELETE) or expire (a compare-and-set) is held while a read of
    # the same key in the same process finds L1 empty and reads the old value from L2.
    held = "delete" if operation == "remove" else "compare_and_set"
    gate = Gate(held)
    async with node(redis_url, l2_client, distributed_layers=[gate]) as cache:
        await cache.set("k", "old")
        changing = AsyncReading(lambda: getattr(cache, operation)("k"))

        async def in_flight() -> bool:
            return gate.calls[held] == 1

        await async_until(in_flight)
        assert await cache.get("k") == "old"  # L2 has not changed yet: a fair answer
        gate.open()
        await changing.result()
        # Once the change is done, the old value is in neither level.
        assert await cache.get("k", options=df.EntryOptions(skip_distributed=True)) is None
        assert await cache.get("k") is None


@pytest.mark.parametrize("operation", ["set", "set_many"])
async def test_a_read_during_a_write_never_leaves_the_old_value_in_l1(
    redis_url: str, operation: str
) -> None:
    # The write's L2 call is held. Meanwhile the one-entry L1 takes another key, and a read
    # of the written key finds L1 empty and the old value in L2. Once the write is done, the
    # node reads what it wrote.
    gate = Gate(operation)
    memory = df.MemoryCache(max_entries=1, policy="lru")
    async with node(redis_url) as other:
        await other.set("k", "old")
    async with node(redis_url, memory=memory, distributed_layers=[gate]) as cache:
        if operation == "set":
            writing = AsyncReading(lambda: cache.set("k", "new"))
        else:
            writing = AsyncReading(lambda: cache.set_many({"k": "new"}))

        async def in_flight() -> bool:
            return gate.calls[operation] == 1

        await async_until(in_flight)
        await cache.set("other", 1, options=df.EntryOptions(skip_distributed=True))
        assert await cache.get("k") == "old"  # L2 has not changed yet: a fair answer
        gate.open()
        await writing.result()
        assert await cache.get("k") == "new"


class HeldBackplane(df.RedisBackplane):
    """A RedisBackplane whose next publish, once ``armed``, waits until ``opened`` is set."""

    armed: bool
    reached: threading.Event
    opened: threading.Event

    async def apublish(self, channel: str, payload: bytes, /) -> None:
        if self.armed:
            self.armed = False
            self.reached.set()
            await async_wait(self.opened)
        await super().apublish(channel, payload)


async def test_a_read_while_a_replay_is_announced_takes_what_l2_holds(redis_url: str) -> None:
    # a's write failed and was queued. Once its replay has landed, a tells the other nodes;
    # b writes the key meanwhile (after the replay). a's read must get b's value from L2,
    # not the replayed bytes still in a's queue, or a's L1 keeps them for good.
    faults = Faults(ConnectionError("redis down"))
    held = HeldBackplane.from_url(redis_url)
    held.armed, held.reached, held.opened = False, threading.Event(), threading.Event()
    a = df.AsyncDataFerry(
        namespace="coh",
        distributed=df.RedisCache.from_url(redis_url),
        distributed_layers=[faults],
        resilience=df.Resilience(failure_threshold=0, recovery_interval=0.02),
        backplane=held,
    )
    heard = count_events(a, "backplane_messages")
    async with a, node(redis_url) as b:
        await a.set("k", "a's")  # the L2 fails: queued for replay
        assert a.stats().recovery_pending == 1
        held.armed = True
        faults.failing = False  # the replay lands, then its announcement is held
        await async_wait(held.reached)
        await b.set("k", "b's")
        await async_wait(heard(1))
        assert await a.get("k") == "b's"
        held.opened.set()

        async def replayed() -> bool:
            return a.stats().recovery_pending == 0

        await async_until(replayed)
        assert a.stats().recovery_replays == 1
        assert await a.get("k") == "b's"


async def test_a_background_write_overtaken_in_flight_leaves_l1_to_the_newer_value(
    redis_url: str,
) -> None:
    # a's background write reached L2 (its answer held); b's write lands after it and a hears
    # of it. A read on a may then answer a's own write, still in flight, but a's L1 must not
    # keep it once the write is done: L2 holds b's value.
    hold = HoldAfter("set")
    a = node(redis_url, distributed_layers=[hold], resilience=df.Resilience(timeout=5))
    heard = count_events(a, "backplane_messages")
    async with a, node(redis_url) as b:
        hold.holding = True
        await a.set("k", "a's", options=df.EntryOptions(background_distributed_writes=True))
        await async_wait(hold.answered)
        await b.set("k", "b's")
        await async_wait(heard(1))
        assert await a.get("k") in ("a's", "b's")
        hold.release()

        async def landed() -> bool:
            return a.stats().recovery_pending == 0

        await async_until(landed)
        assert await a.get("k") == "b's"


async def test_a_failed_publish_is_retried_without_another_write(
    redis_server: Any, redis_url: str
) -> None:
    # L2 on a server that stays up: only the backplane's server goes away.
    a = df.AsyncDataFerry(
        namespace="coh",
        distributed=df.RedisCache.from_url(redis_url),
        backplane=df.RedisBackplane.from_url(redis_server.url),
    )
    async with a:
        await a.set("k", 1)
        sent = a.stats().backplane_sent
        redis_server.kill()
        await a.set("k", 2)  # publish fails: kept, and a job tries it again every second
        assert a.stats().backplane_sent == sent
        redis_server.restart()

        async def sent_again() -> bool:
            return a.stats().backplane_sent == sent + 1

        await async_until(sent_again)


class CountingBackplane(df.RedisBackplane):
    """A RedisBackplane that counts its publish calls (round trips)."""

    calls: Counter[str]

    async def apublish(self, channel: str, payload: bytes, /) -> None:
        self.calls["one"] += 1
        await super().apublish(channel, payload)

    async def apublish_many(self, channel: str, payloads: Sequence[bytes], /) -> None:
        self.calls["many"] += 1
        await super().apublish_many(channel, payloads)


async def test_a_batch_is_published_in_one_round_trip(redis_url: str, l2_client: Any) -> None:
    counting = CountingBackplane.from_url(redis_url)
    counting.calls = Counter()
    a = df.AsyncDataFerry(namespace="coh", distributed=l2_client(redis_url), backplane=counting)
    b = node(redis_url, l2_client)
    heard = count_events(b, "backplane_messages")
    async with a, b:
        await b.get_many(["x", "y", "z"])
        await a.set_many({"x": 1, "y": 2, "z": 3})
        await async_wait(heard(3))
        assert await b.get_many(["x", "y", "z"]) == {"x": 1, "y": 2, "z": 3}
        await a.remove_many(["x", "y"])
        await async_wait(heard(5))
        assert await b.get_many(["x", "y", "z"]) == {"z": 3}
        assert counting.calls == Counter(many=2)


def test_the_latency_histogram_reads_as_documented() -> None:
    empty = df.LatencyHistogram()
    assert (empty.count, empty.mean_ms, empty.quantile(0.99)) == (0, 0.0, 0.0)
    # Two messages within 1 ms, one of 40 ms, one slower than the largest bound.
    counts = [0] * (len(empty.bounds) + 1)
    counts[empty.bounds.index(1.0)] = 2
    counts[empty.bounds.index(50.0)] = 1
    counts[-1] = 1
    seen = df.LatencyHistogram(counts=tuple(counts), total_ms=1.5 + 40 + 2000)
    assert seen.count == 4
    assert seen.mean_ms == (1.5 + 40 + 2000) / 4
    assert seen.quantile(0.5) == 1.0
    assert seen.quantile(0.75) == 50.0
    assert seen.quantile(1.0) == float("inf")
    with pytest.raises(df.ConfigurationError):
        seen.quantile(1.5)


def test_a_backplane_must_be_a_backplane() -> None:
    with pytest.raises(df.ConfigurationError):
        df.AsyncDataFerry(backplane="redis://x")  # type: ignore[arg-type]
