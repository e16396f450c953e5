# GENERATED from tests/_async/test_facade_topologies.py by scripts/unasync.py: do not edit.
"""The facade on a 3-master Redis Cluster and on Sentinel, through the public API only.

Each "node" is a cache with its own L1 and its own RedisCache (its own connections), as two
processes would have, in front of the same servers. What reached L2 is checked on the server
that owns the key (the master of its slot), so a batch is seen to touch every master. Fault
tests kill a Cluster master and fail a Sentinel setup over while the caches are in use.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from redis.cluster import key_slot

import dataferry as df
from tests.chaos import count_events, wait_event
from tests.redis_servers import RedisCluster, RedisSentinel, RedisServer, wait_until

NS = "topo"
SOCKET_TIMEOUT = 0.2  # fault tests: a dead server must cost little
KEYRING = df.Keyring({"2026-11": os.urandom(32)})

# This file is written once: the generated sync twin runs the same tests on threads.
IS_ASYNC = inspect.iscoroutinefunction(df.DataFerry.close)


def _block(seconds: float) -> None:
    time.sleep(seconds)


def sleep(seconds: float) -> None:
    if IS_ASYNC:
        asyncio.sleep(seconds)
    else:  # the sync twin
        _block(seconds)


def wait_for(event: threading.Event) -> None:
    """Wait for a threading.Event without blocking the event loop (a plain wait in the twin)."""
    if IS_ASYNC:
        wait_event(event)
    else:
        assert event.wait(10), "timed out waiting for the event"


def concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call at once: asyncio tasks here, threads in the sync twin."""
    if IS_ASYNC:
        return list(asyncio.gather(*(call() for call in calls)))
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> None:
    """Poll ``check()`` (async here, sync in the twin) until it holds, for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        sleep(0.05)


class Counter:
    """A factory that counts its calls."""

    def __init__(self, value: Any) -> None:
        self.calls = 0
        self.value = value

    def __call__(self) -> Any:
        self.calls += 1
        return self.value


def skey(key: str, tenant: str | None = None) -> str:
    """The storage key of ``key`` (documented layout: {namespace}:k:{key} / :t:{tenant}:{key})."""
    return f"{NS}:k:{key}" if tenant is None else f"{NS}:t:{tenant}:{key}"


@dataclass
class Topology:
    """The servers of one L2 setup and how to reach them around the cache."""

    name: str
    masters: list[RedisServer]
    backend: Callable[..., df.RedisCache]  # a new RedisCache (own connections) per node
    owner: Callable[[str], RedisServer]  # the master that holds a storage key

    def raw(self, storage_key: str) -> bytes | None:
        """The bytes stored under ``storage_key``, read on the server that owns it."""
        data: bytes | None = self.owner(storage_key).execute("GET", storage_key, decode=False)
        return data

    def plant(self, storage_key: str, data: bytes) -> None:
        """Write raw bytes under ``storage_key`` behind the cache's back."""
        self.owner(storage_key).execute("SET", storage_key, data, "EX", 60)


def cluster_topology(cluster: RedisCluster) -> Topology:
    # Slot ranges as the cluster reports them (not as the harness assigned them).
    ranges = [
        (int(first), int(last), int(node[1]))
        for first, last, node, *_ in cluster.masters[0].execute("CLUSTER", "SLOTS")
    ]
    by_port = {m.port: m for m in cluster.masters}

    def owner(storage_key: str) -> RedisServer:
        slot = key_slot(storage_key.encode())
        return next(by_port[port] for first, last, port in ranges if first <= slot <= last)

    def backend(**kwargs: Any) -> df.RedisCache:
        return df.RedisCache.from_url(cluster.url, cluster=True, **kwargs)

    return Topology("cluster", cluster.masters, backend, owner)


def sentinel_topology(setup: RedisSentinel) -> Topology:
    def backend(**kwargs: Any) -> df.RedisCache:
        return df.RedisCache.from_sentinel(setup.sentinels, setup.service_name, **kwargs)

    return Topology("sentinel", [setup.master], backend, lambda _key: setup.master)


@pytest.fixture(params=["cluster", "sentinel"])
def topology(request: pytest.FixtureRequest) -> Topology:
    if request.param == "cluster":
        return cluster_topology(request.getfixturevalue("redis_cluster"))
    return sentinel_topology(request.getfixturevalue("redis_sentinel"))


def node(
    topology: Topology, backend_kwargs: dict[str, Any] | None = None, **kwargs: Any
) -> df.DataFerry:
    """A cache node: its own L1 (unless memory=None) and its own client to the shared L2."""
    return df.DataFerry(
        distributed=topology.backend(**(backend_kwargs or {})), namespace=NS, **kwargs
    )


