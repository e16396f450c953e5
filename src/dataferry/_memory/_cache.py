"""MemoryCache: live objects, per-entry expiry, bounded size, pluggable eviction, thread-safe."""

from __future__ import annotations

import copy
import heapq
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dataferry._errors import ConfigurationError
from dataferry._memory._lfu import LfuPolicy
from dataferry._memory._lru import LruPolicy
from dataferry._memory._protocol import EvictionPolicy
from dataferry._memory._tinylfu import TinyLfuPolicy
from dataferry._memory._ttl import TtlPolicy
from dataferry._memory._weigher import entry_weight, estimate_size

__all__ = ["MemoryCache", "MemoryStats"]

_NEVER = math.inf
#: Hits remembered for the policy between two writes; older ones are dropped (lossy, as in
#: Caffeine): a drain costs one policy call per buffered hit, so this bounds a write's pause.
_READ_BUFFER = 1024
#: A write feeds buffered hits to the policy once there are this many: batching makes the
#: writes cheaper, and hits on entries evicted before the drain are not counted, which filters
#: short bursts of re-reads out of the popularity estimate (measured: better hit ratios).
_DRAIN_BATCH = 64
#: Expired entries a write drops, at most, so no single write pays for a mass expiry.
_EXPIRE_BATCH = 16
#: The expiry heap is rebuilt from live entries once it holds this many times more items
#: (plus a floor, so small caches don't rebuild all the time).
_HEAP_SLACK = 2
_HEAP_FLOOR = 256
_POLICY_NAMES = ("lfu", "lru", "tinylfu", "ttl")

#: ``weigher(key, value) -> int``: an entry's weight, counted against ``max_bytes``.
Weigher = Callable[[str, Any], int]
# What the write path calls: (key, value, meta, size_hint) -> weight, already checked.
_EntryWeigher = Callable[[str, Any, object, int | None], int]


@dataclass(frozen=True, slots=True)
class MemoryStats:
    """Counters and size of a :class:`MemoryCache` (a snapshot).

    Attributes:
        hits: ``get`` calls answered from the cache.
        misses: ``get`` calls that found nothing, or an expired entry.
        entries: Entries held now (expired ones not yet dropped included).
        weight: Sum of the entries' weights (with no ``weigher`` and no ``max_bytes``, each
            entry weighs 1).
        evictions_size: Entries dropped, or not admitted, to respect the size limits.
        evictions_expired: Expired entries dropped (on read, by writes, by ``cleanup``).

    """

    hits: int
    misses: int
    entries: int
    weight: int
    evictions_size: int
    evictions_expired: int


class _NoEviction:
    """The policy of an unbounded cache: nothing to rank, since nothing is ever evicted."""

    __slots__ = ()

    def record_insert(self, key: str, weight: int, expires_at: float) -> None:
        pass

    def record_access(self, key: str) -> None:
        pass

    def record_remove(self, key: str) -> None:
        pass

    def select_victim(self) -> str:  # pragma: no cover - an unbounded cache never asks
        raise LookupError("an unbounded cache evicts nothing")

    def clear(self) -> None:
        pass


def _check_ttl(ttl: object) -> None:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise ConfigurationError(f"ttl must be a number of seconds or None, got {ttl!r}")


def _bad_size_hint(size_hint: object) -> ConfigurationError:
    return ConfigurationError(f"size_hint must be an int >= 0 or None, got {size_hint!r}")


