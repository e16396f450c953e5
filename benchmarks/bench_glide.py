"""GlideCache (Valkey GLIDE) against RedisCache (redis-py) and raw redis.asyncio, by concurrency.

    .venv/bin/python benchmarks/bench_glide.py [--rounds 11] [--clock {wall,cpu}] [--strict]
        [--only tasks,threads,many,memory]

L2 hits of 1 KB JSON values with no L1 (``memory=None``), on the script's own ``redis-server``.

``tasks``: each row runs ``TASKS`` asyncio tasks that each read keys one at a time (``get``), for:

- ``AsyncDataFerry`` on ``GlideCache.from_url(url)`` (one multiplexed connection);
- ``AsyncDataFerry`` on ``RedisCache.from_url(url, max_connections=256)`` (a pool big enough
  for the tasks, as in bench_coalesce.py);
- for information, the same two with ``coalesce_reads=True``, and GLIDE's own client (GET +
  ``orjson.loads``, no DataFerry);
- the baseline of every row: raw ``redis.asyncio`` GET + ``orjson.loads``, same tasks.

Then the backends alone: sequential ``GlideCache.aget`` against ``RedisCache.aget`` (the raw
bytes, no codec), and the connections each client holds on the server after the 50-task rows.

``threads``: the sync facade, 8 threads reading one key at a time: ``DataFerry`` on
``GlideCache.from_url`` (one ``glide_sync`` client shared by the threads) and on
``RedisCache.from_url`` (redis-py's sync client, its pool shared), each with and without
``coalesce_reads=True``, and GLIDE's raw sync client for information, against raw redis-py
(sync client, one shared pool) ``GET`` + ``orjson.loads`` in the same 8 threads; target: at
least 1.3x the raw client's throughput (ratio <= 0.77). The connections each opened follow.

``many``: ``get_many`` of 100 and 1000 warm keys, async and sync, on each backend, against raw
``MGET`` + ``orjson.loads`` of each value (redis-py, the same colour); target <= 1.2x. GLIDE's
own ``mget`` + ``orjson.loads`` runs beside them, for information.

``memory``: for each backend, in a fresh process (so one client's runtime doesn't count for the
other): the RSS growth of one new cache serving 50 concurrent tasks, with the connections it
opened and their memory on the server (``CLIENT LIST`` ``tot-mem``), then the RSS growth per
client of 50 more caches (one connection each). Both are measured after a first cache of the
same backend has run, so the libraries and GLIDE's runtime are already loaded: what is left is
the cost of a client and its connections. The 50-task growth is taken from the cache's first
(sequential) read on: what 50 callers at once add to one client (redis-py: 49 more
connections).

Sides run interleaved round by round (``_rounds.py``); each ratio is the side's time per read
over the baseline's, median of the rounds with their range (``throughput`` is its inverse).
Targets (issue 14): at 50 tasks, at least 1.5x the raw client's throughput (ratio <= 0.67) on
the configuration recommended for that load; one task: within 1.1x of the raw client on the
configuration recommended at low concurrency. Which configurations those are is decided from
these figures: the target columns say which rows would meet them, not which is recommended.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import glide
import glide_sync
import orjson
import redis
import redis.asyncio as aredis
from _redis import redis_server
from _rounds import Pair, Side, bench_parser, interleave, parse_args, timed_async, timed_sync

import dataferry as df

VALUE = {"id": 1, "blob": "x" * 1000}
KEYS = [f"k{i}" for i in range(1000)]
NAMES = {"raw": "bench-raw", "redis": "bench-rediscache", "glide": "bench-glidecache"}
THREADS = 8
PARTS = ("tasks", "threads", "many", "memory")


@dataclass
class Row(Pair):
    target: float | None

    def line(self) -> str:
        r = self.ratios()
        med = statistics.median(r)
        target = "-" if self.target is None else f"<= {self.target:.3g}x"
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
        # from_url, as the docs recommend (its GET goes straight to the connections), with a
        # pool big enough for the tasks.
        return df.RedisCache.from_url(url, max_connections=256, client_name=NAMES["redis"])

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


def connected(url: str, name: str) -> list[dict[str, Any]]:
    """The server's ``CLIENT LIST`` entries of the connections named ``name``."""
    with redis.Redis.from_url(url) as admin:
        listing: list[dict[str, Any]] = admin.client_list()
    return [client for client in listing if client.get("name") == name]


