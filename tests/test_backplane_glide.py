"""GlideBackplane on real servers: delivery, sharded pub/sub, and the gaps GLIDE keeps quiet.

Two backplanes stand for two nodes of a fleet, as in test_backplane.py. GLIDE resubscribes by
itself after a reconnection, seconds later and without a word; these tests check that every
such gap is reported (``"disconnected"`` then ``"reconnected"``), the cache's cue to drop L1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import dataferry as df
from dataferry import Backplane, ConfigurationError, DistributedCacheError, GlideBackplane
from tests.chaos import async_wait, count_events
from tests.redis_servers import RedisCluster, RedisServer, free_port
from tests.test_backplane import Node

CHANNEL = "{app}:bp"


@pytest.fixture
def closing() -> Iterator[list[GlideBackplane]]:
    """Backplanes to close at the end of the test, whatever happens."""
    made: list[GlideBackplane] = []
    yield made
    for backplane in made:
        backplane.close()


def started(backplane: GlideBackplane, closing: list[GlideBackplane]) -> Node:
    closing.append(backplane)
    node = Node()
    backplane.start(CHANNEL, node.on_message, node.on_state)
    return node


def subscriber_ids(server: RedisServer, field: str = "sub", name: str | None = None) -> list[str]:
    """The ids of the server's connections subscribed to a channel (``sub`` or ``ssub``),
    of the clients named ``name`` if given."""
    listing = server.execute("CLIENT", "LIST")
    text = listing.decode() if isinstance(listing, bytes) else str(listing)
    ids = []
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get(field, "0") != "0" and name in (None, fields.get("name")):
            ids.append(fields["id"])
    return ids


# -- delivery ------------------------------------------------------------------------------------


async def test_two_backplanes_exchange_messages_one_by_one_and_in_batches(
    redis_url: str, closing: list[GlideBackplane]
) -> None:
    a, b = GlideBackplane.from_url(redis_url), GlideBackplane(redis_url)
    assert isinstance(a, Backplane)
    node_a, node_b = started(a, closing), started(b, closing)
    assert node_a.states == node_b.states == ["connected"]  # start() waited for it

    a.publish(CHANNEL, b"sync")
    await a.apublish(CHANNEL, b"async")
    a.publish_many(CHANNEL, [b"batch 1", b"batch 2"])
    await a.apublish_many(CHANNEL, [b"batch 3", b"batch 4"])
    expected = [b"sync", b"async", b"batch 1", b"batch 2", b"batch 3", b"batch 4"]
    for node in (node_a, node_b):  # every subscriber, the sender too, in publish order
        assert [node.receive() for _ in expected] == expected
    await a.aclose()
    await b.aclose()
    assert not a.running
    assert not b.running


async def test_cluster_uses_sharded_pubsub_on_the_channels_shard(
    redis_cluster: RedisCluster, closing: list[GlideBackplane]
) -> None:
    a = GlideBackplane.from_url(redis_cluster.url, cluster=True)
    b = GlideBackplane.from_url(redis_cluster.url, cluster=True)
    node_a, node_b = started(a, closing), started(b, closing)
    assert node_a.states == node_b.states == ["connected"]

    a.publish(CHANNEL, b"sync")
    await b.apublish(CHANNEL, b"async")
    await b.apublish_many(CHANNEL, [b"batch"])
    for node in (node_a, node_b):
        assert {node.receive(), node.receive(), node.receive()} == {b"sync", b"async", b"batch"}
    counts = {
        server.port: server.execute("PUBSUB", "SHARDNUMSUB", CHANNEL)[1]
        for server in redis_cluster.masters
    }
    assert sorted(counts.values()) == [0, 0, 2]  # both on the channel's shard, nowhere else
    await a.aclose()
    await b.aclose()


# -- the gaps ------------------------------------------------------------------------------------


def test_a_dropped_connection_is_reported_though_glide_reconnects_by_itself(
    redis_server: RedisServer, closing: list[GlideBackplane]
) -> None:
    backplane = GlideBackplane.from_url(redis_server.url, heartbeat=0.4, max_backoff=0.2)
    node = started(backplane, closing)
    (subscriber,) = subscriber_ids(redis_server)
    # GLIDE reconnects at once and resubscribes seconds later, silently: what is published
    # in between is lost. The backplane must say so.
    redis_server.execute("CLIENT", "KILL", "ID", subscriber)
    node.wait_states("connected", "disconnected", "reconnected")
    backplane.publish(CHANNEL, b"after")
    assert node.receive() == b"after"
    assert subscriber not in subscriber_ids(redis_server)


def test_subscriber_survives_a_kill_and_restart(
    redis_server: RedisServer, closing: list[GlideBackplane]
) -> None:
    backplane = GlideBackplane.from_url(redis_server.url, max_backoff=0.2)
    node = started(backplane, closing)
    redis_server.kill()
    node.wait_states("connected", "disconnected")
    with pytest.raises(DistributedCacheError, match="GLIDE PUBLISH failed"):
        backplane.publish(CHANNEL, b"lost")
    redis_server.restart()
    node.wait_states("connected", "disconnected", "reconnected")
    backplane.publish(CHANNEL, b"after")
    assert node.receive() == b"after"


def test_a_frozen_server_is_detected(
    redis_server: RedisServer, closing: list[GlideBackplane]
) -> None:
    backplane = GlideBackplane.from_url(redis_server.url, heartbeat=0.4, max_backoff=0.2)
    node = started(backplane, closing)
    redis_server.freeze()
    began = time.monotonic()
    node.wait_states("connected", "disconnected")
    assert time.monotonic() - began < 3.0  # a check (0.1 s) plus the request timeout
    redis_server.resume()
    node.wait_states("connected", "disconnected", "reconnected")
    backplane.publish(CHANNEL, b"after")
    assert node.receive() == b"after"


def test_start_before_the_server_reports_disconnected_then_reconnected(
    closing: list[GlideBackplane],
) -> None:
    server = RedisServer(port=free_port())
    try:
        backplane = GlideBackplane.from_url(server.url, max_backoff=0.2)
        began = time.monotonic()
        node = started(backplane, closing)
        assert time.monotonic() - began < 2.5  # start() does not wait for the server
        node.wait_states("disconnected")
        server.start()
        node.wait_states("disconnected", "reconnected")
    finally:
        backplane.close()
        server.close()


def test_cluster_shard_loss_and_return(
    redis_cluster: RedisCluster, closing: list[GlideBackplane]
) -> None:
    backplane = GlideBackplane.from_url(redis_cluster.url, cluster=True, max_backoff=0.2)
    node = started(backplane, closing)
    (owner,) = [s for s in redis_cluster.masters if subscriber_ids(s, "ssub")]
    owner.kill()
    node.wait_states("connected", "disconnected")
    owner.restart()
    node.wait_states("connected", "disconnected", "reconnected")
    backplane.publish(CHANNEL, b"after")
    assert node.receive() == b"after"


def test_a_dropped_cluster_connection_is_reported(
    redis_cluster: RedisCluster, closing: list[GlideBackplane]
) -> None:
    backplane = GlideBackplane.from_url(redis_cluster.url, cluster=True, max_backoff=0.2)
    node = started(backplane, closing)
    (owner,) = [s for s in redis_cluster.masters if subscriber_ids(s, "ssub")]
    (subscriber,) = subscriber_ids(owner, "ssub")
    owner.execute("CLIENT", "KILL", "ID", subscriber)
    node.wait_states("connected", "disconnected", "reconnected")
    backplane.publish(CHANNEL, b"after")
    assert node.receive() == b"after"


# -- through the cache ---------------------------------------------------------------------------


async def test_caches_on_glide_only_keep_their_l1_coherent(redis_server: RedisServer) -> None:
    def node(name: str) -> df.AsyncDataFerry:
        return df.AsyncDataFerry(
            distributed=df.GlideCache.from_url(redis_server.url),
            backplane=GlideBackplane.from_url(redis_server.url, max_backoff=0.2, client_name=name),
            namespace="glide-bp",
        )

    a, b = node("a"), node("b")
    heard = count_events(b, "backplane_messages")
    back = threading.Event()

    def listener(event: str, attributes: dict[str, Any]) -> None:
        if event == "backplane_state" and attributes["state"] == "reconnected":
            back.set()

    b.subscribe(listener)
    async with a, b:
        await a.set("price", 100)
        await async_wait(heard(1))
        assert await b.get("price") == 100  # now in b's L1
        await a.set("price", 120)
        await async_wait(heard(2))
        assert await b.get("price") == 120
        # A silent GLIDE reconnection on b's subscriber: b empties its L1 when it hears of it.
        (subscriber,) = subscriber_ids(redis_server, name="b")
        redis_server.execute("CLIENT", "KILL", "ID", subscriber)
        await async_wait(back)
        assert b.stats().memory_entries == 0


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: GlideBackplane("http://localhost"), "redis://"),
        (lambda: GlideBackplane("redis://localhost/x"), "database"),
        (lambda: GlideBackplane("redis://localhost", heartbeat=0), "heartbeat"),
        (lambda: GlideBackplane("redis://localhost", max_backoff="1"), "max_backoff"),
        (lambda: GlideBackplane("redis://localhost", request_timeout=-1), "request_timeout"),
        (lambda: GlideBackplane("redis://localhost", pubsub_subscriptions=None), "pubsub"),
        (lambda: GlideBackplane("redis://localhost", no_such_option=1), "bad options"),
    ],
)
def test_bad_construction_raises_configuration_error(build: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        build()
    assert "GlideCache" not in str(info.value)  # errors name the backplane


def test_bad_start_arguments_and_a_second_start_are_refused(
    redis_url: str, closing: list[GlideBackplane]
) -> None:
    backplane = GlideBackplane.from_url(redis_url)
    for channel, callback in [("", print), (b"bp", print), ("bp", None)]:
        with pytest.raises(ConfigurationError):
            backplane.start(channel, callback, print)  # type: ignore[arg-type]
    assert not backplane.running
    started(backplane, closing)
    with pytest.raises(ConfigurationError, match="already started"):
        backplane.start(CHANNEL, print, print)


def test_stop_is_prompt_idempotent_and_start_works_again(
    redis_url: str, closing: list[GlideBackplane]
) -> None:
    backplane = GlideBackplane.from_url(redis_url)
    backplane.stop()  # never started: nothing to do
    node = started(backplane, closing)
    began = time.monotonic()
    backplane.stop()
    assert time.monotonic() - began < 1.0
    backplane.stop()
    backplane.close()
    assert node.states == ["connected"]  # stopping is not a disconnection
    again = started(backplane, closing)
    backplane.publish(CHANNEL, b"again")
    assert again.receive() == b"again"


def test_repr_names_the_target_without_the_password() -> None:
    backplane = GlideBackplane.from_url("redis://user:secret@127.0.0.1:1/0")
    assert repr(backplane) == "GlideBackplane(url='redis://user:***@127.0.0.1:1/0')"
