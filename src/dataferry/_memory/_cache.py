"""MemoryCache: live objects, per-entry TTL, bounded size, thread-safe."""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dataferry._errors import ConfigurationError

__all__ = ["MemoryCache", "MemoryStats"]


@dataclass(frozen=True, slots=True)
class MemoryStats:
    """Counters and size of a :class:`MemoryCache`."""

    hits: int
    misses: int
    entries: int
    weight: int
    evictions_size: int
    evictions_expired: int


class _Item:
    __slots__ = ("expires_at", "value")

    def __init__(self, value: Any, expires_at: float) -> None:
        self.value = value
        self.expires_at = expires_at


_INF = float("inf")


class MemoryCache:
    """The L1 cache: holds live Python objects, each with its own TTL.

    Every caller gets the same object back (as ``functools.lru_cache`` does), so cached values
    must be treated as immutable; ``copy_on_read=True`` hands each caller a deep copy instead,
    at the cost of a ``copy.deepcopy`` per hit.

    Args:
        max_entries: Most entries kept; the least recently used go first. ``None`` = unbounded.
        policy: Eviction policy name.
        copy_on_read: Return a deep copy on every hit.
        clock: Monotonic clock in seconds (tests may inject one).
    """

    def __init__(
        self,
        *,
        max_entries: int | None = 100_000,
        policy: str = "lru",
        copy_on_read: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries is not None and (
            isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1
        ):
            raise ConfigurationError(f"max_entries must be a positive int or None, got {max_entries!r}")
        if policy not in ("lru", "tinylfu"):
            raise ConfigurationError(f"unknown eviction policy {policy!r}")
        self._max_entries = max_entries
        self._copy = copy_on_read
        self._clock = clock
        self._data: OrderedDict[str, _Item] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._evictions_size = 0
        self._evictions_expired = 0

    def get(self, key: str, default: Any = None) -> Any:
        """Return the live value for ``key``, or ``default`` when absent or expired."""
        item = self._data.get(key)
        if item is not None:
            if item.expires_at > self._clock():
                self.hits += 1
                try:
                    self._data.move_to_end(key)
                except KeyError:  # removed by another thread since the lookup
                    pass
                return copy.deepcopy(item.value) if self._copy else item.value
            self._drop_expired(key, item)
        self.misses += 1
        return default

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None`` = until evicted)."""
        expires_at = _INF if ttl is None else self._clock() + ttl
        item = _Item(copy.deepcopy(value) if self._copy else value, expires_at)
        with self._lock:
            data = self._data
            data[key] = item
            data.move_to_end(key)
            if self._max_entries is not None:
                while len(data) > self._max_entries:
                    data.popitem(last=False)
                    self._evictions_size += 1

    def remove(self, key: str) -> bool:
        """Remove ``key``; return whether it was present."""
        with self._lock:
            return self._data.pop(key, None) is not None

    def __contains__(self, key: object) -> bool:
        item = self._data.get(key)  # type: ignore[call-overload]
        return item is not None and item.expires_at > self._clock()

    def clear(self) -> None:
        """Remove every entry."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> MemoryStats:
        """Return hits, misses, evictions and current size."""
        n = len(self._data)
        return MemoryStats(
            hits=self.hits,
            misses=self.misses,
            entries=n,
            weight=n,
            evictions_size=self._evictions_size,
            evictions_expired=self._evictions_expired,
        )

    def _drop_expired(self, key: str, item: _Item) -> None:
        with self._lock:
            if self._data.get(key) is item:
                del self._data[key]
                self._evictions_expired += 1
