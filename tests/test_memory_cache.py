"""MemoryCache: values, expiry, size limits, stats, configuration errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry import ConfigurationError, MemoryCache, MemoryStats, estimate_size


class FakeClock:
    """A monotonic clock the test moves by hand (the cache takes ``clock=``)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- values ---------------------------------------------------------------------------------


def test_get_returns_the_stored_object_and_default_on_a_miss() -> None:
    cache = MemoryCache()
    value = {"name": "ada"}
    cache.set("k", value)
    assert cache.get("k") is value  # the live object, as functools.lru_cache hands out
    assert cache.get("missing") is None
    sentinel = object()
    assert cache.get("missing", sentinel) is sentinel


def test_none_is_a_value() -> None:
    cache = MemoryCache()
    cache.set("k", None)
    sentinel = object()
    assert cache.get("k", sentinel) is None
    assert "k" in cache


def test_set_replaces_and_remove_reports_presence() -> None:
    cache = MemoryCache()
    cache.set("k", 1)
    cache.set("k", 2)
    assert cache.get("k") == 2
    assert len(cache) == 1
    assert cache.remove("k") is True
    assert cache.remove("k") is False
    assert "k" not in cache
    assert cache.get("k") is None


def test_contains_does_not_count_and_rejects_non_str_keys() -> None:
    cache = MemoryCache()
    cache.set("k", 1)
    assert "k" in cache
    assert 1 not in cache
    assert cache.stats().hits == 0
    assert cache.stats().misses == 0


def test_clear_empties_but_keeps_counters() -> None:
    cache = MemoryCache(max_entries=10)
    for i in range(5):
        cache.set(str(i), i, ttl=60)
    cache.get("0")
    cache.clear()
    assert len(cache) == 0
    assert cache.get("0") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries, stats.weight) == (1, 1, 0, 0)
    cache.set("again", 1)  # still usable, policy state consistent
    assert cache.get("again") == 1


def test_copy_on_read_isolates_callers_from_each_other_and_from_the_cache() -> None:
    cache = MemoryCache(copy_on_read=True)
    original = {"tags": ["a"]}
    cache.set("k", original)
    original["tags"].append("mutated after set")
    first = cache.get("k")
    first["tags"].append("mutated by a reader")
    second = cache.get("k")
    assert second == {"tags": ["a"]}
    assert first is not second


def test_without_copy_on_read_mutations_are_shared() -> None:
    cache = MemoryCache()
    cache.set("k", {"tags": ["a"]})
    cache.get("k")["tags"].append("b")
    assert cache.get("k") == {"tags": ["a", "b"]}


def test_repr_shows_limits_and_policy() -> None:
    cache = MemoryCache(max_entries=5, policy="lru")
    cache.set("k", 1)
    assert repr(cache) == "MemoryCache(max_entries=5, max_bytes=None, policy='lru', entries=1)"


# -- expiry ---------------------------------------------------------------------------------


def test_entry_expires_after_its_ttl(clock: FakeClock) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("k", "v", ttl=10)
    clock.advance(9.999)
    assert cache.get("k") == "v"
    assert "k" in cache
    clock.advance(0.001)
    assert "k" not in cache
    assert cache.get("k") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions_expired, stats.entries) == (1, 1, 1, 0)


def test_no_ttl_means_no_expiry(clock: FakeClock) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("k", "v")
    clock.advance(10**9)
    assert cache.get("k") == "v"


def test_a_new_value_gets_a_new_ttl(clock: FakeClock) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("k", 1, ttl=5)
    clock.advance(4)
    cache.set("k", 2, ttl=5)
    clock.advance(4)
    assert cache.get("k") == 2
    cache.set("k", 3)  # and None removes the expiry
    clock.advance(100)
    assert cache.get("k") == 3


@pytest.mark.parametrize("ttl", [0, -1.5, math.nan])
def test_a_ttl_that_is_already_over_stores_nothing_and_drops_the_old_value(
    clock: FakeClock, ttl: float
) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("k", "old")
    cache.set("k", "new", ttl=ttl)
    assert "k" not in cache
    assert len(cache) == 0


