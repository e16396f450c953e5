# GENERATED from src/dataferry/_async/_redis_ops.py by scripts/unasync.py: do not edit.
"""The Redis commands behind :class:`~dataferry.RedisCache`, one round trip per call.

The async half lives here; ``scripts/unasync.py`` generates the sync half
(``dataferry._sync._redis_ops``) from it, and ``RedisCache`` inherits both. Every driver error
(``RedisError``, ``RedisClusterException``, ``OSError``, ``asyncio.TimeoutError``) becomes a
:class:`~dataferry.DistributedCacheError` with the driver's exception as ``__cause__``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from redis.exceptions import RedisClusterException, RedisError

from dataferry._errors import DistributedCacheError

if TYPE_CHECKING:
    from dataferry._backends._redis import ClusterClient, RedisClient

__all__ = ["RedisOps"]

# What redis-py raises when the server, the network or the cluster fails. asyncio.TimeoutError
# is the builtin TimeoutError (an OSError) from Python 3.11 on, a class of its own on 3.10.
DRIVER_ERRORS = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)


def failed(command: str, exc: BaseException) -> DistributedCacheError:
    """The :class:`DistributedCacheError` to raise (``from exc``) when ``command`` failed."""
    return DistributedCacheError(f"Redis {command} failed: {type(exc).__name__}: {exc}")


def _px(ttl: float) -> int:
    # Redis expiries are whole milliseconds; a positive TTL must never round down to 0 (an error).
    ms = int(ttl * 1000)
    return ms if ms > 0 else 1


class RedisOps:
    """The async half of :class:`~dataferry.RedisCache` (the ``a``-prefixed methods)."""

    # Set by RedisCache: the client (None until built, for a lazy one), whether it is a
    # cluster client, and the clients that close() must close (those RedisCache built).
    _sync_client: RedisClient | None
    _sync_cluster: bool
    _sync_owned: list[RedisClient]

    def _sync_connect(self) -> RedisClient:
        """Return the client, building it on first use (implemented by ``RedisCache``)."""
        raise NotImplementedError

    def get(self, key: str, /) -> bytes | None:
        """Return the bytes stored under ``key`` (``GET``), or ``None``."""
        client = self._sync_client
        if client is None:
            client = self._sync_connect()
        try:
            # decode_responses is refused, so replies are bytes, never str.
            return client.get(key)  # type: ignore[return-value]
        except DRIVER_ERRORS as exc:
            raise failed("GET", exc) from exc

    def get_many(self, keys: Sequence[str], /) -> list[bytes | None]:
        """Return the bytes of each key in order (``MGET``; split by slot on a cluster)."""
        if not keys:
            return []
        client = self._sync_client
        if client is None:
            client = self._sync_connect()
        try:
            if self._sync_cluster:
                return cast("ClusterClient", client).mget_nonatomic(keys)
            return client.mget(keys)  # type: ignore[return-value]
        except DRIVER_ERRORS as exc:
            raise failed("MGET", exc) from exc

    def set(self, key: str, value: bytes, ttl: float, /) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``SET key value PX ms``)."""
        client = self._sync_client
        if client is None:
            client = self._sync_connect()
        try:
            client.set(key, value, px=_px(ttl))
        except DRIVER_ERRORS as exc:
            raise failed("SET", exc) from exc

    def set_many(self, items: Sequence[tuple[str, bytes, float]], /) -> None:
        """Store each ``(key, value, ttl)`` with one pipeline (no transaction)."""
        if not items:
            return
        client = self._sync_client
        if client is None:
            client = self._sync_connect()
        try:
            with client.pipeline(transaction=False) as pipe:
                for key, value, ttl in items:
                    pipe.set(key, value, px=_px(ttl))
                pipe.execute()
        except DRIVER_ERRORS as exc:
            raise failed("SET (pipeline)", exc) from exc

    def replace(self, key: str, value: bytes, /) -> bool:
        """Overwrite an existing key, keeping its TTL (``SET XX KEEPTTL``); whether it existed."""
        client = self._sync_client
        if client is None:
            client = self._sync_connect()
        try:
            return bool(client.set(key, value, xx=True, keepttl=True))
        except DRIVER_ERRORS as exc:
            raise failed("SET XX", exc) from exc

    def ttl(self, key: str, /) -> float | None:
        """Return the seconds ``key`` has left (``PTTL``); None if absent or without expiry."""
        client = self._sync_client
        if client is None:
            client = self._sync_connect()
        try:
            ms = int(client.pttl(key))
        except DRIVER_ERRORS as exc:
            raise failed("PTTL", exc) from exc
        return ms / 1000 if ms >= 0 else None

    def delete(self, key: str, /) -> bool:
        """Delete ``key`` (``DEL``); return whether it existed."""
        client = self._sync_client
        if client is None:
            client = self._sync_connect()
        try:
            return bool(client.delete(key))
        except DRIVER_ERRORS as exc:
            raise failed("DEL", exc) from exc

    def delete_many(self, keys: Sequence[str], /) -> int:
        """Delete the keys (``DEL``; split by slot on a cluster); return how many existed."""
        if not keys:
            return 0
        client = self._sync_client
        if client is None:
            client = self._sync_connect()
        try:
            return int(client.delete(*keys))
        except DRIVER_ERRORS as exc:
            raise failed("DEL", exc) from exc

    def close(self) -> None:
        """Close the async clients this cache built; a client passed in is left to its owner.

        A cache built by ``from_url`` / ``from_sentinel`` builds a new client on its next use.
        """
        owned, self._sync_owned = self._sync_owned, []
        if not owned:
            return
        self._sync_client = None
        error: BaseException | None = None
        for client in owned:
            try:
                client.close()
            except DRIVER_ERRORS as exc:  # pragma: no cover - closing rarely fails
                error = error or exc
        if error is not None:  # pragma: no cover
            raise failed("close", error) from error
