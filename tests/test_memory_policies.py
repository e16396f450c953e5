"""Eviction policies: each built-in's order, W-TinyLFU's hit ratio, and user-supplied policies."""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry import ConfigurationError, EvictionPolicy, MemoryCache
from dataferry._memory import _tinylfu
from dataferry._memory._lfu import LfuPolicy
from dataferry._memory._lru import LruPolicy
from dataferry._memory._sketch import FrequencySketch, GhostFilter
from dataferry._memory._tinylfu import TinyLfuPolicy
from dataferry._memory._ttl import TtlPolicy

_MISS = object()


def _fill(cache: MemoryCache, keys: Iterable[str]) -> None:
    for key in keys:
        cache.set(key, key)


def held(cache: MemoryCache, universe: Iterable[str] = "abcdefghijklmnopqrstuvwxyz") -> list[str]:
    """The keys of ``universe`` that ``cache`` holds, sorted; checked to be all that it holds."""
    keys = sorted(key for key in set(universe) if key in cache)
    assert len(cache) == len(keys), "the cache holds keys outside the universe"
    return keys


def _read(cache: MemoryCache, *keys: str) -> None:
    for key in keys:
        assert cache.get(key) == key
    cache.cleanup()  # hand the buffered hits to the policy now, so the order is exact


def _hits(cache: MemoryCache, trace: Iterable[str]) -> int:
    """Replay ``trace``: get, and set on a miss. Return the hits."""
    hits = 0
    for key in trace:
        if cache.get(key, _MISS) is _MISS:
            cache.set(key, key)
        else:
            hits += 1
    return hits


# -- the order of each built-in -------------------------------------------------------------


def test_lru_evicts_the_least_recently_used() -> None:
    cache = MemoryCache(max_entries=3, policy="lru")
    _fill(cache, "abc")
    _read(cache, "a")
    cache.set("d", "d")
    assert held(cache) == ["a", "c", "d"]
    cache.set("c", "c")  # a write is a use too
    cache.set("e", "e")
    assert held(cache) == ["c", "d", "e"]


def test_lfu_evicts_the_least_frequently_used() -> None:
    cache = MemoryCache(max_entries=3, policy="lfu")
    _fill(cache, "abc")
    _read(cache, "a", "a", "a", "b", "b")
    cache.set("d", "d")  # "c" and "d" were both used once: the older goes
    assert held(cache) == ["a", "b", "d"]
    _read(cache, "d", "d")
    cache.set("e", "e")  # the newcomer ranks below everyone: it is not admitted
    assert held(cache) == ["a", "b", "d"]
    cache.set("f", "f")  # but every eviction ages the cache, so newcomers rank higher
    cache.set("g", "g")
    assert "g" in cache


def test_lfu_ages_so_old_popularity_decays() -> None:
    cache = MemoryCache(max_entries=4, policy="lfu")
    cache.set("old", "old")
    _read(cache, *["old"] * 5)
    # A stream of newer keys, each read twice: plain LFU would keep "old" forever, but the
    # age rises with every eviction until newcomers outrank it.
    for i in range(40):
        key = f"new{i}"
        cache.set(key, key)
        cache.get(key)
        cache.get(key)
        cache.cleanup()
    assert "old" not in cache
    assert len(cache) == 4


def test_lfu_policy_order_ties_break_oldest_first() -> None:
    policy = LfuPolicy()
    for key in "abc":
        policy.record_insert(key, 1, math.inf)
    policy.record_access("b")
    assert [policy.select_victim() for _ in range(3)] == ["a", "c", "b"]


def test_ttl_evicts_the_entry_closest_to_expiry() -> None:
    cache = MemoryCache(max_entries=3, policy="ttl")
    cache.set("late", "late", ttl=300)
    cache.set("soon", "soon", ttl=10)
    cache.set("never", "never")
    _read(cache, "soon", "soon")  # reads don't save it
    cache.set("mid", "mid", ttl=100)
    assert "soon" not in cache
    cache.set("mid2", "mid2", ttl=100)
    assert "mid" not in cache  # same ttl as "mid2", but set earlier: it expires first
    assert "never" in cache  # entries without expiry go last


def test_ttl_policy_follows_a_replaced_expiry() -> None:
    policy = TtlPolicy()
    policy.record_insert("a", 1, 10.0)
    policy.record_insert("b", 1, 20.0)
    policy.record_insert("a", 1, 30.0)  # a new value, a new expiry
    assert policy.select_victim() == "b"
    assert policy.select_victim() == "a"