@pytest.mark.parametrize("ttl", ["10", True, [1]])
def test_a_ttl_that_is_not_a_number_is_a_configuration_error(ttl: Any) -> None:
    cache = MemoryCache()
    with pytest.raises(ConfigurationError, match="ttl"):
        cache.set("k", "v", ttl=ttl)
    assert "k" not in cache


def test_writes_drop_expired_entries_before_evicting_live_ones(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=1000, clock=clock)
    for i in range(1000):
        cache.set(f"old{i}", i, ttl=10)
    clock.advance(11)
    for i in range(100):
        cache.set(f"new{i}", i)
    # A write drops a few expired entries, so 100 writes cleared all 1000 of them, and no
    # live entry had to make room.
    assert len(cache) == 100
    stats = cache.stats()
    assert stats.evictions_expired == 1000
    assert stats.evictions_size == 0
    assert all(cache.get(f"new{i}") == i for i in range(100))


def test_no_single_write_pays_for_a_mass_expiry(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=None, clock=clock)
    for i in range(1000):
        cache.set(f"old{i}", i, ttl=10)
    clock.advance(11)
    cache.set("new", 1)
    # Some dropped (1001 entries otherwise), most left for later writes.
    assert 500 < len(cache) < 1001


def test_cleanup_drops_every_expired_entry_at_once(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=None, clock=clock)
    for i in range(500):
        cache.set(f"short{i}", i, ttl=1)
        cache.set(f"long{i}", i, ttl=100)
    clock.advance(2)
    cache.cleanup()
    assert len(cache) == 500
    assert cache.stats().evictions_expired == 500


def test_an_expired_entry_is_dropped_when_read(clock: FakeClock) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("k", "v", ttl=1)
    clock.advance(1)
    assert len(cache) == 1  # nothing ran yet
    cache.get("k")
    assert len(cache) == 0


def test_remove_of_an_expired_entry_reports_absent(clock: FakeClock) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("k", "v", ttl=1)
    clock.advance(5)
    assert cache.remove("k") is False


def test_rewriting_keys_with_ttls_does_not_grow_memory_without_bound(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=10, clock=clock)
    for i in range(20_000):
        cache.set(f"k{i % 10}", i, ttl=3600)
        clock.advance(0.5)  # across many wheel buckets, none of them due yet
    # Each write leaves a stale wheel item behind; they are compacted away.
    items = sum(len(bucket) - 1 for bucket in cache._wheel.values())  # [width, key, ...]
    assert items == cache._wheel_items
    assert items <= 2 * len(cache) + 256
    # One bucket per slice of time: a ttl spans a bounded number of them (2 ** 9 or 2 ** 10).
    assert len(cache._wheel) == len(cache._dues) <= 2**10
    assert all(cache.get(f"k{i}") == 19_990 + i for i in range(10))


# -- size limits ----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["tinylfu", "lru", "lfu", "ttl"])
def test_max_entries_is_never_exceeded(policy: str) -> None:
    cache = MemoryCache(max_entries=50, policy=policy)
    for i in range(1000):
        cache.set(f"k{i}", i, ttl=1000 + i)
        cache.get(f"k{i // 2}")
        assert len(cache) <= 50
    stats = cache.stats()
    assert stats.entries == len(cache) == 50
    assert stats.evictions_size == 1000 - 50


def test_unbounded_cache_keeps_everything() -> None:
    cache = MemoryCache(max_entries=None)
    for i in range(5000):
        cache.set(str(i), i)
    assert len(cache) == 5000
    assert cache.stats().evictions_size == 0


def _weigh_len(key: str, value: Any) -> int:
    return len(value)


