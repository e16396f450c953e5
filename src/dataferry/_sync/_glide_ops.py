# GENERATED from src/dataferry/_async/_glide_ops.py by scripts/unasync.py: do not edit.
"""The Valkey GLIDE commands behind :class:`~dataferry.GlideCache`, one round trip per call.

The async half lives here; ``scripts/unasync.py`` generates the sync half
(``dataferry._sync._glide_ops``) from it, and ``GlideCache`` inherits both. The two GLIDE
packages (``glide`` for asyncio, ``glide_sync``) have the same command methods, so only the
client differs; the batch and option classes both use come from ``glide_shared``. Nothing from
GLIDE is imported when this module is: ``import dataferry`` must work (and stay fast) without the
``glide`` extra.

Errors are translated as :class:`~dataferry.RedisCache` does (the same helper): any exception
(``glide_shared.exceptions.GlideError``: ``RequestError``, ``TimeoutError``,
``ConnectionError``, ``ClosingError``..., and anything else) becomes a
:class:`~dataferry.DistributedCacheError` with GLIDE's exception as ``__cause__``;
``BaseException`` (cancellation, ``KeyboardInterrupt``) passes through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dataferry._sync._redis_ops import _px, failed
from dataferry._backends._locks import check_lock
from dataferry._backends._loops import sync_loop_key

if TYPE_CHECKING:
    from glide_shared import Batch, ClusterBatch, ConditionalChange, ExpirySet

    from dataferry._backends._glide import GlideClient, Scripts

__all__ = ["GlideOps"]


def _expiry(ttl: float) -> ExpirySet:
    """``PX ms`` for GLIDE's ``set`` (whole milliseconds, never 0)."""
    # Imported here: glide_shared takes 60 ms to import. Once imported, this costs a dict
    # lookup (well under 1 us, against about 100 us for the command).
    from glide_shared import ExpirySet, ExpiryType

    return ExpirySet(ExpiryType.MILLSEC, _px(ttl))


def _set_batch(items: Sequence[tuple[str, bytes, float]], cluster: bool) -> Batch | ClusterBatch:
    """A pipeline (non-atomic batch) of ``SET key value PX ms``; GLIDE splits it by slot."""
    from glide_shared import Batch, ClusterBatch

    batch = ClusterBatch(is_atomic=False) if cluster else Batch(is_atomic=False)
    for key, value, ttl in items:
        batch.set(key, value, expiry=_expiry(ttl))
    return batch


def _set_if_absent() -> ConditionalChange:
    """``NX`` for GLIDE's ``set``."""
    from glide_shared import ConditionalChange

    return ConditionalChange.ONLY_IF_DOES_NOT_EXIST


class GlideOps:
    """The GLIDE commands of :class:`~dataferry.GlideCache`, for synchronous (threaded) code."""

    # Set by GlideCache: the client of each event loop (the sync half: of key None), whether
    # they are cluster clients, and the Lua scripts registered with this half's GLIDE package.
    _sync_clients: dict[Any, GlideClient]
    _sync_cluster: bool
    _sync_scripts: Scripts

    def _sync_connect(self) -> GlideClient:
        """Return the client for the running loop, building it (implemented by ``GlideCache``).

        Raises ConfigurationError or DistributedCacheError itself (outside the ``try`` blocks
        below, so neither is rewrapped).
        """
        raise NotImplementedError

    def get(self, key: str, /) -> bytes | None:
        """Return the bytes stored under ``key`` (``GET``), or ``None``."""
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            return client.get(key)
        except Exception as exc:
            raise failed("GET", exc, "GLIDE") from exc

    def get_many(self, keys: Sequence[str], /) -> list[bytes | None]:
        """Return the bytes of each key in order (``MGET``; GLIDE splits it by slot)."""
        if not keys:
            return []
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            return client.mget(keys if isinstance(keys, list) else list(keys))
        except Exception as exc:
            raise failed("MGET", exc, "GLIDE") from exc

    def set(self, key: str, value: bytes, ttl: float, /) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``SET key value PX ms``)."""
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            client.set(key, value, expiry=_expiry(ttl))
        except Exception as exc:
            raise failed("SET", exc, "GLIDE") from exc

    def set_many(self, items: Sequence[tuple[str, bytes, float]], /) -> None:
        """Store each ``(key, value, ttl)`` with one non-atomic batch (a pipeline)."""
        if not items:
            return
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            batch = _set_batch(items, self._sync_cluster)
            # The batch's class matches the client's (ClusterBatch for a cluster client).
            client.exec(batch, raise_on_error=True)  # type: ignore[arg-type]
        except Exception as exc:
            raise failed("SET (pipeline)", exc, "GLIDE") from exc

    def compare_and_set(self, key: str, expected: bytes, value: bytes, /) -> bool:
        """Replace ``key``'s bytes by ``value`` if they are exactly ``expected``, keeping its TTL.

        Atomic: RedisCache's Lua script, which GLIDE sends as ``EVALSHA`` (loading it on the
        first ``NOSCRIPT``).
        """
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            done = client.invoke_script(self._sync_scripts.cas, [key], [expected, value])
        except Exception as exc:
            raise failed("EVALSHA (compare-and-set)", exc, "GLIDE") from exc
        return bool(done)

    def ttl(self, key: str, /) -> float | None:
        """Return the seconds ``key`` has left (``PTTL``); None if absent or without expiry."""
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            ms = int(client.pttl(key))
        except Exception as exc:
            raise failed("PTTL", exc, "GLIDE") from exc
        return ms / 1000 if ms >= 0 else None

    def delete(self, key: str, /) -> bool:
        """Delete ``key`` (``DEL``); return whether it existed."""
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            return bool(client.delete([key]))
        except Exception as exc:
            raise failed("DEL", exc, "GLIDE") from exc

    def delete_many(self, keys: Sequence[str], /) -> int:
        """Delete the keys (one ``DEL``; GLIDE splits it by slot); return how many existed."""
        if not keys:
            return 0
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            return int(client.delete(keys if isinstance(keys, list) else list(keys)))
        except Exception as exc:
            raise failed("DEL", exc, "GLIDE") from exc

    def acquire_lock(self, name: str, token: bytes, ttl: float, /) -> bool:
        """Take the lock ``name`` for ``ttl`` seconds if it is free (``SET name token NX PX``).

        Return whether this call took it; see
        :meth:`RedisCache.acquire_lock <dataferry.RedisCache.acquire_lock>`.
        """
        check_lock(name, token, ttl)
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            # SET ... NX answers OK when it set the key, nil when the key exists.
            done = client.set(
                name, token, conditional_set=_set_if_absent(), expiry=_expiry(ttl)
            )
        except Exception as exc:
            raise failed("SET NX (lock)", exc, "GLIDE") from exc
        return done is not None

    def release_lock(self, name: str, token: bytes, /) -> bool:
        """Free the lock ``name`` if ``token`` still holds it (an atomic compare-and-delete)."""
        check_lock(name, token)
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            done = client.invoke_script(self._sync_scripts.release, [name], [token])
        except Exception as exc:
            raise failed("EVALSHA (lock release)", exc, "GLIDE") from exc
        return bool(done)

    def extend_lock(self, name: str, token: bytes, ttl: float, /) -> bool:
        """Make the lock ``name`` expire ``ttl`` seconds from now if ``token`` still holds it."""
        check_lock(name, token, ttl)
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            done = client.invoke_script(
                self._sync_scripts.extend, [name], [token, str(_px(ttl))]
            )
        except Exception as exc:
            raise failed("EVALSHA (lock extend)", exc, "GLIDE") from exc
        return bool(done)
