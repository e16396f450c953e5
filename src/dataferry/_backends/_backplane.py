"""The backplane: how a node tells the others to drop a key from their L1.

Two parts live here:

* the transport: the :class:`Backplane` protocol, and :class:`RedisBackplane`, which carries
  payloads over Redis pub/sub (``PUBLISH``/``SUBSCRIBE``; sharded ``SPUBLISH``/``SSUBSCRIBE`` on a
  Redis Cluster). A daemon thread of the backplane's own holds the subscription with a sync
  redis-py client, so one subscriber serves the sync facade and async facades in any number of
  event loops alike (L1 is thread-safe). With ``client_tracking=True`` the same connection also
  receives Redis' client-tracking invalidations for the namespace's keys (``_tracking.py``),
  so writes made outside DataFerry reach L1 too.
* the message format: :func:`encode_message` / :func:`decode_message`, small and versioned, that
  say *which key* changed and how (never its value), and :class:`SenderId`, so a node can ignore
  its own messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import random
import struct
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    NamedTuple,
    Protocol,
    TypeVar,
    cast,
    runtime_checkable,
)

import redis
import redis.asyncio

from dataferry._async._redis_ops import failed
from dataferry._backends import _tracking
from dataferry._backends._loops import async_loop_key
from dataferry._backends._redis import RedisCache
from dataferry._errors import ConfigurationError

if TYPE_CHECKING:
    from redis.client import PubSub

    from dataferry._backends._redis import AsyncRedisClient, RedisClient

__all__ = [
    "Action",
    "Backplane",
    "BackplaneState",
    "Message",
    "RedisBackplane",
    "SenderId",
    "decode_message",
    "encode_message",
]

logger = logging.getLogger("dataferry")

#: What :meth:`Backplane.start`'s ``on_state`` callback is told.
#:
#: ``"connected"``: the first subscription is in place (nothing was missed since ``start``).
#: ``"disconnected"``: the subscription is lost (or the first attempt failed): messages sent from
#: now on may never arrive. ``"reconnected"``: subscribed again after a ``"disconnected"``;
#: messages sent during the gap were lost, so an L1 filled before it can't be trusted.
BackplaneState = Literal["connected", "disconnected", "reconnected"]


@runtime_checkable
class Backplane(Protocol):
    """A transport that carries small invalidation payloads between the nodes of a fleet.

    One subscription per backplane object: :meth:`start` subscribes to ``channel`` and calls
    ``on_message(payload)`` for every payload any node publishes to that channel (its own
    included: the message format carries a sender id to skip those), and ``on_state(state)``
    when the subscription is established, lost or re-established (see :data:`BackplaneState`).
    Both callbacks run on a thread the backplane owns, one call at a time; they must be quick
    and thread-safe, and an exception they raise is logged, never propagated.

    Publishing (:meth:`apublish` / :meth:`publish`) raises
    :class:`~dataferry.DistributedCacheError` when the transport fails (the caller decides to
    retry later); delivery is at most once, and nothing is delivered to a node while it is
    disconnected: that is what ``"reconnected"`` warns about.
    """

    def start(
        self,
        channel: str,
        on_message: Callable[[bytes], None],
        on_state: Callable[[BackplaneState], None],
    ) -> None:
        """Subscribe to ``channel``; deliver its payloads to ``on_message`` until :meth:`stop`."""
        ...

    def stop(self) -> None:
        """Stop delivering messages, within a bounded time. Idempotent."""
        ...

    async def apublish(self, channel: str, payload: bytes, /) -> None:
        """Send ``payload`` to every node subscribed to ``channel``."""
        ...

    def publish(self, channel: str, payload: bytes, /) -> None:
        """Sync :meth:`apublish`."""
        ...

    async def aclose(self) -> None:
        """Stop, and release the connections (the asyncio ones in the running loop). Idempotent."""
        ...

    def close(self) -> None:
        """Stop, and release the sync connections. Idempotent."""
        ...


# == Message format ================================================================================


class Action(enum.IntEnum):
    """What happened to the key a backplane message names."""

    SET = 1
    """A new value was written: drop the old one."""
    REMOVE = 2
    """The key was removed."""
    EXPIRE = 3
    """The entry was marked stale (kept for fail-safe)."""
    TAG = 4
    """Every entry carrying the tag named by ``key`` is stale (``remove_by_tag``)."""
    CLEAR = 5
    """Every entry of the scope named by ``key`` is stale (``clear()``)."""


class Message(NamedTuple):
    """A decoded backplane message."""

    sender: bytes
    """The :class:`SenderId` value of the node that sent it."""
    action: Action
    """What happened."""
    key: str
    """The key (or tag, or cleared scope) it concerns."""
    version: int
    """The invalidation's version (unsigned 64-bit), chosen by the sender."""
    sent_at: int
    """When it was encoded, in microseconds since the Unix epoch (for latency figures)."""


