# GENERATED from src/dataferry/_async/_redis_ops.py by scripts/unasync.py: do not edit.
"""The Redis commands behind :class:`~dataferry.RedisCache`, one round trip per call.

The async half lives here; ``scripts/unasync.py`` generates the sync half
(``dataferry._sync._redis_ops``) from it, and ``RedisCache`` inherits both. Any exception the
driver raises (``RedisError``, ``OSError``, timeouts, but also ``RuntimeError`` or
``ValueError``) becomes a :class:`~dataferry.DistributedCacheError` with the driver's exception
as ``__cause__``; ``BaseException`` (cancellation, ``KeyboardInterrupt``) passes through.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from redis.exceptions import NoScriptError

from dataferry._sync._direct import Direct
from dataferry._backends._locks import check_lock
from dataferry._backends._loops import sync_loop_key
from dataferry._errors import DistributedCacheError

if TYPE_CHECKING:
    from dataferry._backends._redis import ClusterClient, RedisClient

__all__ = ["RedisOps", "failed"]

# compare_and_set: KEYS[1] = key, ARGV[1] = expected bytes, ARGV[2] = new bytes. GET returns
# false for a missing (or expired) key, which equals no string. KEEPTTL (Redis 6.0+) keeps the
# remaining expiry, as SET XX KEEPTTL did. One key, so it runs on a cluster too.
CAS_SCRIPT = """\
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""
CAS_SHA = hashlib.sha1(CAS_SCRIPT.encode()).hexdigest()

# The lock scripts: KEYS[1] = the lock's key, ARGV[1] = the caller's token. Compare and act in
# one step, so a holder whose lock expired and was taken by another never releases (or
# extends) the new holder's lock. One key each, so they run on a cluster too.
RELEASE_SCRIPT = """\
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
RELEASE_SHA = hashlib.sha1(RELEASE_SCRIPT.encode()).hexdigest()
# ARGV[2] = the new TTL in milliseconds, counted from now.
EXTEND_SCRIPT = """\
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
EXTEND_SHA = hashlib.sha1(EXTEND_SCRIPT.encode()).hexdigest()


def failed(command: str, exc: BaseException, client: str = "Redis") -> DistributedCacheError:
    """The :class:`DistributedCacheError` to raise (``from exc``) when ``command`` failed.

    ``client`` names what sent it in the message (``"GLIDE"`` for :class:`~dataferry.GlideCache`).
    """
    return DistributedCacheError(f"{client} {command} failed: {type(exc).__name__}: {exc}")


def _px(ttl: float) -> int:
    # Redis expiries are whole milliseconds; a positive TTL must never round down to 0 (an error).
    ms = int(ttl * 1000)
    return ms if ms > 0 else 1


def _evalsha(
    client: RedisClient, script: str, sha: str, key: str, *args: bytes | int
) -> Any:
    """Run a one-key Lua script by its SHA, loading it on the first ``NOSCRIPT``."""
    try:
        return client.evalsha(sha, 1, key, *args)
    except NoScriptError:
        # A new or restarted server, or a failover, or SCRIPT FLUSH.
        client.script_load(script)
        return client.evalsha(sha, 1, key, *args)


