"""The contract every L2 backend meets: it moves bytes and holds expiring locks, nothing else.

A backend has an async half (``a``-prefixed methods, used by :class:`~dataferry.AsyncDataFerry`)
and a sync half (the same names without the prefix, used by :class:`~dataferry.DataFerry`), so one
configured backend object serves both facades. Every method raises
:class:`~dataferry.DistributedCacheError` (with the driver's exception as ``__cause__``) when the
store fails, whatever the driver raised (``Exception``; cancellation and other
``BaseException`` pass through); it never raises a driver exception. A method raises
:class:`~dataferry.ConfigurationError` only for a misuse (a half the backend was not given a
client for), or for arguments it refuses before any I/O (a lock's empty token, a ttl <= 0).

The lock methods (``aacquire_lock``, ``arelease_lock``, ``aextend_lock``) give cross-process
stampede protection: a named lock with a TTL, owned by a caller-chosen token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["DistributedCache"]


@runtime_checkable
class DistributedCache(Protocol):
    """A byte store with per-key TTL: Redis, Valkey, Redis Cluster/Sentinel, SQLite."""

    async def aget(self, key: str, /) -> bytes | None:
        """Return the bytes stored under ``key``, or ``None``."""
        ...

    async def aget_many(self, keys: Sequence[str], /) -> list[bytes | None]:
        """Return the bytes for each key, in order (``None`` where absent), in one round trip."""
        ...

    async def aset(self, key: str, value: bytes, ttl: float, /) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (> 0)."""
        ...

    async def aset_many(self, items: Sequence[tuple[str, bytes, float]], /) -> None:
        """Store each ``(key, value, ttl)`` in one round trip."""
        ...

    async def acompare_and_set(self, key: str, expected: bytes, value: bytes, /) -> bool:
        """If ``key`` currently holds exactly ``expected``, replace it with ``value``.

        Atomic, and keeps the key's remaining TTL; return whether it replaced the value (a
        missing or expired key, or one holding other bytes, is left as it is).
        """
        ...

    async def attl(self, key: str, /) -> float | None:
        """Return the seconds ``key`` has left in the store, or ``None`` if absent."""
        ...

    async def adelete(self, key: str, /) -> bool:
        """Delete ``key``; return whether it existed."""
        ...

    async def adelete_many(self, keys: Sequence[str], /) -> int:
        """Delete the keys in one round trip; return how many existed."""
        ...

    async def aacquire_lock(self, name: str, token: bytes, ttl: float, /) -> bool:
        """Take the lock ``name`` for ``ttl`` seconds (> 0) if it is free; return whether it did.

        Atomic across every process sharing the store (Redis: ``SET name token NX PX``). A lock
        whose ``ttl`` ran out is free, so a holder that crashed blocks nobody for longer.
        ``token`` (non-empty ``bytes``, 16+ random bytes chosen by the caller) is the proof of
        ownership that :meth:`arelease_lock` and :meth:`aextend_lock` check. Locks live apart
        from the cached entries (in Redis, ``name`` is a plain key: hash-tag it on a cluster).
        """
        ...

    async def arelease_lock(self, name: str, token: bytes, /) -> bool:
        """Free the lock ``name`` if ``token`` holds it; return whether it did.

        Atomic compare-and-delete: a lock that expired, or that another token took since, is
        left as it is and the call returns ``False``.
        """
        ...

    async def aextend_lock(self, name: str, token: bytes, ttl: float, /) -> bool:
        """Make the lock ``name`` expire ``ttl`` seconds from now if ``token`` holds it.

        Atomic compare-and-expire; return whether it did (``False``: the lock expired or
        another token holds it, and nothing changed).
        """
        ...

    async def aclose(self) -> None:
        """Release the async connections."""
        ...

    def get(self, key: str, /) -> bytes | None:
        """Sync :meth:`aget`."""
        ...

    def get_many(self, keys: Sequence[str], /) -> list[bytes | None]:
        """Sync :meth:`aget_many`."""
        ...

    def set(self, key: str, value: bytes, ttl: float, /) -> None:
        """Sync :meth:`aset`."""
        ...

    def set_many(self, items: Sequence[tuple[str, bytes, float]], /) -> None:
        """Sync :meth:`aset_many`."""
        ...

    def compare_and_set(self, key: str, expected: bytes, value: bytes, /) -> bool:
        """Sync :meth:`acompare_and_set`."""
        ...

    def ttl(self, key: str, /) -> float | None:
        """Sync :meth:`attl`."""
        ...

    def delete(self, key: str, /) -> bool:
        """Sync :meth:`adelete`."""
        ...

    def delete_many(self, keys: Sequence[str], /) -> int:
        """Sync :meth:`adelete_many`."""
        ...

    def acquire_lock(self, name: str, token: bytes, ttl: float, /) -> bool:
        """Sync :meth:`aacquire_lock`."""
        ...

    def release_lock(self, name: str, token: bytes, /) -> bool:
        """Sync :meth:`arelease_lock`."""
        ...

    def extend_lock(self, name: str, token: bytes, ttl: float, /) -> bool:
        """Sync :meth:`aextend_lock`."""
        ...

    def close(self) -> None:
        """Release the sync connections."""
        ...