# Format 1: format (1 byte) | action (1) | sender length n (1) | sender (n) | version (8) |
# sent_at (8) | key (UTF-8, the rest). Big-endian. The leading format byte lets a later format
# coexist with nodes of this one during a rolling upgrade: they decode it to None.
_FORMAT = 1
_HEAD = struct.Struct(">BBB")
_TAIL = struct.Struct(">QQ")
_U64 = 1 << 64
_ACTIONS = {int(action): action for action in Action}


def encode_message(
    sender: bytes, action: Action | int, key: str, version: int, *, sent_at: int | None = None
) -> bytes:
    """Encode one invalidation: who sent it, what happened to which key, at which version.

    Args:
        sender: The sending node's id (:attr:`SenderId.value`), 1 to 255 bytes.
        action: An :class:`Action`.
        key: The key, tag or scope concerned (any ``str``; empty for a whole namespace).
        version: The invalidation's version, 0 to 2**64 - 1.
        sent_at: Microseconds since the Unix epoch; default: now.

    Raises:
        ConfigurationError: An argument out of range.

    """
    if not isinstance(sender, bytes) or not 1 <= len(sender) <= 255:
        raise ConfigurationError("a backplane sender id is 1 to 255 bytes")
    if action not in _ACTIONS:
        raise ConfigurationError(f"unknown backplane action {action!r}")
    if not isinstance(key, str):
        raise ConfigurationError(f"a backplane message key is a str, not {type(key).__name__}")
    if not isinstance(version, int) or not 0 <= version < _U64:
        raise ConfigurationError(f"a backplane version is an int in [0, 2**64), got {version!r}")
    stamp = time.time_ns() // 1000 if sent_at is None else sent_at
    if not 0 <= stamp < _U64:
        raise ConfigurationError(f"sent_at out of range: {stamp!r}")
    return b"".join(
        (
            _HEAD.pack(_FORMAT, action, len(sender)),
            sender,
            _TAIL.pack(version, stamp),
            key.encode("utf-8", "surrogatepass"),
        )
    )


def decode_message(payload: bytes) -> Message | None:
    """Decode a payload of :func:`encode_message`; ``None`` if it is not one (count, log, skip).

    Never raises: a truncated payload, another format, an unknown action or a key that is not
    UTF-8 all give ``None``.
    """
    try:
        fmt, action, size = _HEAD.unpack_from(payload)
        start = _HEAD.size + size
        if fmt != _FORMAT or action not in _ACTIONS or size == 0:
            return None
        version, sent_at = _TAIL.unpack_from(payload, start)
        key = bytes(payload[start + _TAIL.size :]).decode("utf-8", "surrogatepass")
        return Message(bytes(payload[_HEAD.size : start]), _ACTIONS[action], key, version, sent_at)
    except (struct.error, UnicodeDecodeError, TypeError):
        return None


class SenderId:
    """A random id naming one cache instance on the backplane, renewed in a forked child.

    Make one per cache (not per process: two caches in one process must hear each other). A
    child process forked from the one that made it gets a fresh value at once, so parent and
    children (a pre-forking web server's workers) don't mistake each other's messages for their
    own.
    """

    __slots__ = ("__weakref__", "value")

    def __init__(self) -> None:
        self.value: bytes = os.urandom(8)
        """The id's 8 random bytes (the ``sender`` of :func:`encode_message`)."""
        _SENDERS.add(self)

    def renew(self) -> None:
        """Draw a new random value."""
        self.value = os.urandom(8)

    def __repr__(self) -> str:
        return f"SenderId({self.value.hex()})"


_SENDERS: weakref.WeakSet[SenderId] = weakref.WeakSet()


def _renew_senders() -> None:  # pragma: no cover - runs in forked children only
    for sender in list(_SENDERS):
        sender.renew()


os.register_at_fork(after_in_child=_renew_senders)


# == Redis transport ===============================================================================

# How often the subscriber thread wakes up to look at its stop flag when nothing arrives:
# the bound on how long stop() waits for it, besides a connection attempt in progress.
_POLL = 0.1
# The longest start() waits for the first subscription attempt before returning anyway.
_START_WAIT = 2.0
_MIN_BACKOFF = 0.05


class _ConnectionLost(Exception):
    """The subscription is gone (server silent, or it unsubscribed us)."""


class _Subscription(NamedTuple):
    """A dedicated connection, subscribed (confirmations still to be read)."""

    pubsub: PubSub
    kind: str
    """The confirmation type: ``"subscribe"`` or ``"ssubscribe"``."""
    channels: int
    """How many confirmations to wait for."""
    watch: _tracking.ConnectWatch | None
    """With client tracking: tells whether redis-py replaced the connection since."""