class RedisOps:
    """The Redis commands of :class:`~dataferry.RedisCache`, for synchronous (threaded) code."""

    # Set by RedisCache: the client of each event loop (the sync half: of key None), whether
    # the clients are cluster clients.
    _sync_clients: dict[Any, RedisClient]
    _sync_cluster: bool
    # The running loop's GET, MGET and SET path when its client allows it (see _direct.py).
    _sync_direct: dict[Any, Direct]

    def _sync_connect(self) -> RedisClient:
        """Return the client for the running loop, building it (implemented by ``RedisCache``).

        Raises ConfigurationError or DistributedCacheError itself (outside the ``try`` blocks
        below, so neither is rewrapped).
        """
        raise NotImplementedError

    def get(self, key: str, /) -> bytes | None:
        """Return the bytes stored under ``key`` (``GET``), or ``None``."""
        # The hot path: one dict lookup keyed by the running loop, then one GET.
        loop = sync_loop_key()
        direct = self._sync_direct.get(loop)
        if direct is not None:
            try:
                return direct.execute("GET", key)  # type: ignore[no-any-return]
            except Exception as exc:
                raise failed("GET", exc) from exc
        client = self._sync_clients.get(loop)
        if client is None:
            client = self._sync_connect()
        try:
            # decode_responses is refused, so replies are bytes, never str.
            return client.get(key)  # type: ignore[return-value]
        except Exception as exc:
            raise failed("GET", exc) from exc

    def get_many(self, keys: Sequence[str], /) -> list[bytes | None]:
        """Return the bytes of each key in order (``MGET``; split by slot on a cluster)."""
        if not keys:
            return []
        loop = sync_loop_key()
        direct = self._sync_direct.get(loop)
        if direct is not None:
            try:
                return direct.execute("MGET", *keys)  # type: ignore[no-any-return]
            except Exception as exc:
                raise failed("MGET", exc) from exc
        client = self._sync_clients.get(loop)
        if client is None:
            client = self._sync_connect()
        try:
            if self._sync_cluster:
                return cast("ClusterClient", client).mget_nonatomic(keys)
            return client.mget(keys)  # type: ignore[return-value]
        except Exception as exc:
            raise failed("MGET", exc) from exc

    def set(self, key: str, value: bytes, ttl: float, /) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``SET key value PX ms``)."""
        loop = sync_loop_key()
        direct = self._sync_direct.get(loop)
        if direct is not None:
            try:
                direct.execute("SET", key, value, "PX", _px(ttl))
            except Exception as exc:
                raise failed("SET", exc) from exc
            return
        client = self._sync_clients.get(loop)
        if client is None:
            client = self._sync_connect()
        try:
            client.set(key, value, px=_px(ttl))
        except Exception as exc:
            raise failed("SET", exc) from exc

    def set_many(self, items: Sequence[tuple[str, bytes, float]], /) -> None:
        """Store each ``(key, value, ttl)`` with one pipeline (no transaction)."""
        if not items:
            return
        loop = sync_loop_key()
        direct = self._sync_direct.get(loop)
        if direct is not None:
            try:
                direct.execute_many(
                    [("SET", key, value, "PX", _px(ttl)) for key, value, ttl in items]
                )
            except Exception as exc:
                raise failed("SET (pipeline)", exc) from exc
            return
        client = self._sync_clients.get(loop)
        if client is None:
            client = self._sync_connect()
        try:
            with client.pipeline(transaction=False) as pipe:
                for key, value, ttl in items:
                    pipe.set(key, value, px=_px(ttl))
                pipe.execute()
        except Exception as exc:
            raise failed("SET (pipeline)", exc) from exc

    def compare_and_set(self, key: str, expected: bytes, value: bytes, /) -> bool:
        """Replace ``key``'s bytes by ``value`` if they are exactly ``expected``, keeping its TTL.

        Atomic (a Lua script, sent as ``EVALSHA``, loaded on the first ``NOSCRIPT``): a write
        that lands between a reader's GET and this call makes it return ``False`` and is kept.
        """
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            done = _evalsha(client, CAS_SCRIPT, CAS_SHA, key, expected, value)
        except Exception as exc:
            raise failed("EVALSHA (compare-and-set)", exc) from exc
        return bool(done)

    def ttl(self, key: str, /) -> float | None:
        """Return the seconds ``key`` has left (``PTTL``); None if absent or without expiry."""
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            ms = int(client.pttl(key))
        except Exception as exc:
            raise failed("PTTL", exc) from exc
        return ms / 1000 if ms >= 0 else None

    def delete(self, key: str, /) -> bool:
        """Delete ``key`` (``DEL``); return whether it existed."""
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            return bool(client.delete(key))
        except Exception as exc:
            raise failed("DEL", exc) from exc

    def delete_many(self, keys: Sequence[str], /) -> int:
        """Delete the keys (``DEL``; split by slot on a cluster); return how many existed."""
        if not keys:
            return 0
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            return int(client.delete(*keys))
        except Exception as exc:
            raise failed("DEL", exc) from exc

    def acquire_lock(self, name: str, token: bytes, ttl: float, /) -> bool:
        """Take the lock ``name`` for ``ttl`` seconds if it is free (``SET name token NX PX``).

        Return whether this call took it. A lock expires on its own after ``ttl`` (a crashed
        holder never blocks the others for longer). ``name`` is a plain key: on a cluster, hash-
        tag it to put it in the slot of the key it guards.
        """
        check_lock(name, token, ttl)
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            # SET ... NX answers OK when it set the key, nil when the key exists.
            return bool(client.set(name, token, nx=True, px=_px(ttl)))
        except Exception as exc:
            raise failed("SET NX (lock)", exc) from exc

    def release_lock(self, name: str, token: bytes, /) -> bool:
        """Free the lock ``name`` if ``token`` still holds it (an atomic compare-and-delete).

        Return whether it did: ``False`` when the lock expired, or was taken by another token
        since (that lock is left alone).
        """
        check_lock(name, token)
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            done = _evalsha(client, RELEASE_SCRIPT, RELEASE_SHA, name, token)
        except Exception as exc:
            raise failed("EVALSHA (lock release)", exc) from exc
        return bool(done)

    def extend_lock(self, name: str, token: bytes, ttl: float, /) -> bool:
        """Make the lock ``name`` expire ``ttl`` seconds from now if ``token`` still holds it.

        An atomic compare-and-``PEXPIRE``; return whether it did (``False``: the lock expired,
        or another token holds it).
        """
        check_lock(name, token, ttl)
        client = self._sync_clients.get(sync_loop_key())
        if client is None:
            client = self._sync_connect()
        try:
            done = _evalsha(client, EXTEND_SCRIPT, EXTEND_SHA, name, token, _px(ttl))
        except Exception as exc:
            raise failed("EVALSHA (lock extend)", exc) from exc
        return bool(done)
