"""MemoryCache(stale_ttl=...): expired entries kept for get_stale (fail-safe, eager refresh)."""

from __future__ import annotations

import pytest

import dataferry as df


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("policy", ["tinylfu", "lru", "lfu", "ttl"])
def test_an_expired_entry_is_kept_for_get_stale_only(policy: str) -> None:
    clock = Clock()
    cache = df.MemoryCache(clock=clock, policy=policy)
    cache.set("k", "v", 10, meta="m", stale_ttl=50)
    assert cache.get_stale("k") == ("v", "m", True)
    clock.now += 20
    assert cache.get("k") is None  # a miss for readers...
    assert "k" not in cache
    assert cache.get_stale("k") == ("v", "m", False)  # ...still there for the fallback
    cache.set("other", 1, 1)  # writes do upkeep: the stale entry survives it
    cache.cleanup()
    assert cache.get_stale("k") == ("v", "m", False)
    clock.now += 41
    cache.cleanup()
    assert cache.get_stale("k") is None
    assert len(cache) == 0


def test_a_rewrite_without_stale_ttl_keeps_nothing_stale() -> None:
    clock = Clock()
    cache = df.MemoryCache(clock=clock)
    cache.set("k", "old", 10, stale_ttl=50)
    cache.set("k", "new", 10)
    clock.now += 11
    assert cache.get_stale("k") is None
    cache.cleanup()
    assert len(cache) == 0


def test_stale_entries_are_removed_and_evicted_like_any() -> None:
    clock = Clock()
    cache = df.MemoryCache(clock=clock, max_entries=2, policy="lru")
    cache.set("a", 1, 10, stale_ttl=100)
    clock.now += 11
    cache.remove("a")
    assert cache.get_stale("a") is None
    cache.set("b", 2, 10, stale_ttl=100)
    cache.set("c", 3, 10, stale_ttl=100)
    cache.set("d", 4, 10, stale_ttl=100)  # evicts b, the least recently used
    assert cache.get_stale("b") is None
    assert cache.get_stale("d") == (4, None, True)
    cache.clear()
    assert cache.get_stale("c") is None


def test_get_stale_copies_with_copy_on_read() -> None:
    cache = df.MemoryCache(copy_on_read=True)
    value = {"a": [1]}
    cache.set("k", value, 10, stale_ttl=10)
    found = cache.get_stale("k")
    assert found is not None
    assert found[0] == value
    assert found[0] is not value


def test_a_bad_stale_ttl_is_refused() -> None:
    with pytest.raises(df.ConfigurationError):
        df.MemoryCache().set("k", 1, 10, stale_ttl="5")  # type: ignore[arg-type]
