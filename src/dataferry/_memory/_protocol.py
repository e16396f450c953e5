"""The contract between :class:`~dataferry.MemoryCache` and an eviction policy."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["EvictionPolicy"]


@runtime_checkable
class EvictionPolicy(Protocol):
    """Decides which entry a full :class:`~dataferry.MemoryCache` drops next.

    The cache owns the entries; a policy only tracks keys (and their weights) to rank them.
    The cache calls every method with its write lock held, so a policy needs no locking of its
    own (``record_hit`` excepted, see below), and only ever about keys it holds: a policy sees
    every key from its :meth:`record_insert` until its :meth:`record_remove` or until
    :meth:`select_victim` returns it. Reads reach :meth:`record_access` in batches, a little
    after the fact, and under heavy read load some are dropped (the cache's read buffer is
    lossy by design, so that a hit costs about a dict lookup).

    Every method should be O(1) or amortised O(1): they run on the cache's write path. Give
    each cache its own policy instance; ``MemoryCache(policy=MyPolicy())`` plugs one in.

    A policy may also define:

    - ``clear()``: forget every key at once; without it, :meth:`~dataferry.MemoryCache.clear`
      calls :meth:`record_remove` for each key.
    - ``record_hit``: a callable ``record_hit(key)`` that the cache calls on every hit, at
      once and *without its lock*, instead of buffering hits for :meth:`record_access`. So
      the policy hears of every hit, in order: that is how ``"lru"`` is exact. It must be
      safe to run concurrently with the other methods (in practice: one C-level operation
      that doesn't release the GIL, such as ``OrderedDict.move_to_end``), must not add
      keys, and raises ``KeyError`` for a key it doesn't track (a hit that raced the key's
      removal: the cache then answers a miss). ``record_hit = None`` says that reads don't
      matter to the policy (``"ttl"``): hits are then neither recorded nor buffered.
    """

    def record_insert(self, key: str, weight: int, expires_at: float) -> None:
        """Track ``key``, just added or given a new value (then treat it as an access).

        ``weight`` is the entry's weight (1 per entry unless the cache has ``max_bytes``);
        ``expires_at`` is on the cache's clock, ``math.inf`` for an entry without expiry.
        """

    def record_access(self, key: str) -> None:
        """Note a read (a cache hit) of ``key``."""

    def record_remove(self, key: str) -> None:
        """Forget ``key``: it was removed or expired (not evicted through this policy)."""

    def select_victim(self) -> str:
        """Choose the key to evict next and forget it; the cache then drops that entry.

        Called only while the cache is over its size budget and the policy holds at least one
        key. The key just passed to :meth:`record_insert` may be chosen: the cache then does
        not admit that entry.
        """
