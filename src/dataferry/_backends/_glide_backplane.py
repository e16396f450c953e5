"""GlideBackplane: the backplane on Valkey GLIDE's pub/sub, for a fleet that runs GLIDE only.

GLIDE keeps a client's subscriptions itself: after a reconnection it subscribes again on its
own, but only at its next reconciliation (about 3 s later with GLIDE 2.6), and it tells no
one. Messages published in between are lost without a trace, and a backplane that does not know
it missed messages leaves stale entries in L1 until they expire. So this subscriber checks its
connection itself, every quarter of a heartbeat: one ``CLIENT INFO`` on the connection that holds
the subscription says whether it is still the connection that subscribed (same id, same client
address) and still subscribed. When it is not, the subscriber reports the gap and subscribes
again on a new client, and the cache empties its L1 (``"reconnected"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from dataferry._async._redis_ops import failed
from dataferry._backends._backplane import (
    _POLL,
    BackplaneState,
    SubscriberLoop,
    _check_seconds,
    _ConnectionLost,
    check_start,
    halt,
    launch,
    renamed,
)
from dataferry._backends._glide import GlideCache, _import
from dataferry._backends._loops import async_loop_key
from dataferry._errors import ConfigurationError

__all__ = ["GlideBackplane"]


class GlideBackplane:
    """The :class:`~dataferry.Backplane` on Valkey GLIDE pub/sub: standalone or Cluster.

    For a fleet whose L2 is a :class:`~dataferry.GlideCache`, when the application runs GLIDE
    only (:class:`~dataferry.RedisBackplane` works next to a ``GlideCache`` as well). Payloads go
    with ``PUBLISH`` / ``SUBSCRIBE``, or on a cluster with sharded pub/sub (``SPUBLISH`` /
    ``SSUBSCRIBE``: the channel lives on the shard its name hashes to; name it with a hash
    tag, as the cache does). Needs the ``glide`` extra::

        GlideBackplane.from_url("redis://host:6379/0")
        GlideBackplane.from_url("valkey://node:7000", cluster=True)

    The subscription is held by a GLIDE sync client of its own, built from the URL, and
    delivered by a daemon thread the backplane owns. GLIDE reconnects by itself, but after a
    reconnection it subscribes again only at its next reconciliation (about 3 s later) and
    does not say so: what was published in between is lost. The backplane therefore checks
    the subscribing connection every ``heartbeat / 4`` seconds with ``CLIENT INFO`` (one round
    trip: the same connection id and client address, still subscribed). A replaced connection,
    a lost subscription or a check that fails (a killed or frozen server: within GLIDE's
    ``request_timeout``) is reported as ``"disconnected"``; the backplane then builds a new
    client and subscribes again, forever until :meth:`stop`, with a jittered exponential
    backoff up to ``max_backoff``, and reports ``"reconnected"``, which makes the cache drop
    its L1. So an L1 trusts nothing for longer than about ``heartbeat / 4`` plus the request
    timeout after its subscription broke.

    Publishing uses a :class:`~dataferry.GlideCache`'s clients (the sync one, and one asyncio
    client per event loop), built on first use. Batches go as one non-atomic GLIDE batch.

    Compared with :class:`~dataferry.RedisBackplane`: no Sentinel (GLIDE has no Sentinel
    support) and no ``client_tracking`` (GLIDE's client-side caching is its own; writes made
    outside DataFerry need ``RedisBackplane(client_tracking=True)``).

    Args:
        url: ``redis://``, ``rediss://``, ``valkey://`` or ``valkeys://`` (for a cluster: any
            node), as :meth:`GlideCache.from_url <dataferry.GlideCache.from_url>` takes it.
        cluster: Use GLIDE's cluster clients and sharded pub/sub.
        heartbeat: The subscription is checked every ``heartbeat / 4`` seconds, and must be
            confirmed within ``heartbeat`` seconds of subscribing. Default 1.0.
        max_backoff: The longest wait between two reconnection attempts, in seconds. Default 2.0.
        request_timeout: Seconds GLIDE gives each request (default 0.25).
        connect_timeout: Seconds to wait for a connection (default 0.25).
        **options: Passed to GLIDE's client configuration, as ``GlideCache.from_url`` does
            (not ``pubsub_subscriptions``: the backplane sets it).

    Raises:
        ConfigurationError: A malformed URL, bad options, a bad ``heartbeat`` /
            ``max_backoff``, or the ``glide`` extra is not installed.

    """

    def __init__(
        self,
        url: str,
        *,
        cluster: bool = False,
        heartbeat: float = 1.0,
        max_backoff: float = 2.0,
        request_timeout: float | None = 0.25,
        connect_timeout: float | None = 0.25,
        **options: Any,
    ) -> None:
        _check_seconds("heartbeat", heartbeat)
        _check_seconds("max_backoff", max_backoff)
        if "pubsub_subscriptions" in options:
            raise ConfigurationError(
                "GlideBackplane sets pubsub_subscriptions itself (its subscriber's own client)"
            )
        self._glide = renamed(
            lambda: GlideCache.from_url(
                url,
                cluster=cluster,
                request_timeout=request_timeout,
                connect_timeout=connect_timeout,
                **options,
            ),
            "GlideCache",
            "GlideBackplane",
        )
        self._cluster = cluster
        self._heartbeat = float(heartbeat)
        self._max_backoff = float(max_backoff)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> GlideBackplane:
        """``GlideBackplane(url, **kwargs)``, named as the other backplanes' constructors are."""
        return cls(url, **kwargs)

    # -- publishing -----------------------------------------------------------------------------

    @property
    def _command(self) -> str:
        return "SPUBLISH" if self._cluster else "PUBLISH"

    async def apublish(self, channel: str, payload: bytes, /) -> None:
        """Send ``payload`` to every node subscribed to ``channel``.

        Raises:
            DistributedCacheError: GLIDE failed (its exception chained).

        """
        glide = self._glide
        client = glide._async_clients.get(async_loop_key())
        if client is None:
            client = await glide._async_connect()
        try:
            if self._cluster:
                await client.publish(payload, channel, sharded=True)  # type: ignore[call-arg]
            else:
                await client.publish(payload, channel)
        except Exception as exc:
            raise failed(self._command, exc, "GLIDE") from exc

    def publish(self, channel: str, payload: bytes, /) -> None:
        """Sync :meth:`apublish`."""
        client = self._sync_client()
        try:
            if self._cluster:
                client.publish(payload, channel, sharded=True)
            else:
                client.publish(payload, channel)
        except Exception as exc:
            raise failed(self._command, exc, "GLIDE") from exc

    async def apublish_many(self, channel: str, payloads: Sequence[bytes], /) -> None:
        """Send every payload to ``channel``, in order, in one round trip (a GLIDE batch).

        Raises:
            DistributedCacheError: GLIDE failed (some payloads may have been sent).

        """
        glide = self._glide
        client = glide._async_clients.get(async_loop_key())
        if client is None:
            client = await glide._async_connect()
        try:
            await client.exec(self._batch(channel, payloads), raise_on_error=True)
        except Exception as exc:
            raise failed(self._command, exc, "GLIDE") from exc

    def publish_many(self, channel: str, payloads: Sequence[bytes], /) -> None:
        """Sync :meth:`apublish_many`."""
        client = self._sync_client()
        try:
            client.exec(self._batch(channel, payloads), raise_on_error=True)
        except Exception as exc:
            raise failed(self._command, exc, "GLIDE") from exc

    def _batch(self, channel: str, payloads: Sequence[bytes]) -> Any:
        shared = _import("glide_shared")
        if self._cluster:
            batch = shared.ClusterBatch(is_atomic=False)
            for payload in payloads:
                batch.publish(payload, channel, sharded=True)
        else:
            batch = shared.Batch(is_atomic=False)
            for payload in payloads:
                batch.publish(payload, channel)
        return batch

    def _sync_client(self) -> Any:
        client = self._glide._sync_clients.get(None)
        return client if client is not None else self._glide._sync_connect()

    # -- subscribing --------------------------------------------------------------------------

    def start(
        self,
        channel: str,
        on_message: Callable[[bytes], None],
        on_state: Callable[[BackplaneState], None],
    ) -> None:
        """Subscribe to ``channel`` on a daemon thread; deliver each payload to ``on_message``.

        Waits for the first subscription attempt (at most a couple of seconds) before
        returning, as :meth:`RedisBackplane.start <dataferry.RedisBackplane.start>` does; an
        unreachable server is reported as ``"disconnected"``, never raised.

        Raises:
            ConfigurationError: ``channel`` is not a non-empty str, a callback is not
                callable, the backplane is already started, or the ``glide`` extra is missing.

        """
        check_start(channel, on_message, on_state)
        _import("glide_sync")  # a missing extra is a ConfigurationError here, not in the thread
        launch(
            self,
            channel,
            lambda stopping, first_attempt: _GlideSubscriber(
                self, channel, on_message, on_state, stopping, first_attempt
            ),
        )

    def stop(self) -> None:
        """Stop the subscriber thread and close its client. Idempotent."""
        halt(self)

    @property
    def running(self) -> bool:
        """Whether the subscriber thread is started (connected or trying to reconnect)."""
        return self._thread is not None

    async def aclose(self) -> None:
        """Stop the subscriber, close the clients this backplane built. Idempotent."""
        if self._thread is not None:
            await asyncio.to_thread(self.stop)
        await self._glide.aclose()
        self._glide.close()

    def close(self) -> None:
        """Stop the subscriber and close the sync client this backplane built. Idempotent."""
        self.stop()
        self._glide.close()

    def __repr__(self) -> str:
        return f"GlideBackplane({self._glide._description})"

    # -- used by the subscriber thread ----------------------------------------------------------

    def _subscribe(self, channel: str) -> _GlideSubscription:
        """A new GLIDE sync client of the subscriber's own, subscribed to ``channel``."""
        module = _import("glide_sync")
        config = copy.copy(self._glide._config)
        inbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()

        def received(message: Any, context: Any) -> None:
            # On GLIDE's thread: hand the payload to the backplane's own.
            inbox.put(message.message)

        config.pubsub_subscriptions = type(config).PubSubSubscriptions(
            channels_and_patterns={}, callback=received, context=None
        )
        client_type = module.GlideClusterClient if self._cluster else module.GlideClient
        client = client_type.create(config)
        subscription = _GlideSubscription(client, inbox, channel, self._cluster)
        try:
            before = subscription.info()  # connects (the client is lazy)
            timeout_ms = max(1, round(self._heartbeat * 1000))
            if self._cluster:
                client.ssubscribe({channel}, timeout_ms=timeout_ms)
            else:
                client.subscribe({channel}, timeout_ms=timeout_ms)
            subscription.confirm(before)
        except BaseException:
            subscription.release()
            raise
        return subscription