def _check_limit(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive int or None, got {value!r}")
    return value


def _builtin_policy(name: str, max_entries: int | None, max_bytes: int | None) -> EvictionPolicy:
    if max_entries is None and max_bytes is None:
        return _NoEviction()
    if name == "lru":
        return LruPolicy()
    if name == "lfu":
        return LfuPolicy()
    if name == "ttl":
        return TtlPolicy()
    maximum = max_bytes if max_bytes is not None else max_entries
    assert maximum is not None
    return TinyLfuPolicy(maximum, entries=max_entries)


class MemoryCache:
    """The L1 cache: live Python objects, each with its own expiry, in a bounded space.

    Every caller gets the same object back (as ``functools.lru_cache`` does), so cached values
    must be treated as immutable; ``copy_on_read=True`` stores a deep copy and hands each caller
    a deep copy, at the cost of a ``copy.deepcopy`` per ``set`` and per hit.

    Metadata: ``set(..., meta=...)`` stores an opaque object with the value, read back with
    it by :meth:`get_entry` (the facade keeps creation time, logical expiry and tags there, to
    decide fail-safe, eager refresh and tag invalidation on an L1 hit). The cache never looks
    inside it, and never copies it.

    Size: ``max_entries`` bounds the number of entries and ``max_bytes`` the sum of their
    weights; either, both or neither (unbounded) may be given. With ``max_bytes`` and no
    ``weigher``, an entry weighs an estimate of the bytes it holds in memory: key, a fixed
    overhead, the metadata object's own size, and the value's size by a bounded deep walk (see
    :func:`estimate_size`: O(1) for str and bytes, a bounded walk of at most a few hundred
    objects for containers), or the ``size_hint`` given to :meth:`set` (the length of the
    value's encoded form) when that is larger. A ``weigher(key, value) -> int`` replaces the
    estimate (it is not given the hint). An entry heavier than ``max_bytes`` is not admitted.
    When a write goes over a limit, the eviction policy picks what goes, possibly the new entry
    itself (W-TinyLFU may judge it less worth keeping than what it would displace).

    Policies: ``"tinylfu"`` (default: W-TinyLFU with an adaptive window, near-optimal hit
    ratio on both recency- and frequency-heavy workloads), ``"lru"``, ``"lfu"`` (LFU with
    dynamic aging) and ``"ttl"`` (soonest expiry first), or any :class:`EvictionPolicy`.

    Expiry: an entry is never returned after its ttl. Expired entries are dropped when read,
    a few on every write (so a cache full of expired entries empties as it is used, with no
    background thread), and all at once by :meth:`cleanup`.

    Threads: reads take no lock. A hit costs about a dict lookup: it records itself in a
    bounded, lossy buffer that writes feed to the policy under the lock once a batch of hits
    has gathered (or :meth:`cleanup` does at once), as Caffeine does; under a long run of reads
    without writes the oldest hits are dropped, never the cache's speed. Writes take one lock.
    Entries are immutable tuples replaced whole, so a reader sees the old or the new value of
    a key (with its own metadata), never a mix. Weighing runs before the lock is taken.

    Args:
        max_entries: Most entries held; ``None`` for no count limit.
        max_bytes: Most total weight held; ``None`` for no weight limit.
        weigher: ``weigher(key, value) -> int >= 0``, an entry's weight; by default an
            estimate of its bytes when ``max_bytes`` is set (see above), 1 otherwise.
        policy: A policy name (see above) or an :class:`EvictionPolicy` instance.
        copy_on_read: Store and return deep copies, so callers may mutate what they get.
        clock: Monotonic clock in seconds that ttls count on (tests may inject one).

    Raises:
        ConfigurationError: An argument out of range or of the wrong type.

    """

    def __init__(
        self,
        *,
        max_entries: int | None = 100_000,
        max_bytes: int | None = None,
        weigher: Weigher | None = None,
        policy: str | EvictionPolicy = "tinylfu",
        copy_on_read: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        max_entries = _check_limit("max_entries", max_entries)
        max_bytes = _check_limit("max_bytes", max_bytes)
        if weigher is not None and not callable(weigher):
            raise ConfigurationError(f"weigher must be callable or None, got {weigher!r}")
        if not isinstance(copy_on_read, bool):
            raise ConfigurationError(f"copy_on_read must be a bool, got {copy_on_read!r}")
        if not callable(clock):
            raise ConfigurationError(f"clock must be callable, got {clock!r}")
        if isinstance(policy, str):
            if policy not in _POLICY_NAMES:
                raise ConfigurationError(
                    f"unknown eviction policy {policy!r}; expected one of {_POLICY_NAMES}"
                )
            policy_obj = _builtin_policy(policy, max_entries, max_bytes)
        elif isinstance(policy, EvictionPolicy) and not isinstance(policy, type):
            policy_obj = policy
        else:
            raise ConfigurationError(
                f"policy must be a policy name or an EvictionPolicy instance, got {policy!r}"
            )
        weigh: _EntryWeigher | None = None
        if weigher is estimate_size or (weigher is None and max_bytes is not None):
            weigh = entry_weight  # the documented default, which uses the size hint
        elif weigher is not None:
            weigh = self._user_weight

        self._max_entries = max_entries
        self._max_bytes = max_bytes
        # Limits as ints, so the write path compares without None checks.
        self._entry_limit = sys.maxsize if max_entries is None else max_entries
        self._weight_limit = sys.maxsize if max_bytes is None else max_bytes
        self._weigher = weigher
        self._weigh = weigh
        self._policy = policy_obj
        # The policy counts in the unit of the budget it ranks for: bytes with max_bytes.
        self._policy_weighs = max_bytes is not None
        self._tracks_reads = not isinstance(policy_obj, _NoEviction)
        self._policy_name = policy if isinstance(policy, str) else type(policy).__name__
        self._copy_on_read = copy_on_read
        self._clock = clock
        # key -> (value, expires_at, meta, weight). Entries are immutable tuples, replaced
        # whole, so a lock-free reader never sees a half-written entry, nor a value with
        # another value's metadata. Reads use only the first three fields; the weight is last
        # so that a leaner layout can drop it where every entry weighs 1.
        self._data: dict[str, tuple[Any, float, object, int]] = {}
        self._lock = threading.Lock()
        # deque.append is atomic (and thread-safe without the GIL), so readers need no lock.
        self._reads: deque[str] = deque(maxlen=_READ_BUFFER)
        # (expires_at, key) of entries with a ttl; stale items are skipped when they surface.
        self._expiry: list[tuple[float, str]] = []
        self._expiry_limit = _HEAP_FLOOR  # rebuilt beyond this many items
        self._weight = 0
        # Plain int counters: a hit may very rarely go uncounted under thread contention
        # (see dataferry._events), the price of a lock-free hit.
        self._hits = 0
        self._misses = 0
        self._evictions_size = 0
        self._evictions_expired = 0

    def __repr__(self) -> str:
        return (
            f"MemoryCache(max_entries={self._max_entries!r}, max_bytes={self._max_bytes!r}, "
            f"policy={self._policy_name!r}, entries={len(self._data)})"
        )

    # -- reads (no lock) --------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value for ``key``, or ``default`` when absent or expired.

        The live object is returned (a deep copy with ``copy_on_read``). Counts a hit or a miss.
        """
        # Hot path: one dict subscript (try costs nothing in 3.11 when nothing is raised),
        # an expiry compare, a counter and a buffer append; the policy hears of it later.
        try:
            value, expires_at, _, _ = self._data[key]
        except KeyError:
            self._misses += 1
            return default
        if expires_at > self._clock():
            self._hits += 1
            self._reads.append(key)
            if self._copy_on_read:
                return copy.deepcopy(value)
            return value
        self._drop_if_expired(key)
        self._misses += 1
        return default

    def get_entry(self, key: str) -> tuple[Any, object] | None:
        """Return ``(value, meta)`` for ``key``, or ``None`` when absent or expired.

        ``meta`` is what :meth:`set` stored with the value (``None`` if nothing), as is; the
        value is the live object (a deep copy with ``copy_on_read``). Counts a hit or a miss,
        as :meth:`get` does.
        """
        # The same path as get (see there), returning the metadata too.
        try:
            value, expires_at, meta, _ = self._data[key]
        except KeyError:
            self._misses += 1
            return None
        if expires_at > self._clock():
            self._hits += 1
            self._reads.append(key)
            if self._copy_on_read:
                return copy.deepcopy(value), meta
            return value, meta
        self._drop_if_expired(key)
        self._misses += 1
        return None

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` holds a value that has not expired (not counted as a hit or miss)."""
        if not isinstance(key, str):
            return False
        entry = self._data.get(key)
        return entry is not None and entry[1] > self._clock()

    def __len__(self) -> int:
        """Number of entries held, expired ones not yet dropped included."""
        return len(self._data)

    def stats(self) -> MemoryStats:
        """Return hits, misses, evictions and the current size."""
        return MemoryStats(
            hits=self._hits,
            misses=self._misses,
            entries=len(self._data),
            weight=self._weight,
            evictions_size=self._evictions_size,
            evictions_expired=self._evictions_expired,
        )

    # -- writes (under the lock) ------------------------------------------------------------

    def set(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        *,
        meta: object = None,
        size_hint: int | None = None,
    ) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None`` = until evicted).

        A ttl of zero or less stores nothing and removes the key's current value (the entry
        would already be expired). The entry may be evicted right away, or not admitted at all,
        when the cache is full and the policy prefers what it holds.

        Args:
            key: The key.
            value: The value (deep-copied first with ``copy_on_read``).
            ttl: Seconds until the entry expires; ``None`` for no expiry.
            meta: An object stored with the value, returned by :meth:`get_entry` (never
                looked into, never copied).
            size_hint: The size in bytes of the value's encoded form, if the caller has it:
                the default weigher counts ``max(size_hint, its own estimate)``.

        Raises:
            ConfigurationError: ``ttl`` is not a number, ``size_hint`` is not an int >= 0, or
                the weigher returned something other than an int >= 0 (nothing is stored).

        """
        if size_hint is not None and (size_hint.__class__ is not int or size_hint < 0):
            raise _bad_size_hint(size_hint)
        now = self._clock()
        if ttl is None:
            expires_at = _NEVER
        else:
            if ttl.__class__ is not float and ttl.__class__ is not int:  # fast path first
                _check_ttl(ttl)
            if not ttl > 0:  # zero, negative (already stale) or NaN: nothing to keep
                self.remove(key)
                return
            expires_at = now + ttl
        if self._copy_on_read:
            value = copy.deepcopy(value)
        weigh = self._weigh
        weight = 1 if weigh is None else weigh(key, value, meta, size_hint)
        with self._lock:
            # Amortised upkeep first (inlined: this is the write path).
            if len(self._reads) >= _DRAIN_BATCH:
                self._drain_reads()
            heap = self._expiry
            if heap and heap[0][0] <= now:
                self._expire_due(now, _EXPIRE_BATCH)
            data = self._data
            policy = self._policy
            old = data.get(key)
            if weight > self._weight_limit:
                # Heavier than the whole budget: never admitted, and the old value goes too.
                if old is not None:
                    del data[key]
                    policy.record_remove(key)
                    self._weight -= old[3]
                self._evictions_size += 1
                return
            # Make room before the entry becomes visible, so lock-free readers never see the
            # cache over its limits.
            count = len(data) + (old is None)
            total = self._weight + weight - (0 if old is None else old[3])
            policy.record_insert(key, weight if self._policy_weighs else 1, expires_at)
            admitted = True
            while count > self._entry_limit or total > self._weight_limit:
                victim = policy.select_victim()
                if victim == key:  # the policy turned the new entry away
                    admitted = False
                    total -= weight
                    if old is not None:
                        del data[key]
                else:
                    evicted = data.pop(victim, None)
                    if evicted is None:
                        raise ConfigurationError(
                            f"eviction policy {self._policy_name} chose a key the cache "
                            "does not hold"
                        )
                    total -= evicted[3]
                count -= 1
                self._evictions_size += 1
            self._weight = total
            if admitted:
                data[key] = (value, expires_at, meta, weight)
                if expires_at != _NEVER:
                    heapq.heappush(heap, (expires_at, key))
                    if len(heap) > self._expiry_limit:
                        self._rebuild_expiry()

    def remove(self, key: str) -> bool:
        """Remove ``key``; return whether it held a value that had not expired."""
        now = self._clock()
        with self._lock:
            self._maintain(now)
            entry = self._data.pop(key, None)
            if entry is None:
                return False
            self._policy.record_remove(key)
            self._weight -= entry[3]
            return entry[1] > now

    def clear(self) -> None:
        """Remove every entry (the counters are kept)."""
        with self._lock:
            self._reads.clear()
            policy = self._policy
            clear = getattr(policy, "clear", None)
            if callable(clear):
                clear()
            else:
                for key in self._data:
                    policy.record_remove(key)
            self._data.clear()
            self._expiry.clear()
            self._expiry_limit = _HEAP_FLOOR
            self._weight = 0

    def cleanup(self) -> None:
        """Do pending upkeep now: feed buffered hits to the policy, drop every expired entry.

        Never needed for correctness (writes do this a little at a time); useful before
        measuring, or to free memory from a cache that expired while nobody wrote to it.
        """
        now = self._clock()
        with self._lock:
            if self._reads:
                self._drain_reads()
            self._expire_due(now, sys.maxsize)

    # -- internals --------------------------------------------------------------------------

    def _user_weight(self, key: str, value: Any, meta: object, size_hint: int | None) -> int:
        assert self._weigher is not None
        weight = self._weigher(key, value)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise ConfigurationError(f"weigher must return an int >= 0, got {weight!r}")
        return weight

    def _maintain(self, now: float) -> None:
        # Amortised upkeep, with the lock held, on remove (set inlines the same steps).
        if len(self._reads) >= _DRAIN_BATCH:
            self._drain_reads()
        heap = self._expiry
        if heap and heap[0][0] <= now:
            self._expire_due(now, _EXPIRE_BATCH)

    def _drain_reads(self) -> None:
        reads = self._reads
        if not self._tracks_reads:
            reads.clear()
            return
        data, record = self._data, self._policy.record_access
        # Bounded by the length seen now: readers may keep appending while this runs.
        for _ in range(len(reads)):
            key = reads.popleft()
            if key in data:  # skip hits on entries removed since
                record(key)

    def _expire_due(self, now: float, limit: int) -> None:
        heap, data, policy = self._expiry, self._data, self._policy
        while heap and limit and heap[0][0] <= now:
            key = heapq.heappop(heap)[1]
            limit -= 1
            entry = data.get(key)
            # The item may be stale (entry replaced or removed): check the live entry.
            if entry is not None and entry[1] <= now:
                del data[key]
                policy.record_remove(key)
                self._weight -= entry[3]
                self._evictions_expired += 1

    def _rebuild_expiry(self) -> None:
        heap = [(entry[1], key) for key, entry in self._data.items() if entry[1] != _NEVER]
        heapq.heapify(heap)
        self._expiry = heap
        self._expiry_limit = _HEAP_SLACK * len(heap) + _HEAP_FLOOR

    def _drop_if_expired(self, key: str) -> None:
        with self._lock:
            entry = self._data.get(key)
            # Re-checked under the lock: another thread may have stored a fresh value since.
            if entry is not None and entry[1] <= self._clock():
                del self._data[key]
                self._policy.record_remove(key)
                self._weight -= entry[3]
                self._evictions_expired += 1
