"""Miss and batch paths: cold get_or_set and get_many against the least the same work can cost.

    .venv/bin/python benchmarks/bench_paths.py [--rounds 15] [--clock {wall,cpu}] [--strict]

Every contender runs in the same process, interleaved round by round; each row is the median
of the per-round ratios (with its range), so the figures compare on a noisy machine:

- async cold ``get_or_set``, L1 only, sync factory: a new key per call, against the bare probe
  of a task-based single-flight (create a future, a task, await it through ``shield``);
  target <= 2x.
- cold ``get_or_set`` on Redis (L1 miss, L2 miss, factory, L2 set), async and sync, against
  the raw sequence (``GET`` miss, ``orjson.dumps``, ``SET ... PX``); target <= 1.1x.
- ``get_many`` of 100 and 1000 warm 1 KB keys, no L1, async and sync, against raw ``MGET`` and
  ``orjson.loads`` of each value; target <= 1.3x. Each entry's CRC-32 is a good part of the
  gap: the header line says whether zlib-ng's (several times faster) or the stdlib's is used.
  The "integrity floor" rows (information, no target) time what any reader of the same
  entries must do, the same MGET then per entry only the CRC-32, the payload slice and
  ``orjson.loads``, against the same raw baseline: no batch read that checks its entries can
  come closer to the raw figure than that.

The script starts its own ``redis-server`` on a free port (see ``_redis.py``).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from dataclasses import dataclass
from typing import Any

import orjson
import redis
import redis.asyncio as aredis
from _redis import redis_server
from _rounds import (
    Pair,
    Side,
    bench_parser,
    fresh_keys,
    interleave,
    parse_args,
    timed_async,
    timed_sync,
)

import dataferry as df
from dataferry._codec._envelope import (
    CHECKSUM_RESIDUE,
    CHECKSUM_SIZE,
    PLAIN_HEADER_SIZE,
    crc32,
)

VALUE_1KB: dict[str, Any] = {"id": 1, "text": "x" * 1000}
assert 1000 < len(orjson.dumps(VALUE_1KB)) < 1100


@dataclass
class Row(Pair):
    target: float

    def line(self) -> str:
        r = self.ratios()
        med = statistics.median(r)
        met = "yes" if med <= self.target else "**NO**"
        return (
            f"| {self.what} | `{self.ours.name}` {statistics.median(self.ours.samples) / 1e3:,.1f} "
            f"| `{self.base.name}` {statistics.median(self.base.samples) / 1e3:,.1f} "
            f"| {med:.2f}x ({min(r):.2f}-{max(r):.2f}) | <= {self.target:g}x | {met} |"
        )


@dataclass
class InfoRow(Row):
    """A row for information: no target (the floor of what any checked read costs)."""

    def line(self) -> str:
        r = self.ratios()
        return (
            f"| {self.what} | `{self.ours.name}` {statistics.median(self.ours.samples) / 1e3:,.1f} "
            f"| `{self.base.name}` {statistics.median(self.base.samples) / 1e3:,.1f} "
            f"| {statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f}) | - | - |"
        )


async def bench_miss_l1(rounds: int) -> list[Row]:
    cache = df.AsyncDataFerry(memory=df.MemoryCache(max_entries=None))
    factory = lambda: 1  # noqa: E731

    async def ours(ops: int) -> None:
        get_or_set = cache.get_or_set
        for key in fresh_keys(ops):
            await get_or_set(key, factory)

    async def probe(ops: int) -> None:
        loop = asyncio.get_running_loop()

        async def work() -> int:
            return factory()

        for _ in range(ops):
            fut = loop.create_future()
            task = loop.create_task(work())
            task.add_done_callback(lambda t, fut=fut: fut.set_result(t.result()))
            await asyncio.shield(fut)

    rows = [
        Row(
            "async cold get_or_set, L1 only, sync factory (µs)",
            Side("AsyncDataFerry.get_or_set", timed_async(ours)),
            Side("future + task + shield", timed_async(probe)),
            2.0,
        )
    ]
    await interleave(rows, rounds, 5000)
    await cache.aclose()
    return rows


async def bench_miss_redis(url: str, rounds: int) -> list[Row]:
    acache = df.AsyncDataFerry(
        memory=df.MemoryCache(max_entries=None), distributed=df.RedisCache.from_url(url)
    )
    scache = df.DataFerry(
        memory=df.MemoryCache(max_entries=None), distributed=df.RedisCache.from_url(url)
    )
    araw = aredis.Redis.from_url(url, socket_timeout=0.5)
    sraw = redis.Redis.from_url(url, socket_timeout=0.5)
    factory = lambda: VALUE_1KB  # noqa: E731
    dumps = orjson.dumps

    async def a_ours(ops: int) -> None:
        for key in fresh_keys(ops):
            await acache.get_or_set(key, factory, ttl=60)

    async def a_raw(ops: int) -> None:
        for key in fresh_keys(ops):
            if await araw.get(key) is None:
                await araw.set(key, dumps(factory()), px=60_000)

    def s_ours(ops: int) -> None:
        for key in fresh_keys(ops):
            scache.get_or_set(key, factory, ttl=60)

    def s_raw(ops: int) -> None:
        for key in fresh_keys(ops):
            if sraw.get(key) is None:
                sraw.set(key, dumps(factory()), px=60_000)

    rows = [
        Row(
            "async cold get_or_set on Redis, 1 KB (µs)",
            Side("AsyncDataFerry.get_or_set", timed_async(a_ours)),
            Side("GET miss + orjson.dumps + SET", timed_async(a_raw)),
            1.1,
        ),
        Row(
            "sync cold get_or_set on Redis, 1 KB (µs)",
            Side("DataFerry.get_or_set", timed_sync(s_ours)),
            Side("GET miss + orjson.dumps + SET", timed_sync(s_raw)),
            1.1,
        ),
    ]
    await interleave(rows, rounds, 300)
    await acache.aclose()
    scache.close()
    await araw.aclose()
    sraw.close()
    return rows


def checked(bkeys: list[bytes], blobs: list[Any]) -> dict[bytes, Any]:
    """The integrity floor of a batch read: what any reader of these envelopes must do.

    Per entry: the CRC-32 of storage key + entry, the payload slice, ``orjson.loads`` and the
    result dict, with nothing else (keys already encoded, no header field read, no
    freshness check).
    """
    out = {}
    loads = orjson.loads
    for key, data in zip(bkeys, blobs, strict=True):
        if crc32(data, crc32(key, 0)) == CHECKSUM_RESIDUE:
            out[key] = loads(data[PLAIN_HEADER_SIZE:-CHECKSUM_SIZE])
    assert len(out) == len(bkeys)
    return out


async def bench_get_many(url: str, rounds: int) -> list[Row]:
    l2 = df.RedisCache.from_url(url)
    acache = df.AsyncDataFerry(memory=None, distributed=l2, namespace="many")
    scache = df.DataFerry(memory=None, distributed=l2, namespace="many")
    araw = aredis.Redis.from_url(url, socket_timeout=0.5)
    sraw = redis.Redis.from_url(url, socket_timeout=0.5)
    loads = orjson.loads
    rows: list[Row] = []
    for n in (100, 1000):
        keys = [f"k{i}" for i in range(n)]
        raw_keys = [f"raw:{n}:{i}" for i in range(n)]
        await acache.set_many({k: VALUE_1KB for k in keys}, ttl=3600)
        await araw.mset({k: orjson.dumps(VALUE_1KB) for k in raw_keys})
        assert len(await acache.get_many(keys)) == n

        async def a_ours(ops: int, keys: list[str] = keys) -> None:
            for _ in range(ops):
                await acache.get_many(keys)

        async def a_raw(ops: int, raw_keys: list[str] = raw_keys) -> None:
            for _ in range(ops):
                [loads(v) for v in await araw.mget(raw_keys)]

        def s_ours(ops: int, keys: list[str] = keys) -> None:
            for _ in range(ops):
                scache.get_many(keys)

        def s_raw(ops: int, raw_keys: list[str] = raw_keys) -> None:
            for _ in range(ops):
                [loads(v) for v in sraw.mget(raw_keys)]

        skeys = [f"many:k:{k}" for k in keys]  # DataFerry's entries, read by hand
        bkeys = [k.encode() for k in skeys]

        async def a_floor(ops: int, skeys: list[str] = skeys, bkeys: list[bytes] = bkeys) -> None:
            for _ in range(ops):
                checked(bkeys, await araw.mget(skeys))

        def s_floor(ops: int, skeys: list[str] = skeys, bkeys: list[bytes] = bkeys) -> None:
            for _ in range(ops):
                checked(bkeys, sraw.mget(skeys))

        rows += [
            Row(
                f"async get_many, {n} warm 1 KB keys, no L1 (µs)",
                Side("AsyncDataFerry.get_many", timed_async(a_ours)),
                Side("MGET + orjson.loads", timed_async(a_raw)),
                1.3,
            ),
            Row(
                f"sync get_many, {n} warm 1 KB keys, no L1 (µs)",
                Side("DataFerry.get_many", timed_sync(s_ours)),
                Side("MGET + orjson.loads", timed_sync(s_raw)),
                1.3,
            ),
        ]
        a_raw_side, s_raw_side = rows[-2].base, rows[-1].base
        rows += [
            InfoRow(
                f"async get_many, {n} keys: the integrity floor (info)",
                Side("MGET + CRC-32 + orjson.loads", timed_async(a_floor)),
                a_raw_side,
                0.0,
            ),
            InfoRow(
                f"sync get_many, {n} keys: the integrity floor (info)",
                Side("MGET + CRC-32 + orjson.loads", timed_sync(s_floor)),
                s_raw_side,
                0.0,
            ),
        ]
        await interleave(rows[-4:], rounds, 100 if n == 100 else 20)
    await acache.aclose()
    scache.close()
    await araw.aclose()
    sraw.close()
    return rows


async def main_async(rounds: int, only: str | None) -> list[Row]:
    rows: list[Row] = []
    if only in (None, "miss"):
        rows += await bench_miss_l1(rounds)
    if only != "miss-l1":
        with redis_server() as url:
            if only in (None, "miss"):
                rows += await bench_miss_redis(url, rounds)
            if only in (None, "many"):
                rows += await bench_get_many(url, rounds)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--only", choices=["miss", "miss-l1", "many"])
    args = parse_args(parser, argv)
    rows = asyncio.run(main_async(args.rounds, args.only))
    crc = "zlib-ng" if "zlib_ng" in (crc32.__module__ or "") else "zlib"
    print(
        f"bench_paths: Python {sys.version.split()[0]}, redis-py {redis.__version__}, "
        f"CRC-32 from {crc}, {args.clock} clock, median of {args.rounds} rounds\n"
    )
    print("| path | DataFerry | baseline | ratio (range) | target | met |")
    print("|---|---|---|--:|--:|:-:|")
    for row in rows:
        print(row.line())
    missed = [
        r for r in rows if not isinstance(r, InfoRow) and statistics.median(r.ratios()) > r.target
    ]
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
