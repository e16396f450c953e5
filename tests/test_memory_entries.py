"""MemoryCache entries with metadata: set(meta=, size_hint=) and get_entry."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from dataferry import ConfigurationError, MemoryCache, estimate_size


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Meta:
    """What the facade stores: creation time, logical expiry, tags (opaque to the cache)."""

    def __init__(self, created_at: float, tags: tuple[str, ...] = ()) -> None:
        self.created_at = created_at
        self.tags = tags


# -- get_entry and meta ---------------------------------------------------------------------


def test_get_entry_returns_the_value_and_the_meta_stored_with_it() -> None:
    cache = MemoryCache()
    value, meta = {"name": "ada"}, Meta(1.0, ("users",))
    cache.set("k", value, 60, meta=meta)
    got = cache.get_entry("k")
    assert got is not None
    assert got[0] is value  # the live objects, not copies
    assert got[1] is meta
    assert cache.get("k") is value  # get is unchanged by the metadata


def test_get_entry_without_meta_gives_none_as_meta_and_none_on_a_miss() -> None:
    cache = MemoryCache()
    cache.set("k", 1)
    assert cache.get_entry("k") == (1, None)
    assert cache.get_entry("missing") is None


def test_a_cached_none_is_told_apart_from_a_miss() -> None:
    cache = MemoryCache()
    cache.set("k", None, meta="m")
    assert cache.get_entry("k") == (None, "m")
    assert cache.get_entry("other") is None


def test_a_new_value_replaces_the_meta_too() -> None:
    cache = MemoryCache()
    cache.set("k", 1, meta="first")
    cache.set("k", 2, meta="second")
    assert cache.get_entry("k") == (2, "second")
    cache.set("k", 3)  # no meta given: none kept from the old value
    assert cache.get_entry("k") == (3, None)


def test_get_entry_counts_hits_and_misses_like_get() -> None:
    cache = MemoryCache()
    cache.set("k", 1, meta="m")
    cache.get_entry("k")
    cache.get_entry("k")
    cache.get_entry("nope")
    cache.get("k")
    cache.get("nope")
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (3, 2)


def test_get_entry_is_a_use_for_the_eviction_policy() -> None:
    cache = MemoryCache(max_entries=2, policy="lru")
    cache.set("a", "a", meta=1)
    cache.set("b", "b", meta=2)
    assert cache.get_entry("a") == ("a", 1)  # "lru" hears of it at once, as of a get
    cache.set("c", "c")
    assert "a" in cache  # read more recently than "b", which went
    assert "b" not in cache


def test_an_entry_with_meta_expires_with_its_value(clock: FakeClock) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("k", "v", ttl=10, meta=Meta(clock.now))
    clock.now += 9.5
    got = cache.get_entry("k")
    assert got is not None
    assert got[0] == "v"
    clock.now += 0.5
    assert cache.get_entry("k") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions_expired, stats.entries) == (1, 1, 1, 0)
    assert len(cache) == 0  # dropped when read, meta and all


def test_a_ttl_already_over_stores_no_meta_either(clock: FakeClock) -> None:
    cache = MemoryCache(clock=clock)
    cache.set("k", "old", meta="old")
    cache.set("k", "new", ttl=0, meta="new")
    assert cache.get_entry("k") is None
    assert len(cache) == 0


def test_copy_on_read_copies_the_value_and_hands_the_meta_as_is() -> None:
    cache = MemoryCache(copy_on_read=True)
    original = {"tags": ["a"]}
    meta = Meta(1.0)
    cache.set("k", original, meta=meta)
    original["tags"].append("mutated after set")
    first = cache.get_entry("k")
    assert first is not None
    first[0]["tags"].append("mutated by a reader")
    second = cache.get_entry("k")
    assert second is not None
    assert second[0] == {"tags": ["a"]}
    assert second[0] is not first[0]
    # The metadata belongs to the caller that stored it (the facade): never copied.
    assert first[1] is meta
    assert second[1] is meta


def test_remove_and_clear_drop_the_meta() -> None:
    cache = MemoryCache()
    cache.set("a", 1, meta="ma")
    cache.set("b", 2, meta="mb")
    assert cache.remove("a") is True
    assert cache.get_entry("a") is None
    cache.clear()
    assert cache.get_entry("b") is None


# -- size_hint ------------------------------------------------------------------------------


def test_the_default_weigher_takes_the_larger_of_the_hint_and_its_estimate() -> None:
    value = {"id": 1, "name": "ada"}
    estimate = estimate_size("k", value)
    big_hint = MemoryCache(max_bytes=10**9)
    big_hint.set("k", value, size_hint=50_000)
    assert 50_000 < big_hint.stats().weight <= 50_000 + estimate
    # A hint below the live size (JSON is more compact than live objects) changes nothing.
    small_hint = MemoryCache(max_bytes=10**9)
    small_hint.set("k", value, size_hint=20)
    assert small_hint.stats().weight == estimate


def test_a_hint_heavier_than_the_budget_is_not_admitted() -> None:
    cache = MemoryCache(max_bytes=100_000)
    cache.set("small", b"x", size_hint=10)
    cache.set("k", b"compressed", size_hint=200_000)
    assert "k" not in cache
    assert cache.get("small") == b"x"


def test_the_hint_counts_toward_eviction() -> None:
    cache = MemoryCache(max_entries=None, max_bytes=100_000, policy="lru")
    for i in range(10):
        cache.set(f"k{i}", i, size_hint=30_000)
    assert len(cache) == 3  # 3 x (30,000 + overhead) fit in 100,000, 4 don't
    assert cache.stats().weight <= 100_000


def test_the_hint_is_ignored_by_a_custom_weigher_and_without_max_bytes() -> None:
    custom = MemoryCache(max_bytes=1000, weigher=lambda key, value: 7)
    custom.set("k", "v", size_hint=999_999)
    assert custom.stats().weight == 7
    unweighed = MemoryCache()
    unweighed.set("k", "v", size_hint=999_999)
    assert unweighed.stats().weight == 1


def test_estimate_size_given_as_the_weigher_is_the_default_and_uses_the_hint() -> None:
    cache = MemoryCache(max_bytes=10**9, weigher=estimate_size)
    cache.set("k", 1, size_hint=40_000)
    assert cache.stats().weight > 40_000


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_a_bad_size_hint_is_a_configuration_error(bad: Any) -> None:
    cache = MemoryCache(max_bytes=1000)
    with pytest.raises(ConfigurationError, match="size_hint"):
        cache.set("k", "v", size_hint=bad)
    assert "k" not in cache


def test_the_meta_object_is_weighed_with_the_entry() -> None:
    bare = MemoryCache(max_bytes=10**9)
    bare.set("k", "v")
    tagged = MemoryCache(max_bytes=10**9)
    meta = ("tag",) * 200  # its own size only: small metadata is not walked (cheap writes)
    tagged.set("k", "v", meta=meta)
    assert tagged.stats().weight - bare.stats().weight == sys.getsizeof(meta)


def test_removing_an_entry_gives_back_exactly_its_weight() -> None:
    cache = MemoryCache(max_bytes=10**9)
    cache.set("a", ["x" * 100] * 3, meta=("t",), size_hint=5)
    cache.set("b", {"n": 10**20}, size_hint=90_000)
    cache.set("a", "replaced", meta=None)
    cache.remove("b")
    cache.remove("a")
    assert cache.stats().weight == 0
