"""``policy="lru"`` is exact LRU: the same hits as a reference LRU, request for request."""

from __future__ import annotations

import os
import random
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry import ConfigurationError, MemoryCache
from dataferry._memory._lru import LruPolicy
from dataferry._traces import read_keys
from tests.test_memory_policies import held

_MISS = object()
_TRACES = Path(os.environ.get("DATAFERRY_TRACES", Path(__file__).parents[2] / "shared" / "traces"))
#: Requests replayed per shared trace (the longest has 5M): enough to evict many times over.
_TRACE_PREFIX = 60_000


class ReferenceLru:
    """The textbook LRU (what ``benchmarks/bench_hit_ratio.py`` measures against)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.order: OrderedDict[str, None] = OrderedDict()

    def request(self, key: str) -> bool:
        """Look ``key`` up, fill it on a miss; return whether it was a hit."""
        if key in self.order:
            self.order.move_to_end(key)
            return True
        self.order[key] = None
        if len(self.order) > self.capacity:
            self.order.popitem(last=False)
        return False


def _replay(keys: list[str], capacity: int) -> tuple[int, int, MemoryCache, ReferenceLru]:
    """Return (cache hits, reference hits) over ``keys``, both caches filled on a miss."""
    cache = MemoryCache(max_entries=capacity, policy="lru")
    reference = ReferenceLru(capacity)
    get, put = cache.get, cache.set
    hits = reference_hits = 0
    for key in keys:
        if get(key, _MISS) is _MISS:
            put(key, key)
        else:
            hits += 1
        reference_hits += reference.request(key)
    assert cache.stats().hits == hits
    return hits, reference_hits, cache, reference


def _zipf(rng: random.Random, n: int, distinct: int, skew: float) -> list[str]:
    weights = [1 / (rank + 1) ** skew for rank in range(distinct)]
    return [f"z{k}" for k in rng.choices(range(distinct), weights, k=n)]


def _generated() -> Iterator[tuple[str, list[str]]]:
    rng = random.Random(20)
    yield "zipf", _zipf(rng, 40_000, 4000, 0.9)
    # A loop one larger than most capacities below: LRU misses every request of it.
    yield "loop", [f"l{i % 501}" for i in range(20_000)]
    # Hot set interleaved with scans, which push it out of an LRU.
    mixed: list[str] = []
    for phase in range(40):
        mixed += _zipf(rng, 500, 200, 1.1)
        mixed += [f"scan{phase}-{i}" for i in range(300)]
    yield "hot+scans", mixed
    # A working set that drifts: recency is what pays.
    yield "drift", [f"d{i // 7 + rng.randrange(150)}" for i in range(30_000)]


@pytest.mark.parametrize(("name", "keys"), list(_generated()), ids=lambda v: str(v)[:12])
@pytest.mark.parametrize("capacity", [1, 7, 100, 500])
def test_lru_hits_equal_a_reference_lru(name: str, keys: list[str], capacity: int) -> None:
    hits, reference_hits, cache, reference = _replay(keys, capacity)
    assert hits == reference_hits, name
    # Not only as many hits: the same keys, in the same recency order.
    assert list(cache._policy._order) == list(reference.order)  # type: ignore[attr-defined]
    assert held(cache, keys) == sorted(reference.order)


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["request", "request", "request", "remove"]), st.integers(0, 12)),
        max_size=300,
    ),
    capacity=st.integers(1, 8),
)
def test_lru_matches_the_reference_after_every_operation(
    ops: list[tuple[str, int]], capacity: int
) -> None:
    # Reads, fills and removals in any order, no upkeep call anywhere: every hit reaches the
    # policy at once, so the cache is the reference at every step.
    cache = MemoryCache(max_entries=capacity, policy="lru")
    reference = ReferenceLru(capacity)
    for op, n in ops:
        key = f"k{n}"
        if op == "remove":
            assert cache.remove(key) is (key in reference.order)
            reference.order.pop(key, None)
        else:
            hit = cache.get(key, _MISS) is not _MISS
            if not hit:
                cache.set(key, key)
            assert hit is reference.request(key)
        assert list(cache._policy._order) == list(reference.order)  # type: ignore[attr-defined]


def _trace_files() -> list[Path]:
    return sorted(_TRACES.glob("lirs/*.trace.gz")) + sorted(_TRACES.glob("cache2k/*.trace.xz"))


def _load(path: Path) -> list[str]:
    return read_keys(path, limit=_TRACE_PREFIX)


@pytest.mark.skipif(not _trace_files(), reason=f"no traces under {_TRACES}")
@pytest.mark.parametrize("path", _trace_files(), ids=lambda p: p.name.split(".")[0])
def test_lru_is_exact_on_the_shared_traces(path: Path) -> None:
    keys = _load(path)
    distinct = len(set(keys))
    for percent in (5, 20):
        capacity = max(1, distinct * percent // 100)
        hits, reference_hits, _, _ = _replay(keys, capacity)
        assert hits == reference_hits, (path.name, percent)


def test_lru_hits_are_recorded_without_the_buffer() -> None:
    cache = MemoryCache(max_entries=2, policy="lru")
    cache.set("a", 1)
    cache.set("b", 2)
    cache.get("a")  # no cleanup, no write in between: the policy knows already
    assert len(cache._reads) == 0
    cache.set("c", 3)
    assert held(cache) == ["a", "c"]


class _Subclass(MemoryCache):
    """A user's subclass: it keeps the generic hit path (MemoryCache picks none for it)."""


