"""Writes from outside DataFerry: ``RedisBackplane(client_tracking=True)`` on real servers.

A node's L1 holds a value; another program (a raw redis-py client standing for ``redis-cli``
or another service) changes the key in Redis; with client tracking the node drops its copy,
without it (the default) the node keeps serving it. Waits are on the events the cache emits
(``backplane_messages``, ``backplane_state``), never fixed sleeps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.backoff import ConstantBackoff
from redis.retry import Retry

import dataferry as df
from dataferry import ConfigurationError, RedisBackplane
from dataferry._backends._backplane import Action, BackplaneState, SenderId, decode_message
from tests.chaos import async_until, async_wait, sync_wait
from tests.redis_servers import RedisSentinel, RedisServer

NS = "trk"
WAIT = 10.0  # generous: the machine is shared


def skey(key: str, tenant: str | None = None) -> str:
    """The storage key of ``key`` (what an outside program sees in Redis)."""
    return f"{NS}:k:{key}" if tenant is None else f"{NS}:t:{tenant}:{key}"


def node(url: str, *, tracking: bool = True, **kwargs: Any) -> df.AsyncDataFerry:
    return df.AsyncDataFerry(
        distributed=df.RedisCache.from_url(url),
        backplane=df.RedisBackplane.from_url(url, client_tracking=tracking),
        namespace=NS,
        raise_distributed_errors=True,  # an L2 failure fails the test, not a silent L1 answer
        **kwargs,
    )


class Heard:
    """The backplane messages a cache applied, as ``(action, storage key)``, and their states."""

    def __init__(self, cache: Any) -> None:
        self.messages: list[tuple[str, str]] = []
        self.states: list[str] = []
        self._waiters: list[tuple[tuple[str, str], threading.Event]] = []
        self._lock = threading.Lock()
        self.reconnected = threading.Event()
        cache.subscribe(self._listener)

    def _listener(self, event: str, attributes: dict[str, Any]) -> None:
        if event == "backplane_state":
            self.states.append(attributes["state"])
            if attributes["state"] == "reconnected":
                self.reconnected.set()
        if event != "backplane_messages":
            return
        message = (attributes["action"], attributes["key"])
        with self._lock:
            self.messages.append(message)
            for wanted, arrived in self._waiters:
                if wanted == message:
                    arrived.set()

    def next(self, action: str, key: str) -> threading.Event:
        """An event set by the next ``(action, key)`` message (not by one heard before)."""
        arrived = threading.Event()
        with self._lock:
            self._waiters.append(((action, key), arrived))
        return arrived


async def from_l1(cache: df.AsyncDataFerry, key: str, tenant: str | None = None) -> Any:
    """``get`` that must be answered by L1."""
    view = cache if tenant is None else cache.tenant(tenant)
    before = cache.stats().memory_hits
    value = await view.get(key)
    assert cache.stats().memory_hits == before + 1, f"{key!r} was not in L1"
    return value


async def put_in_l1(
    cache: df.AsyncDataFerry,
    heard: Heard,
    key: str,
    value: Any,
    tenant: str | None = None,
    tags: list[str] | None = None,
) -> None:
    """Write ``key``, let its own tracking report go by, read it back into L1."""
    view = cache if tenant is None else cache.tenant(tenant)
    own = heard.next("remove", skey(key, tenant))
    await view.set(key, value, tags=tags)
    # The documented cost: the node's own write comes back to it and drops its fresh copy...
    await async_wait(own, WAIT)
    before = cache.stats().distributed_hits
    assert await view.get(key) == value
    assert cache.stats().distributed_hits == before + 1  # ...so it reads L2 once more.
    assert await from_l1(cache, key, tenant) == value


@pytest.fixture
def outside(redis_url: str) -> Iterator[redis.Redis]:
    """Another program's client on the test's server."""
    with redis.Redis.from_url(redis_url) as client:
        yield client


# -- through the facade --------------------------------------------------------------------------


async def test_outside_del_set_expire_and_flushdb_drop_the_key_from_l1(
    redis_url: str, outside: redis.Redis
) -> None:
    cache = node(redis_url)
    heard = Heard(cache)
    async with cache:
        await put_in_l1(cache, heard, "price", 100)
        gone = heard.next("remove", skey("price"))
        outside.delete(skey("price"))
        await async_wait(gone, WAIT)
        assert await cache.get("price") is None

        # A raw SET (not a DataFerry entry): the key is dropped, the L2 bytes are a miss.
        await put_in_l1(cache, heard, "price", 110)
        replaced = heard.next("remove", skey("price"))
        outside.set(skey("price"), b"written by redis-cli")
        await async_wait(replaced, WAIT)
        decode_errors = cache.stats().decode_errors
        assert await cache.get("price") is None
        assert cache.stats().decode_errors == decode_errors + 1

        await put_in_l1(cache, heard, "price", 120)
        expired = heard.next("remove", skey("price"))
        assert outside.expire(skey("price"), 1000)
        await async_wait(expired, WAIT)
        assert cache.stats().memory_entries == 0
        assert await cache.get("price") == 120  # from L2: only the ttl changed there

        # A tenant's keys live under another prefix, tracked too.
        await put_in_l1(cache, heard, "price", 7, tenant="acme")
        gone = heard.next("remove", skey("price", "acme"))
        outside.delete(skey("price", "acme"))
        await async_wait(gone, WAIT)
        assert await cache.tenant("acme").get("price") is None

        # FLUSHDB names no key: the whole L1 goes.
        await put_in_l1(cache, heard, "a", 1)
        await put_in_l1(cache, heard, "b", 2)
        flushed = heard.next("clear", "")
        outside.flushdb()
        await async_wait(flushed, WAIT)
        assert cache.stats().memory_entries == 0
        assert await cache.get_many(["a", "b"]) == {}


async def test_another_service_writing_without_a_backplane_is_seen(redis_url: str) -> None:
    # A service that shares the L2 but publishes nothing (no backplane, or an older version).
    cache, other = (
        node(redis_url),
        df.AsyncDataFerry(distributed=df.RedisCache.from_url(redis_url), namespace=NS),
    )
    heard = Heard(cache)
    async with cache, other:
        await put_in_l1(cache, heard, "price", 100)
        replaced = heard.next("remove", skey("price"))
        await other.set("price", 120)
        await async_wait(replaced, WAIT)
        assert await cache.get("price") == 120


async def test_remove_by_tag_and_clear_by_a_service_without_a_backplane_are_seen(
    redis_url: str,
) -> None:
    # Their L2 records change: reported as a tag removal and a clear, which the node applies
    # (it would otherwise trust the records it fetched for as long as it stays connected).
    cache, other = (
        node(redis_url),
        df.AsyncDataFerry(distributed=df.RedisCache.from_url(redis_url), namespace=NS),
    )
    heard = Heard(cache)
    async with cache, other:
        await put_in_l1(cache, heard, "red", 1, tags=["red"])
        await put_in_l1(cache, heard, "blue", 2, tags=["blue"])
        removed = heard.next("tag", f"{NS}:tag:k:red")
        await other.remove_by_tag("red")
        await async_wait(removed, WAIT)
        assert await cache.get("red") is None
        assert await from_l1(cache, "blue") == 2

        cleared = heard.next("clear", f"{NS}:clear")
        await other.clear()
        await async_wait(cleared, WAIT)
        assert await cache.get("blue") is None


async def test_keys_outside_the_namespace_prefixes_do_not_invalidate(
    redis_url: str, outside: redis.Redis
) -> None:
    cache = node(redis_url)
    heard = Heard(cache)
    async with cache:
        await put_in_l1(cache, heard, "price", 100)
        heard.messages.clear()
        outside.set("price", 1)
        outside.set(f"{NS}x:k:price", 1)  # another namespace that starts the same
        outside.set(f"other:k:{NS}:k:price", 1)
        outside.set(f"{NS}:lock:price", 1)  # the cache's own records are not L1 entries
        # The server reports each write at the end of the event-loop turn that made it, in
        # order: once the report of a later write arrives, none of the earlier ones is coming.
        marker = heard.next("remove", skey("marker"))
        outside.set(skey("marker"), 1)
        await async_wait(marker, WAIT)
        assert heard.messages == [("remove", skey("marker"))]
        assert await from_l1(cache, "price") == 100


async def test_without_client_tracking_outside_writes_are_not_seen(
    redis_url: str, outside: redis.Redis
) -> None:
    # The default: only DataFerry's own writes invalidate, through backplane messages.
    cache, writer = node(redis_url, tracking=False), node(redis_url, tracking=False)
    heard = Heard(cache)
    async with cache, writer:
        await cache.set("price", 100)
        assert await from_l1(cache, "price") == 100  # no report of its own write either
        outside.delete(skey("price"))
        outside.set(skey("also"), b"raw")
        marker = heard.next("set", skey("marker"))
        await writer.set("marker", 1)  # published after the outside writes were done
        await async_wait(marker, WAIT)
        assert heard.messages == [("set", skey("marker"))]
        assert await from_l1(cache, "price") == 100  # stale: Redis no longer has it


async def test_tracking_resumes_after_the_server_restarts(redis_server: RedisServer) -> None:
    cache = node(redis_server.url, resilience=None)
    heard = Heard(cache)
    async with cache:
        await put_in_l1(cache, heard, "price", 100)
        redis_server.kill()
        redis_server.restart()
        await async_wait(heard.reconnected, WAIT)
        assert heard.states == ["disconnected", "reconnected"]  # "connected" came at __init__
        assert cache.stats().memory_entries == 0  # changes in the gap were not reported

        # The cache's own L2 client may hold a dead connection: write until it reconnects.
        own = heard.next("remove", skey("price"))

        async def written() -> bool:
            try:
                await cache.set("price", 200)
            except df.DistributedCacheError:
                return False
            return True

        await async_until(written, WAIT)
        await async_wait(own, WAIT)  # the new subscription tracks again
        assert await cache.get("price") == 200
        assert await from_l1(cache, "price") == 200
        gone = heard.next("remove", skey("price"))
        with redis_server.client() as outside:
            outside.delete(skey("price"))
        await async_wait(gone, WAIT)
        assert await cache.get("price") is None


async def test_sentinel_tracking_follows_a_failover() -> None:
    with RedisSentinel() as setup:
        cache = df.AsyncDataFerry(
            distributed=df.RedisCache.from_sentinel(setup.sentinels, setup.service_name),
            backplane=df.RedisBackplane.from_sentinel(
                setup.sentinels, setup.service_name, client_tracking=True, max_backoff=0.2
            ),
            namespace=NS,
            resilience=None,
            raise_distributed_errors=True,
        )
        heard = Heard(cache)
        async with cache:
            await put_in_l1(cache, heard, "price", 100)
            gone = heard.next("remove", skey("price"))
            with setup.master.client() as outside:
                outside.delete(skey("price"))
            await async_wait(gone, WAIT)
            assert await cache.get("price") is None

            setup.failover()
            await async_wait(heard.reconnected, WAIT)
            promoted = setup.master
            own = heard.next("remove", skey("price"))

            async def written() -> bool:
                try:
                    await cache.set("price", 200)
                except df.DistributedCacheError:  # the old master's connection, still pooled
                    return False
                return True

            await async_until(written, WAIT)
            await async_wait(own, WAIT)
            assert await cache.get("price") == 200
            assert await from_l1(cache, "price") == 200
            gone = heard.next("remove", skey("price"))
            with promoted.client() as outside:
                outside.delete(skey("price"))
            await async_wait(gone, WAIT)
            assert await cache.get("price") is None


def test_sync_facade(redis_url: str, outside: redis.Redis) -> None:
    cache = df.DataFerry(
        distributed=df.RedisCache.from_url(redis_url),
        backplane=df.RedisBackplane.from_url(redis_url, client_tracking=True),
        namespace=NS,
        raise_distributed_errors=True,
    )
    heard = Heard(cache)
    with cache:
        own = heard.next("remove", skey("price"))
        cache.set("price", 100)
        sync_wait(own, WAIT)
        assert cache.get("price") == 100
        hits = cache.stats().memory_hits
        assert cache.get("price") == 100
        assert cache.stats().memory_hits == hits + 1
        gone = heard.next("remove", skey("price"))
        outside.delete(skey("price"))
        sync_wait(gone, WAIT)
        assert cache.get("price") is None


# -- the transport alone --------------------------------------------------------------------------


class Node:
    """Backplane callbacks: decoded messages and states."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, Action, str]] = []
        self.states: list[BackplaneState] = []
        self.changed = threading.Condition()

    def on_message(self, payload: bytes) -> None:
        message = decode_message(payload)
        assert message is not None
        with self.changed:
            self.received.append((message.sender, message.action, message.key))
            self.changed.notify_all()

    def on_state(self, state: BackplaneState) -> None:
        with self.changed:
            self.states.append(state)
            self.changed.notify_all()

    def wait(self, predicate: Any) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, WAIT), (self.received, self.states)


