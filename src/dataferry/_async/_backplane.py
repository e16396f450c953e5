"""The backplane accessor: tell the other nodes what changed, drop from L1 what they changed.

After every L2 write, delete or expire of a key, a small message (sender, action, key, version;
never the value) goes to every node of the namespace; a node that receives one drops the key
from its L1, so no node serves a value another node has replaced. Own messages are skipped.

Invalidations are versioned (:class:`~dataferry._core.Versions`): each local write and each
message received bumps the key's version, and an L1 fill from an L2 read that began before the
key's latest invalidation is refused, so a slow read can't put back the value an invalidation
just removed (the race in Meta's "Cache made consistent", 2022). When the subscription is lost
and comes back, messages may have been missed: L1 is emptied and every read in flight is
distrusted.

A publish that fails is kept (one per key, the latest action) and sent again after the next
publish that succeeds, or by a background job every second meanwhile; ``close`` tries the rest
once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from dataferry._backends._backplane import (
    Action,
    Backplane,
    BackplaneState,
    SenderId,
    decode_message,
    encode_message,
)
from dataferry._core import Core
from dataferry._errors import DistributedCacheError
from dataferry._keys import clear_scope
from dataferry._scopes import STATE_MAX_AGE
from dataferry._synchronization import AsyncRuntime

__all__ = ["Action", "AsyncBackplaneAccessor"]

logger = logging.getLogger("dataferry")

#: Most failed publishes kept for a retry (one per key); past it, the oldest go, and L1s of
#: other nodes may keep a replaced value until its ttl (logged, counted as dropped).
PENDING_LIMIT = 10_000
#: Seconds between two tries of the failed publishes when nothing else is published.
RETRY_INTERVAL = 1.0


class AsyncBackplaneAccessor:
    """Publishes a cache's invalidations and applies the other nodes' to its L1."""

    __slots__ = (
        "_backplane",
        "_channel",
        "_core",
        "_down",
        "_many",
        "_pending",
        "_pending_lock",
        "_retrying",
        "_runtime",
        "sender",
    )

    def __init__(self, backplane: Backplane, core: Core, runtime: AsyncRuntime) -> None:
        self._backplane = backplane
        self._core = core
        # A hash tag: on a Cluster, the channel lives on the slot of the namespace's name.
        self._channel = f"{{{core.namespace}}}:dataferry:backplane"
        self.sender = SenderId()
        self._pending: OrderedDict[str, Action] = OrderedDict()
        # Callers in several threads (the sync facade, or loops in threads) keep and flush
        # failed publishes at once: an unguarded OrderedDict raised "mutated during iteration"
        # into a caller's set() during a failover under load.
        self._pending_lock = threading.Lock()
        self._down = False
        self._runtime = runtime
        self._retrying = False
        # A transport that can send a batch in one round trip (RedisBackplane can; the
        # Backplane protocol only requires one payload per call).
        self._many: Callable[[str, list[bytes]], Awaitable[None]] | None = getattr(
            backplane, "apublish_many", None
        )

    @property
    def backplane(self) -> Backplane:
        """The transport."""
        return self._backplane

    def start(self) -> None:
        """Subscribe to the namespace's channel (a thread of the backplane delivers)."""
        self._backplane.start(self._channel, self._on_message, self._on_state)

    # -- receiving (on the backplane's thread) --------------------------------------------------

    def _on_message(self, payload: bytes) -> None:
        message = decode_message(payload)
        core = self._core
        if message is None:
            core.events.emit("decode_errors", key=None, error="malformed backplane message")
            return
        if message.sender == self.sender.value:
            return
        action = message.action
        key = message.key
        if action in (Action.SET, Action.REMOVE, Action.EXPIRE):
            core.invalidate(key)
        elif action is Action.TAG and key.startswith(f"{core.namespace}:tag:"):
            # The time in the message protects at once; the record is fetched again on its
            # next use, so what L2 holds has the last word.
            core.scopes.note(key, message.version / 1e6, known=False)
            core.drop_tag(key)
        elif action is Action.CLEAR and (scope := clear_scope(core.namespace, key))[0]:
            # Its epoch may have changed too: the next call fetches it before using it.
            core.scopes.drop(key)
            if message.version:  # 0: a first epoch was seeded, nothing was cleared
                core.drop_scope(scope[1])
        else:  # a scope this node can't apply key by key (a FLUSHDB, a newer node's)
            core.distrust()
        latency = max(time.time_ns() // 1000 - message.sent_at, 0) / 1000.0
        core.events.observe_latency(latency)
        if core.telemetry is not None:
            core.telemetry.observe_latency(latency)
        core.events.emit(
            "backplane_messages", action=action.name.lower(), key=message.key, latency_ms=latency
        )

    def _on_state(self, state: BackplaneState) -> None:
        core = self._core
        if state == "reconnected":
            # Messages sent during the gap are lost: nothing in L1 can be trusted any more.
            core.distrust()
            logger.info("backplane reconnected: L1 emptied (invalidations may have been missed)")
        elif state == "disconnected":
            logger.warning("backplane disconnected: L1 may serve values other nodes replaced")
        # Connected, messages keep the tag and clear records this node knows current; while
        # not, records are fetched again after STATE_MAX_AGE, as without a backplane.
        core.scopes.max_age = STATE_MAX_AGE if state == "disconnected" else math.inf
        core.events.notify("backplane_state", state=state)

    # -- sending ------------------------------------------------------------------------------

    async def publish(
        self, action: Action, skeys: Iterable[str], *, version: int | None = None
    ) -> None:
        """Tell the other nodes that ``skeys`` changed (failures are kept for a retry).

        ``version``: the messages' version (default: the latest local invalidation version;
        tag and clear records send their time, in microseconds).
        """
        keys = list(skeys)
        if len(keys) > 1 and self._many is not None:
            if not await self._send_many(action, keys, version):
                for skey in keys:
                    self._keep(action, skey)
        else:
            for skey in keys:
                if not await self._send(action, skey, version):
                    self._keep(action, skey)
        if self._pending:
            if not self._down:
                await self.flush()
            if self._pending:
                self._retry_later()

    async def _send(self, action: Action, skey: str, version: int | None = None) -> bool:
        core = self._core
        if version is None:
            version = core.versions.current()
        payload = encode_message(self.sender.value, action, skey, version)
        try:
            with core.step("backplane.publish"):
                await self._backplane.apublish(self._channel, payload)
        except DistributedCacheError as exc:
            self._failed(exc)
            return False
        self._sent(1)
        return True

    async def _send_many(self, action: Action, skeys: list[str], version: int | None) -> bool:
        # One round trip for a batch (set_many, remove_many), where the transport can.
        core = self._core
        if version is None:
            version = core.versions.current()
        sender = self.sender.value
        payloads = [encode_message(sender, action, skey, version) for skey in skeys]
        assert self._many is not None
        try:
            with core.step("backplane.publish"):
                await self._many(self._channel, payloads)
        except DistributedCacheError as exc:
            self._failed(exc)
            return False
        self._sent(len(payloads))
        return True

    def _failed(self, exc: DistributedCacheError) -> None:
        self._core.events.emit("distributed_errors", operation="publish", error=type(exc).__name__)
        if not self._down:
            self._down = True
            logger.warning("backplane publish failed (%s); will send again", exc)

    def _sent(self, count: int) -> None:
        self._core.events.backplane_sent += count
        if self._down:
            self._down = False
            logger.info("backplane publishes again")

    async def written(self, operation: str, skeys: list[str]) -> None:  # see _landed
        """Queued L2 operations (background writes, replays after an outage) landed: publish.

        The write was published when it was made, but another node may have read the old
        value from L2 since, and put it in its L1.
        """
        if operation == "compare_and_set":
            action = Action.EXPIRE  # the only compare-and-set: expire's rewrite
        elif operation.startswith("delete"):
            action = Action.REMOVE
        else:
            action = Action.SET
        await self.publish(action, skeys)

    def _keep(self, action: Action, skey: str) -> None:
        pending = self._pending
        with self._pending_lock:
            pending.pop(skey, None)
            pending[skey] = action
            while len(pending) > PENDING_LIMIT:
                pending.popitem(last=False)
                self._core.events.backplane_dropped += 1

    async def flush(self) -> None:
        """Send again what failed before (stops at the first failure)."""
        pending, lock = self._pending, self._pending_lock
        while True:
            with lock:
                if not pending:
                    return
                skey, action = next(iter(pending.items()))
            if not await self._send(action, skey):
                return
            with lock:
                if pending.get(skey) is action:
                    del pending[skey]

    def _retry_later(self) -> None:
        # Failed publishes are sent again after the next one that works, and by this job
        # every RETRY_INTERVAL seconds meanwhile (one job at a time), so they don't wait for
        # a next write that may never come.
        if self._retrying or self._runtime.closed:
            return
        self._retrying = True
        try:
            self._runtime.background(self._retry)
        except Exception:  # the cache is closing: close() tries them once more
            self._retrying = False

    async def _retry(self) -> None:
        runtime = self._runtime
        try:
            while self._pending and not runtime.closed:
                await runtime.sleep(RETRY_INTERVAL)
                await self.flush()
        finally:
            self._retrying = False

    async def aclose(self) -> None:
        """Try the kept publishes once more, then stop the subscriber and close the transport."""
        try:
            if self._pending:
                await self.flush()
            if self._pending:
                logger.warning("closing with %d unsent backplane messages", len(self._pending))
        finally:
            try:
                await self._backplane.aclose()
            except Exception as exc:  # pragma: no cover - a transport that fails to close
                logger.warning("closing the backplane failed: %r", exc)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._backplane!r})"
