"""L1 speed and memory: MemoryCache per policy against cachetools and cachebox, in one run.

    .venv/bin/python benchmarks/bench_memory.py [--rounds 9] [--entries 1000000] [--strict]
    .venv/bin/python benchmarks/bench_memory.py --only rss       # just table 4
    .venv/bin/python benchmarks/bench_memory.py --only entries   # just table 5

Five tables; the speed ones measure every contender in the same run, rounds interleaved
(rotating who goes first), and keep the median:

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
4. RSS under ``max_bytes`` (issue B7): a ``MemoryCache(max_bytes=32 MiB)``, alone and as the
   L1 of a ``DataFerry`` with no L2, is filled with ``--rss-values`` values of about 1 MiB
   each (several times the budget) of one kind: ``str``, ``bytes``, a ``dict`` holding a str,
   a ``list`` of ints, a list of dict ``rows``. Each fill runs in a fresh interpreter, so the
   allocator starts clean; the table shows the peak growth of the process's resident memory
   during the fill (sampled every few sets) against the budget. Target: at most 2x
   ``max_bytes`` for every kind. A last row weighs entries with the old shallow estimate
   (``sys.getsizeof``), for comparison. Linux only (``/proc/self/statm``).
5. RSS per entry with a ttl (issue 8, target 1): ``--entries`` (1M) small entries
   ``set(f"k{i}", i, ttl=300)``, each fill in a fresh interpreter, keys and values made as
   they are set, so every row holds the same keys and values: a plain dict (no expiry, for
   scale), ``cachetools.TTLCache``, ``MemoryCache`` per policy called directly, and
   ``DataFerry(memory=MemoryCache(policy=...))`` (the sync facade, L1 only, which stores each
   key under its storage key, ``dataferry:k:`` + key) per policy. The figure is the growth of
   the process's resident memory over the fill, divided by the entries. Target: the facade
   with the default policy at most 1.2x ``TTLCache`` (goal: below it). Linux only.

A MemoryCache hit with ``tinylfu`` or ``lfu`` records itself in a lossy buffer that writes
hand to the policy later: their ``get`` rows measure the read path alone, their ``set`` rows
include draining those reads. With ``lru`` (exact) a hit moves its key in the policy at once,
in the ``get`` row; with ``ttl`` reads don't matter to the policy, and a hit records nothing.
Exit status is 0 unless ``--strict`` is given and a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from itertools import count
from typing import Any

import cachebox
import cachetools

from dataferry import MemoryCache
from dataferry._memory._weigher import ENTRY_OVERHEAD

POLICIES = ("tinylfu", "lru", "lfu", "ttl")
TTL = 3600.0
MiB = 1 << 20


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


# -- 4. RSS under max_bytes -----------------------------------------------------------------


def _str_value(i: int) -> str:
    return f"{i:08d}" + "x" * (MiB - 8)


def _bytes_value(i: int) -> bytes:
    return b"%08d" % i + b"x" * (MiB - 8)


def _dict_value(i: int) -> dict[str, str]:
    return {"blob": _str_value(i)}  # the value of issue B7


def _list_value(i: int) -> list[int]:
    start = 1000 + i * 30_000  # distinct ints (not the interpreter's cached small ones)
    return list(range(start, start + 26_000))  # 8-byte slot + 32-byte int: about 1 MiB


def _rows_value(i: int) -> list[dict[str, Any]]:
    # A query result: 4,000 rows of 3 fields, about 1 MiB live (the keys are shared).
    return [{"id": i * 10_000 + j, "name": f"user {j}", "score": j * 0.5} for j in range(4000)]


RSS_KINDS: dict[str, Callable[[int], Any]] = {
    "str": _str_value,
    "bytes": _bytes_value,
    "dict": _dict_value,
    "list": _list_value,
    "rows": _rows_value,
}
RSS_TARGETS = ("MemoryCache", "DataFerry", "MemoryCache, shallow weigher")


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _shallow(key: str, value: Any) -> int:
    # The default weigher before issue B7: the value's own size, not what it holds.
    return sys.getsizeof(key) + sys.getsizeof(value) + ENTRY_OVERHEAD


def rss_fill(kind: str, target: str, budget: int, values: int) -> dict[str, float]:
    """Fill one cache with ``values`` values of ``kind``; return the RSS growth (run alone)."""
    make = RSS_KINDS[kind]
    weigher = _shallow if target.endswith("shallow weigher") else None
    memory = MemoryCache(max_entries=None, max_bytes=budget, weigher=weigher)
    put: Callable[[str, Any], None] = memory.set
    if target == "DataFerry":
        from dataferry import DataFerry

        facade = DataFerry(memory=memory, distributed=None, default_ttl=TTL)

        def put(key: str, value: Any) -> None:
            facade.set(key, value)

    gc.collect()
    base = peak = _rss()
    for i in range(values):
        put(f"key:{i}", make(i))
        if i % 4 == 3:
            peak = max(peak, _rss())
    gc.collect()
    final = _rss()
    stats = memory.stats()
    return {
        "peak": max(peak, final) - base,
        "final": final - base,
        "entries": stats.entries,
        "weight": stats.weight,
    }


def rss_table(budget: int, values: int) -> tuple[str, list[str]]:
    """Run every (kind, target) fill in its own interpreter; return the table and misses."""
    lines = [
        f"\n### RSS growth filling max_bytes={budget / MiB:g} MiB with {values} values "
        "of about 1 MiB\n",
        "| value | cache | entries kept | weight (MiB) | peak RSS growth (MiB) | x max_bytes |",
        "|---|---|---:|---:|---:|---:|",
    ]
    missed = []
    runs = [(kind, target) for kind in RSS_KINDS for target in RSS_TARGETS[:2]]
    runs.append(("dict", RSS_TARGETS[2]))
    for kind, target in runs:
        out = subprocess.run(
            [sys.executable, __file__, "--rss-one", kind, target, str(budget), str(values)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        got = json.loads(out.strip().splitlines()[-1])
        ratio = got["peak"] / budget
        lines.append(
            f"| {kind} | `{target}` | {got['entries']:.0f} | {got['weight'] / MiB:.1f} | "
            f"{got['peak'] / MiB:.1f} | {ratio:.2f} |"
        )
        if ratio > 2 and "shallow" not in target:
            missed.append(f"RSS {kind} via {target}")
    return "\n".join(lines), missed


# -- 5. RSS per entry with a ttl ------------------------------------------------------------

ENTRY_TTL = 300.0
ENTRY_TARGETS = ("dict", "cachetools.TTLCache", "MemoryCache", "DataFerry")


def entries_fill(target: str, policy: str, entries: int) -> dict[str, float]:
    """Fill one structure with ``entries`` small entries with a ttl; return RSS bytes/entry."""
    cache: Any
    if target == "dict":
        cache = {}

        def put(key: str, value: int) -> None:
            cache[key] = value

    elif target == "cachetools.TTLCache":
        cache = cachetools.TTLCache(entries, ENTRY_TTL)

        def put(key: str, value: int) -> None:
            cache[key] = value

    else:
        memory = MemoryCache(max_entries=entries, policy=policy)
        cache = memory
        if target == "DataFerry":
            from dataferry import DataFerry

            facade = DataFerry(memory=memory, distributed=None)

            def put(key: str, value: int) -> None:
                facade.set(key, value, ttl=ENTRY_TTL)

        else:

            def put(key: str, value: int) -> None:
                memory.set(key, value, ENTRY_TTL)

    gc.collect()
    base = _rss()
    for i in range(entries):
        put(f"k{i}", i)
    gc.collect()
    grown = _rss() - base
    assert len(cache) == entries, (target, len(cache))
    return {"bytes_per_entry": grown / entries}


def entries_table(entries: int) -> tuple[str, list[str]]:
    """Run every (target, policy) fill in its own interpreter; return the table and misses."""
    runs = [("dict", "-"), ("cachetools.TTLCache", "-")]
    runs += [(target, policy) for target in ENTRY_TARGETS[2:] for policy in POLICIES]
    got: dict[tuple[str, str], float] = {}
    for target, policy in runs:
        out = subprocess.run(
            [sys.executable, __file__, "--entries-one", target, policy, str(entries)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        got[target, policy] = json.loads(out.strip().splitlines()[-1])["bytes_per_entry"]
    reference = got["cachetools.TTLCache", "-"]
    lines = [
        f"\n### RSS per entry, {entries:,} entries set with ttl={ENTRY_TTL:g} "
        "(keys and values included)\n",
        "| structure | policy | bytes/entry | x TTLCache |",
        "|---|---|---:|---:|",
    ]
    for (target, policy), size in got.items():
        lines.append(f"| `{target}` | {policy} | {size:,.0f} | {size / reference:.2f} |")
    missed = []
    default = got["DataFerry", "tinylfu"] / reference
    lines.append(
        f"\nDataFerry (default policy) holds {default:.2f}x TTLCache's bytes per entry "
        "(target <= 1.2x, goal < 1x)"
    )
    if default > 1.2:
        missed.append("RSS per entry through the facade")
    return "\n".join(lines), missed


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
    parser.add_argument("--rss-budget", type=int, default=32 * MiB, help="max_bytes, table 4")
    parser.add_argument("--rss-values", type=int, default=200, help="values per fill, table 4")
    parser.add_argument(
        "--only", choices=["speed", "bytes", "rss", "entries"], help="one part only"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--rss-one", nargs=4, help=argparse.SUPPRESS)  # a child of table 4
    parser.add_argument("--entries-one", nargs=3, help=argparse.SUPPRESS)  # one of table 5
    args = parser.parse_args(argv)
    if args.rss_one:
        kind, target, budget, values = args.rss_one
        print(json.dumps(rss_fill(kind, target, int(budget), int(values))))
        return 0
    if args.entries_one:
        target, policy, entries = args.entries_one
        print(json.dumps(entries_fill(target, policy, int(entries))))
        return 0

    print(
        f"# MemoryCache: speed and memory\n\nPython {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, median of {args.rounds} interleaved rounds"
    )
    missed = []
    if args.only in (None, "speed"):
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

    if args.only in (None, "bytes"):
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

    if args.only in (None, "rss"):
        table, rss_missed = rss_table(args.rss_budget, args.rss_values)
        print(table)
        print("\ntarget: peak RSS growth <= 2x max_bytes for every kind (the shallow row excepted)")
        missed.extend(rss_missed)

    if args.only in (None, "entries"):
        table, entries_missed = entries_table(args.entries)
        print(table)
        missed.extend(entries_missed)

    if missed:
        print(f"\nmissed: {', '.join(missed)}")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
