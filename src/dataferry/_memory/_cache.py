"""MemoryCache: live objects, per-entry expiry, bounded size, pluggable eviction, thread-safe."""

from __future__ import annotations

import copy
import heapq
import logging
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
#: Caffeine): a drain costs one policy call per buffered hit, so this bounds a write's pause
#: (a few ms). Long runs of hits without a write are recency evidence the policy needs (a
#: zig-zag walking back over what it just read): 1024 lost up to 4 points of hit ratio on the
#: zigzag, sawtooth and drift_zipf traces of benchmarks/_synthetic.py, 4096 gets within 1 of
#: an unbounded buffer. Readers never drain it themselves: a check on the hit path (every
#: 512th hit, try the lock) measured 10-15% slower hits for the same hit ratios.
_READ_BUFFER = 4096
#: A write feeds buffered hits to the policy once there are this many: batching makes the
#: writes cheaper, and hits on entries evicted before the drain are not counted, which filters
#: short bursts of re-reads out of the popularity estimate (measured: better hit ratios).
_DRAIN_BATCH = 64
#: Expired entries a write drops, at most, so no single write pays for a mass expiry.
_EXPIRE_BATCH = 16
#: Deadlines of entries with a ttl of at least _GRID_MIN_TTL are rounded down to a multiple of
#: _GRID seconds (2**-10, about 1 ms): entries written within the same millisecond with the
#: same ttl then share one float object instead of holding 32 bytes each. An entry so expires
#: up to 1 ms early (0.1% of its ttl at most), never late. Shorter ttls keep exact deadlines;
#: above _GRID_MAX_TTL the rounding would lose precision, and nothing is gained.
_GRID = 2.0**-10
_GRID_MIN_TTL = 1.0
_GRID_MAX_TTL = 2.0**40
#: The expiry wheel's buckets are 2**-_WHEEL_BITS to 2**(1 - _WHEEL_BITS) of the time an entry
#: had left to live when it was scheduled: an expired entry waits at most that long (0.2% to
#: 0.4% of its ttl) before a write drops it, and one ttl spans at most 2**_WHEEL_BITS buckets.
_WHEEL_BITS = 9
_MIN_WIDTH_EXPONENT = -20
#: The wheel is compacted (its stale items dropped) once it holds this many times more keys
#: than it held live ones after the last compaction, plus a floor so that small caches don't
#: compact all the time: rewriting, removing or evicting a key leaves its wheel item behind
#: until its bucket comes due.
_WHEEL_SLACK = 2
_WHEEL_FLOOR = 256
_POLICY_NAMES = ("lfu", "lru", "tinylfu", "ttl")

#: ``weigher(key, value) -> int``: an entry's weight, counted against ``max_bytes``.
logger = logging.getLogger("dataferry")

Weigher = Callable[[str, Any], int]
# What the write path calls: (key, value, meta, size_hint) -> weight, already checked.
_EntryWeigher = Callable[[str, Any, object, int | None], int]
#: ``record_hit`` of a policy that reads hits without the lock (see EvictionPolicy).
_HitRecorder = Callable[[str], object]
_ABSENT: Any = object()


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

    #: Reads don't matter to it: hits are neither recorded nor buffered.
    record_hit = None

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


def _bucket_width(remaining: float) -> float:
    # A power of two between 2**-_WHEEL_BITS and 2**(1 - _WHEEL_BITS) times ``remaining``
    # (not under a microsecond: the clock doesn't tell such times apart anyway).
    return math.ldexp(1.0, max(math.frexp(remaining)[1] - _WHEEL_BITS, _MIN_WIDTH_EXPONENT))