def spread_keys(topology: Topology, count: int, tenant: str | None = None) -> list[str]:
    """``count`` keys whose storage keys are held by every master, in turn."""
    by_master: dict[int, list[str]] = {m.port: [] for m in topology.masters}
    i = 0
    while min(len(keys) for keys in by_master.values()) < count:
        key = f"item:{i}"
        by_master[topology.owner(skey(key, tenant)).port].append(key)
        i += 1
    per = [iter(keys) for keys in by_master.values()]
    return [next(per[n % len(per)]) for n in range(count)]


# -- the API ----------------------------------------------------------------------------------


def test_get_or_set_runs_one_factory_and_other_nodes_read_l2(topology: Topology) -> None:
    user = {"id": 7, "name": "Ada"}
    calls = 0

    with node(topology) as first, node(topology) as second:
        joined = count_events(first, "stampede_joins")

        def load() -> dict[str, Any]:
            nonlocal calls
            calls += 1
            wait_for(joined(7))  # every other caller joined while this runs
            return user

        results = concurrently([lambda: first.get_or_set("user:7", load, ttl=60)] * 8)
        assert results == [user] * 8
        assert calls == 1
        stats = first.stats()
        assert stats.factory_calls == 1
        assert stats.stampede_joins == 7
        assert topology.raw(skey("user:7")) is not None

        # Another node (own L1, same L2) gets the value from L2, without its factory.
        other_load = Counter({"id": 7, "name": "someone else"})
        assert second.get_or_set("user:7", other_load) == user
        assert other_load.calls == 0
        assert second.stats().distributed_hits == 1
        assert second.get_or_set("user:7", other_load) == user  # now from its L1
        assert second.stats().memory_hits == 1
        assert first.stats().distributed_errors == second.stats().distributed_errors == 0


def test_get_set_remove_exists_expire(topology: Topology) -> None:
    with node(topology) as cache, node(topology, memory=None) as l2_only:
        cache.set("cfg", {"v": 1}, ttl=60)
        assert cache.get("cfg") == {"v": 1}
        assert l2_only.get("cfg") == {"v": 1}
        assert l2_only.try_get("cfg") == (True, {"v": 1})
        assert l2_only.exists("cfg")
        assert l2_only.try_get("absent") == (False, None)
        assert l2_only.get("absent", default="fallback") == "fallback"

        cache.expire("cfg")
        assert cache.try_get("cfg") == (False, None)
        assert l2_only.try_get("cfg") == (False, None)
        assert not l2_only.exists("cfg")
        assert topology.raw(skey("cfg")) is not None  # stale but kept, for fail-safe

        cache.set("cfg", None)  # None is a value
        assert l2_only.try_get("cfg") == (True, None)
        cache.remove("cfg")
        assert topology.raw(skey("cfg")) is None
        assert cache.try_get("cfg") == (False, None)
        assert not l2_only.exists("cfg")
        assert cache.stats().distributed_errors == l2_only.stats().distributed_errors == 0


def test_batches_reach_every_master(topology: Topology) -> None:
    keys = spread_keys(topology, 12)
    owners = {k: topology.owner(skey(k)) for k in keys}
    assert {s.port for s in owners.values()} == {m.port for m in topology.masters}
    if topology.name == "cluster":
        assert len(topology.masters) == 3

    with node(topology) as writer, node(topology, memory=None) as reader:
        writer.set_many({k: i for i, k in enumerate(keys)}, ttl=60)
        for k in keys:  # each entry is on the master that owns its slot
            assert owners[k].execute("EXISTS", skey(k)) == 1
        assert reader.get_many([*keys, "absent"]) == {k: i for i, k in enumerate(keys)}
        assert reader.stats().distributed_hits == len(keys)

        removed, kept = keys[::2], keys[1::2]
        writer.remove_many(removed)
        assert all(owners[k].execute("EXISTS", skey(k)) == 0 for k in removed)
        assert reader.get_many(keys) == {k: keys.index(k) for k in kept}

        # The misses, spread over every master, are loaded with one call and stored.
        asked: list[list[str]] = []

        def load_many(missing: list[str]) -> dict[str, str]:
            asked.append(sorted(missing))
            return {k: f"loaded {k}" for k in missing}

        got = reader.get_or_set_many(keys, load_many)
        assert asked == [sorted(removed)]
        assert got == {k: f"loaded {k}" if k in removed else keys.index(k) for k in keys}
        assert all(owners[k].execute("EXISTS", skey(k)) == 1 for k in removed)
        assert writer.get_many(removed) == {k: f"loaded {k}" for k in removed}
        assert writer.stats().distributed_errors == reader.stats().distributed_errors == 0