class _GlideSubscription:
    """A GLIDE client of the subscriber's own, and the connection its subscription is on."""

    __slots__ = ("channel", "client", "cluster", "connection", "inbox")

    def __init__(
        self, client: Any, inbox: queue.SimpleQueue[bytes], channel: str, cluster: bool
    ) -> None:
        self.client = client
        self.inbox = inbox
        self.channel = channel
        self.cluster = cluster
        self.connection: tuple[str, str] | None = None

    def info(self) -> dict[str, str]:
        """``CLIENT INFO`` of the connection that holds the subscription, as a dict."""
        if self.cluster:
            glide_sync = _import("glide_sync")
            route = glide_sync.SlotKeyRoute(glide_sync.SlotType.PRIMARY, self.channel)
            reply = self.client.custom_command(["CLIENT", "INFO"], route=route)
        else:
            reply = self.client.custom_command(["CLIENT", "INFO"])
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        return dict(field.split("=", 1) for field in text.split() if "=" in field)

    def confirm(self, before: dict[str, str]) -> None:
        """Note the connection the subscription was made on (raise if it changed meanwhile)."""
        after = self.info()
        connection = _identity(after)
        if connection != _identity(before):
            raise _ConnectionLost("GLIDE reconnected while subscribing")
        if not self.subscribed(after):
            raise _ConnectionLost("the server does not list the subscription")
        self.connection = connection

    def subscribed(self, info: dict[str, str]) -> bool:
        return info.get("ssub" if self.cluster else "sub", "0") not in ("", "0")

    def check(self) -> None:
        """Raise :class:`_ConnectionLost` unless the subscription is still in place."""
        info = self.info()
        if _identity(info) != self.connection:
            raise _ConnectionLost("GLIDE reconnected: messages published meanwhile were lost")
        if not self.subscribed(info):
            raise _ConnectionLost("the subscription is gone")

    def release(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


def _identity(info: dict[str, str]) -> tuple[str, str]:
    """What tells one connection from its replacement in ``CLIENT INFO``: id and address."""
    return info.get("id", ""), info.get("addr", "")


class _GlideSubscriber(SubscriberLoop[_GlideSubscription]):
    """The body of a GlideBackplane's thread: deliver, and check the connection."""

    def __init__(
        self,
        owner: GlideBackplane,
        channel: str,
        on_message: Callable[[bytes], None],
        on_state: Callable[[BackplaneState], None],
        stopping: threading.Event,
        first_attempt: threading.Event,
    ) -> None:
        super().__init__(channel, on_message, on_state, stopping, first_attempt, owner._max_backoff)
        self.owner = owner
        self.check_every = owner._heartbeat / 4

    def open(self, refresh: bool) -> _GlideSubscription:
        return self.owner._subscribe(self.channel)

    def confirm(self, subscription: _GlideSubscription) -> bool:
        # _subscribe waited for the server's confirmation already.
        return not self.stopping.is_set()

    def pump(self, subscription: _GlideSubscription) -> None:
        inbox = subscription.inbox
        check_every = self.check_every
        wait = min(_POLL, check_every)
        next_check = time.monotonic() + check_every
        while not self.stopping.is_set():
            try:
                payload = inbox.get(timeout=wait)
            except queue.Empty:
                pass
            else:
                self.deliver(payload)
            now = time.monotonic()
            if now >= next_check:
                subscription.check()
                next_check = now + check_every

    def release(self, subscription: _GlideSubscription) -> None:
        subscription.release()