def test_tinylfu_admits_a_candidate_only_if_more_popular_than_the_victim() -> None:
    policy = TinyLfuPolicy(100)
    for i in range(100):  # fill: window 1, the rest in probation
        policy.record_insert(f"k{i}", 1, math.inf)
    victim = "k0"  # probation's least recently used
    # A newcomer seen once ties with the victim: the victim stays.
    policy.record_insert("once", 1, math.inf)
    policy.record_insert("push", 1, math.inf)  # pushes "once" out of the window
    assert policy.select_victim() == "once"
    # A newcomer seen three times beats it.
    for _ in range(3):
        policy.record_insert("popular", 1, math.inf)
        policy.record_remove("popular")
    policy.record_insert("popular", 1, math.inf)
    policy.record_insert("push2", 1, math.inf)  # pushes "popular" out of the window
    assert policy.select_victim() == victim


# -- W-TinyLFU against LRU, on workloads built for each ----------------------------------------


def _scan_with_hot_set(rng: random.Random, hot: int, requests: int) -> list[str]:
    """Reads of a small hot set, interleaved with a scan of keys never seen again."""
    trace: list[str] = []
    for i in range(requests):
        if i % 2:
            trace.append(f"hot{rng.randrange(hot)}")
        else:
            trace.append(f"scan{i}")
    return trace


def test_tinylfu_resists_scans_that_flush_lru() -> None:
    trace = _scan_with_hot_set(random.Random(1), hot=80, requests=40_000)
    lru = _hits(MemoryCache(max_entries=100, policy="lru"), trace)
    tinylfu = _hits(MemoryCache(max_entries=100, policy="tinylfu"), trace)
    hot_reads = len(trace) // 2
    assert tinylfu > 1.5 * lru
    assert tinylfu > 0.9 * hot_reads  # nearly every hot read hits


def _moving_working_set(rng: random.Random, size: int, requests: int) -> list[str]:
    """Recency: reads of a working set that slides forward, so what was hot never returns."""
    return [f"k{i // 4 + rng.randrange(size)}" for i in range(requests)]


def test_tinylfu_window_grows_to_keep_up_with_lru_on_recency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each key is read about 4 times while it is in the working set, then never again: what
    # TinyLFU's admission filter alone handles worst (yesterday's popular keys block today's).
    trace = _moving_working_set(random.Random(2), size=150, requests=100_000)
    lru = _hits(MemoryCache(max_entries=200, policy="lru"), trace)
    cache = MemoryCache(max_entries=200, policy="tinylfu")
    adaptive = _hits(cache, trace)
    policy = cache._policy
    assert isinstance(policy, TinyLfuPolicy)
    assert policy.window_maximum > 200 // 2  # it climbed from 1% toward recency
    monkeypatch.setattr(_tinylfu, "_CLIMB_SAMPLE", 10**9)  # the same policy, window fixed at 1%
    fixed = _hits(MemoryCache(max_entries=200, policy="tinylfu"), trace)
    assert adaptive > 3 * fixed
    assert adaptive > 0.8 * lru  # not far behind LRU, on LRU's best kind of workload


def test_tinylfu_window_stays_small_when_frequency_pays() -> None:
    trace = _scan_with_hot_set(random.Random(3), hot=80, requests=40_000)
    cache = MemoryCache(max_entries=100, policy="tinylfu")
    _hits(cache, trace)
    policy = cache._policy
    assert isinstance(policy, TinyLfuPolicy)
    assert policy.window_maximum <= 100 // 4  # far from the recency end


def test_tinylfu_beats_lru_on_a_skewed_workload() -> None:
    rng = random.Random(4)
    keys = [f"k{i}" for i in range(5000)]
    weights = [1 / (i + 1) for i in range(5000)]  # Zipf-like popularity
    trace = rng.choices(keys, weights, k=50_000)
    lru = _hits(MemoryCache(max_entries=250, policy="lru"), trace)
    tinylfu = _hits(MemoryCache(max_entries=250, policy="tinylfu"), trace)
    assert tinylfu > lru


# -- the frequency sketch -------------------------------------------------------------------


def test_sketch_counts_sightings_beyond_the_first() -> None:
    sketch = FrequencySketch(1000)
    for n in range(1, 8):
        for _ in range(n):
            sketch.increment(f"seen{n}")
    estimates = [sketch.frequency(f"seen{n}") for n in range(1, 8)]
    assert estimates[0] == 0  # the doorkeeper absorbs a first sighting
    assert all(est >= n - 1 for n, est in zip(range(1, 8), estimates, strict=True))
    assert sketch.frequency("never") == 0


