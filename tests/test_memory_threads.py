"""MemoryCache under threads: the size bound and every value stay right."""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable, Iterator
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


def _mixed_worker(cache: MemoryCache, seed: int, check: Callable[[MemoryCache], None]) -> None:
    rng = random.Random(seed)
    for i in range(_OPS):
        key = f"k{rng.randrange(_KEYS)}"
        roll = rng.random()
        if roll < 0.5:
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


def _final_invariants(cache: MemoryCache) -> None:
    cache.cleanup()
    data = dict(cache._data)
    assert len(cache._policy) == len(data)  # type: ignore[arg-type]
    assert cache.stats().entries == len(data)
    assert cache.stats().weight == sum(entry[2] for entry in data.values())
    for key, (value, _, _) in data.items():
        assert value[0] == key
    # The policy ranks exactly the keys the cache holds.
    victims = {cache._policy.select_victim() for _ in range(len(data))}
    assert victims == set(data)


@pytest.mark.parametrize("policy", ["tinylfu", "lru", "lfu", "ttl"])
def test_mixed_operations_keep_the_entry_bound_and_the_values(policy: str) -> None:
    limit = 8

    def check(cache: MemoryCache) -> None:
        assert len(cache) <= limit

    cache = MemoryCache(max_entries=limit, policy=policy)
    _run([lambda s=s: _mixed_worker(cache, s, check) for s in range(_THREADS)])
    assert len(cache) <= limit
    stats = cache.stats()
    assert stats.hits + stats.misses <= _THREADS * _OPS
    _final_invariants(cache)


@pytest.mark.parametrize("policy", ["tinylfu", "lru"])
def test_mixed_operations_keep_the_weight_bound(policy: str) -> None:
    budget = 300

    def weigh(key: str, value: Any) -> int:
        return 10 + len(value[3])

    def check(cache: MemoryCache) -> None:
        assert cache.stats().weight <= budget

    cache = MemoryCache(max_entries=None, max_bytes=budget, weigher=weigh, policy=policy)
    _run([lambda s=s: _mixed_worker(cache, s, check) for s in range(_THREADS)])
    assert cache.stats().weight <= budget
    _final_invariants(cache)


def test_readers_never_see_a_half_replaced_value() -> None:
    cache = MemoryCache(max_entries=4)
    cache.set("k", ("k", 0, 0))

    def writer() -> None:
        for i in range(2_000):
            cache.set("k", ("k", i, i))  # both numbers always equal

    def reader() -> None:
        for _ in range(4_000):
            value = cache.get("k")
            assert value is None or value[1] == value[2]

    _run([writer, reader, reader])
