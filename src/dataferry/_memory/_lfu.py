"""Least frequently used eviction, with dynamic aging (LFU-DA), in O(1)."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["LfuPolicy"]


class _Bucket:
    """The keys that share one priority, oldest first; a link in the ascending bucket list."""

    __slots__ = ("keys", "next", "prev", "priority")

    def __init__(self, priority: int, prev: _Bucket | None, next: _Bucket | None) -> None:
        self.priority = priority
        # Ties go oldest first. An OrderedDict: with a dict, the keys evicted from the front
        # leave deleted entries that finding the next victim steps over one by one (15 µs per
        # set with eviction at 100,000 entries, against 1.6 µs for lru; measured).
        self.keys: OrderedDict[str, None] = OrderedDict()
        self.prev = prev
        self.next = next


class LfuPolicy:
    """Evicts the least frequently used entry; old popularity decays (``policy="lfu"``).

    Each key has a priority: the cache's *age* when it was inserted plus the number of times it
    was used since. The victim is the key with the lowest priority (oldest first among equals),
    and the cache's age becomes that priority. New keys therefore start level with what was
    just evicted, and a key that was popular long ago sinks below newer keys as the age rises,
    instead of staying forever (LFU with dynamic aging).

    Keys live in buckets of equal priority, kept in a linked list in ascending order (the O(1)
    LFU layout): an access moves a key one bucket up and an insert lands next to the lowest
    bucket, so every operation is O(1).
    """

    __slots__ = ("_age", "_head", "_where")

    def __init__(self) -> None:
        self._where: dict[str, _Bucket] = {}
        self._head: _Bucket | None = None  # lowest priority
        # Invariant: every bucket's priority >= _age (the age is the priority last evicted).
        self._age = 0

    def __len__(self) -> int:
        return len(self._where)

    def record_insert(self, key: str, weight: int, expires_at: float) -> None:
        """Track a new ``key`` at the current age; a replaced value counts as an access."""
        if key in self._where:
            self.record_access(key)
            return
        priority = self._age + 1
        head = self._head
        if head is None or head.priority > priority:
            bucket = _Bucket(priority, None, head)
            if head is not None:
                head.prev = bucket
            self._head = bucket
        elif head.priority == priority:
            bucket = head
        else:  # head.priority == age, so the new bucket goes right after it
            bucket = self._bucket_after(head, priority)
        bucket.keys[key] = None
        self._where[key] = bucket

    def record_access(self, key: str) -> None:
        """Move ``key`` one priority up."""
        bucket = self._where[key]
        target = self._bucket_after(bucket, bucket.priority + 1)
        del bucket.keys[key]
        target.keys[key] = None
        self._where[key] = target
        if not bucket.keys:
            self._unlink(bucket)

    def record_remove(self, key: str) -> None:
        """Forget ``key``."""
        bucket = self._where.pop(key, None)
        if bucket is not None:
            del bucket.keys[key]
            if not bucket.keys:
                self._unlink(bucket)

    def select_victim(self) -> str:
        """Return (and forget) the oldest key of the lowest priority; age the cache."""
        bucket = self._head
        assert bucket is not None, "select_victim on an empty policy"
        key = bucket.keys.popitem(last=False)[0]
        self._age = bucket.priority
        del self._where[key]
        if not bucket.keys:
            self._unlink(bucket)
        return key

    def clear(self) -> None:
        """Forget every key (the age is kept: it only matters relative to live keys)."""
        self._where.clear()
        self._head = None

    def _bucket_after(self, bucket: _Bucket, priority: int) -> _Bucket:
        nxt = bucket.next
        if nxt is not None and nxt.priority == priority:
            return nxt
        new = _Bucket(priority, bucket, nxt)
        bucket.next = new
        if nxt is not None:
            nxt.prev = new
        return new

    def _unlink(self, bucket: _Bucket) -> None:
        prev, nxt = bucket.prev, bucket.next
        if prev is None:
            self._head = nxt
        else:
            prev.next = nxt
        if nxt is not None:
            nxt.prev = prev
