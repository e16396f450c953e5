"""Time-based eviction: the entry closest to expiry goes first."""

from __future__ import annotations

import heapq
import itertools

__all__ = ["TtlPolicy"]

# Rebuild the heap once it holds this many times more items than live keys (plus a floor), so
# stale items left by removals and replacements cost amortised O(1) and bounded memory.
_COMPACT_FACTOR = 2
_COMPACT_FLOOR = 64


class TtlPolicy:
    """Evicts the entry that would expire soonest (``policy="ttl"``).

    Entries without expiry go last, oldest insert first. Reads do not change the order.

    Exact "soonest first" needs a priority queue, so this is a binary heap (``heapq``, in C):
    O(log n) per insert and eviction, O(1) removal (the heap item is left behind and skipped
    when it surfaces, and the heap is compacted once stale items outnumber live ones). A timer
    wheel would be O(1) but only orders expiries to its tick, and a Python-level wheel costs
    more per operation than C ``heapq`` does at any realistic size.
    """

    __slots__ = ("_heap", "_live", "_seq")

    #: Reads don't change the order: the cache neither records nor buffers hits for it.
    record_hit = None

    def __init__(self) -> None:
        # (expires_at, insert sequence, key): the sequence breaks ties oldest first.
        self._heap: list[tuple[float, int, str]] = []
        # key -> its current heap item; an item that isn't the current one is stale.
        self._live: dict[str, tuple[float, int, str]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def record_insert(self, key: str, weight: int, expires_at: float) -> None:
        """Track ``key`` by its (new) expiry."""
        item = (expires_at, next(self._seq), key)
        self._live[key] = item
        heap = self._heap
        heapq.heappush(heap, item)
        if len(heap) > _COMPACT_FACTOR * len(self._live) + _COMPACT_FLOOR:
            self._heap = list(self._live.values())
            heapq.heapify(self._heap)

    def record_access(self, key: str) -> None:
        """Reads don't change when an entry expires: nothing to do."""

    def record_remove(self, key: str) -> None:
        """Forget ``key`` (its heap item goes stale)."""
        self._live.pop(key, None)

    def select_victim(self) -> str:
        """Return (and forget) the key that expires soonest."""
        heap, live = self._heap, self._live
        while True:
            item = heapq.heappop(heap)
            key = item[2]
            if live.get(key) is item:
                del live[key]
                return key

    def clear(self) -> None:
        """Forget every key."""
        self._heap.clear()
        self._live.clear()
