"""Hit ratio of MemoryCache's policies on real traces, next to LRU and theine (W-TinyLFU).

Simulation: for every request, ``get``; on a miss, ``set`` (the cache is filled on every miss);
hit ratio = hits / requests, at 5% and 20% of each trace's distinct keys.

Peers measured in the same run: an exact LRU (``OrderedDict``) and ``theine.Cache`` (a Rust
W-TinyLFU, used single-threaded with ``nolock=True``).

Goals (issue 4): DataFerry's default policy within 1 point of the better peer on every row, and
at least 10 points above LRU on ``loop``, ``gli`` and ``ps`` at 20%.

Usage::

    .venv/bin/python benchmarks/bench_hit_ratio.py [--traces DIR] [--only loop,gli]
        [--policies tinylfu,lru,lfu] [--capacities 5,20] [--strict]

Traces come from ``--traces``, else ``$DATAFERRY_TRACES``, else ``../shared/traces`` relative to
the repo root. The full run takes about a minute on 2 cores (orm-busy has 5M requests).
Exit status is 0 unless ``--strict`` is given and a row misses its goal.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _traces import default_trace_dir, find_traces, load_trace, trace_name

from dataferry import MemoryCache

_MISS = object()
# Traces where the issue asks for >= 10 points over LRU at 20% capacity.
_FREQUENCY_TRACES = ("loop", "gli", "ps")


def lru_reference(keys: list[str], capacity: int) -> int:
    data: OrderedDict[str, None] = OrderedDict()
    hits = 0
    for k in keys:
        if k in data:
            data.move_to_end(k)
            hits += 1
        else:
            data[k] = None
            if len(data) > capacity:
                data.popitem(last=False)
    return hits


def theine_hits(keys: list[str], capacity: int) -> int:
    from theine import Cache

    cache: Cache[str, str] = Cache(capacity, nolock=True)
    get, put = cache.get, cache.set
    hits = 0
    for k in keys:
        if get(k)[1]:
            hits += 1
        else:
            put(k, k)
    cache.close()
    return hits


def dataferry_hits(policy: str) -> Callable[[list[str], int], int]:
    def run(keys: list[str], capacity: int) -> int:
        cache = MemoryCache(max_entries=capacity, policy=policy)
        get, put = cache.get, cache.set
        hits = 0
        for k in keys:
            if get(k, _MISS) is _MISS:
                put(k, k)
            else:
                hits += 1
        assert cache.stats().hits == hits
        assert len(cache) <= capacity
        return hits

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--traces",
        type=Path,
        default=default_trace_dir(),
        help="trace folder (default: $DATAFERRY_TRACES, else ../shared/traces from the repo)",
    )
    parser.add_argument("--only", default="", help="comma-separated trace names")
    parser.add_argument("--policies", default="tinylfu,lru,lfu")
    parser.add_argument("--capacities", default="5,20", help="percent of distinct keys")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a row misses its goal")
    args = parser.parse_args()

    paths = find_traces(args.traces)
    if args.only:
        wanted = set(args.only.split(","))
        paths = [p for p in paths if trace_name(p) in wanted]
    if not paths:
        print(f"no traces found under {args.traces}", file=sys.stderr)
        return 2
    policies = [p for p in args.policies.split(",") if p]
    if "tinylfu" not in policies:
        policies.insert(0, "tinylfu")
    percents = [int(p) for p in args.capacities.split(",")]

    runners: dict[str, Callable[[list[str], int], int]] = {
        "LRU": lru_reference,
        "theine": theine_hits,
    }
    for policy in policies:
        runners[f"df {policy}"] = dataferry_hits(policy)

    head = ["trace", "cap %", "entries", "requests", *runners, "Δ best peer", "goal"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    failures = 0
    started = time.perf_counter()
    for path in paths:
        trace = load_trace(path)
        for percent in percents:
            capacity = max(1, trace.distinct * percent // 100)
            ratios = {
                name: 100.0 * run(trace.keys, capacity) / len(trace.keys)
                for name, run in runners.items()
            }
            ours = ratios["df tinylfu"]
            best_peer = max(ratios["LRU"], ratios["theine"])
            delta = ours - best_peer
            ok = delta >= -1.0
            goal = "within 1 pt"
            if trace.name in _FREQUENCY_TRACES and percent == 20:
                ok = ok and ours - ratios["LRU"] >= 10.0
                goal += ", LRU+10"
            failures += not ok
            cells = [
                trace.name,
                str(percent),
                str(capacity),
                str(len(trace.keys)),
                *(f"{ratios[name]:.2f}" for name in runners),
                f"{delta:+.2f}",
                ("ok: " if ok else "MISSED: ") + goal,
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
    elapsed = time.perf_counter() - started
    print(f"\n{len(paths)} traces, {failures} rows missing the goal, {elapsed:.0f} s")
    return 1 if failures and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
