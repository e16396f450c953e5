# GENERATED from tests/_async/test_facade_topologies.py by scripts/unasync.py: do not edit.
"""The facade on a 3-master Redis Cluster and on Sentinel, through the public API only.

Each "node" is a cache with its own L1 and its own RedisCache (its own connections), as two
processes would have, in front of the same servers. The Cluster tests run again with GlideCache
("glide-cluster": GLIDE's cluster client; GLIDE has no Sentinel support), the backplane still
a RedisBackplane. What reached L2 is checked on the server that owns the key (the master of
its slot), so a batch is seen to touch every master, with one round trip per master (GLIDE,
which multiplexes callers on one connection per master, also writes a batch's part for a
master in one piece: the same server-side count holds for it). Nodes with a backplane keep
their L1s coherent on both topologies. Fault tests kill a Cluster master and fail a Sentinel
setup over while the caches are in use, the last one under a continuous load of two nodes
with a backplane.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from redis.cluster import key_slot

import dataferry as df
from tests.chaos import Reading, Faults, Gate, count_events, wait_event
from tests.redis_servers import RedisCluster, RedisSentinel, RedisServer, wait_until

NS = "topo"
SOCKET_TIMEOUT = 0.2  # fault tests: a dead server must cost little
KEYRING = df.Keyring({"2026-11": os.urandom(32)})
L1_ONLY = df.EntryOptions(skip_distributed=True)  # read a node's L1, never its L2
LOUD = df.EntryOptions(raise_distributed_errors=True)  # an L2 failure raises, not a miss

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


def blocking(call: Callable[[], Any]) -> Any:
    """Run a blocking call (a server fault) without stopping the event loop's other tasks."""
    if IS_ASYNC:
        return asyncio.to_thread(call)
    return call()


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
    backend: Callable[..., Any]  # a new RedisCache or GlideCache (own connections) per node
    owner: Callable[[str], RedisServer]  # the master that holds a storage key
    backplane: Callable[..., Any]  # a new backplane per node (GlideBackplane with GLIDE)

    def raw(self, storage_key: str) -> bytes | None:
        """The bytes stored under ``storage_key``, read on the server that owns it."""
        data: bytes | None = self.owner(storage_key).execute("GET", storage_key, decode=False)
        return data

    def plant(self, storage_key: str, data: bytes) -> None:
        """Write raw bytes under ``storage_key`` behind the cache's back."""
        self.owner(storage_key).execute("SET", storage_key, data, "EX", 60)


def cluster_topology(cluster: RedisCluster, glide: bool = False) -> Topology:
    # Slot ranges as the cluster reports them (not as the harness assigned them).
    ranges = [
        (int(first), int(last), int(node[1]))
        for first, last, node, *_ in cluster.masters[0].execute("CLUSTER", "SLOTS")
    ]
    by_port = {m.port: m for m in cluster.masters}

    def owner(storage_key: str) -> RedisServer:
        slot = key_slot(storage_key.encode())
        return next(by_port[port] for first, last, port in ranges if first <= slot <= last)

    def backend(**kwargs: Any) -> Any:
        if glide:
            # redis-py's socket timeouts are GLIDE's request and connection timeouts.
            timeouts = {
                "socket_timeout": "request_timeout",
                "socket_connect_timeout": "connect_timeout",
            }
            options = {timeouts.get(name, name): value for name, value in kwargs.items()}
            return df.GlideCache.from_url(cluster.url, cluster=True, **options)
        return df.RedisCache.from_url(cluster.url, cluster=True, **kwargs)

    def backplane(**kwargs: Any) -> Any:
        # Sharded pub/sub: the channel lives on the master of its slot.
        if glide:
            return df.GlideBackplane.from_url(cluster.url, cluster=True, **kwargs)
        return df.RedisBackplane.from_url(cluster.url, cluster=True, **kwargs)

    return Topology("cluster", cluster.masters, backend, owner, backplane)