def spread(pool: ThreadPoolExecutor, read: Callable[[str], object]) -> Callable[[int], None]:
    """A side's run: the pool's ``THREADS`` threads share ``ops`` reads of ``read(key)``."""

    def run(ops: int) -> None:
        per = max(ops // THREADS, 1)

        def worker(t: int) -> None:
            for j in range(per):
                read(KEYS[(t * 31 + j) % len(KEYS)])

        list(pool.map(worker, range(THREADS)))

    return run


async def bench_threads(url: str, port: int, rounds: int) -> tuple[list[Row], dict[str, int]]:
    """The sync facade in 8 threads against raw redis-py's sync client with a shared pool."""
    names = {
        "raw": "bench-sync-raw",
        "redis": "bench-sync-rediscache",
        "glide": "bench-sync-glidecache",
        "raw glide": "bench-sync-rawglide",
    }
    raw = redis.Redis.from_url(url, max_connections=64, client_name=names["raw"])
    raw.mset({f"raw:{k}": orjson.dumps(VALUE) for k in KEYS})
    raw_glide = glide_sync.GlideClient.create(
        glide_sync.GlideClientConfiguration(
            [glide_sync.NodeAddress("127.0.0.1", port)], client_name=names["raw glide"]
        )
    )
    caches = {
        "glide": df.DataFerry(
            memory=None, distributed=df.GlideCache.from_url(url, client_name=names["glide"])
        ),
        "redis": df.DataFerry(
            memory=None, distributed=df.RedisCache.from_url(url, client_name=names["redis"])
        ),
        "glide+coalesce": df.DataFerry(
            memory=None, distributed=df.GlideCache.from_url(url), coalesce_reads=True
        ),
        "redis+coalesce": df.DataFerry(
            memory=None, distributed=df.RedisCache.from_url(url), coalesce_reads=True
        ),
    }
    caches["glide"].set_many(dict.fromkeys(KEYS, VALUE), ttl=3600)

    def raw_get(key: str) -> object:
        return orjson.loads(raw.get(f"raw:{key}"))  # type: ignore[arg-type]

    def raw_glide_get(key: str) -> object:
        return orjson.loads(raw_glide.get(f"raw:{key}"))  # type: ignore[arg-type]

    what = f"sync, {THREADS} threads, µs per read"
    with ThreadPoolExecutor(THREADS) as pool:
        base = Side("raw GET", timed_sync(spread(pool, raw_get)))
        rows = [
            Row(what, Side(name, timed_sync(spread(pool, cache.get))), base, 1 / 1.3)
            for name, cache in caches.items()
        ]
        rows.append(
            Row(what, Side("raw glide", timed_sync(spread(pool, raw_glide_get))), base, None)
        )
        await interleave(rows, rounds, 4000)
    connections = {kind: len(connected(url, name)) for kind, name in names.items()}
    for cache in caches.values():
        cache.close()
    raw_glide.close()
    raw.close()
    return rows, connections


async def bench_many(url: str, port: int, rounds: int) -> list[Row]:
    """``get_many`` of 100 and 1000 warm keys on each backend against raw MGET + orjson.loads."""
    araw = aredis.Redis.from_url(url)
    sraw = redis.Redis.from_url(url)
    # GLIDE's own clients, for information: how much of a gap is the client's.
    aglide = await glide.GlideClient.create(
        glide.GlideClientConfiguration([glide.NodeAddress("127.0.0.1", port)])
    )
    sglide = glide_sync.GlideClient.create(
        glide_sync.GlideClientConfiguration([glide_sync.NodeAddress("127.0.0.1", port)])
    )
    backends: dict[str, Callable[[str], Any]] = {
        "GlideCache": df.GlideCache.from_url,
        "RedisCache": df.RedisCache.from_url,
    }
    acaches = {
        name: df.AsyncDataFerry(memory=None, distributed=make(url))
        for name, make in backends.items()
    }
    scaches = {
        name: df.DataFerry(memory=None, distributed=make(url)) for name, make in backends.items()
    }
    many = [f"m{i}" for i in range(1000)]
    await acaches["RedisCache"].set_many(dict.fromkeys(many, VALUE), ttl=3600)
    await araw.mset({f"raw:{k}": orjson.dumps(VALUE) for k in many})
    loads = orjson.loads
    rows: list[Row] = []
    for n in (100, 1000):
        keys, raw_keys = many[:n], [f"raw:{k}" for k in many[:n]]

        async def a_raw(ops: int, raw_keys: list[str] = raw_keys) -> None:
            for _ in range(ops):
                [loads(v) for v in await araw.mget(raw_keys)]  # type: ignore[arg-type]

        def s_raw(ops: int, raw_keys: list[str] = raw_keys) -> None:
            for _ in range(ops):
                [loads(v) for v in sraw.mget(raw_keys)]  # type: ignore[arg-type]

        async def a_glide(ops: int, raw_keys: list[str] = raw_keys) -> None:
            for _ in range(ops):
                [loads(v) for v in await aglide.mget(raw_keys)]  # type: ignore[arg-type]

        def s_glide(ops: int, raw_keys: list[str] = raw_keys) -> None:
            for _ in range(ops):
                [loads(v) for v in sglide.mget(raw_keys)]  # type: ignore[arg-type]

        def a_ours(
            cache: df.AsyncDataFerry, keys: list[str] = keys
        ) -> Callable[[int], Awaitable[None]]:
            async def run(ops: int) -> None:
                for _ in range(ops):
                    await cache.get_many(keys)

            return run

        def s_ours(cache: df.DataFerry, keys: list[str] = keys) -> Callable[[int], None]:
            def run(ops: int) -> None:
                for _ in range(ops):
                    cache.get_many(keys)

            return run

        a_base = Side("MGET + orjson.loads", timed_async(a_raw))
        s_base = Side("MGET + orjson.loads", timed_sync(s_raw))
        group = [
            Row(
                f"async get_many, {n} keys, µs per call",
                Side(name, timed_async(a_ours(cache))),
                a_base,
                1.2,
            )
            for name, cache in acaches.items()
        ] + [
            Row(
                f"sync get_many, {n} keys, µs per call",
                Side(name, timed_sync(s_ours(cache))),
                s_base,
                1.2,
            )
            for name, cache in scaches.items()
        ]
        group += [
            Row(
                f"async get_many, {n} keys, µs per call",
                Side("raw glide", timed_async(a_glide)),
                a_base,
                None,
            ),
            Row(
                f"sync get_many, {n} keys, µs per call",
                Side("raw glide", timed_sync(s_glide)),
                s_base,
                None,
            ),
        ]
        await interleave(group, rounds, 100 if n == 100 else 20)
        rows += sorted(group, key=lambda row: row.what)  # async rows, then sync rows
    for acache in acaches.values():
        await acache.aclose()
    for scache in scaches.values():
        scache.close()
    await aglide.close()
    sglide.close()
    await araw.aclose()
    sraw.close()
    return rows


# -- memory per connection, in a fresh process per backend ---------------------------------------


def _rss_kib() -> int:
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")  # pragma: no cover - not Linux


async def _probe(backend: str, url: str, extra: int) -> dict[str, Any]:
    """Run in a child process: what one more cache of ``backend`` costs, client and server side."""
    make = df.GlideCache.from_url if backend == "glide" else df.RedisCache.from_url

    async def fifty(cache: df.AsyncDataFerry) -> None:
        async def worker(t: int) -> None:
            for j in range(20):
                await cache.get(KEYS[(t * 31 + j) % len(KEYS)])

        await asyncio.gather(*(worker(t) for t in range(50)))

    # A first cache loads the libraries and GLIDE's runtime, and its 50 tasks grow Python's
    # own memory (frames, futures) once, so the figures below are the new client's.
    await fifty(df.AsyncDataFerry(memory=None, distributed=make(url, client_name="probe-warm")))
    cache = df.AsyncDataFerry(memory=None, distributed=make(url, client_name="probe-50"))
    await cache.get(KEYS[0])  # one caller: one connection either way
    before = _rss_kib()
    await fifty(cache)
    at_50 = _rss_kib()
    at_fifty = connected(url, "probe-50")
    clients = [make(url, client_name="probe-n") for _ in range(extra)]
    for client in clients:
        await client.aget("raw:k0")
    after = _rss_kib()
    more = connected(url, "probe-n")
    return {
        "rss_50_kib": at_50 - before,
        "connections_50": len(at_fifty),
        "server_50_bytes": sum(int(c.get("tot-mem", 0)) for c in at_fifty),
        "rss_per_client_kib": (after - at_50) / extra,
        "connections_per_client": len(more) / extra,
        "server_per_connection_bytes": (
            sum(int(c.get("tot-mem", 0)) for c in more) / len(more) if more else 0
        ),
    }


def memory(url: str, extra: int = 50) -> dict[str, dict[str, Any]]:
    """Each backend's memory and connections, measured by a child process of its own."""
    with redis.Redis.from_url(url) as admin:
        admin.mset({f"raw:{k}": orjson.dumps(VALUE) for k in KEYS})
    found: dict[str, dict[str, Any]] = {}
    for backend in ("redis", "glide"):
        out = subprocess.run(
            [sys.executable, __file__, "--probe", backend, "--url", url, "--extra", str(extra)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        found[backend] = json.loads(out.strip().splitlines()[-1])
    return found


def _table(rows: list[Row]) -> None:
    print("| case | side | baseline | ratio (range) | throughput | target | met |")
    print("|---|--:|--:|--:|--:|--:|:-:|")
    for row in rows:
        print(row.line())


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.set_defaults(rounds=11)
    parser.add_argument(
        "--only", default=",".join(PARTS), help="comma list of: " + ", ".join(PARTS)
    )
    # The memory probe's child process.
    parser.add_argument("--probe", choices=["redis", "glide"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--extra", type=int, default=50, help=argparse.SUPPRESS)
    args = parse_args(parser, argv)
    if args.probe:
        print(json.dumps(asyncio.run(_probe(args.probe, args.url, args.extra))))
        return 0
    parts = set(args.only.split(","))
    if parts - set(PARTS):
        parser.error(f"--only takes {', '.join(PARTS)}")
    print(
        f"bench_glide: Python {sys.version.split()[0]}, redis-py {redis.__version__}, "
        f"valkey-glide {_glide_version()}, no L1, 1 KB values, {args.clock} clock, "
        f"median of {args.rounds} rounds\n"
    )
    rows: list[Row] = []
    with redis_server() as url:
        port = int(url.rsplit(":", 1)[1])
        if "tasks" in parts:
            tasks, connections = asyncio.run(bench(url, port, args.rounds))
            rows += tasks
            _table(tasks)
            print(
                f"\nconnections after 50 tasks: raw redis.asyncio pool {connections['raw']}, "
                f"RedisCache pools (plain, coalesced, backend row) {connections['redis']}, "
                f"GlideCache clients (plain, coalesced, backend row) {connections['glide']}\n"
            )
        if "threads" in parts:
            threads, opened = asyncio.run(bench_threads(url, port, args.rounds))
            rows += threads
            _table(threads)
            print(
                f"\nconnections after the {THREADS}-thread rows: raw redis-py pool "
                f"{opened['raw']}, RedisCache (plain) {opened['redis']}, GlideCache (plain) "
                f"{opened['glide']}, raw glide_sync {opened['raw glide']}\n"
            )
        if "many" in parts:
            many = asyncio.run(bench_many(url, port, args.rounds))
            rows += many
            _table(many)
            print()
        if "memory" in parts:
            found = memory(url)
            print(
                "| backend | RSS growth at 50 tasks | connections at 50 tasks | their server "
                "memory | RSS per extra client | connections per client | server memory per "
                "connection |"
            )
            print("|---|--:|--:|--:|--:|--:|--:|")
            for backend, name in (("redis", "RedisCache"), ("glide", "GlideCache")):
                f = found[backend]
                server_50 = f["server_50_bytes"] / 1024
                per_connection = f["server_per_connection_bytes"] / 1024
                print(
                    f"| {name} | {f['rss_50_kib']:,} KiB | {f['connections_50']} "
                    f"| {server_50:,.0f} KiB | {f['rss_per_client_kib']:,.0f} KiB "
                    f"| {f['connections_per_client']:g} | {per_connection:,.1f} KiB |"
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