def test_invalidations_are_remove_messages_no_node_mistakes_for_its_own(
    redis_url: str, outside: redis.Redis
) -> None:
    backplane = RedisBackplane.from_url(redis_url, client_tracking=True)
    receiver = Node()
    backplane.start(f"{{{NS}}}:dataferry:backplane", receiver.on_message, receiver.on_state)
    try:
        outside.mset({skey("a"): 1, skey("b"): 2})
        outside.flushall()
        receiver.wait(lambda: len(receiver.received) == 3)
        senders = {sender for sender, _, _ in receiver.received}
        assert len(senders) == 1
        assert len(senders.pop()) != len(SenderId().value)  # no node's id can be equal
        assert [(action, key) for _, action, key in receiver.received] == [
            (Action.REMOVE, skey("a")),
            (Action.REMOVE, skey("b")),
            (Action.CLEAR, ""),
        ]
    finally:
        backplane.close()


def test_a_driver_that_reconnects_by_itself_gets_tracking_set_up_again(
    redis_server: RedisServer,
) -> None:
    # A given client with retries (and RESP2): redis-py reconnects and resubscribes the
    # connection on its own, without tracking; the backplane notices and starts over.
    client = redis_server.client(
        socket_timeout=0.5, retry=Retry(ConstantBackoff(0.1), 50), protocol=2
    )
    backplane = RedisBackplane(client, max_backoff=0.2, client_tracking=True)
    receiver = Node()
    backplane.start(f"{{{NS}}}:bp", receiver.on_message, receiver.on_state)
    try:
        redis_server.restart()
        receiver.wait(lambda: receiver.states == ["connected", "disconnected", "reconnected"])
        with redis_server.client() as outside:
            outside.set(skey("after"), 1)
        receiver.wait(lambda: [key for _, _, key in receiver.received] == [skey("after")])
    finally:
        backplane.close()
        client.close()