def sentinel_topology(setup: RedisSentinel) -> Topology:
    def backend(**kwargs: Any) -> df.RedisCache:
        return df.RedisCache.from_sentinel(setup.sentinels, setup.service_name, **kwargs)

    def backplane(**kwargs: Any) -> df.RedisBackplane:
        return df.RedisBackplane.from_sentinel(setup.sentinels, setup.service_name, **kwargs)

    return Topology("sentinel", [setup.master], backend, lambda _key: setup.master, backplane)


@pytest.fixture(params=["cluster", "sentinel", "glide-cluster"])
def topology(request: pytest.FixtureRequest) -> Topology:
    if request.param == "sentinel":
        return sentinel_topology(request.getfixturevalue("redis_sentinel"))
    cluster = request.getfixturevalue("redis_cluster")
    return cluster_topology(cluster, glide=request.param == "glide-cluster")


@pytest.fixture(params=["cluster", "glide-cluster"])
def cluster(request: pytest.FixtureRequest) -> Topology:
    """The Cluster alone, with RedisCache or GlideCache, for the tests of what is its own."""
    return cluster_topology(
        request.getfixturevalue("redis_cluster"), glide=request.param == "glide-cluster"
    )


def node(
    topology: Topology, backend_kwargs: dict[str, Any] | None = None, **kwargs: Any
) -> df.DataFerry:
    """A cache node: its own L1 (unless memory=None) and its own client to the shared L2."""
    return df.DataFerry(
        distributed=topology.backend(**(backend_kwargs or {})), namespace=NS, **kwargs
    )


