"""RedisBackplane on real servers: delivery, sharded pub/sub, Sentinel, faults, message format.

Two backplanes stand for two nodes of a fleet: what one publishes, the other's ``on_message``
receives; ``on_state`` tells when the subscription was established, lost and re-established.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.backoff import ConstantBackoff
from redis.retry import Retry

from dataferry import Backplane, ConfigurationError, DistributedCacheError, RedisBackplane
from dataferry._backends._backplane import (
    Action,
    BackplaneState,
    Message,
    SenderId,
    decode_message,
    encode_message,
)
from tests.redis_servers import RedisCluster, RedisSentinel, RedisServer, free_port

# Generous: the machine is shared by engineers running tests and benchmarks.
WAIT = 10.0


class Node:
    """The callbacks of one backplane: received payloads and the states reported, in order."""

    def __init__(self) -> None:
        self.messages: queue.Queue[bytes] = queue.Queue()
        self.states: list[BackplaneState] = []
        self._changed = threading.Condition()

    def on_message(self, payload: bytes) -> None:
        self.messages.put(payload)

    def on_state(self, state: BackplaneState) -> None:
        with self._changed:
            self.states.append(state)
            self._changed.notify_all()

    def receive(self, timeout: float = WAIT) -> bytes:
        return self.messages.get(timeout=timeout)

    def wait_states(self, *expected: BackplaneState, timeout: float = WAIT) -> None:
        """Wait until the states reported so far are exactly ``expected``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.states) >= len(expected), timeout):
                raise AssertionError(f"states {self.states}, waiting for {list(expected)}")
        assert self.states == list(expected)


@pytest.fixture
def closing() -> Iterator[list[RedisBackplane]]:
    """Backplanes to close at the end of the test, whatever happens."""
    made: list[RedisBackplane] = []
    yield made
    for backplane in made:
        backplane.close()


def started(
    backplane: RedisBackplane, closing: list[RedisBackplane], channel: str = "{app}:bp"
) -> Node:
    closing.append(backplane)
    node = Node()
    backplane.start(channel, node.on_message, node.on_state)
    return node


def payload(key: str, version: int = 1) -> bytes:
    return encode_message(b"sender-1", Action.SET, key, version)


# -- delivery ------------------------------------------------------------------------------------


async def test_two_backplanes_on_one_server_exchange_messages(
    redis_url: str, closing: list[RedisBackplane]
) -> None:
    a, b = RedisBackplane.from_url(redis_url), RedisBackplane.from_url(redis_url)
    node_a, node_b = started(a, closing), started(b, closing)
    assert node_a.states == node_b.states == ["connected"]  # start() waited for it

    first, second = payload("sync"), payload("async")
    a.publish("{app}:bp", first)
    await a.apublish("{app}:bp", second)
    # Every subscriber gets every message, the sender's own included (the format's sender
    # id is how a node skips those), in publish order.
    for node in (node_a, node_b):
        assert [node.receive(), node.receive()] == [first, second]
    await a.aclose()
    await b.aclose()
    assert not a.running
    assert not b.running


def test_channels_are_separate(redis_url: str, closing: list[RedisBackplane]) -> None:
    a, b = RedisBackplane.from_url(redis_url), RedisBackplane.from_url(redis_url)
    node_b = started(b, closing, channel="{other}:bp")
    started(a, closing)
    a.publish("{app}:bp", b"not for b")
    a.publish("{other}:bp", b"for b")
    assert node_b.receive() == b"for b"
    assert node_b.messages.empty()


async def test_cluster_uses_sharded_pubsub_on_the_channels_shard(
    redis_cluster: RedisCluster, closing: list[RedisBackplane]
) -> None:
    a = RedisBackplane.from_url(redis_cluster.url, cluster=True)
    b = RedisBackplane.from_url(redis_cluster.url, cluster=True)
    node_a, node_b = started(a, closing), started(b, closing)
    assert node_a.states == node_b.states == ["connected"]

    a.publish("{app}:bp", b"sync")
    await b.apublish("{app}:bp", b"async")
    for node in (node_a, node_b):
        assert {node.receive(), node.receive()} == {b"sync", b"async"}

    # Shard channels: subscribed on the master of the channel's slot, not broadcast.
    counts = {
        server.port: server.execute("PUBSUB", "SHARDNUMSUB", "{app}:bp")[1]
        for server in redis_cluster.masters
    }
    with redis.RedisCluster.from_url(redis_cluster.url) as probe:
        owner = probe.get_node_from_key("{app}:bp").port
    assert counts.pop(owner) == 2
    assert set(counts.values()) == {0}
    await a.aclose()
    await b.aclose()


