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
    from dataferry._backends._redis import AsyncClusterClient, AsyncRedisClient

__all__ = ["AsyncRedisOps"]

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


class AsyncRedisOps:
    """The async half of :class:`~dataferry.RedisCache` (the ``a``-prefixed methods)."""

    # Set by RedisCache: the client (None until built, for a lazy one), whether it is a
    # cluster client, and the clients that aclose() must close (those RedisCache built).
    _async_client: AsyncRedisClient | None
    _async_cluster: bool
    _async_owned: list[AsyncRedisClient]

    def _async_connect(self) -> AsyncRedisClient:
        """Return the client, building it on first use (implemented by ``RedisCache``)."""
        raise NotImplementedError

    async def aget(self, key: str, /) -> bytes | None:
        """Return the bytes stored under ``key`` (``GET``), or ``None``."""
        client = self._async_client
        if client is None:
            client = self._async_connect()
        try:
            # decode_responses is refused, so replies are bytes, never str.
            return await client.get(key)  # type: ignore[return-value]
        except DRIVER_ERRORS as exc:
            raise failed("GET", exc) from exc

    async def aget_many(self, keys: Sequence[str], /) -> list[bytes | None]:
        """Return the bytes of each key in order (``MGET``; split by slot on a cluster)."""
        if not keys:
            return []
        client = self._async_client
        if client is None:
            client = self._async_connect()
        try:
            if self._async_cluster:
                return await cast("AsyncClusterClient", client).mget_nonatomic(keys)
            return await client.mget(keys)  # type: ignore[return-value]
        except DRIVER_ERRORS as exc:
            raise failed("MGET", exc) from exc

    async def aset(self, key: str, value: bytes, ttl: float, /) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``SET key value PX ms``)."""
        client = self._async_client
        if client is None:
            client = self._async_connect()
        try:
            await client.set(key, value, px=_px(ttl))
        except DRIVER_ERRORS as exc:
            raise failed("SET", exc) from exc

    async def aset_many(self, items: Sequence[tuple[str, bytes, float]], /) -> None:
        """Store each ``(key, value, ttl)`` with one pipeline (no transaction)."""
        if not items:
            return
        client = self._async_client
        if client is None:
            client = self._async_connect()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for key, value, ttl in items:
                    pipe.set(key, value, px=_px(ttl))
                await pipe.execute()
        except DRIVER_ERRORS as exc:
            raise failed("SET (pipeline)", exc) from exc

    async def areplace(self, key: str, value: bytes, /) -> bool:
        """Overwrite an existing key, keeping its TTL (``SET XX KEEPTTL``); whether it existed."""
        client = self._async_client
        if client is None:
            client = self._async_connect()
        try:
            return bool(await client.set(key, value, xx=True, keepttl=True))
        except DRIVER_ERRORS as exc:
            raise failed("SET XX", exc) from exc

    async def attl(self, key: str, /) -> float | None:
        """Return the seconds ``key`` has left (``PTTL``); None if absent or without expiry."""
        client = self._async_client
        if client is None:
            client = self._async_connect()
        try:
            ms = int(await client.pttl(key))
        except DRIVER_ERRORS as exc:
            raise failed("PTTL", exc) from exc
        return ms / 1000 if ms >= 0 else None

    async def adelete(self, key: str, /) -> bool:
        """Delete ``key`` (``DEL``); return whether it existed."""
        client = self._async_client
        if client is None:
            client = self._async_connect()
        try:
            return bool(await client.delete(key))
        except DRIVER_ERRORS as exc:
            raise failed("DEL", exc) from exc

    async def adelete_many(self, keys: Sequence[str], /) -> int:
        """Delete the keys (``DEL``; split by slot on a cluster); return how many existed."""
        if not keys:
            return 0
        client = self._async_client
        if client is None:
            client = self._async_connect()
        try:
            return int(await client.delete(*keys))
        except DRIVER_ERRORS as exc:
            raise failed("DEL", exc) from exc

    async def aclose(self) -> None:
        """Close the async clients this cache built; a client passed in is left to its owner.

        A cache built by ``from_url`` / ``from_sentinel`` builds a new client on its next use.
        """
        owned, self._async_owned = self._async_owned, []
        if not owned:
            return
        self._async_client = None
        error: BaseException | None = None
        for client in owned:
            try:
                await client.aclose()
            except DRIVER_ERRORS as exc:  # pragma: no cover - closing rarely fails
                error = error or exc
        if error is not None:  # pragma: no cover
            raise failed("close", error) from error
