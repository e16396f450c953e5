"""GlideCache (Valkey GLIDE) against RedisCache (redis-py) and raw redis.asyncio, by concurrency.

    .venv/bin/python benchmarks/bench_glide.py [--rounds 11] [--clock {wall,cpu}] [--strict]

L2 hits of 1 KB JSON values with no L1 (``memory=None``), on the script's own ``redis-server``.
Each row runs ``TASKS`` asyncio tasks that each read keys one at a time (``get``), for:

- ``AsyncDataFerry`` on ``GlideCache.from_url(url)`` (one multiplexed connection);
- ``AsyncDataFerry`` on ``RedisCache`` (a redis.asyncio client with a pool big enough for the
  tasks, as in bench_coalesce.py);
- for information, the same two with ``coalesce_reads=True``, and GLIDE's own client (GET +
  ``orjson.loads``, no DataFerry);
- the baseline of every row: raw ``redis.asyncio`` GET + ``orjson.loads``, same tasks.

Then the backends alone: sequential ``GlideCache.aget`` against ``RedisCache.aget`` (the raw
bytes, no codec), and the connections each client holds on the server after the 50-task rows.

Sides run interleaved round by round (``_rounds.py``); each ratio is the side's time per read
over the baseline's, median of the rounds with their range (``throughput`` is its inverse).
Targets (issue 14): at 50 tasks, at least 1.5x the raw client's throughput (ratio <= 0.67) on
the configuration recommended for that load; one task: within 1.1x of the raw client on the
configuration recommended at low concurrency. Which configurations those are is decided from
these figures: the target columns say which rows would meet them, not which is recommended.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import glide
import orjson
import redis
import redis.asyncio as aredis
from _redis import redis_server
from _rounds import Pair, Side, bench_parser, interleave, parse_args, timed_async

import dataferry as df

VALUE = {"id": 1, "blob": "x" * 1000}
KEYS = [f"k{i}" for i in range(1000)]
NAMES = {"raw": "bench-raw", "redis": "bench-rediscache", "glide": "bench-glidecache"}


@dataclass
class Row(Pair):
    target: float | None

    def line(self) -> str:
        r = self.ratios()
        med = statistics.median(r)
        target = "-" if self.target is None else f"<= {self.target:g}x"
        met = "-" if self.target is None else ("yes" if med <= self.target else "no")
        return (
            f"| {self.what} | {self.ours.name} {statistics.median(self.ours.samples) / 1e3:,.1f} "
            f"| {self.base.name} {statistics.median(self.base.samples) / 1e3:,.1f} "
            f"| {med:.2f}x ({min(r):.2f}-{max(r):.2f}) | {1 / med:.2f}x | {target} | {met} |"
        )


def crowd(tasks: int, read: Callable[[str], Awaitable[object]]) -> Callable[[int], Awaitable[None]]:
    """A side's run: ``tasks`` tasks share ``ops`` reads, each awaiting ``read(key)``."""

    async def run(ops: int) -> None:
        per = max(ops // tasks, 1)

        async def worker(t: int) -> None:
            for j in range(per):
                await read(KEYS[(t * 31 + j) % len(KEYS)])

        await asyncio.gather(*(worker(t) for t in range(tasks)))

    return run


async def bench(url: str, port: int, rounds: int) -> tuple[list[Row], dict[str, int]]:
    raw = aredis.Redis.from_url(url, max_connections=256, client_name=NAMES["raw"])
    await raw.mset({f"raw:{k}": orjson.dumps(VALUE) for k in KEYS})
    raw_glide = await glide.GlideClient.create(
        glide.GlideClientConfiguration([glide.NodeAddress("127.0.0.1", port)])
    )

    def redis_cache() -> df.RedisCache:
        return df.RedisCache(
            aredis.Redis.from_url(url, max_connections=256, client_name=NAMES["redis"])
        )

    def glide_cache() -> df.GlideCache:
        return df.GlideCache.from_url(url, client_name=NAMES["glide"])

    caches = {
        "glide": df.AsyncDataFerry(memory=None, distributed=glide_cache()),
        "redis": df.AsyncDataFerry(memory=None, distributed=redis_cache()),
        "glide+coalesce": df.AsyncDataFerry(
            memory=None, distributed=glide_cache(), coalesce_reads=True
        ),
        "redis+coalesce": df.AsyncDataFerry(
            memory=None, distributed=redis_cache(), coalesce_reads=True
        ),
    }
    await caches["glide"].set_many(dict.fromkeys(KEYS, VALUE), ttl=3600)

    async def raw_get(key: str) -> object:
        return orjson.loads(await raw.get(f"raw:{key}"))  # type: ignore[arg-type]

    async def raw_glide_get(key: str) -> object:
        return orjson.loads(await raw_glide.get(f"raw:{key}"))  # type: ignore[arg-type]

    rows: list[Row] = []
    for tasks in (1, 10, 50):
        what = f"{tasks} task{'s' if tasks > 1 else ''}, µs per read"
        base = Side("raw GET", timed_async(crowd(tasks, raw_get)))
        for name, cache in caches.items():
            target = {1: 1.1, 50: 0.67}.get(tasks)
            rows.append(Row(what, Side(name, timed_async(crowd(tasks, cache.get))), base, target))
        rows.append(
            Row(what, Side("raw glide", timed_async(crowd(tasks, raw_glide_get))), base, None)
        )

    # The backends alone, sequential: bytes in, bytes out.
    glide_l2, redis_l2 = glide_cache(), redis_cache()
    rows.append(
        Row(
            "backend aget, 1 task, µs",
            Side("GlideCache", timed_async(crowd(1, lambda k: glide_l2.aget(f"raw:{k}")))),
            Side("RedisCache", timed_async(crowd(1, lambda k: redis_l2.aget(f"raw:{k}")))),
            None,
        )
    )
    await interleave(rows, rounds, 2000)

    # Connections each client holds once the 50-task rows have run.
    listing = await raw.client_list()
    connections = {
        kind: sum(client.get("name") == name for client in listing) for kind, name in NAMES.items()
    }
    for cache in caches.values():
        await cache.aclose()
    await glide_l2.aclose()
    await redis_l2.aclose()
    await raw_glide.close()
    await raw.aclose()
    return rows, connections


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.set_defaults(rounds=11)
    args = parse_args(parser, argv)
    with redis_server() as url:
        port = int(url.rsplit(":", 1)[1])
        rows, connections = asyncio.run(bench(url, port, args.rounds))
    print(
        f"bench_glide: Python {sys.version.split()[0]}, redis-py {redis.__version__}, "
        f"valkey-glide {_glide_version()}, no L1, 1 KB values, {args.clock} clock, "
        f"median of {args.rounds} rounds\n"
    )
    print("| case | side | baseline | ratio (range) | throughput | target | met |")
    print("|---|--:|--:|--:|--:|--:|:-:|")
    for row in rows:
        print(row.line())
    print(
        f"\nconnections after 50 tasks: raw redis.asyncio pool {connections['raw']}, "
        f"RedisCache pools (plain, coalesced, backend row) {connections['redis']}, "
        f"GlideCache clients (plain, coalesced, backend row) {connections['glide']}"
    )
    # --strict: each target must be met by at least one configuration (the one to recommend).
    targeted: dict[str, list[Row]] = {}
    for row in rows:
        if row.target is not None:
            targeted.setdefault(row.what, []).append(row)
    missed = [
        what
        for what, group in targeted.items()
        if all(statistics.median(r.ratios()) > r.target for r in group)  # type: ignore[operator]
    ]
    if missed:
        print(f"\nno configuration meets the target of: {', '.join(missed)}")
    return 1 if missed and args.strict else 0


def _glide_version() -> str:
    from importlib.metadata import version

    return version("valkey-glide")


if __name__ == "__main__":
    sys.exit(main())