async def test_sentinel_built_backplanes_exchange_messages(
    redis_sentinel: RedisSentinel, closing: list[RedisBackplane]
) -> None:
    a = RedisBackplane.from_sentinel(redis_sentinel.sentinels, redis_sentinel.service_name)
    b = RedisBackplane.from_sentinel(redis_sentinel.sentinels, redis_sentinel.service_name)
    node_b = started(b, closing)
    closing.append(a)
    a.publish("{app}:bp", b"sync")
    await a.apublish("{app}:bp", b"async")
    assert [node_b.receive(), node_b.receive()] == [b"sync", b"async"]
    await a.aclose()


async def test_given_clients_are_used_and_left_open(
    redis_url: str, closing: list[RedisBackplane]
) -> None:
    sync_client = redis.Redis.from_url(redis_url)
    async_client = redis.asyncio.Redis.from_url(redis_url)
    try:
        a = RedisBackplane(sync_client, async_client=async_client)
        node = started(a, closing)
        await a.apublish("{app}:bp", b"async")
        assert node.receive() == b"async"
        await a.aclose()
        assert sync_client.ping()
        assert await async_client.ping()
    finally:
        sync_client.close()
        await async_client.aclose()


async def test_sync_only_backplane_publishes_from_async_code(
    redis_url: str, closing: list[RedisBackplane]
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        a = RedisBackplane(client)
        assert isinstance(a, Backplane)
        node = started(a, closing)
        await a.apublish("{app}:bp", b"through a thread")
        assert node.receive() == b"through a thread"
        a.close()


# -- faults --------------------------------------------------------------------------------------


def test_subscriber_survives_a_kill_and_restart(
    redis_server: RedisServer, closing: list[RedisBackplane]
) -> None:
    backplane = RedisBackplane.from_url(redis_server.url, max_backoff=0.2)
    node = started(backplane, closing)
    node.wait_states("connected")

    redis_server.kill()
    node.wait_states("connected", "disconnected")
    with pytest.raises(DistributedCacheError) as info:
        backplane.publish("{app}:bp", b"lost")
    assert isinstance(info.value.__cause__, redis.ConnectionError)

    redis_server.restart()
    node.wait_states("connected", "disconnected", "reconnected")
    backplane.publish("{app}:bp", b"after")
    assert node.receive() == b"after"


def test_frozen_server_is_detected_by_the_heartbeat(
    redis_server: RedisServer, closing: list[RedisBackplane]
) -> None:
    backplane = RedisBackplane.from_url(redis_server.url, heartbeat=0.2, max_backoff=0.2)
    node = started(backplane, closing)
    redis_server.freeze()
    began = time.monotonic()
    node.wait_states("connected", "disconnected")
    assert time.monotonic() - began < 3.0  # about 2 heartbeats
    redis_server.resume()
    node.wait_states("connected", "disconnected", "reconnected")
    backplane.publish("{app}:bp", b"after")
    assert node.receive() == b"after"


def test_start_before_the_server_reports_disconnected_then_reconnected(
    closing: list[RedisBackplane],
) -> None:
    server = RedisServer(port=free_port())
    try:
        backplane = RedisBackplane.from_url(server.url, max_backoff=0.2)
        began = time.monotonic()
        node = started(backplane, closing)
        assert time.monotonic() - began < 2.0  # start() does not wait for the server
        # Nothing was subscribed while the cache may have filled its L1: "reconnected".
        node.wait_states("disconnected")
        server.start()
        node.wait_states("disconnected", "reconnected")
    finally:
        backplane.close()
        server.close()


def test_driver_that_resubscribes_by_itself_still_reports_the_gap(
    redis_server: RedisServer, closing: list[RedisBackplane]
) -> None:
    # A given client with retries reconnects and resubscribes inside redis-py; the backplane
    # sees the new subscription confirmation and reports the gap all the same.
    client = redis_server.client(socket_timeout=0.5, retry=Retry(ConstantBackoff(0.1), 50))
    try:
        backplane = RedisBackplane(client, max_backoff=0.2)
        node = started(backplane, closing)
        redis_server.restart()
        node.wait_states("connected", "disconnected", "reconnected")
        backplane.publish("{app}:bp", b"after")
        assert node.receive() == b"after"
        backplane.close()
    finally:
        client.close()


def test_cluster_shard_loss_and_return(
    redis_cluster: RedisCluster, closing: list[RedisBackplane]
) -> None:
    backplane = RedisBackplane.from_url(redis_cluster.url, cluster=True, max_backoff=0.2)
    node = started(backplane, closing)
    with redis.RedisCluster.from_url(redis_cluster.url) as probe:
        owner = probe.get_node_from_key("{app}:bp").port
    victim = next(server for server in redis_cluster.masters if server.port == owner)
    victim.kill()
    node.wait_states("connected", "disconnected")
    victim.restart()
    node.wait_states("connected", "disconnected", "reconnected")
    backplane.publish("{app}:bp", b"after")
    assert node.receive() == b"after"


def test_sentinel_failover_is_followed(closing: list[RedisBackplane]) -> None:
    with RedisSentinel() as setup:
        a = RedisBackplane.from_sentinel(setup.sentinels, setup.service_name, max_backoff=0.2)
        b = RedisBackplane.from_sentinel(setup.sentinels, setup.service_name, max_backoff=0.2)
        node_b = started(b, closing)
        closing.append(a)
        setup.failover()
        node_b.wait_states("connected", "disconnected", "reconnected")

        def delivered() -> bool:
            try:
                a.publish("{app}:bp", b"after failover")
            except DistributedCacheError:  # the publisher's pool may hold a dead connection
                return False
            return True

        deadline = time.monotonic() + WAIT
        while not delivered():
            assert time.monotonic() < deadline
        assert node_b.receive() == b"after failover"
        a.close()
        b.close()


def test_callback_errors_are_logged_and_delivery_goes_on(
    redis_url: str, closing: list[RedisBackplane], caplog: pytest.LogCaptureFixture
) -> None:
    received: queue.Queue[bytes] = queue.Queue()

    def on_message(data: bytes) -> None:
        received.put(data)
        if data == b"boom":
            raise RuntimeError("handler bug")

    def on_state(state: str) -> None:
        raise RuntimeError("state handler bug")

    backplane = RedisBackplane.from_url(redis_url)
    closing.append(backplane)
    with caplog.at_level(logging.ERROR, logger="dataferry"):
        backplane.start("{app}:bp", on_message, on_state)
        backplane.publish("{app}:bp", b"boom")
        backplane.publish("{app}:bp", b"next")
        assert [received.get(timeout=WAIT), received.get(timeout=WAIT)] == [b"boom", b"next"]
    assert "on_message callback raised" in caplog.text
    assert "on_state callback raised" in caplog.text


# -- lifecycle -----------------------------------------------------------------------------------


def test_stop_is_prompt_idempotent_and_start_works_again(
    redis_url: str, closing: list[RedisBackplane]
) -> None:
    backplane = RedisBackplane.from_url(redis_url)
    backplane.stop()  # never started: nothing to do
    node = started(backplane, closing)
    assert backplane.running
    began = time.monotonic()
    backplane.stop()
    assert time.monotonic() - began < 1.0
    assert not backplane.running
    backplane.stop()
    backplane.close()
    backplane.close()
    backplane.publish("{app}:bp", b"nobody listens")  # publishing needs no subscription
    assert node.messages.empty()
    assert node.states == ["connected"]  # stopping is not a disconnection

    again = started(backplane, closing)
    backplane.publish("{app}:bp", b"again")
    assert again.receive() == b"again"
    assert again.states == ["connected"]


def test_stop_while_reconnecting_is_prompt(closing: list[RedisBackplane]) -> None:
    backplane = RedisBackplane.from_url(f"redis://127.0.0.1:{free_port()}", max_backoff=60.0)
    node = started(backplane, closing)
    node.wait_states("disconnected")
    began = time.monotonic()
    backplane.stop()
    assert time.monotonic() - began < 1.0


def test_start_twice_is_refused(redis_url: str, closing: list[RedisBackplane]) -> None:
    backplane = RedisBackplane.from_url(redis_url)
    started(backplane, closing)
    with pytest.raises(ConfigurationError, match="already started"):
        backplane.start("{app}:bp", print, print)


async def test_publish_to_a_dead_server_raises_distributed_cache_error() -> None:
    backplane = RedisBackplane.from_url(f"redis://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(DistributedCacheError) as info:
            backplane.publish("{app}:bp", b"x")
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        with pytest.raises(DistributedCacheError) as info:
            await backplane.apublish("{app}:bp", b"x")
        assert isinstance(info.value.__cause__, redis.ConnectionError)
    finally:
        await backplane.aclose()


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: RedisBackplane("redis://localhost"), "needs a redis-py client, not str"),
        (lambda: RedisBackplane(), "needs a sync redis-py client"),
        (lambda: RedisBackplane(redis.asyncio.Redis()), "needs a sync redis-py client"),
        (lambda: RedisBackplane(redis.Redis(decode_responses=True)), "decode_responses"),
        (lambda: RedisBackplane(redis.Redis(), sync_client=redis.Redis()), "two sync"),
        (lambda: RedisBackplane(redis.Redis(), heartbeat=0), "heartbeat"),
        (lambda: RedisBackplane(redis.Redis(), max_backoff=-1.0), "max_backoff"),
        (lambda: RedisBackplane.from_url("http://localhost"), "redis://"),
        (lambda: RedisBackplane.from_url("redis://localhost/x"), "database"),
        (lambda: RedisBackplane.from_url("redis://localhost", decode_responses=True), "bytes"),
        (lambda: RedisBackplane.from_url("redis://localhost", heartbeat="1"), "heartbeat"),
        (lambda: RedisBackplane.from_sentinel([], "mymaster"), "at least one"),
        (lambda: RedisBackplane.from_sentinel([("h", "port")], "m"), "(host, port)"),
    ],
)
def test_bad_construction_raises_configuration_error(build: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        build()
    assert "RedisCache" not in str(info.value)  # errors name the backplane


@pytest.mark.parametrize(
    ("channel", "on_message", "match"),
    [("", print, "non-empty str"), (b"bp", print, "non-empty str"), ("bp", None, "callables")],
)
def test_bad_start_arguments_raise_configuration_error(
    channel: Any, on_message: Any, match: str
) -> None:
    backplane = RedisBackplane.from_url("redis://127.0.0.1:1")
    with pytest.raises(ConfigurationError, match=match):
        backplane.start(channel, on_message, print)
    assert not backplane.running


def test_repr_names_the_target_without_password() -> None:
    backplane = RedisBackplane.from_url("redis://user:secret@127.0.0.1:1/0")
    assert repr(backplane) == "RedisBackplane(url='redis://user:***@127.0.0.1:1/0')"


# -- message format ------------------------------------------------------------------------------


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("key", ["", "user:42", "ünïcode:€", "x" * 1024, "\udcff"])
def test_messages_round_trip(action: Action, key: str) -> None:
    sender = SenderId()
    data = encode_message(sender.value, action, key, 2**64 - 1, sent_at=123)
    assert decode_message(data) == Message(sender.value, action, key, 2**64 - 1, 123)
    assert len(data) == 27 + len(key.encode("utf-8", "surrogatepass"))  # small: no value


def test_messages_carry_their_sending_time() -> None:
    before = time.time_ns() // 1000
    message = decode_message(encode_message(b"s", Action.CLEAR, "", 0))
    assert message is not None
    assert before <= message.sent_at <= time.time_ns() // 1000


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        b"\x01\x01\x08abc",  # truncated sender
        encode_message(b"s", Action.SET, "k", 1, sent_at=7)[:12],  # truncated version
        b"\x02" + encode_message(b"s", Action.SET, "k", 1, sent_at=7)[1:],  # a later format
        b"\x01\x09" + encode_message(b"s", Action.SET, "k", 1, sent_at=7)[2:],  # unknown action
        b"\x01\x01\x00" + bytes(16),  # empty sender
        encode_message(b"s", Action.SET, "", 1, sent_at=7) + b"\xff\xfe",  # key not UTF-8
        "not bytes",
    ],
)
def test_malformed_payloads_decode_to_none(data: Any) -> None:
    assert decode_message(data) is None


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((b"", Action.SET, "k", 1), "sender"),
        ((b"x" * 256, Action.SET, "k", 1), "sender"),
        (("s", Action.SET, "k", 1), "sender"),
        ((b"s", 9, "k", 1), "action"),
        ((b"s", Action.SET, b"k", 1), "str"),
        ((b"s", Action.SET, "k", -1), "version"),
        ((b"s", Action.SET, "k", 2**64), "version"),
    ],
)
def test_encoding_bad_values_raises_configuration_error(args: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        encode_message(*args)


def test_sender_ids_are_distinct_and_renewable() -> None:
    first, second = SenderId(), SenderId()
    assert first.value != second.value
    assert len(first.value) == 8
    old = first.value
    first.renew()
    assert first.value != old
    assert repr(first) == f"SenderId({first.value.hex()})"


async def test_apublish_from_several_event_loops(
    redis_url: str, closing: list[RedisBackplane]
) -> None:
    backplane = RedisBackplane.from_url(redis_url)
    node = started(backplane, closing)

    def in_new_loop(data: bytes) -> None:
        asyncio.run(backplane.apublish("{app}:bp", data))

    await asyncio.to_thread(in_new_loop, b"loop 1")
    await asyncio.to_thread(in_new_loop, b"loop 2")
    await backplane.apublish("{app}:bp", b"this loop")
    assert {node.receive() for _ in range(3)} == {b"loop 1", b"loop 2", b"this loop"}
    await backplane.aclose()
