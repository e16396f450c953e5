"""MemoryCache under threads: the size bound and every value stay right."""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from dataferry import MemoryCache

_THREADS = 6
_OPS = 4_000
_KEYS = 40


@pytest.fixture(autouse=True)
def _switch_often() -> Iterator[None]:
    # Make the interpreter switch threads every few bytecodes, so the races a slow machine
    # would hide happen here.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _run(workers: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(len(workers))

    def wrap(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            start.wait()
            try:
                work()
            except BaseException as exc:  # surfaced below, in the test's thread
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(w)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _mixed_worker(
    cache: MemoryCache, seed: int, check: Callable[[MemoryCache], None], reads: list[int]
) -> None:
    rng = random.Random(seed)
    for i in range(_OPS):
        key = f"k{rng.randrange(_KEYS)}"
        roll = rng.random()
        if roll < 0.5:
            reads[seed] += 1
            got = cache.get(key)
            # A value is always the one some thread stored under this very key.
            assert got is None or got[0] == key, (key, got)
        elif roll < 0.85:
            ttl = rng.choice([None, 0.5, 30.0])
            cache.set(key, (key, seed, i, "x" * rng.randrange(40)), ttl=ttl)
        elif roll < 0.97:
            cache.remove(key)
        else:
            cache.cleanup()
        check(cache)


def _final_invariants(cache: MemoryCache, weigh: Callable[[str, Any], int] | None) -> None:
    cache.cleanup()
    data = {key: entry[0] for key, entry in cache._data.items()}
    assert len(cache._policy) == len(data)  # type: ignore[arg-type]
    stats = cache.stats()
    assert stats.entries == len(data)
    # The running total is exactly what the held values weigh (recomputed from scratch): a
    # lost update between two writers would leave it off for good.
    expected = len(data) if weigh is None else sum(weigh(k, v) for k, v in data.items())
    assert stats.weight == expected
    for key, value in data.items():
        assert value[0] == key
    # The policy ranks exactly the keys the cache holds.
    victims = {cache._policy.select_victim() for _ in range(len(data))}
    assert victims == set(data)


def _check_reads_counted(cache: MemoryCache, reads: list[int]) -> None:
    # Every read is a hit or a miss. The counters are plain ints updated without a lock (the
    # price of a lock-free hit), so a few increments may be lost under contention, never made
    # up: at most the reads issued, and nearly all of them.
    counted = cache.stats().hits + cache.stats().misses
    assert 0.9 * sum(reads) <= counted <= sum(reads)


@pytest.mark.parametrize("policy", ["tinylfu", "lru", "lfu", "ttl"])
def test_mixed_operations_keep_the_entry_bound_and_the_values(policy: str) -> None:
    limit = 8

    def check(cache: MemoryCache) -> None:
        assert len(cache) <= limit

    cache = MemoryCache(max_entries=limit, policy=policy)
    reads = [0] * _THREADS
    _run([partial(_mixed_worker, cache, s, check, reads) for s in range(_THREADS)])
    assert len(cache) <= limit
    _check_reads_counted(cache, reads)
    _final_invariants(cache, None)


def _weigh(key: str, value: Any) -> int:
    return 10 + len(value[3])


@pytest.mark.parametrize("policy", ["tinylfu", "lru"])
def test_mixed_operations_keep_the_weight_bound(policy: str) -> None:
    budget = 300

    def check(cache: MemoryCache) -> None:
        assert cache.stats().weight <= budget

    cache = MemoryCache(max_entries=None, max_bytes=budget, weigher=_weigh, policy=policy)
    reads = [0] * _THREADS
    _run([partial(_mixed_worker, cache, s, check, reads) for s in range(_THREADS)])
    assert cache.stats().weight <= budget
    _final_invariants(cache, _weigh)


@pytest.mark.parametrize("policy", ["tinylfu", "lru", "lfu", "ttl"])
def test_concurrent_writers_of_the_same_keys_keep_the_accounting_exact(policy: str) -> None:
    # The write lock is what keeps the running weight, the eviction counters and the policy's
    # view in step with the entries: every write reads the old entry, asks the policy, and
    # updates totals. Writers that replace the same few keys with values of other weights
    # interleave those steps as often as possible here; without the lock the total drifts
    # (a lost update), the policy loses or keeps keys it shouldn't, or a policy structure
    # raises. (Readers can't tell: entries are tuples replaced whole, atomic with or without
    # the lock, so reads alone prove nothing about it. They check that a value and its
    # metadata are always read together.)
    budget = 400

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(_OPS):
            key = f"k{rng.randrange(6)}"
            payload = "x" * rng.randrange(60)
            if rng.random() < 0.9:
                cache.set(key, (key, seed, i, payload), meta=(seed, i), ttl=30.0)
            else:
                cache.remove(key)
            assert cache.stats().weight <= budget

    def reader() -> None:
        for i in range(_OPS):
            got = cache.get_entry(f"k{i % 6}")
            if got is not None:
                value, meta = got
                assert meta == (value[1], value[2])  # stored together, read together

    cache = MemoryCache(max_entries=None, max_bytes=budget, weigher=_weigh, policy=policy)
    _run([partial(writer, s) for s in range(_THREADS - 1)] + [reader])
    _final_invariants(cache, _weigh)
