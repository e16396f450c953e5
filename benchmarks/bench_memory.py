"""L1 speed and memory: MemoryCache per policy against cachetools and cachebox, in one run.

    .venv/bin/python benchmarks/bench_memory.py [--rounds 9] [--entries 1000000] [--strict]

Three tables, every contender measured in the same run, rounds interleaved (rotating who goes
first) and the median kept:

1. ``get`` hit, ns/op: 10,000 entries (all with a ttl), a loop of ``get`` over their keys.
   Baseline ``dict.get``. Peers: ``cachetools`` LRU/LFU/TTL, ``cachebox`` LRU/LFU/TTL. Also
   ``DataFerry.get`` (the sync facade, L1 only): target >= 2x faster than
   ``cachetools.TTLCache.get``.
2. ``set`` with eviction, ns/op: a full 1,000-entry cache, a stream of new keys (every set
   evicts one entry). Baseline: plain ``dict`` assignment (no eviction).
3. Bytes per entry (``tracemalloc``) of the structure alone, for ``--entries`` small entries
   (keys and values allocated beforehand): a plain dict, cachetools, MemoryCache per policy.
   Target: MemoryCache's overhead at most 2x cachetools' ``TTLCache``. cachebox keeps its
   entries on the Rust heap, where tracemalloc can't see, so it is left out of this table.

A MemoryCache hit records itself in a lossy buffer that writes hand to the policy later: the
``get`` rows measure the read path alone, the ``set`` rows include draining those reads.
Exit status is 0 unless ``--strict`` is given and a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from itertools import count
from typing import Any

import cachebox
import cachetools

from dataferry import MemoryCache

POLICIES = ("tinylfu", "lru", "lfu", "ttl")
TTL = 3600.0


# -- measuring ------------------------------------------------------------------------------


def rounds_median(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Run every contender once per round, rotating the order; return each one's median."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for _ in range(2):  # warm-up
        for name in names:
            contenders[name]()
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            samples[name].append(contenders[name]())
    return {name: statistics.median(values) for name, values in samples.items()}


def per_op(loop: Callable[[], None], ops: int) -> Callable[[], float]:
    def measure() -> float:
        gc_was = gc.isenabled()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            loop()
            return (time.perf_counter_ns() - start) / ops
        finally:
            if gc_was:
                gc.enable()

    return measure


# -- 1. get (hit) ---------------------------------------------------------------------------


def get_contenders(keys: list[str]) -> dict[str, Callable[[], float]]:
    n = len(keys)
    size = 2 * n

    def loop_over(get: Callable[[str], Any]) -> Callable[[], float]:
        def loop() -> None:
            for k in keys:
                get(k)

        return per_op(loop, n)

    plain = dict.fromkeys(keys, 1)
    out: dict[str, Callable[[], float]] = {"dict.get": loop_over(plain.get)}
    for policy in POLICIES:
        mc = MemoryCache(max_entries=size, policy=policy)
        for k in keys:
            mc.set(k, 1, ttl=TTL)
        out[f"MemoryCache({policy!r}).get"] = loop_over(mc.get)
    facade = _facade(keys)
    if facade is not None:
        out["DataFerry.get"] = loop_over(facade.get)
    peers: dict[str, Any] = {
        "cachetools.LRUCache.get": cachetools.LRUCache(size),
        "cachetools.LFUCache.get": cachetools.LFUCache(size),
        "cachetools.TTLCache.get": cachetools.TTLCache(size, TTL),
        "cachebox.LRUCache.get": cachebox.LRUCache(size),
        "cachebox.LFUCache.get": cachebox.LFUCache(size),
        "cachebox.TTLCache.get": cachebox.TTLCache(size, TTL),
    }
    for name, cache in peers.items():
        for k in keys:
            cache[k] = 1
        out[name] = loop_over(cache.get)
    return out


def _facade(keys: list[str]) -> Any:
    # The sync facade is being written alongside this engine: measured once it exists.
    try:
        from dataferry import DataFerry
    except ImportError:  # pragma: no cover - depends on the facade's progress
        return None
    cache = DataFerry(memory=MemoryCache(max_entries=2 * len(keys)), default_ttl=TTL)
    for k in keys:
        cache.set(k, 1)
    assert cache.get(keys[0]) == 1
    return cache


# -- 2. set with eviction -------------------------------------------------------------------


def set_contenders(capacity: int, ops: int) -> dict[str, Callable[[], float]]:
    fresh = count()

    def stream() -> list[str]:
        return [f"new:{next(fresh)}" for _ in range(ops)]

    def measure_with(
        make: Callable[[], Any], put: Callable[[Any, str], None]
    ) -> Callable[[], float]:
        def measure() -> float:
            cache = make()
            for k in stream()[:capacity]:
                put(cache, k)  # full before the clock starts
            keys = stream()

            def loop() -> None:
                for k in keys:
                    put(cache, k)

            return per_op(loop, ops)()

        return measure

    def dict_put(cache: dict[str, int], k: str) -> None:
        cache[k] = 1

    def item_put(cache: Any, k: str) -> None:
        cache[k] = 1

    out: dict[str, Callable[[], float]] = {
        "dict[k] = v (no eviction)": measure_with(dict, dict_put)
    }
    for policy in POLICIES:

        def make(policy: str = policy) -> MemoryCache:
            return MemoryCache(max_entries=capacity, policy=policy)

        def mc_put(cache: MemoryCache, k: str) -> None:
            cache.set(k, 1, TTL)

        out[f"MemoryCache({policy!r}).set"] = measure_with(make, mc_put)
    peers: dict[str, Callable[[], Any]] = {
        "cachetools.LRUCache[k] = v": lambda: cachetools.LRUCache(capacity),
        "cachetools.LFUCache[k] = v": lambda: cachetools.LFUCache(capacity),
        "cachetools.TTLCache[k] = v": lambda: cachetools.TTLCache(capacity, TTL),
        "cachebox.LRUCache[k] = v": lambda: cachebox.LRUCache(capacity),
        "cachebox.LFUCache[k] = v": lambda: cachebox.LFUCache(capacity),
        "cachebox.TTLCache[k] = v": lambda: cachebox.TTLCache(capacity, TTL),
    }
    for name, make_peer in peers.items():
        out[name] = measure_with(make_peer, item_put)
    return out


# -- 3. bytes per entry ---------------------------------------------------------------------


def bytes_per_entry(entries: int) -> dict[str, float]:
    keys = [f"key:{i}" for i in range(entries)]
    values = list(range(entries))  # allocated now, so only the structure is measured

    def fill_mapping(cache: Any) -> Any:
        for k, v in zip(keys, values, strict=True):
            cache[k] = v
        return cache

    def fill_memory(policy: str) -> Callable[[], Any]:
        def fill() -> MemoryCache:
            cache = MemoryCache(max_entries=entries, policy=policy)
            for k, v in zip(keys, values, strict=True):
                cache.set(k, v, TTL)
            cache.cleanup()
            return cache

        return fill

    builders: dict[str, Callable[[], Any]] = {
        "dict": lambda: fill_mapping({}),
        "cachetools.LRUCache": lambda: fill_mapping(cachetools.LRUCache(entries)),
        "cachetools.TTLCache": lambda: fill_mapping(cachetools.TTLCache(entries, TTL)),
    }
    for policy in POLICIES:
        builders[f"MemoryCache({policy!r})"] = fill_memory(policy)
    out: dict[str, float] = {}
    for name, build in builders.items():
        gc.collect()
        tracemalloc.start()
        cache = build()
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(cache) == entries, name
        out[name] = current / entries
        del cache
    return out


# -- report ---------------------------------------------------------------------------------


def speed_table(title: str, results: dict[str, float], baseline: str) -> str:
    base = results[baseline]
    lines = [f"\n### {title}\n", "| contender | ns/op | x baseline |", "|---|---:|---:|"]
    for name, ns in results.items():
        lines.append(f"| `{name}` | {ns:,.0f} | {ns / base:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="measured rounds (median kept)")
    parser.add_argument("--get-entries", type=int, default=10_000)
    parser.add_argument("--set-capacity", type=int, default=1_000)
    parser.add_argument("--set-ops", type=int, default=20_000)
    parser.add_argument("--entries", type=int, default=1_000_000, help="for bytes per entry")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)

    print(
        f"# MemoryCache: speed and memory\n\nPython {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, median of {args.rounds} interleaved rounds"
    )
    missed = []
    keys = [f"key:{i}" for i in range(args.get_entries)]
    gets = rounds_median(get_contenders(keys), args.rounds)
    print(speed_table("get (hit)", gets, "dict.get"))
    ttl_get = gets["cachetools.TTLCache.get"]
    ours = gets.get("DataFerry.get", gets["MemoryCache('tinylfu').get"])
    which = "DataFerry.get" if "DataFerry.get" in gets else "MemoryCache.get (no facade yet)"
    speedup = ttl_get / ours
    print(f"\n{which} is {speedup:.1f}x faster than cachetools.TTLCache.get (target >= 2x)")
    if speedup < 2:
        missed.append("L1 hit speed")

    sets = rounds_median(set_contenders(args.set_capacity, args.set_ops), args.rounds)
    print(speed_table("set, every one evicting", sets, "dict[k] = v (no eviction)"))

    sizes = bytes_per_entry(args.entries)
    print(f"\n### bytes per entry, {args.entries:,} entries (structure only)\n")
    print("| structure | bytes/entry | x TTLCache |\n|---|---:|---:|")
    reference = sizes["cachetools.TTLCache"]
    for name, size in sizes.items():
        print(f"| `{name}` | {size:,.0f} | {size / reference:.2f} |")
    worst = max(v for k, v in sizes.items() if k.startswith("MemoryCache"))
    print(f"\nMemoryCache's worst is {worst / reference:.2f}x TTLCache's (target <= 2x)")
    if worst > 2 * reference:
        missed.append("bytes per entry")

    if missed:
        print(f"\nmissed: {', '.join(missed)}")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
