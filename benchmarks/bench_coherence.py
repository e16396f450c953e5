"""Coherence across OS processes, measured: invalidation latency, staleness, Cluster throughput.

    .venv/bin/python benchmarks/bench_coherence.py [--quick] [--rounds 4] [--invalidations 500]
        [--rate 500] [--versions-seconds 2] [--throughput-seconds 2.5] [--tasks 16]
        [--only latency,staleness,throughput]

Every node is a process of its own (``multiprocessing``, ``spawn``), on loopback, on a private
``redis-server`` the script starts (and a private 3-master Redis Cluster for the throughput part).
Times on both sides come from ``time.monotonic_ns()`` (``CLOCK_MONOTONIC``: one clock for every
process of a Linux host).

(a) Invalidation latency. Node A writes keys at a steady rate; node B holds each of them in L1
    beforehand and notes when it drops it. Reported: write call → L1 drop on B (A's clock at the
    start of ``set``, B's clock when the drop is done) and, for DataFerry, the event attribute
    ``latency_ms`` (publish → receipt). Goal: p99 < 5 ms.
(b) Staleness window. A writes versions 1, 2, 3... of one key at a steady rate and notes when
    each ``set`` returned (acknowledged); B reads the key in a loop (yielding to its event loop
    between reads, as a server does). For each version n: how long after n was acknowledged B
    still started a read that returned a version < n (0 when it never did).
(e) The same (a) and (b) with DataFerry on GLIDE: GlideCache and GlideBackplane.
(d) cashews (7.x) in client-side mode (``cache.setup(url, client_side=True)``: Redis
    ``CLIENT TRACKING ... BCAST`` pushes an invalidation per written key, the only Python peer
    with L1 invalidation) runs (a) and (b) in the same run, interleaved round by round
    (DataFerry, cashews, DataFerry, cashews...), with the same A/B processes and clocks. Its
    drop time is taken by wrapping B's local ``Memory.delete`` (cashews has no event for it).
(c) Throughput. One asyncio process, ``--tasks`` tasks, a 50/50 mix of ``get_or_set`` and
    ``set`` over 10,000 keys (L1 on, backplane on), standalone Redis vs a 3-master Cluster
    (sharded pub/sub), interleaved rounds; ops/s and the median ratio Cluster / standalone.

Prints markdown tables to paste into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

from _redis import redis_server
from tests.redis_servers import RedisCluster

import dataferry as df

GOAL_P99_MS = 5.0
NAMESPACE = "coh"
SYSTEMS = ("dataferry", "dataferry-glide", "cashews")
LABEL = {
    "dataferry": "DataFerry backplane",
    "dataferry-glide": "DataFerry on GLIDE (GlideBackplane)",
    "cashews": "cashews client_side",
}
WAIT = 30.0  # seconds a node waits for messages before giving up (a loaded machine)
GRACE = 3.0  # seconds B keeps watching for the last version once A should be done

# -- one node per process --------------------------------------------------------------------------


class FerryNode:
    """An ``AsyncDataFerry`` with a RedisBackplane (GlideCache and GlideBackplane with
    ``glide``); drops are noted from its events."""

    def __init__(self, url: str, *, glide: bool = False) -> None:
        self.url = url
        self.glide = glide
        self.drops: dict[str, int] = {}
        self.latency_ms: dict[str, float] = {}
        self._prefix = f"{NAMESPACE}:k:"

    async def start(self) -> None:
        self.cache = df.AsyncDataFerry(
            distributed=(df.GlideCache if self.glide else df.RedisCache).from_url(self.url),
            backplane=(df.GlideBackplane if self.glide else df.RedisBackplane).from_url(self.url),
            namespace=NAMESPACE,
            default_ttl=600,
        )
        self.cache.subscribe(self._on_event)

    def _on_event(self, event: str, attributes: dict[str, Any]) -> None:
        # On the backplane's thread, right after the key left L1.
        if event == "backplane_messages":
            now = time.monotonic_ns()
            key = attributes["key"].removeprefix(self._prefix)
            self.drops[key] = now
            self.latency_ms[key] = attributes["latency_ms"]

    async def set(self, key: str, value: int) -> None:
        await self.cache.set(key, value)

    async def get(self, key: str) -> Any:
        return await self.cache.get(key)

    async def in_l1(self, key: str) -> bool:
        found, _ = await self.cache.try_get(key, options=df.EntryOptions(skip_distributed=True))
        return found

    async def close(self) -> None:
        await self.cache.aclose()


class CashewsNode:
    """cashews' client-side cache; drops are noted by wrapping its local cache's ``delete``."""

    def __init__(self, url: str, *, resp3: bool = False) -> None:
        self.url = url
        self.drops: dict[str, int] = {}
        self.latency_ms: dict[str, float] = {}
        self.resp3 = resp3

    async def start(self) -> None:
        from cashews import Cache

        self.cache = Cache()
        # cashews listens for RESP2 invalidation messages on ``__redis__:invalidate``; redis-py
        # 8 speaks RESP3 by default, where Redis sends them as push replies instead, which
        # cashews never reads: its local copies are then never invalidated. ``protocol=2`` is
        # how it works; ``resp3`` measures the defaults (see RESP3_PROBE).
        options: dict[str, Any] = {} if self.resp3 else {"protocol": 2}
        backend: Any = self.cache.setup(self.url, client_side=True, **options)
        await self.cache.init()
        local = backend._local_cache
        delete = local.delete
        drops = self.drops

        async def noted_delete(key: str) -> Any:
            # Called by the invalidation listener (B never deletes on its own here).
            result = await delete(key)
            drops[key] = time.monotonic_ns()
            return result

        local.delete = noted_delete
        self._local = local

    async def set(self, key: str, value: int) -> None:
        await self.cache.set(key, value, expire=600)

    async def get(self, key: str) -> Any:
        return await self.cache.get(key)

    async def in_l1(self, key: str) -> bool:
        return isinstance(await self._local.get(key, default=None), int)

    async def close(self) -> None:
        await self.cache.close()


Node = FerryNode | CashewsNode


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    # Polling only decides when to report: every time measured is noted where it happens.
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


async def pace(start: int, index: int, rate: float) -> None:
    """Sleep until the ``index``-th tick of a steady ``rate`` per second from ``start``."""
    delay = (start + index * 1e9 / rate - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


# Commands a node runs, by name: A writes, B holds, watches and reports.


async def prime(node: Node, keys: list[str], marker: str) -> None:
    for key in keys:
        await node.set(key, 0)
    await node.set(marker, 0)  # written last: once B hears it, it heard the others


async def hold(node: Node, keys: list[str], marker: str | None) -> int:
    if marker is not None and not await until(lambda: marker in node.drops):
        raise RuntimeError(f"B never heard the marker {marker!r}")
    for key in keys:
        await node.get(key)
    held = [await node.in_l1(key) for key in keys]
    for key in [*keys, marker or ""]:  # what B hears from now on is the measured writes
        node.drops.pop(key, None)
        node.latency_ms.pop(key, None)
    return sum(held)


async def steady(node: Node, keys: list[str], rate: float) -> list[int]:
    started = time.monotonic_ns()
    writes = []
    for i, key in enumerate(keys):
        await pace(started, i, rate)
        writes.append(time.monotonic_ns())
        await node.set(key, 1)
    return writes


async def collect(
    node: Node, keys: list[str], timeout: float = WAIT
) -> tuple[list[int | None], list[float | None]]:
    await until(lambda: all(key in node.drops for key in keys), timeout)
    return [node.drops.get(k) for k in keys], [node.latency_ms.get(k) for k in keys]


async def versions(node: Node, key: str, count: int, rate: float) -> list[int]:
    started = time.monotonic_ns()
    acked = []
    for n in range(1, count + 1):
        await pace(started, n - 1, rate)
        await node.set(key, n)
        acked.append(time.monotonic_ns())
    return acked


async def watch(
    node: Node, key: str, final: int, timeout: float, conn: Connection
) -> dict[str, Any]:
    """Read ``key`` in a loop until it reads ``final`` (or ``timeout`` passes).

    Notes when the last read of each version started.
    """
    last: dict[int, int] = {}
    reads = 0
    conn.send(("watching", None))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = time.monotonic_ns()
        value = await node.get(key)
        reads += 1
        if isinstance(value, int):
            last[value] = started
            if value >= final:
                break
        await asyncio.sleep(0)  # a server's loop has other work: yield between reads
    return {"last": last, "reads": reads}


COMMANDS: dict[str, Callable[..., Any]] = {
    "prime": prime,
    "hold": hold,
    "steady": steady,
    "collect": collect,
    "versions": versions,
}


async def serve(conn: Connection, system: str, url: str) -> None:
    node: Node
    if system.startswith("dataferry"):
        node = FerryNode(url, glide=system == "dataferry-glide")
    else:
        node = CashewsNode(url, resp3=system == "cashews-resp3")
    await node.start()
    conn.send(("ready", None))
    while True:
        name, kwargs = await asyncio.to_thread(conn.recv)
        if name == "close":
            break
        if name == "watch":
            result = await watch(node, conn=conn, **kwargs)
        else:
            result = await COMMANDS[name](node, **kwargs)
        conn.send((name, result))
    await node.close()
    conn.send(("closed", None))


def node_main(conn: Connection, system: str, url: str) -> None:
    try:
        asyncio.run(serve(conn, system, url))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise


class Remote:
    """The parent's handle on a node process."""

    def __init__(self, system: str, role: str, url: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.name = f"{system}-{role}"
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=node_main, args=(child, system, url), daemon=True)
        self.proc.start()
        child.close()

    def send(self, name: str, **kwargs: Any) -> None:
        self.conn.send((name, kwargs))

    def receive(self, expected: str, timeout: float = WAIT + 120) -> Any:
        if not self.conn.poll(timeout):
            raise RuntimeError(f"{self.name}: no {expected!r} within {timeout}s")
        name, result = self.conn.recv()
        if name == "error":
            raise RuntimeError(f"{self.name} failed:\n{result}")
        if name != expected:
            raise RuntimeError(f"{self.name}: got {name!r}, expected {expected!r}")
        return result

    def call(self, name: str, **kwargs: Any) -> Any:
        self.send(name, **kwargs)
        return self.receive(name)

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self.call("close")
                self.receive("closed")
            except (RuntimeError, OSError, EOFError):
                pass
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()