def test_tenants_with_an_encrypted_codec(topology: Topology) -> None:
    def codec() -> df.Codec:
        return df.Codec(encryptor=df.AesGcmEncryptor(KEYRING))

    pan = "4111111111111111"
    with (
        node(topology, codec=codec()) as cache,
        node(topology, memory=None, codec=codec()) as reader,
    ):
        acme, globex = cache.tenant("acme"), cache.tenant("globex")
        keys = spread_keys(topology, 6, tenant="acme")
        acme.set_many({k: {"pan": pan, "key": k} for k in keys})
        globex.set(keys[0], {"pan": "globex's"})
        for k in keys:
            raw = topology.raw(skey(k, "acme"))
            assert raw is not None
            assert pan.encode() not in raw

        assert reader.tenant("acme").get_many(keys) == {
            k: {"pan": pan, "key": k} for k in keys
        }
        assert reader.tenant("globex").get(keys[0]) == {"pan": "globex's"}
        assert reader.try_get(keys[0]) == (False, None)  # the root keyspace is another

        # get_or_set through a view: one factory call, stored under the tenant's key only.
        load = Counter("acme's report")
        assert acme.get_or_set("report", load) == "acme's report"
        assert reader.tenant("acme").get_or_set("report", load) == "acme's report"
        assert load.calls == 1
        assert topology.raw(skey("report")) is None

        # An entry copied to another tenant's key (another master, too) does not decrypt.
        stolen = topology.raw(skey(keys[1], "acme"))
        assert stolen is not None
        topology.plant(skey("stolen", "globex"), stolen)
        assert reader.tenant("globex").try_get("stolen") == (False, None)
        assert reader.stats().decode_errors == 1

        # Nor does it for a node without the key.
        other = df.Codec(encryptor=df.AesGcmEncryptor(df.Keyring({"x": os.urandom(32)})))
        with node(topology, memory=None, codec=other) as outsider:
            assert outsider.tenant("acme").try_get(keys[0]) == (False, None)
        assert cache.stats().distributed_errors == reader.stats().distributed_errors == 0


# -- faults -----------------------------------------------------------------------------------


def test_cluster_master_killed_then_restarted(redis_cluster: RedisCluster) -> None:
    topology = cluster_topology(redis_cluster)
    victim = redis_cluster.masters[1]
    on_victim = [k for k in spread_keys(topology, 12) if topology.owner(skey(k)) is victim]
    cached, missing, written = on_victim[:3]
    fast = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT}

    with (
        node(topology, fast) as cache,
        node(topology, fast, memory=None) as reader,
    ):
        cache.set(cached, "before")
        assert victim.execute("EXISTS", skey(cached)) == 1
        victim.kill()
        try:
            assert cache.get(cached) == "before"  # from L1: no L2 call needed
            errors = cache.stats().distributed_errors

            load = Counter("computed")  # a miss on the dead master: the factory answers
            assert cache.get_or_set(missing, load) == "computed"
            assert load.calls == 1
            assert cache.stats().distributed_errors > errors
            errors = cache.stats().distributed_errors

            cache.set(written, "while down")  # kept in L1, the L2 write counted
            assert cache.stats().distributed_errors > errors
            assert cache.get(written) == "while down"

            assert reader.try_get(cached) == (False, None)  # no L1: a miss, no raise
            assert reader.stats().distributed_errors > 0
        finally:
            victim.restart()
            redis_cluster.wait_ok()

        # L2 is used again (the restarted master came back empty: no persistence in tests).
        def l2_works() -> bool:
            before = cache.stats().distributed_errors
            cache.set(written, "after")
            return cache.stats().distributed_errors == before

        eventually(l2_works)
        assert victim.execute("EXISTS", skey(written)) == 1
        hits = reader.stats().distributed_hits

        def reader_sees_it() -> bool:
            return reader.get(written) == "after"

        eventually(reader_sees_it)
        assert reader.stats().distributed_hits > hits


def test_sentinel_failover_reaches_the_new_master() -> None:
    # Its own setup: the session's shared one must stay stable for the other tests.
    with RedisSentinel() as setup:
        topology = sentinel_topology(setup)
        fast = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT}
        with (
            node(topology, fast) as cache,
            node(topology, fast, memory=None) as reader,
        ):
            cache.set("before", "written before")
            old = setup.master
            wait_until(  # the replica has it, so it survives the failover
                lambda: setup.replica.execute("EXISTS", skey("before")) == 1,
                timeout=10,
                what="replication",
            )
            setup.failover()
            assert setup.master is not old

            # L1 answers, and a miss is computed, whatever the state of L2.
            assert cache.get("before") == "written before"
            assert cache.get_or_set("computed", Counter(1)) == 1

            def l2_works() -> bool:
                errors = cache.stats().distributed_errors
                cache.set("after", "written after")
                return cache.stats().distributed_errors == errors

            eventually(l2_works)
            assert setup.master.execute("EXISTS", skey("after")) == 1

            def reader_sees_both() -> bool:
                got = reader.get_many(["before", "after"])
                return got == {"before": "written before", "after": "written after"}

            eventually(reader_sees_both)