class RedisBackplane:
    """The :class:`Backplane` on Redis or Valkey pub/sub: standalone, Sentinel-managed or Cluster.

    Payloads go with ``PUBLISH`` / ``SUBSCRIBE``, or on a Redis Cluster with sharded pub/sub
    (``SPUBLISH`` / ``SSUBSCRIBE``, Redis 7.0+): a shard channel lives on the master (and
    replicas) of the slot its name hashes to, so the traffic of one channel stays on one shard
    instead of being broadcast over the whole cluster bus. Name channels with a hash tag
    (``"{myapp}:bp"``) to choose that slot the same way as the keys of the namespace.

    The subscription is held by a daemon thread the backplane owns, with a sync client:
    callbacks run on that thread. It detects a lost connection at once when the server closes
    it (killed, restarted, failed over: Sentinel kills its pub/sub clients on a failover), and
    within about ``2 * heartbeat`` seconds when the server stops answering (frozen host, network
    partition): after ``heartbeat`` seconds of silence it sends a ``PING`` and gives the
    connection up when no reply comes within ``heartbeat`` more. It then reconnects, forever
    until :meth:`stop`, with a jittered exponential backoff from 50 ms up to ``max_backoff``,
    asking the Sentinels (or the cluster) for the current master each time.

    Clients are given or built as for :class:`~dataferry.RedisCache` (it builds them)::

        RedisBackplane(redis.Redis(...))                          # sync client
        RedisBackplane(redis.Redis(...), async_client=redis.asyncio.Redis(...))
        RedisBackplane.from_url("redis://host:6379/0")            # both, built on first use
        RedisBackplane.from_url("redis://node:7000", cluster=True)
        RedisBackplane.from_sentinel([("host", 26379)], service_name="mymaster")

    The subscriber needs a sync client, so one must be given (or built by ``from_url`` /
    ``from_sentinel``). :meth:`apublish` uses the asyncio client (one per event loop when
    built by a factory); without one, it runs :meth:`publish` in a worker thread. A client
    given with ``socket_timeout=None`` can hold the subscriber on a frozen server (and
    :meth:`stop` then gives up waiting for it after a few seconds); the factories set 0.25 s.
    A given client's own retry policy applies: if it silently reconnects and resubscribes, the
    backplane notices the new subscription and reports ``"disconnected"`` then
    ``"reconnected"`` all the same.

    **Writes from outside DataFerry** (``client_tracking=True``; standalone or Sentinel, Redis
    6.0+ or Valkey). Backplane messages only tell of writes made by DataFerry nodes. With
    ``client_tracking``, the subscriber's connection also asks the server to report every
    change to a key of the namespace, whoever makes it, through Redis' server-assisted client
    tracking in broadcasting mode (``CLIENT TRACKING on REDIRECT <own id> BCAST PREFIX ...``
    for the namespace's entries and its tag and clear records, on a connection switched to
    RESP2, subscribed to ``__redis__:invalidate`` beside the backplane channel). Each report
    reaches ``on_message`` as a backplane message whose sender id (21 bytes; a node's are 8)
    no node takes for its own:

    * a ``SET``, ``DEL``, ``EXPIRE``... of an entry by another program, or its expiry or
      eviction in L2: a removal of that key;
    * a change to a tag or clear record (``remove_by_tag`` or ``clear`` by a service without a
      backplane): a tag removal or a clear of that record, dated when the report arrives (the
      server does not say when the change was made; entries written in between are judged
      stale as well: a few extra misses, never a stale hit);
    * ``FLUSHDB`` / ``FLUSHALL``: a clear of everything (L1 emptied).

    The distributed locks' keys are not tracked. Tracking is set up again on every new
    subscription, so it follows restarts and failovers as the pub/sub part does; changes made
    while the subscription is down are not reported, which ``"reconnected"`` covers as for
    backplane messages. The channel must be named after the namespace, ``"{namespace}:..."``,
    as the cache names it. What it costs:

    * A node's own writes come back to it too: the server reports which key changed, not who
      changed it, so a node drops the fresh copy it just put in its L1, and its next read of
      that key goes to L2 once (its own ``remove_by_tag`` / ``clear`` comes back as well, and
      refuses the L1 fills of the reads in flight then). Skipping the reports of a node's own
      writes can't be made race-free: the server merges the changes to one key within one
      event-loop turn into one report, which may then stand for another program's write right
      after the node's. (Other nodes hear of each DataFerry write twice, by message and by
      report; both only drop.)
    * Every node gets a message for every change in the namespace, whatever its L1 holds (the
      broadcasting mode keeps no per-key table on the server). Past the server's pub/sub
      output-buffer limit (``client-output-buffer-limit pubsub``) a lagging subscriber is
      disconnected, which is reported and recovered as any other loss.

    A Redis Cluster is refused (:class:`~dataferry.ConfigurationError`): tracking is per
    server, a node reports only the keys of its own slots, and a namespace's keys spread over
    every slot. It would take one tracking connection per master, kept in step with failovers,
    added masters and slot migrations, where one missed master means an L1 that never hears of
    a share of its keys, silently. The sharded pub/sub part works on a cluster as before.

    Args:
        client: A redis-py client: sync (``Redis``, ``RedisCluster``, a Sentinel's
            ``master_for``) or asyncio.
        sync_client: The sync client (when both are given by keyword).
        async_client: The asyncio client, for :meth:`apublish`.
        heartbeat: Seconds of silence before the subscriber checks the connection with a
            ``PING`` (and waits as long for its reply). Default 1.0.
        max_backoff: The longest wait between two reconnection attempts, in seconds. Default 2.0.
        client_tracking: Also drop from L1 the keys that programs other than DataFerry change
            (see above). Default False: only DataFerry's own writes invalidate.

    Raises:
        ConfigurationError: No sync client, something that is not a redis-py client, a
            client that decodes replies, a bad ``heartbeat`` / ``max_backoff``, or
            ``client_tracking`` with a cluster client.

    """

    def __init__(
        self,
        client: AsyncRedisClient | RedisClient | None = None,
        /,
        *,
        sync_client: RedisClient | None = None,
        async_client: AsyncRedisClient | None = None,
        heartbeat: float = 1.0,
        max_backoff: float = 2.0,
        client_tracking: bool = False,
    ) -> None:
        if client is not None:
            if isinstance(client, (redis.Redis, redis.RedisCluster)):
                if sync_client is not None:
                    raise ConfigurationError("two sync clients given to RedisBackplane")
                sync_client = client
            elif isinstance(client, (redis.asyncio.Redis, redis.asyncio.RedisCluster)):
                if async_client is not None:
                    raise ConfigurationError("two asyncio clients given to RedisBackplane")
                async_client = client
            else:
                raise ConfigurationError(
                    f"RedisBackplane needs a redis-py client, not {type(client).__name__}"
                )
        if sync_client is None:
            raise ConfigurationError(
                "RedisBackplane needs a sync redis-py client (redis.Redis, redis.RedisCluster or "
                "a Sentinel's master_for): its subscriber is a thread; pass "
                "RedisBackplane(sync_client, async_client=...), or use RedisBackplane.from_url()"
            )
        redis_ = _wrap(lambda: RedisCache(sync_client=sync_client, async_client=async_client))
        self._setup(
            redis_,
            heartbeat=heartbeat,
            max_backoff=max_backoff,
            client_tracking=client_tracking,
            description="client",
        )

    def _setup(
        self,
        redis_: RedisCache,
        *,
        heartbeat: float,
        max_backoff: float,
        client_tracking: bool,
        description: str,
    ) -> None:
        _check_seconds("heartbeat", heartbeat)
        _check_seconds("max_backoff", max_backoff)
        if not isinstance(client_tracking, bool):
            raise ConfigurationError(f"client_tracking must be a bool, got {client_tracking!r}")
        if client_tracking and redis_._sync_cluster:
            raise ConfigurationError(
                "client_tracking is not available on a Redis Cluster: tracking is per server, "
                "and the namespace's keys spread over every master (see the RedisBackplane "
                "docstring); the backplane's sharded pub/sub works without it"
            )
        self._tracking = client_tracking
        # The RedisCache only manages clients here: building them, one asyncio client per event
        # loop, closing them. Its commands are not used.
        self._redis = redis_
        self._heartbeat = float(heartbeat)
        self._max_backoff = max(float(max_backoff), _MIN_BACKOFF)
        self._description = description
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # Cluster clients publish and subscribe with the sharded commands.
        self._cluster = redis_._sync_cluster
        self._async_cluster = redis_._async_cluster
        self._has_async = redis_._async_given is not None or redis_._async_factory is not None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cluster: bool = False,
        heartbeat: float = 1.0,
        max_backoff: float = 2.0,
        client_tracking: bool = False,
        socket_timeout: float | None = 0.25,
        socket_connect_timeout: float | None = 0.25,
        **client_kwargs: Any,
    ) -> RedisBackplane:
        """Build a RedisBackplane for a ``redis://``, ``rediss://`` or ``unix://`` URL.

        Nothing connects until :meth:`start` or the first publish; the URL and options are
        checked here, as :meth:`RedisCache.from_url <dataferry.RedisCache.from_url>` does.

        Args:
            url: The server (for a cluster: any node; the others are discovered).
            cluster: Use Redis Cluster clients and sharded pub/sub.
            heartbeat: See the class docstring.
            max_backoff: See the class docstring.
            client_tracking: See the class docstring (not with ``cluster=True``).
            socket_timeout: Seconds to wait for a reply (default 0.25).
            socket_connect_timeout: Seconds to wait for a connection (default 0.25).
            **client_kwargs: Passed to redis-py's ``from_url`` (``decode_responses`` must stay
                false).

        Raises:
            ConfigurationError: A malformed URL, options redis-py refuses, or
                ``client_tracking`` with ``cluster=True``.

        """
        redis_ = _wrap(
            lambda: RedisCache.from_url(
                url,
                cluster=cluster,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_connect_timeout,
                **client_kwargs,
            )
        )
        self = cls.__new__(cls)
        self._setup(
            redis_,
            heartbeat=heartbeat,
            max_backoff=max_backoff,
            client_tracking=client_tracking,
            description=repr(redis_),
        )
        return self

    @classmethod
    def from_sentinel(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service_name: str,
        *,
        heartbeat: float = 1.0,
        max_backoff: float = 2.0,
        client_tracking: bool = False,
        socket_timeout: float | None = 0.25,
        socket_connect_timeout: float | None = 0.25,
        sentinel_kwargs: Mapping[str, Any] | None = None,
        **client_kwargs: Any,
    ) -> RedisBackplane:
        """Build a RedisBackplane on the master that Sentinels name for ``service_name``.

        Every (re)connection asks the Sentinels for the current master, so after a failover the
        subscriber and the publishers follow the promoted replica by themselves.

        Args:
            sentinels: ``(host, port)`` of the Sentinels.
            service_name: The monitored master's name.
            heartbeat: See the class docstring.
            max_backoff: See the class docstring.
            client_tracking: See the class docstring.
            socket_timeout: Seconds to wait for a reply (default 0.25).
            socket_connect_timeout: Seconds to wait for a connection (default 0.25).
            sentinel_kwargs: Extra options for the connections to the Sentinels.
            **client_kwargs: Extra options for the connections to the master.

        Raises:
            ConfigurationError: No Sentinel address, or options redis-py refuses.

        """
        redis_ = _wrap(
            lambda: RedisCache.from_sentinel(
                sentinels,
                service_name,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_connect_timeout,
                sentinel_kwargs=sentinel_kwargs,
                **client_kwargs,
            )
        )
        self = cls.__new__(cls)
        self._setup(
            redis_,
            heartbeat=heartbeat,
            max_backoff=max_backoff,
            client_tracking=client_tracking,
            description=repr(redis_),
        )
        return self

    # -- publishing ---------------------------------------------------------------------------

    async def apublish(self, channel: str, payload: bytes, /) -> None:
        """Send ``payload`` to the nodes subscribed to ``channel`` (``PUBLISH`` / ``SPUBLISH``).

        Raises:
            DistributedCacheError: Redis failed (the driver's exception chained).

        """
        if not self._has_async:
            # A sync client only: don't block the event loop on its socket.
            await asyncio.to_thread(self.publish, channel, payload)
            return
        redis_ = self._redis
        client = redis_._async_clients.get(async_loop_key())
        if client is None:
            client = redis_._async_connect()
        try:
            if self._async_cluster:
                await client.spublish(channel, payload)
            else:
                await client.publish(channel, payload)
        except Exception as exc:
            raise failed("SPUBLISH" if self._async_cluster else "PUBLISH", exc) from exc

    def publish(self, channel: str, payload: bytes, /) -> None:
        """Sync :meth:`apublish`.

        Raises:
            DistributedCacheError: Redis failed (the driver's exception chained).

        """
        client = self._sync_client()
        try:
            if self._cluster:
                client.spublish(channel, payload)
            else:
                client.publish(channel, payload)
        except Exception as exc:
            raise failed("SPUBLISH" if self._cluster else "PUBLISH", exc) from exc

    async def apublish_many(self, channel: str, payloads: Sequence[bytes], /) -> None:
        """Send every payload to ``channel``, in order, in one round trip (a pipeline).

        Raises:
            DistributedCacheError: Redis failed (some payloads may have been sent).

        """
        if not self._has_async:
            await asyncio.to_thread(self.publish_many, channel, payloads)
            return
        redis_ = self._redis
        client = redis_._async_clients.get(async_loop_key())
        if client is None:
            client = redis_._async_connect()
        command = "SPUBLISH" if self._async_cluster else "PUBLISH"
        try:
            pipe = client.pipeline(transaction=False)
            for payload in payloads:
                pipe.execute_command(command, channel, payload)
            await pipe.execute()
        except Exception as exc:
            raise failed(command, exc) from exc

    def publish_many(self, channel: str, payloads: Sequence[bytes], /) -> None:
        """Sync :meth:`apublish_many`.

        Raises:
            DistributedCacheError: Redis failed (some payloads may have been sent).

        """
        client = self._sync_client()
        command = "SPUBLISH" if self._cluster else "PUBLISH"
        try:
            pipe = client.pipeline(transaction=False)
            for payload in payloads:
                pipe.execute_command(command, channel, payload)
            pipe.execute()
        except Exception as exc:
            raise failed(command, exc) from exc

    def _sync_client(self) -> RedisClient:
        # As RedisCache's own commands do: the client given, or the one built on first use.
        client = self._redis._sync_clients.get(None)
        return client if client is not None else self._redis._sync_connect()

    # -- subscribing --------------------------------------------------------------------------

    def start(
        self,
        channel: str,
        on_message: Callable[[bytes], None],
        on_state: Callable[[BackplaneState], None],
    ) -> None:
        """Subscribe to ``channel`` on a daemon thread; deliver each payload to ``on_message``.

        Waits for the first subscription attempt (at most a couple of seconds) before
        returning, so that a backplane reported ``"connected"`` receives every message
        published after ``start`` returns. A first attempt that fails is reported as
        ``"disconnected"`` (then ``"reconnected"`` once it succeeds): it never raises for an
        unreachable server. Call :meth:`stop` before starting again.

        With ``client_tracking``, ``channel`` names the namespace whose keys are tracked with its
        leading hash tag: ``"{shop}:dataferry:backplane"`` tracks ``shop:k:*``, ``shop:t:*``
        (entries), ``shop:tag:*`` and ``shop:clear*`` (records).

        Raises:
            ConfigurationError: ``channel`` is not a non-empty str (or, with
                ``client_tracking``, does not start with ``"{namespace}"``), a callback is not
                callable, or the backplane is already started.

        """
        check_start(channel, on_message, on_state)
        tracked = _tracking.tracked(channel) if self._tracking else None
        launch(
            self,
            channel,
            lambda stopping, first_attempt: _Subscriber(
                self, channel, tracked, on_message, on_state, stopping, first_attempt
            ),
        )

    def stop(self) -> None:
        """Stop the subscriber thread and close its connection. Idempotent.

        Returns within about 0.1 s plus the socket timeout (a connection attempt in progress);
        a thread still blocked after a few seconds (a given client without socket timeouts, on a
        frozen server) is left to finish on its own: it is a daemon and delivers nothing more.
        """
        halt(self)

    @property
    def running(self) -> bool:
        """Whether the subscriber thread is started (connected or trying to reconnect)."""
        return self._thread is not None

    @property
    def client_tracking(self) -> bool:
        """Whether changes made outside DataFerry are reported too (see the class docstring)."""
        return self._tracking

    async def aclose(self) -> None:
        """Stop the subscriber, close the clients this backplane built. Idempotent.

        The asyncio clients of the running loop are closed here (those of other loops in their
        own loop), and the sync ones too. A client passed in is left to its owner.
        """
        if self._thread is not None:
            await asyncio.to_thread(self.stop)
        await self._redis.aclose()
        self._redis.close()

    def close(self) -> None:
        """Stop the subscriber and close the sync clients this backplane built. Idempotent."""
        self.stop()
        self._redis.close()

    def __repr__(self) -> str:
        target = self._description.removeprefix("RedisCache(").rstrip(")")
        tracking = ", client_tracking=True" if self._tracking else ""
        return f"RedisBackplane({target}{tracking})"

    # -- used by the subscriber thread ----------------------------------------------------------

    def _subscribe(
        self, channel: str, refresh: bool, tracked: _tracking.Tracked | None
    ) -> _Subscription:
        """Open a dedicated connection subscribed to ``channel`` (and tracking ``tracked``)."""
        client = self._sync_client()
        if self._cluster:
            cluster = cast("redis.RedisCluster", client)
            if refresh:
                # After a failure the slot may have moved (failover): ask the cluster again.
                cluster.nodes_manager.initialize()
            node = cluster.get_node_from_key(channel)  # type: ignore[no-untyped-call]
            if node is None:  # pragma: no cover - redis-py raises first
                raise _ConnectionLost(f"no cluster node serves channel {channel!r}")
            node_client = cluster.get_redis_connection(node)
            pubsub = node_client.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.ssubscribe(channel)
            except BaseException:
                pubsub.close()
                raise
            return _Subscription(pubsub, "ssubscribe", 1, None)
        pubsub = cast("redis.Redis", client).pubsub()  # type: ignore[no-untyped-call]
        try:
            if tracked is None:
                pubsub.subscribe(channel)
                return _Subscription(pubsub, "subscribe", 1, None)
            # Tracking first: once subscribed, a RESP2 connection takes no other command.
            watch = _tracking.enable(pubsub, tracked.prefixes)
            try:
                pubsub.subscribe(channel, _tracking.CHANNEL)
            except BaseException:
                watch.detach()
                raise
            return _Subscription(pubsub, "subscribe", 2, watch)
        except BaseException:
            pubsub.close()
            raise


