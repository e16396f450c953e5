"""Coalesced L2 reads (``coalesce_reads=True``) against raw redis.asyncio, by concurrency.

    .venv/bin/python benchmarks/bench_coalesce.py [--rounds 11] [--clock {wall,cpu}] [--strict]

L2 hits of 1 KB JSON values with no L1 (``memory=None``), on the script's own ``redis-server``.
Each row runs ``TASKS`` asyncio tasks that each read keys one at a time (``get``), for:

- ``coalesce_reads=True``: the reads of one event-loop iteration go out as one ``MGET``;
- the baseline, raw ``redis.asyncio`` ``GET`` + ``orjson.loads`` with the same tasks and a pool
  big enough for them;
- for information, DataFerry without coalescing.

Sides run interleaved round by round (``_rounds.py``); each ratio is DataFerry's time per read
over the baseline's, median of the rounds with their range. Targets (issue 14): at 50 tasks, at
least 1.5x the raw client's throughput (ratio <= 0.67); one task (sequential reads): within
1.1x of the raw client is the goal for the configuration recommended at low concurrency, which
is the default (no coalescing; the coalesced row shows what a lone caller pays).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from dataclasses import dataclass

import orjson
import redis
import redis.asyncio as aredis
from _redis import redis_server
from _rounds import Pair, Side, bench_parser, interleave, parse_args, timed_async

import dataferry as df

VALUE = {"id": 1, "blob": "x" * 1000}
KEYS = [f"k{i}" for i in range(1000)]


@dataclass
class Row(Pair):
    target: float | None

    def line(self) -> str:
        r = self.ratios()
        med = statistics.median(r)
        target = "-" if self.target is None else f"<= {self.target:g}x"
        met = "-" if self.target is None else ("yes" if med <= self.target else "**NO**")
        return (
            f"| {self.what} | {self.ours.name} {statistics.median(self.ours.samples) / 1e3:,.1f} "
            f"| {self.base.name} {statistics.median(self.base.samples) / 1e3:,.1f} "
            f"| {med:.2f}x ({min(r):.2f}-{max(r):.2f}) | {1 / med:.2f}x | {target} | {met} |"
        )


def crowd(tasks: int, read: object) -> object:
    """A side's run: ``tasks`` tasks share ``ops`` reads, each awaiting ``read(key)``."""

    async def run(ops: int) -> None:
        per = max(ops // tasks, 1)

        async def worker(t: int) -> None:
            for j in range(per):
                await read(KEYS[(t * 31 + j) % len(KEYS)])  # type: ignore[operator]

        await asyncio.gather(*(worker(t) for t in range(tasks)))

    return run


async def bench(url: str, rounds: int) -> list[Row]:
    raw = aredis.Redis.from_url(url, max_connections=256)
    await raw.mset({f"raw:{k}": orjson.dumps(VALUE) for k in KEYS})

    def backend() -> df.RedisCache:
        # from_url, as the docs recommend, with a pool big enough for 50 tasks.
        return df.RedisCache.from_url(url, max_connections=256)

    coalesced = df.AsyncDataFerry(memory=None, distributed=backend(), coalesce_reads=True)
    plain = df.AsyncDataFerry(memory=None, distributed=backend())
    await plain.set_many(dict.fromkeys(KEYS, VALUE), ttl=3600)

    async def raw_get(key: str) -> object:
        return orjson.loads(await raw.get(f"raw:{key}"))  # type: ignore[arg-type]

    rows: list[Row] = []
    for tasks, target in ((1, None), (10, None), (50, 0.67)):
        base = Side("raw GET", timed_async(crowd(tasks, raw_get)))  # type: ignore[arg-type]
        rows.append(
            Row(
                f"{tasks} task{'s' if tasks > 1 else ''}, µs per read",
                Side("coalesced", timed_async(crowd(tasks, coalesced.get))),  # type: ignore[arg-type]
                base,
                target,
            )
        )
        rows.append(
            Row(
                f"{tasks} task{'s' if tasks > 1 else ''}, µs per read",
                Side("default", timed_async(crowd(tasks, plain.get))),  # type: ignore[arg-type]
                base,
                1.1 if tasks == 1 else None,
            )
        )
    await interleave(rows, rounds, 2000)
    await coalesced.aclose()
    await plain.aclose()
    await raw.aclose()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.set_defaults(rounds=11)
    args = parse_args(parser, argv)
    with redis_server() as url:
        rows = asyncio.run(bench(url, args.rounds))
    print(
        f"bench_coalesce: Python {sys.version.split()[0]}, redis-py {redis.__version__}, "
        f"no L1, 1 KB values, {args.clock} clock, median of {args.rounds} rounds\n"
    )
    print("| case | DataFerry | baseline | ratio (range) | throughput | target | met |")
    print("|---|--:|--:|--:|--:|--:|:-:|")
    for row in rows:
        print(row.line())
    missed = [r for r in rows if r.target is not None and statistics.median(r.ratios()) > r.target]
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
