"""MemoryCache expiry: deadlines to the millisecond, the timer wheel, and its upkeep."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry import MemoryCache
from dataferry._memory import _cache as cache_module

_GRID = 2.0**-10  # deadlines of ttls >= 1 s are multiples of this (about 1 ms)


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _check_wheel(cache: MemoryCache) -> None:
    """Every entry with a deadline sits in a bucket whose slice holds that deadline."""
    wheel = cache._wheel
    assert sorted(wheel) == sorted(cache._dues)
    assert cache._wheel_items == sum(len(bucket) - 1 for bucket in wheel.values())
    slices: dict[str, list[tuple[float, float]]] = {}
    for due, bucket in wheel.items():
        for key in bucket[1:]:
            slices.setdefault(key, []).append((due - bucket[0], due))
    for key, (_, deadline, _) in cache._data.items():
        if deadline != math.inf:
            assert any(start <= deadline < due for start, due in slices.get(key, ())), key


# -- deadlines ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(now=st.floats(0, 1e7), ttl=st.floats(1, 1e6))
def test_a_ttl_of_a_second_or_more_ends_at_most_a_millisecond_early(now: float, ttl: float) -> None:
    clock = FakeClock(now)
    cache = MemoryCache(clock=clock)
    cache.set("k", "v", ttl=ttl)
    deadline = cache._data["k"][1]
    assert now + ttl - _GRID <= deadline <= now + ttl  # never late
    assert deadline % _GRID == 0
    clock.now = deadline - 1e-6 if deadline - 1e-6 > now else now
    assert cache.get("k") == "v"
    clock.now = deadline
    assert cache.get("k") is None


def test_the_rounding_example(clock: FakeClock) -> None:
    clock.now = 1_000.0003
    cache = MemoryCache(clock=clock)
    cache.set("k", "v", ttl=10)
    clock.now = 1_009.9999
    assert cache.get("k") == "v"
    clock.now = 1_010.0  # 0.3 ms before now + ttl: already gone
    assert cache.get("k") is None


def test_a_ttl_under_a_second_is_exact(clock: FakeClock) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("k", "v", ttl=0.3)
    assert cache._data["k"][1] == clock.now + 0.3
    clock.advance(0.299999)
    assert cache.get("k") == "v"
    clock.advance(0.000001)
    assert cache.get("k") is None


def test_entries_written_in_the_same_millisecond_share_their_deadline(clock: FakeClock) -> None:
    # What saves a float object (32 bytes) per entry when entries come in bursts.
    cache = MemoryCache(clock=clock)
    cache.set("a", 1, ttl=300)
    clock.advance(0.0001)
    cache.set("b", 2, ttl=300)
    assert cache._data["a"][1] is cache._data["b"][1]
    clock.advance(0.002)
    cache.set("c", 3, ttl=300)
    assert cache._data["c"][1] > cache._data["a"][1]


@pytest.mark.parametrize("ttl", [5e-324, 1e-14])  # 1000.0 + 1e-14 == 1000.0
def test_a_ttl_too_small_to_move_the_clock_stores_nothing(clock: FakeClock, ttl: float) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("k", "old")
    cache.set("k", "new", ttl=ttl)
    assert len(cache) == 0


@pytest.mark.parametrize("ttl", [math.inf, 1e300])
def test_a_huge_ttl_is_kept_and_never_scheduled_wrongly(clock: FakeClock, ttl: float) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("k", "v", ttl=ttl)
    clock.advance(1e9)
    cache.set("other", 1)
    cache.cleanup()
    assert cache.get("k") == "v"
    _check_wheel(cache)


# -- the wheel ------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_an_expired_entry_waits_at_most_its_bucket_before_a_write_drops_it(
    clock: FakeClock,
) -> None:
    cache = MemoryCache(max_entries=None, clock=clock)
    cache.set("k", "v", ttl=100)  # buckets of 2**-2 s: 100 s is in [2**6, 2**7)
    clock.advance(100)
    assert cache.get("k", "gone") == "gone"  # a read never sees it...
    clock.advance(-100)
    cache.set("k", "v", ttl=100)
    clock.advance(100.1)
    cache.set("other", 1)
    assert "k" in cache._data  # ...but a write may leave it until its bucket is due
    clock.advance(0.25)
    cache.set("other", 2)
    assert "k" not in cache._data
    assert cache.stats().evictions_expired == 2


def test_cleanup_drops_expired_entries_whose_bucket_is_not_due_yet(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=None, clock=clock)
    for i in range(50):
        cache.set(f"short{i}", i, ttl=100)
        cache.set(f"long{i}", i, ttl=300)
    clock.advance(100.01)  # past the deadlines, within their buckets
    cache.cleanup()
    assert len(cache) == 50
    assert all(f"long{i}" in cache for i in range(50))
    _check_wheel(cache)


def test_evicted_keys_do_not_pile_up_in_the_wheel(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=100, policy="lru", clock=clock)
    for i in range(50_000):
        cache.set(f"k{i}", i, ttl=3600)  # every write evicts one, whose item goes stale
        clock.advance(0.001)
    assert cache._wheel_items <= 2 * len(cache) + 256
    _check_wheel(cache)
    clock.advance(3600)
    for i in range(100):
        cache.set(f"new{i}", i)  # with every old entry expired, no live one is evicted
    assert len(cache) == 100
    assert all(f"new{i}" in cache for i in range(100))


def test_a_cache_full_of_expired_entries_empties_as_it_is_used(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=None, clock=clock)
    for i in range(2000):
        cache.set(f"k{i}", i, ttl=2 + i % 7)
    clock.advance(20)
    for _ in range(130):
        cache.remove("nothing")  # writes of any kind do the upkeep, 16 keys at a time
    assert len(cache) == 0
    assert cache._wheel_items == 0
    assert not cache._wheel


_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("set"),
            st.integers(0, 20),
            st.one_of(st.none(), st.floats(0.001, 3), st.floats(1, 50), st.just(300.0)),
        ),
        st.tuples(st.just("get"), st.integers(0, 20)),
        st.tuples(st.just("remove"), st.integers(0, 20)),
        st.tuples(st.just("tick"), st.one_of(st.floats(0, 0.01), st.floats(0, 20))),
        st.tuples(st.just("cleanup")),
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(ops=_ops, max_entries=st.one_of(st.none(), st.integers(1, 10)), weighted=st.booleans())
def test_the_wheel_keeps_every_deadline_and_expires_every_entry(
    ops: list[tuple[Any, ...]], max_entries: int | None, weighted: bool
) -> None:
    clock = FakeClock()
    cache = MemoryCache(
        max_entries=max_entries,
        max_bytes=10**6 if weighted else None,
        policy="lru",
        clock=clock,
    )
    # Compact often: the floor that keeps small caches from compacting all the time would keep
    # this test from it.
    cache._wheel_limit = 4
    floor, cache_module._WHEEL_FLOOR = cache_module._WHEEL_FLOOR, 4
    try:
        _replay(cache, clock, ops)
    finally:
        cache_module._WHEEL_FLOOR = floor
    # Every entry with a ttl goes in the end, by writes alone, and the wheel with them.
    clock.advance(400)
    for _ in range(10):
        cache.remove("nothing")
    assert all(deadline == math.inf for _, deadline, _ in cache._data.values())
    assert cache._wheel_items == 0


def _replay(cache: MemoryCache, clock: FakeClock, ops: list[tuple[Any, ...]]) -> None:
    model: dict[str, float] = {}  # key -> latest possible deadline
    for op in ops:
        if op[0] == "set":
            _, n, ttl = op
            cache.set(f"k{n}", n, ttl=ttl)
            model[f"k{n}"] = math.inf if ttl is None else clock.now + ttl
        elif op[0] == "get":
            got = cache.get(f"k{op[1]}", "MISS")
            if model.get(f"k{op[1]}", -math.inf) <= clock.now:
                assert got == "MISS"  # never after its ttl
        elif op[0] == "remove":
            cache.remove(f"k{op[1]}")
            model.pop(f"k{op[1]}", None)
        elif op[0] == "tick":
            clock.advance(op[1])
        else:
            cache.cleanup()
        _check_wheel(cache)
        weights = cache._weights
        assert cache.stats().weight == (len(cache) if weights is None else sum(weights.values()))