@pytest.mark.parametrize("policy", ["tinylfu", "lru", "lfu", "ttl"])
def test_max_bytes_bounds_the_total_weight(policy: str) -> None:
    cache = MemoryCache(max_entries=None, max_bytes=100, weigher=_weigh_len, policy=policy)
    for i in range(200):
        cache.set(f"k{i}", "x" * (1 + i % 30))
        stats = cache.stats()
        assert stats.weight <= 100
        assert stats.weight == sum(len(cache.get(k, "")) for k in list(cache._data))


def test_an_entry_heavier_than_the_budget_is_not_admitted() -> None:
    cache = MemoryCache(max_entries=None, max_bytes=100, weigher=_weigh_len)
    cache.set("small", "x" * 10)
    cache.set("big", "x" * 101)
    assert "big" not in cache
    assert cache.get("small") == "x" * 10  # nothing was evicted to make room for it
    assert cache.stats().evictions_size == 1
    cache.set("small", "y" * 101)  # too heavy: the old value goes too, nothing stale stays
    assert "small" not in cache
    assert cache.stats().weight == 0


def test_an_entry_as_heavy_as_the_budget_fills_the_cache() -> None:
    cache = MemoryCache(max_entries=None, max_bytes=100, weigher=_weigh_len, policy="lru")
    cache.set("a", "x" * 50)
    cache.set("b", "x" * 100)
    assert cache.get("b") == "x" * 100
    assert "a" not in cache


def test_both_limits_apply_together() -> None:
    cache = MemoryCache(max_entries=3, max_bytes=100, weigher=_weigh_len, policy="lru")
    for i in range(10):
        cache.set(str(i), "x")
    assert len(cache) == 3
    cache.set("heavy", "x" * 99)
    assert cache.stats().weight <= 100
    assert len(cache) <= 3


def test_default_weigher_is_the_documented_estimate() -> None:
    cache = MemoryCache(max_bytes=10_000)
    cache.set("key", b"x" * 100)
    assert cache.stats().weight == estimate_size("key", b"x" * 100)
    assert estimate_size("key", b"x" * 100) >= 100 + len("key")


def test_without_max_bytes_each_entry_weighs_one_unless_a_weigher_is_given() -> None:
    plain = MemoryCache()
    weighed = MemoryCache(weigher=_weigh_len)
    for cache in (plain, weighed):
        cache.set("a", "xyz")
        cache.set("b", "xy")
    assert plain.stats().weight == 2
    assert weighed.stats().weight == 5


@pytest.mark.parametrize("bad", [-1, 1.5, "10", None, True])
def test_a_weigher_returning_garbage_is_a_configuration_error(bad: Any) -> None:
    cache = MemoryCache(max_bytes=100, weigher=lambda k, v: bad)
    with pytest.raises(ConfigurationError, match="weigher"):
        cache.set("k", "v")
    assert "k" not in cache


def test_weighted_tinylfu_sketch_grows_with_the_entries() -> None:
    cache = MemoryCache(max_entries=None, max_bytes=1_000_000, weigher=lambda k, v: 10)
    for i in range(5000):
        cache.set(f"k{i}", i)
    assert len(cache) == 5000
    assert cache._policy._sketch.capacity >= 5000  # type: ignore[attr-defined]


# -- stats ----------------------------------------------------------------------------------


def test_stats_count_hits_misses_and_evictions_by_cause(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=2, policy="lru", clock=clock)
    cache.set("a", 1, ttl=5)
    cache.set("b", 2)
    cache.get("a")
    cache.get("b")
    cache.get("nope")
    cache.cleanup()
    cache.set("c", 3)  # evicts the least recently used: "a"
    clock.advance(10)
    cache.set("d", 4, ttl=1)
    clock.advance(2)
    cache.get("d")  # expired
    assert cache.stats() == MemoryStats(
        hits=2, misses=2, entries=1, weight=1, evictions_size=2, evictions_expired=1
    )


# -- configuration --------------------------------------------------------------------------