def test_sketch_saturates_and_halves_after_a_sample_period() -> None:
    sketch = FrequencySketch(10)
    for _ in range(40):
        sketch.increment("hot")
    assert sketch.frequency("hot") == 15
    for i in range(sketch.sample_size):
        sketch.increment(f"other{i}")
    assert sketch.frequency("hot") <= 7  # halved (maybe twice), so old popularity decays


def test_sketch_resize_forgets() -> None:
    sketch = FrequencySketch(10)
    for _ in range(5):
        sketch.increment("k")
    sketch.resize(100)
    assert sketch.capacity == 100
    assert sketch.frequency("k") == 0


def test_ghost_filter_remembers_recent_evictions_by_side() -> None:
    ghosts = GhostFilter(100)
    for i in range(50):
        ghosts.add(f"w{i}", 1)
        ghosts.add(f"m{i}", 2)
    assert all(ghosts.side(f"w{i}") == 1 for i in range(50))  # never forgets within its span
    assert sum(ghosts.side(f"m{i}") == 2 for i in range(50)) >= 47  # side 1 is asked first
    strangers = sum(ghosts.side(f"never{i}") != 0 for i in range(1000))
    assert strangers < 30  # false positives are rare
    for i in range(100):  # a span's worth of newer evictions on side 1 ...
        ghosts.add(f"w-late{i}", 1)
    remembered = sum(ghosts.side(f"w{i}") == 1 for i in range(50))
    assert remembered <= 3  # ... pushes the old out (but for a rare false positive)
    kept = sum(ghosts.side(f"m{i}") == 2 for i in range(50))
    assert kept >= 47  # the other side keeps its own


# -- every built-in keeps the EvictionPolicy contract ----------------------------------------


def _builtins() -> list[EvictionPolicy]:
    return [LruPolicy(), LfuPolicy(), TtlPolicy(), TinyLfuPolicy(8)]


@pytest.mark.parametrize("policy", _builtins(), ids=lambda p: type(p).__name__)
def test_builtins_are_eviction_policies(policy: EvictionPolicy) -> None:
    assert isinstance(policy, EvictionPolicy)


@settings(max_examples=100, deadline=None)
@given(
    which=st.integers(0, 3),
    ops=st.lists(
        st.tuples(st.sampled_from(["insert", "access", "remove", "evict"]), st.integers(0, 12)),
        max_size=200,
    ),
)
def test_builtins_track_exactly_the_keys_they_were_given(
    which: int, ops: list[tuple[str, int]]
) -> None:
    policy = _builtins()[which]
    held: set[str] = set()
    for op, n in ops:
        key = f"k{n}"
        if op == "insert":
            policy.record_insert(key, 1, float(n))
            held.add(key)
        elif op == "access" and key in held:
            policy.record_access(key)
        elif op == "remove":
            policy.record_remove(key)
            held.discard(key)
        elif op == "evict" and held:
            victim = policy.select_victim()
            assert victim in held
            held.remove(victim)
        assert len(policy) == len(held)  # type: ignore[arg-type]
    drained = {policy.select_victim() for _ in range(len(held))}
    assert drained == held


# -- plugging in a user policy --------------------------------------------------------------