# -- statistics and tables -----------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ratio_text(mine: list[float], theirs: list[float]) -> str:
    ratios = [a / b for a, b in zip(mine, theirs, strict=True) if b > 0]
    if not ratios:
        return "n/a"
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def ms(values: Iterable[float]) -> list[str]:
    vals = list(values)
    return [f"{pct(vals, 0.5):.3f}", f"{pct(vals, 0.99):.3f}", f"{max(vals):.3f}"]


# -- (a) invalidation latency and (b) staleness ----------------------------------------------------


def latency_round(
    a: Remote, b: Remote, tag: str, n: int, rate: float, *, marker: bool = True
) -> tuple[list[float], list[float], int]:
    """One round: A writes ``n`` keys B holds; returns write→drop ms, latency_ms, missed.

    ``marker=False``: B does not wait to hear A's priming writes first (for a node that hears
    nothing) and gives the measured writes 2 s to arrive.
    """
    keys = [f"{tag}:{i}" for i in range(n)]
    mark = f"{tag}:marker"
    a.call("prime", keys=keys, marker=mark)
    held = b.call("hold", keys=keys, marker=mark if marker else None)
    if held != n:
        raise RuntimeError(f"{b.name} holds {held} of {n} keys in L1")
    writes = a.call("steady", keys=keys, rate=rate)
    drops, reported = b.call("collect", keys=keys, timeout=WAIT if marker else 2.0)
    measured = [(d - w) / 1e6 for w, d in zip(writes, drops, strict=True) if d is not None]
    latency = [x for x in reported if x is not None]
    return measured, latency, sum(d is None for d in drops)