S = TypeVar("S")
T = TypeVar("T")


class SubscriberLoop(Generic[S]):
    """The body of a backplane's thread, whatever the transport.

    Subscribe (:meth:`open`), wait for the server's confirmation (:meth:`confirm`), deliver
    until the subscription is lost (:meth:`pump` raises), release it (:meth:`release`), and
    again, forever until ``stopping`` is set, with a jittered backoff between failed attempts.
    Each change of state is reported once: ``"connected"``, ``"disconnected"``,
    ``"reconnected"``.
    """

    def __init__(
        self,
        channel: str,
        on_message: Callable[[bytes], None],
        on_state: Callable[[BackplaneState], None],
        stopping: threading.Event,
        first_attempt: threading.Event,
        max_backoff: float,
    ) -> None:
        self.channel = channel
        self.on_message = on_message
        self.on_state = on_state
        self.stopping = stopping
        self.first_attempt = first_attempt
        self.max_backoff = max_backoff
        self.state: BackplaneState | None = None
        self.random = random.Random()

    def open(self, refresh: bool) -> S:
        """Subscribe on a connection of the subscriber's own (``refresh``: after a failure)."""
        raise NotImplementedError

    def open_failed(self, exc: Exception, first: bool) -> None:
        """Log a failed :meth:`open` (``first``: the first of a streak of failures)."""
        logger.debug("backplane: subscribing to %r failed: %r", self.channel, exc)

    def confirm(self, subscription: S) -> bool:
        """Wait until the subscription is in place; False if stopped meanwhile."""
        raise NotImplementedError

    def pump(self, subscription: S) -> None:
        """Deliver messages until stopped; raise when the subscription is lost."""
        raise NotImplementedError

    def release(self, subscription: S) -> None:
        """Close the subscription's connection (never raises)."""
        raise NotImplementedError

    def run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                subscription = self.open(refresh=failures > 0)
            except Exception as exc:
                self.open_failed(exc, first=failures == 0)
                self.report("disconnected")
                self.first_attempt.set()
                failures += 1
                self.backoff(failures)
                continue
            try:
                if self.confirm(subscription):
                    self.report("connected" if self.state is None else "reconnected")
                    self.first_attempt.set()
                    failures = 0
                    self.pump(subscription)
            except Exception as exc:
                if not self.stopping.is_set():
                    logger.info("backplane: lost the subscription to %r: %r", self.channel, exc)
                    self.report("disconnected")
                    self.first_attempt.set()
                    failures += 1
                    self.backoff(failures)
            finally:
                self.release(subscription)
        self.first_attempt.set()

    def deliver(self, data: Any) -> None:
        try:
            self.on_message(data)
        except Exception:
            logger.exception("backplane: the on_message callback raised")

    def report(self, state: BackplaneState) -> None:
        if state == self.state or (state == "disconnected" and self.stopping.is_set()):
            return
        self.state = state
        try:
            self.on_state(state)
        except Exception:
            logger.exception("backplane: the on_state callback raised (state %r)", state)

    def backoff(self, failures: int) -> None:
        # Full jitter over [d/2, d], d doubling from 50 ms up to max_backoff: the nodes of a
        # fleet that lost the same server don't all come back in the same millisecond.
        delay = min(self.max_backoff, _MIN_BACKOFF * 2 ** min(failures - 1, 16))
        self.stopping.wait(self.random.uniform(delay / 2, delay))