@pytest.mark.parametrize("make", [MemoryCache, _Subclass])
@pytest.mark.parametrize("copy_on_read", [False, True])
def test_every_hit_path_records_hits_at_once(make: type[MemoryCache], copy_on_read: bool) -> None:
    cache = make(max_entries=2, policy="lru", copy_on_read=copy_on_read)
    assert isinstance(cache, MemoryCache)
    cache.set("a", ["a"], meta="m")
    cache.set("b", ["b"])
    assert cache.get("a") == ["a"]
    cache.set("c", ["c"])  # "b" is the least recently used now
    assert held(cache) == ["a", "c"]
    assert cache.get_entry("a") == (["a"], "m")
    cache.set("d", ["d"])
    assert held(cache) == ["a", "d"]
    assert (cache.get("a") is cache.get("a")) is not copy_on_read


@pytest.mark.parametrize("make", [MemoryCache, _Subclass])
@pytest.mark.parametrize("copy_on_read", [False, True])
def test_a_hit_that_races_a_removal_is_a_miss(make: type[MemoryCache], copy_on_read: bool) -> None:
    # What a hit sees when a writer removes its key between the dict lookup and the
    # policy's record_hit: KeyError from the policy, answered as a miss, never raised.
    cache = make(max_entries=4, policy="lru", copy_on_read=copy_on_read)
    cache.set("k", 1)
    policy = cache._policy
    assert isinstance(policy, LruPolicy)
    policy.record_remove("k")  # the policy forgot it, the entry is still there: the race
    assert cache.get("k", _MISS) is _MISS
    assert cache.get_entry("k") is None
    assert cache.stats().hits == 0
    assert cache.stats().misses == 2


def test_hits_racing_writers_keep_the_policy_and_the_entries_in_step() -> None:
    # Readers make their move_to_end without the lock while writers fill, evict and remove
    # the same few keys: no reader ever raises, and the policy ends up tracking exactly the
    # keys the cache holds, in an order a reader never corrupted.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        cache = MemoryCache(max_entries=5, policy="lru")
        errors: list[BaseException] = []
        start = threading.Barrier(6)

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            start.wait()
            try:
                for _ in range(20_000):
                    key = f"k{rng.randrange(12)}"
                    got = cache.get(key, _MISS)
                    assert got is _MISS or got == key
            except BaseException as exc:
                errors.append(exc)

        def writer(seed: int) -> None:
            rng = random.Random(seed)
            start.wait()
            try:
                for _ in range(8_000):
                    key = f"k{rng.randrange(12)}"
                    if rng.random() < 0.7:
                        cache.set(key, key)
                    else:
                        cache.remove(key)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
        threads += [threading.Thread(target=writer, args=(s,)) for s in range(4, 6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[0]
    policy = cache._policy
    assert isinstance(policy, LruPolicy)
    assert len(cache) <= 5
    assert list(policy._order) == [k for k in policy._order if k in cache._data]
    assert set(policy._order) == set(cache._data)


# -- the record_hit hook, for any policy ----------------------------------------------------


class _FifoWithHits:
    """A user policy with an exact hit hook: first in, first out, and a log of every hit."""

    def __init__(self) -> None:
        self.order: OrderedDict[str, None] = OrderedDict()
        self.hits: list[str] = []

    def record_hit(self, key: str) -> None:
        if key not in self.order:
            raise KeyError(key)
        self.hits.append(key)

    def record_insert(self, key: str, weight: int, expires_at: float) -> None:
        self.order[key] = None

    def record_access(self, key: str) -> None:
        raise AssertionError("a policy with record_hit hears of hits there only")

    def record_remove(self, key: str) -> None:
        self.order.pop(key, None)

    def select_victim(self) -> str:
        return self.order.popitem(last=False)[0]


def test_a_user_policy_gets_every_hit_in_order_through_record_hit() -> None:
    policy = _FifoWithHits()
    cache = MemoryCache(max_entries=3, policy=policy)
    for key in "abc":
        cache.set(key, key)
    for key in "abacab":
        assert cache.get(key) == key
    assert cache.get_entry("c") == ("c", None)
    cache.set("d", "d")  # writes drain nothing: record_access is never called
    assert policy.hits == list("abacabc")
    assert held(cache) == ["b", "c", "d"]  # FIFO: "a" went


def test_a_policy_that_ignores_reads_gets_no_buffer() -> None:
    cache = MemoryCache(max_entries=3, policy="ttl")
    cache.set("k", 1, ttl=60)
    for _ in range(100):
        assert cache.get("k") == 1
    assert len(cache._reads) == 0
    assert cache.stats().hits == 100


def test_a_record_hit_that_is_not_callable_is_a_configuration_error() -> None:
    policy = _FifoWithHits()
    policy.record_hit = 42  # type: ignore[assignment, method-assign]
    with pytest.raises(ConfigurationError, match="record_hit"):
        MemoryCache(max_entries=3, policy=policy)