def staleness_round(a: Remote, b: Remote, tag: str, count: int, rate: float) -> dict[str, Any]:
    key = f"{tag}:v"
    marker = f"{tag}:marker"
    a.call("prime", keys=[key], marker=marker)
    if b.call("hold", keys=[key], marker=marker) != 1:
        raise RuntimeError(f"{b.name} does not hold {key} in L1")
    # B stops watching GRACE seconds after A's last write should have been acknowledged, if it
    # has not read that version by then (a lost invalidation leaves it on an old one for good).
    b.send("watch", key=key, final=count, timeout=count / rate * 1.5 + GRACE)
    b.receive("watching")
    acked = a.call("versions", key=key, count=count, rate=rate)
    seen = b.receive("watch")
    last = {int(v): t for v, t in seen["last"].items()}
    stuck = None if count in last else max(last)
    windows = []
    latest_older = None
    for n in range(1, count + 1):
        older = last.get(n - 1)
        if older is not None:
            latest_older = older if latest_older is None else max(latest_older, older)
        stale = 0 if latest_older is None else max(0, latest_older - acked[n - 1])
        windows.append(stale / 1e6)
    return {"windows": windows, "reads": seen["reads"], "stuck": stuck}


def run_pairs(url: str, args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    pairs = {s: (Remote(s, "A", url), Remote(s, "B", url)) for s in SYSTEMS}
    try:
        for a, b in pairs.values():
            a.receive("ready")
            b.receive("ready")
        if "latency" in args.only:
            lines += latency_part(pairs, args)
        if "staleness" in args.only:
            lines += staleness_part(pairs, args)
    finally:
        for a, b in pairs.values():
            a.close()
            b.close()
    if "latency" in args.only:
        lines += resp3_probe(url)
    return lines


#: Invalidations sent to a cashews pair left on redis-py's default protocol.
RESP3_PROBE = 50


def resp3_probe(url: str) -> list[str]:
    """cashews client_side with redis-py's defaults: do invalidations arrive at all?"""
    a, b = Remote("cashews-resp3", "A", url), Remote("cashews-resp3", "B", url)
    try:
        a.receive("ready")
        b.receive("ready")
        got, _, missed = latency_round(a, b, "resp3", RESP3_PROBE, 500.0, marker=False)
    finally:
        a.close()
        b.close()
    return [
        f"cashews client_side on redis-py's default protocol (RESP3, redis-py 8): "
        f"{len(got)} of {RESP3_PROBE} invalidations reached B within 2 s ({missed} never did; "
        "B kept serving the old values). The rows above pass `protocol=2`.",
        "",
    ]


def latency_part(pairs: dict[str, tuple[Remote, Remote]], args: argparse.Namespace) -> list[str]:
    measured: dict[str, list[float]] = {s: [] for s in SYSTEMS}
    reported: dict[str, list[float]] = {s: [] for s in SYSTEMS}
    missed = dict.fromkeys(SYSTEMS, 0)
    round_p50: dict[str, list[float]] = {s: [] for s in SYSTEMS}
    for r in range(args.rounds):
        for system, (a, b) in pairs.items():
            got, latency, lost = latency_round(a, b, f"lat{r}", args.invalidations, args.rate)
            measured[system] += got
            reported[system] += latency
            missed[system] += lost
            round_p50[system].append(pct(got, 0.5))
    total = args.rounds * args.invalidations
    lines = [
        f"### Invalidation latency: 2 processes, loopback, {total} invalidations per system "
        f"({args.rate:g} writes/s, {args.rounds} interleaved rounds)",
        "",
        row("system", "measure", "p50 ms", "p99 ms", "max ms", "missed"),
        "|---|---|--:|--:|--:|--:|",
    ]
    for system in SYSTEMS:
        lines.append(
            row(LABEL[system], "write call → L1 drop on B", *ms(measured[system]), missed[system])
        )
        if reported[system]:
            lines.append(
                row(LABEL[system], "publish → receipt (`latency_ms`)", *ms(reported[system]), "")
            )
    lines += [
        "",
        "p50 of write → drop per round, DataFerry / cashews: "
        + ratio_text(round_p50["dataferry"], round_p50["cashews"]),
    ]
    for system in ("dataferry", "dataferry-glide"):
        worst = pct(measured[system], 0.99)
        verdict = "meets" if worst < GOAL_P99_MS and missed[system] == 0 else "MISSES"
        lines.append(
            f"{LABEL[system]}: write → drop p99 {worst:.3f} ms {verdict} the goal of "
            f"{GOAL_P99_MS} ms"
        )
    return [*lines, ""]


def staleness_part(pairs: dict[str, tuple[Remote, Remote]], args: argparse.Namespace) -> list[str]:
    count = max(1, int(args.versions_seconds * args.versions_rate))
    windows: dict[str, list[float]] = {s: [] for s in SYSTEMS}
    reads = dict.fromkeys(SYSTEMS, 0)
    stuck: dict[str, list[str]] = {s: [] for s in SYSTEMS}
    round_p99: dict[str, list[float]] = {s: [] for s in SYSTEMS}
    for r in range(args.rounds):
        for system, (a, b) in pairs.items():
            got = staleness_round(a, b, f"st{r}", count, args.versions_rate)
            windows[system] += got["windows"]
            reads[system] += got["reads"]
            if got["stuck"] is not None:
                stuck[system].append(f"round {r + 1}: v{got['stuck']} of v{count}")
            round_p99[system].append(pct(got["windows"], 0.99))
    lines = [
        f"### Staleness window: B reads one key in a loop while A writes {args.versions_rate:g} "
        f"versions/s ({count} versions x {args.rounds} rounds per system)",
        "",
        row(
            "system",
            "reads by B",
            "versions served stale",
            "p50 ms",
            "p99 ms",
            "max ms",
            "never caught up",
        ),
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for system in SYSTEMS:
        stale = sum(1 for w in windows[system] if w > 0)
        lines.append(
            row(
                LABEL[system],
                f"{reads[system]:,}",
                f"{stale} of {len(windows[system])}",
                *ms(windows[system]),
                ", ".join(stuck[system]) or "-",
            )
        )
    lines += [
        "",
        "Window of version n: how long after A's `set(n)` returned B still started a read that"
        " returned an older version (0 if none). Never caught up: B still read an older version"
        f" {GRACE:g} s after A's last write (it stopped watching then; that wait is in the"
        " window).",
        "p99 window per round, DataFerry / cashews: "
        + ratio_text(round_p99["dataferry"], round_p99["cashews"]),
        "",
    ]
    return lines


# -- (c) throughput: Cluster vs standalone ---------------------------------------------------------


async def throughput_round(cache: df.AsyncDataFerry, seconds: float, tasks: int) -> float:
    keys = [f"t:{i}" for i in range(10_000)]
    count = 0
    deadline = time.monotonic() + seconds

    async def worker(seed: int) -> None:
        nonlocal count
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            key = keys[rng.randrange(len(keys))]
            if rng.random() < 0.5:
                await cache.get_or_set(key, lambda: {"v": 1})
            else:
                await cache.set(key, {"v": 2})
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(tasks)))
    return count / (time.perf_counter() - started)