class MemoryCache:
    """The L1 cache: live Python objects, each with its own expiry, in a bounded space.

    Every caller gets the same object back (as ``functools.lru_cache`` does), so cached values
    must be treated as immutable; ``copy_on_read=True`` stores a deep copy and hands each caller
    a deep copy, at the cost of a ``copy.deepcopy`` per ``set`` and per hit.

    Metadata: ``set(..., meta=...)`` stores an opaque object with the value, read back with
    it by :meth:`get_entry` (the facade keeps creation time, logical expiry and tags there, to
    decide fail-safe, eager refresh and tag invalidation on an L1 hit). The cache never looks
    inside it, and never copies it (an entry without metadata holds a ``None`` in its place,
    which costs nothing: see Memory).

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

    Policies, and which ones are exact:

    - ``"tinylfu"`` (default): W-TinyLFU with an adaptive window, near-optimal hit ratio on
      both recency- and frequency-heavy workloads. Approximate by design: it ranks by a
      popularity sketch, and hears of hits in batches, through a lossy buffer (see Threads).
    - ``"lru"``: exact LRU. Every hit moves its key to the most recent end at once (a single
      ``OrderedDict.move_to_end``, without the lock), so run single-threaded it evicts exactly
      what a reference LRU evicts and gets exactly its hit ratio.
    - ``"lfu"``: LFU with dynamic aging. Approximate: it hears of hits through the lossy
      buffer, like ``"tinylfu"``, so under a long run of reads without writes some are not
      counted.
    - ``"ttl"``: soonest expiry first. Exact (reads don't change its order).
    - or any :class:`EvictionPolicy`.

    Expiry: an entry is never returned after its ttl. A ttl of at least a second is rounded
    down to the millisecond (an entry may expire up to 1 ms early, never late), so that
    entries written together share their deadline. Expired entries are dropped when read, a
    few on every write (so a cache full of expired entries empties as it is used, with no
    background thread), and all at once by :meth:`cleanup`. Writes find them in a timer wheel
    of key lists, one bucket per slice of time (0.2% to 0.4% of the ttl wide), so an expired
    entry may wait that long before a write drops it (a read drops it at once).

    Threads: reads take no lock. A hit costs about a dict lookup: with ``"tinylfu"`` and
    ``"lfu"`` it records itself in a bounded, lossy buffer that writes feed to the policy under
    the lock once a batch of hits has gathered (or :meth:`cleanup` does at once), as Caffeine
    does; under a long run of reads without writes (beyond the last 4096 hits) the oldest hits
    are dropped, never the cache's speed. With ``"lru"`` a hit makes its one atomic
    ``move_to_end`` itself; with ``"ttl"`` (or no limit) it records nothing, as reads don't
    matter there. Writes take one lock. Entries are immutable tuples replaced whole, so a reader
    sees the old or the new value of a key (with its own metadata), never a mix. Weighing runs
    before the lock is taken.

    Memory: an entry is a ``(value, deadline, meta)`` tuple in a dict, one slot in the expiry
    wheel (with a ttl), and what the policy keeps; with ``max_bytes`` or a ``weigher``, its
    weight too. ``benchmarks/bench_memory.py`` measures the bytes per entry of each policy.

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

    # Slots: the hit path reads a few attributes, and slot reads are the fastest there are
    # (an instance dict of more than 30 attributes would lose CPython's shared-key fast path).
    __slots__ = (
        "_bucket_deadline",
        "_clock",
        "_copy_on_read",
        "_data",
        "_dues",
        "_entry_limit",
        "_evictions_expired",
        "_evictions_size",
        "_hits",
        "_last_bucket",
        "_last_deadline",
        "_lock",
        "_max_bytes",
        "_max_entries",
        "_misses",
        "_policy",
        "_policy_name",
        "_policy_weighs",
        "_reads",
        "_stale",
        "_touch",
        "_weigh",
        "_weigher",
        "_weight",
        "_weight_limit",
        "_weights",
        "_wheel",
        "_wheel_items",
        "_wheel_limit",
        "_width",
        "_width_ttl",
        "on_evict",
    )

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
        record_hit = getattr(policy_obj, "record_hit", _ABSENT)
        if record_hit is not _ABSENT and record_hit is not None and not callable(record_hit):
            raise ConfigurationError(
                f"the policy's record_hit must be callable or None, got {record_hit!r}"
            )

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
        self._policy_name = policy if isinstance(policy, str) else type(policy).__name__
        self._copy_on_read = copy_on_read
        self._clock = clock
        # key -> (value, deadline, meta), an immutable tuple replaced whole, so a lock-free
        # reader never sees a half-written entry, nor a value with another value's metadata.
        # ``deadline`` is on the clock (math.inf: no expiry), ``meta`` None when not given. One
        # shape for every entry, so a read unpacks it in one step; a 3-tuple takes the same 64
        # bytes as a 2-tuple (CPython's allocator rounds both up to 64), so an entry without
        # metadata loses nothing by carrying a None.
        self._data: dict[str, tuple[Any, float, object]] = {}
        # key -> weight, for caches whose entries weigh (a weigher, or max_bytes); None when
        # each entry weighs 1. Only writers use weights (under the lock), so they needn't be
        # in the entry that readers see.
        self._weights: dict[str, int] | None = None if weigh is None else {}
        # key -> the clock time until which an expired entry is kept for get_stale (set(...,
        # stale_ttl=)), a side table like weights: entries that keep nothing cost nothing.
        self._stale: dict[str, float] = {}
        self._lock = threading.Lock()
        # How a hit reaches the policy, without the lock:
        # - by default, through the read buffer, which writes feed to the policy in batches;
        #   deque.append is atomic (and thread-safe without the GIL), so readers need no lock;
        # - with the policy's own record_hit, at once (_touch; the buffer stays empty);
        # - not at all when the policy says reads don't matter (record_hit = None).
        # A buffer that nobody needs has no room (maxlen 0), so a generic read may append to
        # it for nothing rather than test which case it is in.
        buffered = record_hit is _ABSENT
        self._reads: deque[str] = deque(maxlen=_READ_BUFFER if buffered else 0)
        self._touch: _HitRecorder | None = None if buffered else record_hit
        # Expiry: a timer wheel. Each bucket is a list of keys whose deadline falls before the
        # bucket's due time, by at most the bucket's width; a heap orders the due times. Keys
        # are checked against their live entry when their bucket comes due (a key rewritten
        # since has moved on to a later bucket, and is skipped), so a bucket item costs only a
        # list slot, not a tuple and a float as a heap of (deadline, key) would.
        self._wheel: dict[float, list[Any]] = {}  # due time -> [width, key, key, ...]
        self._dues: list[float] = []  # heap of the wheel's due times
        self._wheel_items = 0  # keys in the wheel, stale ones included
        self._wheel_limit = _WHEEL_FLOOR  # compacted beyond this many keys
        self._bucket_deadline = -_NEVER  # the deadline of the last bucket a write used...
        self._last_bucket: list[Any] = []  # ...and that bucket
        self._width_ttl = -1.0  # the width of the last ttl's buckets, computed once per ttl
        self._width = 1.0
        self._last_deadline = -_NEVER  # the float object entries share (see _GRID)
        self._weight = 0
        # Plain int counters: a hit may very rarely go uncounted under thread contention
        # (see dataferry._events), the price of a lock-free hit.
        self._hits = 0
        self._misses = 0
        self._evictions_size = 0
        self._evictions_expired = 0
        #: Called (outside the lock) with the keys a write evicted or turned away to stay
        #: within the size limits; None (the default) costs the write path nothing.
        self.on_evict: Callable[[list[str]], None] | None = None
        # The same cache with a hit path made for how it records hits (see "hit paths" at the
        # end of this module); copy_on_read and users' subclasses keep the generic one.
        if type(self) is MemoryCache and not copy_on_read:
            self.__class__ = _ExactHits if self._touch is not None else _BufferedHits

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
        # The generic path (copy_on_read, subclasses); see _BufferedHits.get for the hot one.
        try:
            value, deadline, _ = self._data[key]
        except KeyError:
            self._misses += 1
            return default
        if deadline > self._clock():
            touch = self._touch
            if touch is None:
                self._reads.append(key)
            else:
                try:
                    touch(key)
                except KeyError:  # see _ExactHits.get
                    self._misses += 1
                    return default
            self._hits += 1
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
        try:
            value, deadline, meta = self._data[key]
        except KeyError:
            self._misses += 1
            return None
        if deadline > self._clock():
            touch = self._touch
            if touch is None:
                self._reads.append(key)
            else:
                try:
                    touch(key)
                except KeyError:
                    self._misses += 1
                    return None
            self._hits += 1
            if self._copy_on_read:
                return copy.deepcopy(value), meta
            return value, meta
        self._drop_if_expired(key)
        self._misses += 1
        return None

    def get_stale(self, key: str) -> tuple[Any, object, bool] | None:
        """Return ``(value, meta, fresh)`` for ``key``, expired entries kept by ``stale_ttl`` too.

        ``fresh`` tells whether the entry is still within its ttl. ``None`` when the key holds
        nothing, or an entry past both its ttl and its ``stale_ttl``. Counts no hit or miss
        and doesn't touch the policy: it is the fallback of a miss, not a hit.
        """
        entry = self._data.get(key)
        if entry is None:
            return None
        value, deadline, meta = entry
        now = self._clock()
        fresh = deadline > now
        if not fresh and not self._stale.get(key, deadline) > now:
            return None
        if self._copy_on_read:
            value = copy.deepcopy(value)
        return value, meta, fresh

    def _entry_of(self, key: str) -> object | None:
        """The stored entry of ``key`` as an opaque token (None: absent); counts nothing.

        The same object until ``key`` is written again or dropped: the cache's facade tells
        by it whether the entry its write made is still the one held.
        """
        return self._data.get(key)

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
        stale_ttl: float = 0.0,
    ) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None`` = until evicted).

        A ttl of zero or less stores nothing and removes the key's current value (the entry
        would already be expired). The entry may be evicted right away, or not admitted at all,
        when the cache is full and the policy prefers what it holds.

        Args:
            key: The key.
            value: The value (deep-copied first with ``copy_on_read``).
            ttl: Seconds until the entry expires; ``None`` for no expiry. From a second up, the
                deadline is rounded down to the millisecond (see the class docstring).
            meta: An object stored with the value, returned by :meth:`get_entry` (never
                looked into, never copied).
            size_hint: The size in bytes of the value's encoded form, if the caller has it:
                the default weigher counts ``max(size_hint, its own estimate)``.
            stale_ttl: Seconds the entry is kept past its ttl, for :meth:`get_stale` only
                (reads miss it; it still takes room, and may be evicted like any entry).

        Raises:
            ConfigurationError: ``ttl`` is not a number, ``size_hint`` is not an int >= 0, or
                the weigher returned something other than an int >= 0 (nothing is stored).

        """
        if size_hint is not None and (size_hint.__class__ is not int or size_hint < 0):
            raise _bad_size_hint(size_hint)
        now = self._clock()
        keep = None
        if ttl is None:
            deadline = _NEVER
        else:
            if ttl.__class__ is not float and ttl.__class__ is not int:  # fast path first
                _check_ttl(ttl)
            deadline = now + ttl
            # Zero, negative (already stale), NaN, or too small to move the clock: the entry
            # would already be expired, nothing to keep.
            if not deadline > now:
                self.remove(key)
                return
            if _GRID_MIN_TTL <= ttl < _GRID_MAX_TTL:
                deadline = deadline // _GRID * _GRID
                # Share the previous write's float when equal (unlocked: a race only costs
                # the sharing, any float of that value is right).
                last = self._last_deadline
                if deadline == last:
                    deadline = last
                else:
                    self._last_deadline = deadline
            if stale_ttl:
                if stale_ttl.__class__ is not float and stale_ttl.__class__ is not int:
                    _check_ttl(stale_ttl)
                if stale_ttl > 0:
                    keep = deadline + stale_ttl
                    ttl += stale_ttl
        if self._copy_on_read:
            value = copy.deepcopy(value)
        weigh = self._weigh
        weight = 1 if weigh is None else weigh(key, value, meta, size_hint)
        entry = (value, deadline, meta)
        evicted: list[str] | None = None if self.on_evict is None else []
        try:
            with self._lock:
                # Amortised upkeep first (inlined: this is the write path).
                if len(self._reads) >= _DRAIN_BATCH:
                    self._drain_reads()
                dues = self._dues
                if dues and dues[0] <= now:
                    self._expire_due(now, _EXPIRE_BATCH)
                data, weights, policy = self._data, self._weights, self._policy
                old = data.get(key)
                old_weight = 0 if old is None else 1 if weights is None else weights[key]
                if weight > self._weight_limit:
                    # Heavier than the whole budget: never admitted, and the old value goes too.
                    if old is not None:
                        self._forget(key)
                        policy.record_remove(key)
                        self._weight -= old_weight
                    self._evictions_size += 1
                    if evicted is not None:
                        evicted.append(key)
                    return
                # Make room before the entry becomes visible, so lock-free readers never see the
                # cache over its limits.
                count = len(data) + (old is None)
                total = self._weight + weight - old_weight
                due = deadline if keep is None else keep
                policy.record_insert(key, weight if self._policy_weighs else 1, due)
                admitted = True
                while count > self._entry_limit or total > self._weight_limit:
                    victim = policy.select_victim()
                    if evicted is not None:
                        evicted.append(victim)
                    if victim == key:  # the policy turned the new entry away
                        admitted = False
                        total -= weight
                        if old is not None:
                            self._forget(key)
                    else:
                        if data.pop(victim, None) is None:
                            raise ConfigurationError(
                                f"eviction policy {self._policy_name} chose a key the cache "
                                "does not hold"
                            )
                        total -= 1 if weights is None else weights.pop(victim)
                    count -= 1
                    self._evictions_size += 1
                self._weight = total
                if admitted:
                    data[key] = entry
                    if weights is not None:
                        weights[key] = weight
                    stale = self._stale
                    if keep is not None:
                        stale[key] = keep
                    elif stale and key in stale:
                        del stale[key]
                    if due != _NEVER:
                        if due == self._bucket_deadline:
                            # Writes come in runs with the same deadline (see _GRID): the last
                            # write's bucket, without working it out again.
                            self._last_bucket.append(key)
                            self._wheel_items += 1
                            if self._wheel_items > self._wheel_limit:
                                self._compact_wheel()
                        else:
                            self._schedule(key, due, ttl)  # type: ignore[arg-type]
        finally:
            if evicted:
                self._told(evicted)

    def _told(self, keys: list[str]) -> None:
        # Outside the lock: the listener may call back into this cache.
        listener = self.on_evict
        if listener is not None:
            try:
                listener(keys)
            except Exception:
                logger.exception("an eviction listener raised; the write went on")

    def remove(self, key: str) -> bool:
        """Remove ``key``; return whether it held a value that had not expired."""
        now = self._clock()
        with self._lock:
            self._maintain(now)
            entry = self._data.get(key)
            if entry is None:
                return False
            self._weight -= self._forget(key)
            self._policy.record_remove(key)
            return entry[1] > now

    def remove_prefix(self, prefix: str) -> int:
        """Remove every entry whose key starts with ``prefix``; return how many there were.

        One pass over the keys (for rare, bulk removals such as clearing a tenant).
        """
        with self._lock:
            keys = [k for k in self._data if k.startswith(prefix)]
            policy = self._policy
            for key in keys:
                self._weight -= self._forget(key)
                policy.record_remove(key)
            return len(keys)

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
            self._stale.clear()
            if self._weights is not None:
                self._weights.clear()
            self._reset_wheel()
            self._wheel_limit = _WHEEL_FLOOR
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
            # Buckets not due yet may hold entries already expired (a bucket is due when its
            # last possible deadline has passed): look into those that started by now. Their
            # items are left in place (they are checked again when due).
            data = self._data
            for due, bucket in self._wheel.items():
                if due - bucket[0] <= now:
                    for key in bucket[1:]:
                        entry = data.get(key)
                        if entry is not None and self._due(key, entry) <= now:
                            self._drop(key)

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
        dues = self._dues
        if dues and dues[0] <= now:
            self._expire_due(now, _EXPIRE_BATCH)

    def _drain_reads(self) -> None:
        reads = self._reads
        data, record = self._data, self._policy.record_access
        # Bounded by the length seen now: readers may keep appending while this runs.
        for _ in range(len(reads)):
            key = reads.popleft()
            if key in data:  # skip hits on entries removed since
                record(key)

    def _forget(self, key: str) -> int:
        # Delete the entry of ``key`` (held) and return its weight; the caller does the
        # accounting and tells the policy if need be (lock held).
        del self._data[key]
        stale = self._stale
        if stale:
            stale.pop(key, None)
        weights = self._weights
        return 1 if weights is None else weights.pop(key)

    def _drop(self, key: str) -> None:
        # An expired entry goes (lock held).
        self._weight -= self._forget(key)
        self._policy.record_remove(key)
        self._evictions_expired += 1

    def _schedule(self, key: str, deadline: float, remaining: float) -> None:
        # Put ``key`` in the wheel bucket that comes due first at or after ``deadline``
        # (lock held). The width is a power of two, so every figure here is exact.
        if remaining != self._width_ttl:
            self._width_ttl = remaining
            self._width = _bucket_width(remaining)
        width = self._width
        due = (deadline // width + 1.0) * width
        wheel = self._wheel
        bucket = wheel.get(due)
        if bucket is None:
            bucket = wheel[due] = [width]
            heapq.heappush(self._dues, due)
        elif width > bucket[0]:
            bucket[0] = width  # two widths end at the same due time: keep the larger
        # A later write with this very deadline goes to this bucket (the bucket can't come due
        # before the deadline has passed, and then no write has that deadline any more).
        self._bucket_deadline, self._last_bucket = deadline, bucket
        bucket.append(key)
        self._wheel_items += 1
        if self._wheel_items > self._wheel_limit:
            self._compact_wheel()

    def _expire_due(self, now: float, limit: int) -> None:
        # Drop up to ``limit`` keys from the buckets that came due (lock held). Every live
        # entry in a due bucket has expired, unless it was rewritten since (then skipped).
        dues, wheel, data = self._dues, self._wheel, self._data
        while dues and dues[0] <= now:
            due = dues[0]
            bucket = wheel[due]
            while len(bucket) > 1:
                if not limit:
                    return
                limit -= 1
                key = bucket.pop()
                self._wheel_items -= 1
                entry = data.get(key)
                if entry is not None and self._due(key, entry) <= now:
                    self._drop(key)
            heapq.heappop(dues)
            del wheel[due]

    def _reset_wheel(self) -> None:
        self._wheel.clear()
        self._dues.clear()
        self._wheel_items = 0
        self._bucket_deadline = -_NEVER
        self._last_bucket = []

    def _compact_wheel(self) -> None:
        # Too many stale items (keys rewritten, removed or evicted since they were scheduled):
        # keep, in each bucket, only the keys whose live entry is due in that bucket, once
        # each, and forget the buckets left empty (lock held). An item is stale exactly when
        # its key holds no entry or an entry with a deadline outside the bucket's slice: the
        # key was rewritten, and sits in the bucket of its new deadline.
        data, wheel = self._data, self._wheel
        items = 0
        for due, bucket in list(wheel.items()):
            start = due - bucket[0]
            live = [
                key
                for key in dict.fromkeys(bucket[1:])
                if (entry := data.get(key)) is not None and start <= self._due(key, entry) < due
            ]
            if live:
                bucket[1:] = live
                items += len(live)
            else:
                del wheel[due]
        dues = list(wheel)
        heapq.heapify(dues)
        self._dues = dues
        self._bucket_deadline = -_NEVER  # its bucket may be gone
        self._wheel_items = items
        self._wheel_limit = _WHEEL_SLACK * items + _WHEEL_FLOOR

    def _drop_if_expired(self, key: str) -> None:
        with self._lock:
            entry = self._data.get(key)
            # Re-checked under the lock: another thread may have stored a fresh value since.
            if entry is not None and self._due(key, entry) <= self._clock():
                self._drop(key)

    def _due(self, key: str, entry: tuple[Any, float, object]) -> float:
        # When the entry of ``key`` may go: its deadline, or later if kept for get_stale.
        stale = self._stale
        return stale.get(key, entry[1]) if stale else entry[1]


# -- hit paths ------------------------------------------------------------------------------
#
# A hit is the operation a cache exists for, so each way of recording hits gets a ``get`` and a
# ``get_entry`` of its own, without a branch for the others: MemoryCache() comes back as one of
# these subclasses when it can (not with copy_on_read, nor for a user's subclass, which keep
# the generic path). They add no state (same slots), only the two methods; measured on
# CPython 3.11, the buffered hit costs the same as the generic one did before it learnt exact
# hits and copies (benchmarks/README.md).


class _BufferedHits(MemoryCache):
    """A MemoryCache whose hits go through the read buffer, or nowhere.

    Through the buffer for ``tinylfu``, ``lfu`` and any policy without ``record_hit``; nowhere
    for ``ttl`` and an unbounded cache (a buffer with no room).
    """

    __slots__ = ()

    def get(self, key: str, default: Any = None) -> Any:
        # Hot path: one dict subscript (a try costs nothing in 3.11 while nothing is raised),
        # one unpack, a deadline compare, a buffer append and a counter.
        try:
            value, deadline, _ = self._data[key]
        except KeyError:
            self._misses += 1
            return default
        if deadline > self._clock():
            self._reads.append(key)
            self._hits += 1
            return value
        self._drop_if_expired(key)
        self._misses += 1
        return default

    def get_entry(self, key: str) -> tuple[Any, object] | None:
        try:
            value, deadline, meta = self._data[key]
        except KeyError:
            self._misses += 1
            return None
        if deadline > self._clock():
            self._reads.append(key)
            self._hits += 1
            return value, meta
        self._drop_if_expired(key)
        self._misses += 1
        return None


class _ExactHits(MemoryCache):
    """A MemoryCache whose policy records each hit at once (``lru``: ``record_hit``)."""

    __slots__ = ()

    def get(self, key: str, default: Any = None) -> Any:
        try:
            value, deadline, _ = self._data[key]
        except KeyError:
            self._misses += 1
            return default
        if deadline > self._clock():
            touch: _HitRecorder = self._touch  # type: ignore[assignment]  # set in this class
            try:
                touch(key)
            except KeyError:
                # A writer removed the key between the lookup and now, and the policy forgot
                # it: the read linearises after the removal, a miss.
                self._misses += 1
                return default
            self._hits += 1
            return value
        self._drop_if_expired(key)
        self._misses += 1
        return default

    def get_entry(self, key: str) -> tuple[Any, object] | None:
        try:
            value, deadline, meta = self._data[key]
        except KeyError:
            self._misses += 1
            return None
        if deadline > self._clock():
            touch: _HitRecorder = self._touch  # type: ignore[assignment]
            try:
                touch(key)
            except KeyError:
                self._misses += 1
                return None
            self._hits += 1
            return value, meta
        self._drop_if_expired(key)
        self._misses += 1
        return None


for _path in (_BufferedHits, _ExactHits):
    _path.get.__doc__ = MemoryCache.get.__doc__
    _path.get_entry.__doc__ = MemoryCache.get_entry.__doc__