def test_a_server_that_refuses_tracking_is_reported_and_logged(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # An ACL without CLIENT (or a server older than 6.0): the subscription can't be made, the
    # cache hears "disconnected" (its L1 is not kept coherent) and the reason is logged.
    redis_server.execute("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-client")
    url = f"redis://app:pw@{redis_server.host}:{redis_server.address[1]}"
    backplane = RedisBackplane.from_url(url, client_tracking=True, max_backoff=0.2)
    receiver = Node()
    with caplog.at_level(logging.ERROR, logger="dataferry"):
        backplane.start(f"{{{NS}}}:bp", receiver.on_message, receiver.on_state)
        try:
            receiver.wait(lambda: receiver.states == ["disconnected"])
        finally:
            backplane.close()
    assert "refused to subscribe" in caplog.text
    assert "no permissions" in caplog.text


def test_cluster_is_refused() -> None:
    # Tracking is per server and a namespace's keys spread over every master (see the
    # docstring): refused at construction, before anything connects.
    with pytest.raises(ConfigurationError, match="not available on a Redis Cluster"):
        RedisBackplane.from_url("redis://127.0.0.1:1", cluster=True, client_tracking=True)
    assert not RedisBackplane.from_url("redis://127.0.0.1:1", cluster=True).client_tracking


@pytest.mark.parametrize("channel", ["bp", "{}:bp", "{a:b}:bp", "x{ns}:bp"])
def test_tracking_needs_a_channel_named_after_the_namespace(channel: str) -> None:
    backplane = RedisBackplane.from_url("redis://127.0.0.1:1", client_tracking=True)
    with pytest.raises(ConfigurationError, match="named after its namespace"):
        backplane.start(channel, print, print)
    assert not backplane.running


def test_client_tracking_is_off_by_default_and_said_in_repr() -> None:
    default = RedisBackplane.from_url("redis://127.0.0.1:1")
    tracking = RedisBackplane.from_url("redis://127.0.0.1:1", client_tracking=True)
    assert not default.client_tracking
    assert tracking.client_tracking
    assert repr(tracking) == "RedisBackplane(url='redis://127.0.0.1:1', client_tracking=True)"
    with pytest.raises(ConfigurationError, match="client_tracking must be a bool"):
        RedisBackplane.from_url("redis://127.0.0.1:1", client_tracking="yes")  # type: ignore[arg-type]