def fleet_node(
    topology: Topology,
    backend_kwargs: dict[str, Any] | None = None,
    backplane_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> df.DataFerry:
    """A node with a backplane of its own (own subscriber thread, own connections)."""
    bp = topology.backplane(**(backplane_kwargs or {}))
    return node(topology, backend_kwargs, backplane=bp, **kwargs)


class Heard:
    """What a node's backplane reported: its states, and the messages of other nodes it applied."""

    def __init__(self, cache: df.DataFerry) -> None:
        self.states: list[str] = []
        self.reconnected = threading.Event()
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._waiting: list[tuple[str, int, threading.Event]] = []
        cache.subscribe(self._on_event)

    def _on_event(self, event: str, attributes: dict[str, Any]) -> None:
        if event == "backplane_state":
            self.states.append(attributes["state"])
            if attributes["state"] == "reconnected":
                self.reconnected.set()
        elif event == "backplane_messages":
            with self._lock:
                key = attributes["key"]
                self._counts[key] = self._counts.get(key, 0) + 1
                for waited, count, done in self._waiting:
                    if waited == key and self._counts[key] >= count:
                        done.set()

    def key(self, storage_key: str, count: int = 1) -> threading.Event:
        """Set once ``count`` messages about ``storage_key`` have been applied."""
        done = threading.Event()
        with self._lock:
            self._waiting.append((storage_key, count, done))
            if self._counts.get(storage_key, 0) >= count:
                done.set()
        return done


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


def tags_by_master(topology: Topology, per_master: int) -> dict[int, list[str]]:
    """Hash tags (``g0``...), ``per_master`` of them on each master: keys ``{tag}:...`` share
    the slot of their tag (the storage key's prefix has no braces, so the tag decides)."""
    by_master: dict[int, list[str]] = {m.port: [] for m in topology.masters}
    i = 0
    while min(len(tags) for tags in by_master.values()) < per_master:
        tag = f"g{i}"
        tags = by_master[topology.owner(skey(f"{{{tag}}}:0")).port]
        if len(tags) < per_master:
            tags.append(tag)
        i += 1
    return by_master


class Traffic:
    """Round trips and commands each master served, from its INFO, on one connection each.

    A pipeline written in one piece is read by the server in one read: ``reads`` counts the
    round trips a client made to that master (a test's own INFO is taken off).
    """

    COMMANDS = ("get", "mget", "set", "del")

    def __init__(self, masters: list[RedisServer]) -> None:
        self._clients = {m.port: m.client() for m in masters}
        self._last = self._read()

    def _read(self) -> dict[int, dict[str, int]]:
        counts: dict[int, dict[str, int]] = {}
        for port, client in self._clients.items():
            info = client.info("stats", "commandstats")  # one command: one read
            counts[port] = {"reads": int(info["total_reads_processed"])}
            for name in self.COMMANDS:
                counts[port][name] = int(info.get(f"cmdstat_{name}", {}).get("calls", 0))
        return counts

    def since_last(self) -> dict[int, dict[str, int]]:
        """Per master port: round trips and calls of each command since the last call."""
        now = self._read()
        delta = {
            port: {name: now[port][name] - self._last[port][name] for name in now[port]}
            for port in now
        }
        for counts in delta.values():
            counts["reads"] -= 1  # the INFO that measured it
        self._last = now
        return delta

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


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


def test_cluster_batches_split_per_slot_one_round_trip_per_master(
    redis_cluster: RedisCluster, cluster: Topology
) -> None:
    topology = cluster
    tags = tags_by_master(topology, 2)  # 2 slots on each of the 3 masters, 3 keys per slot
    keys_of = {
        port: [f"{{{t}}}:{i}" for t in port_tags for i in range(3)]
        for port, port_tags in tags.items()
    }
    keys = [k for port_keys in keys_of.values() for k in port_keys]
    first_slot = {port: port_keys[:3] for port, port_keys in keys_of.items()}
    values = {k: f"value of {k}" for k in keys}
    traffic = Traffic(redis_cluster.masters)

    def batch(
        call: Callable[[], Any], undo: Callable[[], Any] | None = None, **per_master: int
    ) -> Any:
        """Run ``call()``; check what each master served for it (round trips, commands).

        Another client's command in the same instant (a backplane's PING...) adds to the
        counts: the batch is then undone and run again, a few times at most.
        """
        seen: dict[int, dict[str, int]] = {}
        for _ in range(3):
            traffic.since_last()
            result = call()
            delta = traffic.since_last()
            seen = {port: {name: delta[port][name] for name in per_master} for port in keys_of}
            if all(counts == per_master for counts in seen.values()):
                return result
            # Noise only adds: fewer than expected is a wrong claim, not a busy server.
            assert all(c[n] >= want for c in seen.values() for n, want in per_master.items()), seen
            if undo is not None:
                undo()
        raise AssertionError(f"each master served {seen}, not {per_master}")

    # No L1, no retries, errors raised: each call is exactly its L2 batch, and a CROSSSLOT
    # (or any other failure) would reach this test.
    strict: dict[str, Any] = {"memory": None, "resilience": None, "raise_distributed_errors": True}
    try:
        with node(topology, **strict) as cache:
            acme = cache.tenant("acme")
            cache.set_many(values)  # opens a connection to every master
            cache.remove_many(keys)

            batch(lambda: cache.set_many(values), reads=1, set=6, mget=0)  # a pipeline
            got = batch(lambda: cache.get_many(keys), reads=1, mget=2, get=0)
            assert got == values  # one MGET per slot, the slots of a master in one pipeline
            batch(lambda: acme.set_many(dict.fromkeys(keys, "acme's")), reads=1, set=6)
            got = batch(lambda: acme.get_many(keys), reads=1, mget=2)
            assert got == dict.fromkeys(keys, "acme's")

            removed = [k for port_keys in first_slot.values() for k in port_keys]
            batch(lambda: cache.remove_many(removed), reads=1, **{"del": 1})  # per slot
            asked: list[list[str]] = []

            def load_many(missing: list[str]) -> dict[str, str]:
                asked.append(sorted(missing))
                return {k: f"loaded {k}" for k in missing}

            # One read of every slot, one call of the loader, one write pipeline per master.
            got = batch(
                lambda: cache.get_or_set_many(keys, load_many),
                lambda: cache.remove_many(removed),
                reads=2,
                mget=2,
                set=3,
            )
            assert got == {k: f"loaded {k}" if k in removed else values[k] for k in keys}
            assert asked[-1:] == [sorted(removed)]

            def remove_all() -> None:
                cache.remove_many(keys)
                acme.remove_many(keys)

            batch(remove_all, reads=2, **{"del": 4})
            assert cache.get_many(keys) == {}
            assert acme.get_many(keys) == {}
            assert cache.stats().distributed_errors == 0
    finally:
        traffic.close()
    for k in keys:
        assert topology.raw(skey(k)) is None
        assert topology.raw(skey(k, "acme")) is None


def test_cluster_many_first_calls_on_a_new_client(cluster: Topology) -> None:
    # redis-py's asyncio RedisCluster (8.1) routed the commands that arrived before it had
    # learned the slot table to its default node: 20 at once drew enough MOVED replies to make
    # it drop every connection, and the other callers failed. RedisCache loads the table first.
    topology = cluster
    keys = spread_keys(topology, 24)
    strict: dict[str, Any] = {"memory": None, "resilience": None, "raise_distributed_errors": True}
    with node(topology, **strict) as cache:
        calls: list[Callable[[], Any]] = [
            lambda k=k: cache.get_or_set(k, lambda: f"computed {k}") for k in keys[:16]
        ]
        calls += [lambda k=k: cache.set(k, f"set {k}") for k in keys[16:20]]
        calls += [lambda k=k: cache.get_many([k, "absent"]) for k in keys[20:]]

        def outcome(call: Callable[[], Any]) -> Any:
            # Every call runs to its end, failed or not: none is left running past the test.
            try:
                return call()
            except Exception as exc:
                return exc

        got = concurrently([lambda call=call: outcome(call) for call in calls])
        assert [r for r in got if isinstance(r, Exception)] == []
        assert got[:16] == [f"computed {k}" for k in keys[:16]]
        assert got[20:] == [{}] * 4
        assert cache.stats().distributed_errors == 0
    for k in keys[:20]:
        assert topology.raw(skey(k)) is not None


# -- coherence --------------------------------------------------------------------------------


def test_backplane_drops_changed_keys_from_the_other_nodes_l1(topology: Topology) -> None:
    keys = spread_keys(topology, 6)  # on every master of a cluster
    with fleet_node(topology) as a, fleet_node(topology) as b:
        b_heard = count_events(b, "backplane_messages")
        a_heard = count_events(a, "backplane_messages")
        messages = 0

        def b_heard_more(count: int) -> None:
            nonlocal messages
            messages += count
            wait_for(b_heard(messages))

        def b_l1(*names: str) -> list[tuple[bool, Any]]:
            return [b.try_get(k, options=L1_ONLY) for k in names]

        a.set("mine", "a's own")  # a keeps it in L1 whatever it hears of its own
        b_heard_more(1)

        a.set("k", 1)
        b_heard_more(1)
        assert b.get("k") == 1  # from L2, into b's L1
        assert b_l1("k") == [(True, 1)]
        a.set("k", 2)
        b_heard_more(1)
        assert b_l1("k") == [(False, None)]
        assert b.get("k") == 2

        a.expire("k")
        b_heard_more(1)
        assert b_l1("k") == [(False, None)]
        assert b.try_get("k") == (False, None)  # stale in L2: a miss

        a.set("k", 3)
        b_heard_more(1)
        assert b.get("k") == 3
        a.remove("k")
        b_heard_more(1)
        assert b_l1("k") == [(False, None)]
        assert b.try_get("k") == (False, None)

        a.set_many(dict.fromkeys(keys, "v1"))  # one message per key
        b_heard_more(len(keys))
        assert b.get_many(keys) == dict.fromkeys(keys, "v1")
        assert b_l1(*keys) == [(True, "v1")] * len(keys)
        a.set_many(dict.fromkeys(keys, "v2"))
        b_heard_more(len(keys))
        assert b_l1(*keys) == [(False, None)] * len(keys)
        assert b.get_many(keys) == dict.fromkeys(keys, "v2")
        a.remove_many(keys)
        b_heard_more(len(keys))
        assert b_l1(*keys) == [(False, None)] * len(keys)
        assert b.get_many(keys) == {}

        # a's own messages come back to it on the same channel, in order, before b's: once
        # it applied b's, it had seen (and skipped) every one of its own.
        b.set("from b", 1)
        wait_for(a_heard(1))
        assert a.stats().backplane_messages == 1
        assert a.try_get("mine", options=L1_ONLY) == (True, "a's own")
        assert a.stats().backplane_sent == messages
        assert b.stats().backplane_messages == messages
        assert a.stats().distributed_errors == b.stats().distributed_errors == 0


def test_a_replay_never_replaces_another_nodes_newer_write(topology: Topology) -> None:
    # What a failover does to two nodes whose breakers close at different times, made
    # deterministic: a's write fails (queued), b writes a newer value, then a's L2 comes back.
    # Reads fail too (an outage does): a replay's check of the L2 can't run before b's write
    # and let the replay through just after the L2 comes back.
    faults = Faults(ConnectionError("a's L2 is down"), "set", "get_many")
    replaying = df.Resilience(recovery_interval=0.05, cooldown=0.1)
    with (
        fleet_node(topology, resilience=replaying, distributed_layers=[faults]) as a,
        fleet_node(topology) as b,
        node(topology, memory=None) as reader,
    ):
        a_heard = count_events(a, "backplane_messages")
        b_heard = count_events(b, "backplane_messages")
        a.set("k", "older")  # L1 and the backplane: yes; L2: queued for a replay
        assert a.stats().recovery_pending == 1
        wait_for(b_heard(1))
        b.set("k", "newer")  # into L2 and b's L1; a drops its copy
        wait_for(a_heard(1))
        faults.failing = False

        def replayed() -> bool:
            # b's too: on a loaded machine its write may time out, and is then queued in turn.
            return a.stats().recovery_pending == 0 == b.stats().recovery_pending

        eventually(replayed)
        assert reader.try_get("k") == (True, "newer")
        in_b = b.try_get("k", options=L1_ONLY)
        if b.stats().recovery_replays == 0:
            assert in_b == (True, "newer")
        else:  # b's write was replayed: a replay drops its keys from the replaying node's L1
            assert in_b == (False, None)
        assert b.get("k") == "newer"
        assert a.get("k") == "newer"


def test_a_superseded_replay_leaves_no_stale_value_in_its_own_l1(
    redis_sentinel: RedisSentinel,
) -> None:
    topology = sentinel_topology(redis_sentinel)
    faults = Faults(ConnectionError("b's L2 writes fail"), "set")
    replaying = df.Resilience(recovery_interval=0.05, cooldown=0.1)
    with (
        fleet_node(topology, resilience=replaying, distributed_layers=[faults]) as b,
        fleet_node(topology) as a,
        node(topology, memory=None) as reader,
    ):
        a_heard = count_events(a, "backplane_messages")
        b_heard = count_events(b, "backplane_messages")
        b.set("k", "older")  # queued for a replay
        wait_for(a_heard(1))
        a.set("k", "newer")  # into L2; b drops its copy
        wait_for(b_heard(1))
        b.get("k")  # answered from b's queue (it reads its own writes), into its L1
        faults.failing = False

        def replayed() -> bool:
            # a's too: on a loaded machine its write may time out, and is then queued in turn.
            return b.stats().recovery_pending == 0 == a.stats().recovery_pending

        eventually(replayed)
        assert reader.try_get("k") == (True, "newer")  # the replay was dropped: right
        found, cached = b.try_get("k", options=L1_ONLY)
        # The dropped replay also dropped what b's L1 took from b's queue ("older").
        assert (found, cached) in ((False, None), (True, "newer"))


def test_a_read_during_a_replay_is_not_answered_by_a_superseded_write(
    redis_sentinel: RedisSentinel,
) -> None:
    # b's replay batch holds two writes: "k", which a outdated meanwhile (so it is dropped),
    # and "other", whose write is held in flight. A read of "k" on b in that round trip must
    # not be answered from b's dropped write, or b's L1 keeps it while L2 holds a's value.
    topology = sentinel_topology(redis_sentinel)
    faults = Faults(ConnectionError("b's L2 writes fail"), "set")
    gate = Gate("set")
    replaying = df.Resilience(recovery_interval=0.05, cooldown=0.1, timeout=5)
    with (
        fleet_node(topology, resilience=replaying, distributed_layers=[faults, gate]) as b,
        fleet_node(topology) as a,
        node(topology, memory=None) as reader,
    ):
        a_heard = count_events(a, "backplane_messages")
        b_heard = count_events(b, "backplane_messages")
        b.set("k", "older")  # queued for a replay
        b.set("other", "b's")  # queued too
        assert b.stats().recovery_pending == 2
        wait_for(a_heard(2))
        a.set("k", "newer")  # into L2; b drops its copy
        wait_for(b_heard(1))
        faults.failing = False

        def in_flight() -> bool:  # the replay: "k" dropped as outdated, "other" held
            return gate.calls["set"] == 1

        eventually(in_flight)
        assert b.get("k") == "newer"
        gate.open()

        def replayed() -> bool:
            return b.stats().recovery_pending == 0

        eventually(replayed)
        assert reader.try_get("k") == (True, "newer")
        assert reader.try_get("other") == (True, "b's")
        assert b.try_get("k", options=L1_ONLY) in ((False, None), (True, "newer"))


def test_a_read_while_a_set_is_in_flight_leaves_l1_coherent(
    redis_sentinel: RedisSentinel,
) -> None:
    topology = sentinel_topology(redis_sentinel)
    gate = Gate("set")
    patient = df.Resilience(timeout=5)  # the held write must not time out
    with (
        fleet_node(topology, resilience=patient, distributed_layers=[gate]) as b,
        fleet_node(topology) as a,
        node(topology, memory=None) as reader,
    ):
        b_heard = count_events(b, "backplane_messages")
        writing = Reading(lambda: b.set("k", "b's"))  # in b's L1 at once; L2 write held

        def in_flight() -> bool:
            return gate.calls["set"] == 1

        eventually(in_flight)
        a.set("k", "a's")  # into L2; b drops its copy
        wait_for(b_heard(1))
        assert b.get("k") == "a's"  # what L2 holds now: a fair answer
        gate.open()
        writing.result()
        assert reader.try_get("k") == (True, "b's")  # b's write landed last
        found, cached = b.try_get("k", options=L1_ONLY)
        # b's write saw the key invalidated while it was in flight: b's L1 copy ("a's") went.
        assert (found, cached) in ((False, None), (True, "b's"))


# -- faults -----------------------------------------------------------------------------------


def test_cluster_master_killed_then_restarted(
    redis_cluster: RedisCluster, cluster: Topology
) -> None:
    topology = cluster
    victim = redis_cluster.masters[1]
    on_victim = [k for k in spread_keys(topology, 12) if topology.owner(skey(k)) is victim]
    cached, missing, written = on_victim[:3]
    fast = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT}
    # The breaker may open while the cluster converges after the restart (CLUSTERDOWN): a
    # short cooldown lets L2 back in soon (the default 5 s is waiting, not testing).
    brief = df.Resilience(cooldown=0.5)

    with (
        node(topology, fast, resilience=brief) as cache,
        node(topology, fast, memory=None, resilience=brief) as reader,
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


def test_sentinel_failover_under_load_reaches_no_caller_and_l1_stays_coherent() -> None:
    hot = [f"hot:{i}" for i in range(6)]  # the load's key space
    quiet = [f"quiet:{i}" for i in range(3)]  # cached by an idle node, written by nobody
    fast = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT}
    follow = {"max_backoff": 0.2, "heartbeat": 0.5, **fast}
    # A short cooldown: the breaker that opens during the failover lets L2 back in soon.
    resilience = df.Resilience(cooldown=0.3, recovery_interval=0.2)
    errors: list[BaseException] = []
    stop = threading.Event()
    ops = [0] * 6  # per worker: 3 per loaded node

    with RedisSentinel() as setup:
        topology = sentinel_topology(setup)

        def fleet() -> df.DataFerry:
            return fleet_node(topology, fast, follow, resilience=resilience)

        with fleet() as a, fleet() as b, fleet() as idle:
            heard = {"a": Heard(a), "b": Heard(b), "idle": Heard(idle)}
            for k in quiet:
                idle.set(k, f"idle's {k}")
            assert idle.stats().memory_entries == len(quiet)

            def worker(n: int, cache: df.DataFerry) -> None:
                rng = random.Random(n)
                while not stop.is_set():
                    key = rng.choice(hot)
                    value = f"worker {n} #{ops[n]}"
                    roll = rng.random()
                    try:
                        if roll < 0.4:
                            cache.get_or_set(key, lambda v=value: v, ttl=60)
                        elif roll < 0.65:
                            cache.set(key, value, ttl=60)
                        elif roll < 0.9:
                            cache.get(key)
                        else:
                            cache.remove(key)
                    except Exception as exc:  # what this test is about: none may reach here
                        errors.append(exc)
                    ops[n] += 1
                    sleep(0.002)  # pace (two cores): not a synchronisation

            def every_worker_did(count: int, since: list[int]) -> None:
                def done() -> bool:
                    return all(n - s >= count for n, s in zip(ops, since, strict=True))

                eventually(done, timeout=30)

            def l2_answers(cache: df.DataFerry) -> bool:
                try:
                    cache.set(
                        "probe", 1, options=df.EntryOptions(raise_distributed_errors=True)
                    )
                except df.DistributedCacheError:
                    return False
                return True

            def controller() -> None:
                try:
                    every_worker_did(30, [0] * len(ops))
                    blocking(setup.failover)
                    for watch in heard.values():  # every subscriber followed the new master
                        wait_for(watch.reconnected)
                    for cache in (a, b):

                        def answers(cache: df.DataFerry = cache) -> bool:
                            return l2_answers(cache)

                        eventually(answers, timeout=30)
                    # The load stops as soon as L2 answers both nodes: what is in flight or
                    # queued then (replays, superseded ones, sets during invalidations: the
                    # two tests above) must leave every L1 coherent by itself.
                finally:
                    stop.set()

            nodes = [a, a, a, b, b, b]
            concurrently(
                [controller, *(lambda n=n: worker(n, nodes[n]) for n in range(len(ops)))]
            )
            assert errors == []  # not one exception reached a caller
            # The failover was felt: L2 calls failed while it went on.
            assert a.stats().distributed_errors + b.stats().distributed_errors > 0
            for name, watch in heard.items():
                assert watch.states[-2:] == ["disconnected", "reconnected"], name
            # The idle node missed nothing it knows of, but it lost its subscription: it
            # emptied its L1 when it came back.
            assert [idle.try_get(k, options=L1_ONLY) for k in quiet] == [(False, None)] * 3

            # Settle: queued L2 writes replayed, kept messages sent, then every message of
            # each node applied by the other (a marker, written twice: kept messages are sent
            # after the first one; the other node hears the second one after them).
            for cache in (a, b):

                def replayed(cache: df.DataFerry = cache) -> bool:
                    return cache.stats().recovery_pending == 0

                eventually(replayed)
            for sender, receiver in ((a, "b"), (b, "a")):
                sender.set("marker", 1)
                sender.set("marker", 2)
                wait_for(heard[receiver].key(skey("marker"), 2))

            # A reader that raises when the L2 can't answer (a loaded machine's Sentinels may
            # still find no master for a moment), rather than calling it a miss.
            with node(topology, fast, memory=None, resilience=None) as reader:

                def in_l2(key: str) -> tuple[bool, Any]:
                    deadline = time.monotonic() + 30
                    while True:
                        try:
                            return reader.try_get(key, options=LOUD)
                        except df.DistributedCacheError:
                            assert time.monotonic() < deadline, "the L2 never answered"
                            sleep(0.05)

                incoherent = []
                for name, cache in (("a", a), ("b", b)):
                    for k in hot:
                        found, cached = cache.try_get(k, options=L1_ONLY)
                        stored = in_l2(k)
                        if found and stored != (True, cached):
                            incoherent.append((name, k, cached, stored))
                assert incoherent == []