class _Subscriber(SubscriberLoop[_Subscription]):
    """The body of a RedisBackplane's thread: redis-py pub/sub, with PING heartbeats."""

    def __init__(
        self,
        owner: RedisBackplane,
        channel: str,
        tracked: _tracking.Tracked | None,
        on_message: Callable[[bytes], None],
        on_state: Callable[[BackplaneState], None],
        stopping: threading.Event,
        first_attempt: threading.Event,
    ) -> None:
        super().__init__(channel, on_message, on_state, stopping, first_attempt, owner._max_backoff)
        self.owner = owner
        self.tracked = tracked

    def open(self, refresh: bool) -> _Subscription:
        return self.owner._subscribe(self.channel, refresh=refresh, tracked=self.tracked)

    def open_failed(self, exc: Exception, first: bool) -> None:
        if isinstance(exc, redis.ResponseError) and first:
            # Not a connection problem: the server refused a command (client tracking on a
            # server without it, an ACL). Said once per streak of failures.
            logger.error("backplane: the server refused to subscribe: %s", exc)
        else:
            super().open_failed(exc, first)

    def release(self, subscription: _Subscription) -> None:
        if subscription.watch is not None:
            subscription.watch.detach()
        with contextlib.suppress(Exception):
            subscription.pubsub.close()

    def confirm(self, subscription: _Subscription) -> bool:
        """Wait for the server's subscription confirmations; False if stopped meanwhile."""
        pubsub, kind, pending, watch = subscription
        deadline = time.monotonic() + self.owner._heartbeat
        while not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _ConnectionLost("no subscription confirmation")
            message = pubsub.get_message(timeout=min(remaining, _POLL))
            if watch is not None and watch.reconnected:
                raise _ConnectionLost("the connection was replaced before tracking began")
            if message is not None and message["type"] == kind:
                pending -= 1
                if pending == 0:
                    return True
        return False

    def pump(self, subscription: _Subscription) -> None:
        """Deliver messages until stopped; raise when the connection is lost."""
        pubsub, kind, _, watch = subscription
        heartbeat = self.owner._heartbeat
        data_types = ("smessage",) if kind == "ssubscribe" else ("message",)
        gone = "sunsubscribe" if kind == "ssubscribe" else "unsubscribe"
        last_seen = time.monotonic()
        ping_sent: float | None = None
        while not self.stopping.is_set():
            message = pubsub.get_message(timeout=_POLL)
            now = time.monotonic()
            if message is None:
                if ping_sent is not None:
                    if now - ping_sent > heartbeat:
                        raise _ConnectionLost(f"no reply to PING within {heartbeat}s")
                elif now - last_seen > heartbeat:
                    pubsub.ping()
                    ping_sent = now
                continue
            last_seen, ping_sent = now, None
            kind_seen = message["type"]
            if kind_seen in data_types:
                if watch is not None and _tracking.is_invalidation(message):
                    self.invalidate(message["data"])
                else:
                    self.deliver(message["data"])
            elif kind_seen == kind:
                if watch is not None:
                    # The driver reconnected and resubscribed by itself, on a connection that
                    # does not track: start over, tracking included.
                    raise _ConnectionLost("the driver resubscribed without client tracking")
                # The driver reconnected and resubscribed by itself (a given client with
                # retries): whatever was sent in between is lost.
                self.report("disconnected")
                self.report("reconnected")
            elif kind_seen == gone:
                # The server ended the subscription: on a cluster, the slot moved.
                raise _ConnectionLost("the server ended the subscription")

    def invalidate(self, data: Any) -> None:
        """Deliver a tracking invalidation as backplane messages: one per key, or a clear."""
        keys = _tracking.invalidated_keys(data)
        sender = _tracking.SENDER
        if keys is None:  # FLUSHDB / FLUSHALL: every key is gone
            self.deliver(encode_message(sender, Action.CLEAR, "", 0))
            return
        tracked = self.tracked
        assert tracked is not None
        for key in keys:
            # A tag or clear record is reported as what changing it means. Those messages'
            # version is the record's time, in microseconds; the report carries none, so: now,
            # which is after the change (it is reported once made). Entries written between
            # the change and now are judged stale too: a few extra misses, never a stale hit.
            if key.startswith(tracked.tags):
                self.deliver(encode_message(sender, Action.TAG, key, time.time_ns() // 1000))
            elif key.startswith(tracked.clears):
                self.deliver(encode_message(sender, Action.CLEAR, key, time.time_ns() // 1000))
            else:
                self.deliver(encode_message(sender, Action.REMOVE, key, 0))


def check_start(channel: object, on_message: object, on_state: object) -> None:
    """Refuse bad ``start()`` arguments (ConfigurationError)."""
    if not isinstance(channel, str) or not channel:
        raise ConfigurationError(f"a backplane channel is a non-empty str, got {channel!r}")
    if not callable(on_message) or not callable(on_state):
        raise ConfigurationError("start() needs two callables: on_message and on_state")


def launch(
    owner: Any,
    channel: str,
    make: Callable[[threading.Event, threading.Event], SubscriberLoop[Any]],
) -> None:
    """``start()`` of a backplane with one subscriber thread: ``make(stopping, first_attempt)``.

    ``owner`` has ``_lock``, ``_thread`` and ``_stopping``. Waits for the first subscription
    attempt (at most ``_START_WAIT`` seconds).
    """
    with owner._lock:
        if owner._thread is not None:
            raise ConfigurationError(
                f"this {type(owner).__name__} is already started (one channel per backplane): "
                "stop() it first, or give each cache a backplane of its own"
            )
        owner._stopping = threading.Event()
        first_attempt = threading.Event()
        subscriber = make(owner._stopping, first_attempt)
        thread = threading.Thread(
            target=subscriber.run, name=f"dataferry-backplane[{channel}]", daemon=True
        )
        owner._thread = thread
        thread.start()
    first_attempt.wait(_START_WAIT)


def halt(owner: Any) -> None:
    """``stop()`` of a backplane started by :func:`launch`."""
    with owner._lock:
        thread, owner._thread = owner._thread, None
        owner._stopping.set()
    if thread is not None and thread is not threading.current_thread():
        thread.join(_START_WAIT + 2 * _POLL)
        if thread.is_alive():  # pragma: no cover - a client without timeouts, frozen server
            logger.warning("the backplane subscriber thread did not stop in time")


def _check_seconds(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")


def renamed(build: Callable[[], T], cache: str, backplane: str) -> T:
    """``build()``, its ConfigurationError messages naming ``backplane`` instead of ``cache``.

    The L2 class builds and checks a backplane's clients; its errors name it.
    """
    try:
        return build()
    except ConfigurationError as exc:
        raise ConfigurationError(str(exc).replace(cache, backplane)) from (exc.__cause__ or exc)


def _wrap(build: Callable[[], RedisCache]) -> RedisCache:
    return renamed(build, "RedisCache", "RedisBackplane")