async def throughput_rounds(
    standalone: str, cluster: str, args: argparse.Namespace
) -> dict[str, list[float]]:
    caches = {
        "standalone": df.AsyncDataFerry(
            distributed=df.RedisCache.from_url(standalone),
            backplane=df.RedisBackplane.from_url(standalone),
            namespace="tp",
        ),
        "cluster": df.AsyncDataFerry(
            distributed=df.RedisCache.from_url(cluster, cluster=True),
            backplane=df.RedisBackplane.from_url(cluster, cluster=True),
            namespace="tp",
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in caches}
    try:
        for cache in caches.values():  # warm-up: connections, pools, L1 filled
            await throughput_round(cache, min(1.0, args.throughput_seconds), args.tasks)
        for _ in range(args.rounds):
            for name, cache in caches.items():
                rates[name].append(
                    await throughput_round(cache, args.throughput_seconds, args.tasks)
                )
    finally:
        for cache in caches.values():
            await cache.aclose()
    return rates


def throughput_part(standalone: str, args: argparse.Namespace) -> list[str]:
    with RedisCluster(masters=3) as cluster:
        rates = asyncio.run(throughput_rounds(standalone, cluster.url, args))
    lines = [
        f"### Throughput: 1 process, {args.tasks} asyncio tasks, 50% `get_or_set` / 50% `set` "
        f"over 10,000 keys, L1 and backplane on ({args.rounds} interleaved rounds of "
        f"{args.throughput_seconds:g} s)",
        "",
        row("L2", "ops/s median", "range", "ratio to standalone"),
        "|---|--:|--:|--:|",
    ]
    for name, label in (("standalone", "standalone Redis"), ("cluster", "3-master Cluster")):
        values = rates[name]
        lines.append(
            row(
                label,
                f"{statistics.median(values):,.0f}",
                f"{min(values):,.0f}-{max(values):,.0f}",
                ratio_text(values, rates["standalone"]),
            )
        )
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter phases")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--invalidations", type=int, default=500, help="per round and system")
    parser.add_argument("--rate", type=float, default=500.0, help="writes/s in (a)")
    parser.add_argument("--versions-rate", type=float, default=500.0, help="writes/s in (b)")
    parser.add_argument("--versions-seconds", type=float, default=2.0)
    parser.add_argument("--throughput-seconds", type=float, default=2.5)
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--only", default="latency,staleness,throughput")
    args = parser.parse_args()
    args.only = set(args.only.split(","))
    if args.quick:
        args.rounds = 2
        args.invalidations = 200
        args.versions_seconds = 1.0
        args.throughput_seconds = 1.0
    started = time.monotonic()
    print(
        f"bench_coherence: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print()
    lines: list[str] = []
    with redis_server() as url:
        if args.only & {"latency", "staleness"}:
            lines += run_pairs(url, args)
        if "throughput" in args.only:
            lines += throughput_part(url, args)
    print("\n".join(lines))
    print(f"(ran {time.monotonic() - started:.0f} s; load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