class LargestKeyFirst:
    """A user policy: evict the lexicographically largest key (O(n), fine for a test)."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.accessed: list[str] = []

    def record_insert(self, key: str, weight: int, expires_at: float) -> None:
        self.keys.add(key)

    def record_access(self, key: str) -> None:
        self.accessed.append(key)

    def record_remove(self, key: str) -> None:
        self.keys.discard(key)

    def select_victim(self) -> str:
        victim = max(self.keys)
        self.keys.remove(victim)
        return victim


def test_a_user_policy_decides_what_is_evicted() -> None:
    policy = LargestKeyFirst()
    assert isinstance(policy, EvictionPolicy)
    cache = MemoryCache(max_entries=3, policy=policy)
    _fill(cache, ["b", "d", "a"])
    cache.set("c", "c")
    assert held(cache) == ["a", "b", "c"]  # "d" went
    cache.set("z", "z")  # the newcomer itself is the largest: not admitted
    assert "z" not in cache
    _read(cache, "a", "b")
    assert policy.accessed == ["a", "b"]
    cache.remove("a")
    assert policy.keys == {"b", "c"}
    cache.clear()  # no clear() on this policy: every key is removed one by one
    assert policy.keys == set()


def test_a_user_policy_choosing_an_unknown_key_is_a_configuration_error() -> None:
    class Confused(LargestKeyFirst):
        def select_victim(self) -> str:
            return "not-a-key"

    cache = MemoryCache(max_entries=1, policy=Confused())
    cache.set("a", 1)
    with pytest.raises(ConfigurationError, match="does not hold"):
        cache.set("b", 2)


def test_the_policy_sees_weights_in_the_unit_of_the_budget() -> None:
    seen: list[int] = []

    class Recorder(LargestKeyFirst):
        def record_insert(self, key: str, weight: int, expires_at: float) -> None:
            seen.append(weight)
            super().record_insert(key, weight, expires_at)

    MemoryCache(max_entries=10, weigher=lambda k, v: 7, policy=Recorder()).set("a", 1)
    MemoryCache(max_bytes=100, weigher=lambda k, v: 7, policy=Recorder()).set("a", 1)
    assert seen == [1, 7]


def test_lru_reference_model_matches_without_any_drain() -> None:
    # Hits reach the "lru" policy at once: exact LRU with no upkeep call anywhere (more in
    # tests/test_memory_lru.py).
    rng = random.Random(5)
    cache = MemoryCache(max_entries=20, policy="lru")
    model: OrderedDict[str, None] = OrderedDict()
    for _ in range(3000):
        key = f"k{rng.randrange(40)}"
        if cache.get(key, _MISS) is _MISS:
            assert key not in model
            cache.set(key, key)
            model[key] = None
            if len(model) > 20:
                model.popitem(last=False)
        else:
            model.move_to_end(key)
    assert held(cache, [f"k{i}" for i in range(40)]) == sorted(model)


def test_tinylfu_moves_toward_recency_at_once_when_the_window_earns_the_hits() -> None:
    # Every key is read right after it is written, then never again: all hits land in the
    # window, so the first move grows it, without waiting for a hit-rate comparison.
    trace = [f"k{i // 3}" for i in range(30_000)]
    cache = MemoryCache(max_entries=100, policy="tinylfu")
    _hits(cache, trace)
    policy = cache._policy
    assert isinstance(policy, TinyLfuPolicy)
    assert policy.window_maximum >= 10


def test_weighted_tinylfu_adapts_within_its_byte_budget() -> None:
    rng = random.Random(6)
    weights = {f"k{i}": rng.randint(1, 60) for i in range(2000)}
    cache = MemoryCache(
        max_entries=None, max_bytes=3000, weigher=lambda k, v: weights[k], policy="tinylfu"
    )
    trace = _moving_working_set(rng, size=60, requests=30_000)
    trace = [f"k{int(k[1:]) % 2000}" for k in trace]
    _hits(cache, trace)
    assert cache.stats().weight <= 3000
    policy = cache._policy
    assert isinstance(policy, TinyLfuPolicy)
    assert policy.window_maximum > 3000 * 0.1


def test_tinylfu_rejects_a_zero_budget_and_an_empty_eviction() -> None:
    with pytest.raises(ValueError, match="maximum"):
        TinyLfuPolicy(0)
    with pytest.raises(LookupError):
        TinyLfuPolicy(10).select_victim()


def test_ttl_policy_compacts_stale_heap_items() -> None:
    policy = TtlPolicy()
    for i in range(10_000):
        policy.record_insert(f"k{i % 10}", 1, float(i))
    assert len(policy._heap) <= 2 * 10 + 64
    assert sorted(policy.select_victim() for _ in range(10)) == sorted(f"k{i}" for i in range(10))


@pytest.mark.parametrize("policy", ["tinylfu", "lru", "lfu", "ttl"])
def test_clear_resets_every_policy(policy: str) -> None:
    cache = MemoryCache(max_entries=5, policy=policy)
    _fill(cache, "abcdefg")
    cache.clear()
    assert len(cache._policy) == 0  # type: ignore[arg-type]
    _fill(cache, "hijklmn")
    assert len(cache) == 5


def test_an_updated_entry_the_policy_evicts_is_gone() -> None:
    cache = MemoryCache(
        max_entries=None, max_bytes=10, weigher=lambda k, v: len(v), policy=LargestKeyFirst()
    )
    cache.set("a", "xxx")
    cache.set("z", "xxx")
    cache.set("z", "x" * 8)  # now over budget, and the policy picks "z" itself
    assert "z" not in cache
    assert cache.get("a") == "xxx"
    assert cache.stats().weight == 3
