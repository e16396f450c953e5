"""The contract every L2 backend meets: it moves bytes, nothing else.

A backend has an async half (``a``-prefixed methods, used by :class:`~dataferry.AsyncDataFerry`)
and a sync half (the same names without the prefix, used by :class:`~dataferry.DataFerry`), so one
configured backend object serves both facades. Every method raises
:class:`~dataferry.DistributedCacheError` (with the driver's exception as ``__cause__``) when the
store fails, whatever the driver raised (``Exception``; cancellation and other
``BaseException`` pass through); it never raises a driver exception. A method raises
:class:`~dataferry.ConfigurationError` only for a misuse (a half the backend was not given a
client for).
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

    def close(self) -> None:
        """Release the sync connections."""
        ...
