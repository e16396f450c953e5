"""Decorator hits: ``@cache.cached`` against cashews' ``@cache`` and aiocache's ``@cached``.

    .venv/bin/python benchmarks/bench_decorator.py [--rounds 15] [--clock {wall,cpu}] [--strict]

Every contender decorates the same function (``async def get_user(uid: int) -> dict``),
is warmed up, and is then called with the same argument, so every timed call is an L1 hit of
the decorator: its key building, its lookup, its return. Sides run interleaved round by round
(``_rounds.py``); each row is the median of the per-round speed-ups (baseline time / DataFerry
time) with their range:

- async hit, ``AsyncDataFerry().cached(ttl=...)`` (default MemoryCache, no L2) against
  cashews ``@cache(ttl=...)`` after ``cache.setup("mem://")``: target >= 10x faster;
- the same against aiocache ``@cached(ttl=..., cache=SimpleMemoryCache)``: target >= 5x;
- for context (no target): the async hit against a hand-written ``get_or_set`` hit (an
  f-string key and a lambda per call), and the sync ``DataFerry().cached`` hit against
  ``cachetools.cached(TTLCache)`` and ``functools.lru_cache`` (no L2, no stampede
  protection, keys by ``hash()`` and ``==``, so ``f(1)`` and ``f(True)`` share an entry;
  ``lru_cache``, in C and without a TTL, is the floor of what a decorator can cost).
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import sys
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import aiocache
import cachetools
from _rounds import Pair, Side, bench_parser, interleave, parse_args, timed_async, timed_sync
from cashews import Cache as CashewsCache

import dataferry as df

TTL = 3600
UID = 7


def user(uid: int) -> dict[str, Any]:
    return {"id": uid, "name": "Ada", "roles": ["admin"]}


@dataclass
class Row(Pair):
    target: float | None  # minimum speed-up; None: for context

    def line(self) -> str:
        speedups = [1 / r for r in self.ratios()]
        med = statistics.median(speedups)
        if self.target is None:
            target, met = "-", "-"
        else:
            target, met = f">= {self.target:g}x", "yes" if med >= self.target else "**NO**"
        return (
            f"| {self.what} | {statistics.median(self.ours.samples):,.0f} "
            f"| `{self.base.name}` {statistics.median(self.base.samples):,.0f} "
            f"| {fmt(med)}x ({fmt(min(speedups))}-{fmt(max(speedups))}) | {target} | {met} |"
        )

    def missed(self) -> bool:
        return self.target is not None and statistics.median(self.ratios()) > 1 / self.target


def fmt(speedup: float) -> str:
    return f"{speedup:,.1f}" if speedup >= 10 else f"{speedup:.2f}"


def loop_async(fn: Any) -> Any:
    async def run(ops: int) -> None:
        for _ in repeat(None, ops):
            await fn(UID)

    return run


def loop_sync(fn: Any) -> Any:
    def run(ops: int) -> None:
        for _ in repeat(None, ops):
            fn(UID)

    return run


async def bench_async(rounds: int, ops: int) -> list[Row]:
    calls: dict[str, int] = {}

    def counted(name: str) -> dict[str, Any]:
        calls[name] = calls.get(name, 0) + 1
        return user(UID)

    cache = df.AsyncDataFerry()

    @cache.cached(ttl=TTL)
    async def ours(uid: int) -> dict[str, Any]:
        return counted("dataferry")

    async def by_hand(uid: int) -> dict[str, Any]:
        return await cache.get_or_set(f"user:{uid}", lambda: counted("by hand"), ttl=TTL)

    cashews = CashewsCache()
    cashews.setup("mem://")

    @cashews(ttl=TTL)
    async def with_cashews(uid: int) -> dict[str, Any]:
        return counted("cashews")

    @aiocache.cached(ttl=TTL, cache=aiocache.SimpleMemoryCache)
    async def with_aiocache(uid: int) -> dict[str, Any]:
        return counted("aiocache")

    for fn in (ours, by_hand, with_cashews, with_aiocache):
        assert await fn(UID) == user(UID)
        assert await fn(UID) == user(UID)
    assert set(calls.values()) == {1}, calls  # every timed call below is a hit

    mine = Side("AsyncDataFerry.cached", timed_async(loop_async(ours)))
    rows = [
        Row(
            "async decorator hit vs cashews",
            mine,
            Side("cashews @cache (mem://)", timed_async(loop_async(with_cashews))),
            10.0,
        ),
        Row(
            "async decorator hit vs aiocache",
            mine,
            Side("aiocache @cached (SimpleMemoryCache)", timed_async(loop_async(with_aiocache))),
            5.0,
        ),
        Row(
            "async decorator hit vs hand-written get_or_set",
            mine,
            Side('get_or_set(f"user:{uid}", lambda)', timed_async(loop_async(by_hand))),
            None,
        ),
    ]
    await interleave(rows, rounds, ops)
    assert set(calls.values()) == {1}, calls
    await cache.aclose()
    await cashews.close()
    return rows


async def bench_sync(rounds: int, ops: int) -> list[Row]:
    calls: dict[str, int] = {}

    def counted(name: str) -> dict[str, Any]:
        calls[name] = calls.get(name, 0) + 1
        return user(UID)

    cache = df.DataFerry()

    @cache.cached(ttl=TTL)
    def ours(uid: int) -> dict[str, Any]:
        return counted("dataferry")

    @cachetools.cached(cachetools.TTLCache(maxsize=100_000, ttl=TTL))
    def with_cachetools(uid: int) -> dict[str, Any]:
        return counted("cachetools")

    @functools.lru_cache(maxsize=100_000)
    def with_lru_cache(uid: int) -> dict[str, Any]:
        return counted("lru_cache")

    for fn in (ours, with_cachetools, with_lru_cache):
        assert fn(UID) == user(UID)
        assert fn(UID) == user(UID)
    assert set(calls.values()) == {1}, calls

    mine = Side("DataFerry.cached", timed_sync(loop_sync(ours)))
    rows = [
        Row(
            "sync decorator hit vs cachetools",
            mine,
            Side("cachetools.cached(TTLCache)", timed_sync(loop_sync(with_cachetools))),
            None,
        ),
        Row(
            "sync decorator hit vs lru_cache",
            mine,
            Side("functools.lru_cache", timed_sync(loop_sync(with_lru_cache))),
            None,
        ),
    ]
    await interleave(rows, rounds, ops)
    assert set(calls.values()) == {1}, calls
    cache.close()
    return rows


async def main_async(rounds: int, ops: int) -> list[Row]:
    rows = await bench_async(rounds, ops)
    rows += await bench_sync(rounds, ops * 20)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--ops", type=int, default=2000, help="calls per side and round (async; sync: 20x)"
    )
    args = parse_args(parser, argv)
    rows = asyncio.run(main_async(args.rounds, args.ops))
    print(
        f"bench_decorator: Python {sys.version.split()[0]}, {args.clock} clock, "
        f"median of {args.rounds} rounds (ns per call; speed-up = baseline / DataFerry)\n"
    )
    print("| decorator hit | DataFerry | baseline | speed-up (range) | target | met |")
    print("|---|--:|---|--:|--:|:-:|")
    for row in rows:
        print(row.line())
    return 1 if args.strict and any(row.missed() for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