class _NotAPolicy:
    def select_victim(self) -> str:
        return ""


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_entries": 0}, "max_entries"),
        ({"max_entries": -5}, "max_entries"),
        ({"max_entries": 1.5}, "max_entries"),
        ({"max_entries": True}, "max_entries"),
        ({"max_entries": "10"}, "max_entries"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_bytes": 2.0**20}, "max_bytes"),
        ({"weigher": 42}, "weigher"),
        ({"policy": "arc"}, "policy"),
        ({"policy": 42}, "policy"),
        ({"policy": _NotAPolicy()}, "policy"),
        ({"copy_on_read": "yes"}, "copy_on_read"),
        ({"clock": 1.0}, "clock"),
    ],
)
def test_bad_arguments_raise_configuration_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        MemoryCache(**kwargs)


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(max_entries=0)


def test_a_policy_class_instead_of_an_instance_is_rejected() -> None:
    from dataferry._memory._lru import LruPolicy

    with pytest.raises(ConfigurationError, match="instance"):
        MemoryCache(policy=LruPolicy)  # type: ignore[arg-type]


# -- property: never a wrong value ----------------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("set"),
            st.integers(0, 15),
            st.integers(),
            st.one_of(st.none(), st.floats(-1, 5)),
        ),
        st.tuples(st.just("get"), st.integers(0, 15)),
        st.tuples(st.just("remove"), st.integers(0, 15)),
        st.tuples(st.just("tick"), st.floats(0, 3)),
        st.tuples(st.just("cleanup")),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(
    ops=_ops,
    policy=st.sampled_from(["tinylfu", "lru", "lfu", "ttl"]),
    max_entries=st.integers(1, 8),
)
def test_reads_return_the_latest_unexpired_value_or_nothing(
    ops: list[tuple[Any, ...]], policy: str, max_entries: int
) -> None:
    clock = FakeClock()
    cache = MemoryCache(max_entries=max_entries, policy=policy, clock=clock)
    model: dict[str, tuple[int, float]] = {}  # what was last written, and until when
    for op in ops:
        if op[0] == "set":
            _, k, value, ttl = op
            cache.set(f"k{k}", value, ttl=ttl)
            if ttl is not None and not ttl > 0:
                model.pop(f"k{k}", None)
            else:
                model[f"k{k}"] = (value, math.inf if ttl is None else clock.now + ttl)
        elif op[0] == "get":
            key = f"k{op[1]}"
            got = cache.get(key, "MISS")
            if key in model and model[key][1] > clock.now:
                assert got in ("MISS", model[key][0])  # evicted or right, never wrong
            else:
                assert got == "MISS"
        elif op[0] == "remove":
            cache.remove(f"k{op[1]}")
            model.pop(f"k{op[1]}", None)
        elif op[0] == "tick":
            clock.advance(op[1])
        else:
            cache.cleanup()
        assert len(cache) <= max_entries
        assert cache.stats().weight == len(cache)
        assert len(cache._policy) == len(cache)  # type: ignore[arg-type]


def test_a_long_run_of_hits_does_not_grow_the_read_buffer() -> None:
    cache = MemoryCache(max_entries=10)
    cache.set("k", 1)
    for _ in range(20_000):
        cache.get("k")
    assert len(cache._reads) <= 4096  # lossy and bounded: memory stays flat under reads
    cache.cleanup()
    assert len(cache._reads) == 0


def test_an_unbounded_cache_keeps_no_policy_state_for_reads() -> None:
    cache = MemoryCache(max_entries=None)
    cache.set("k", 1)
    for _ in range(200):
        cache.get("k")
    cache.set("other", 2)  # drains the buffered hits: nothing to rank them for
    assert len(cache._reads) == 0
    assert cache.remove("k") is True
    cache.clear()
    assert len(cache) == 0


def test_remove_does_the_pending_upkeep(clock: FakeClock) -> None:
    cache = MemoryCache(max_entries=100, policy="lru", clock=clock)
    cache.set("k", 1)
    cache.set("old", 1, ttl=1)
    for _ in range(100):
        cache.get("k")
    clock.advance(2)
    cache.remove("nothing")
    assert len(cache._reads) == 0
    assert "old" not in cache._data
