"""``dataferry demo``: a read-heavy workload through the hybrid cache, then without it.

The demo is also an example to read. It builds a real SQLite "products" database in a
temporary directory, then lets many asyncio tasks look products up by id, the popular ones far
more often than the rest (Zipf), the way a shop's product pages are read::

    cache = AsyncDataFerry(memory=MemoryCache(max_entries=2_500),     # L1: hot products
                           distributed=SQLiteCache(path))              # L2: everything loaded
    product = await cache.get_or_set(f"product:{pid}", lambda: db.load_product(pid))

Every database query is a real ``sqlite3`` query (in a worker thread) preceded by a simulated
network round trip (``--db-latency-ms``), so the baseline run without the cache shows what a
trip to the database costs. The demo says what it will run, draws a progress bar per run
(``dataferry._console.progress``), then prints the cache's own counters
(``str(cache.stats())``), a table of both runs (p50/p95/p99 latency, throughput, hit
ratios) and how they compare: throughput and every percentile, a slower one said as such
("p95 was 1.6x slower with the cache"), never a single "faster" figure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import json
import random
import secrets
import sqlite3
import sys
import tempfile
import textwrap
import threading
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dataferry._async._facade import AsyncDataFerry
from dataferry._backends import DistributedCache, RedisCache, SQLiteCache
from dataferry._console import (
    ProgressUpdate,
    format_duration,
    print_paragraph,
    print_table,
    progress,
    terminal_width,
)
from dataferry._events import Stats
from dataferry._memory import MemoryCache

__all__ = [
    "WARM_UP",
    "Comparison",
    "DemoConfig",
    "DemoResult",
    "ProductDatabase",
    "RunResult",
    "ZipfKeys",
    "run_demo",
]


#: Share of the cached run counted as warm-up: the "warm" figures cover the rest.
WARM_UP = 0.25


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs; the ``dataferry demo`` flags map one to one onto these fields.

    Args:
        duration: Seconds the cached run lasts (ignored when ``requests`` is set).
        requests: Stop the cached run after this many requests instead.
        concurrency: Concurrent asyncio tasks issuing requests.
        keys: Products in the database (distinct keys).
        l1_size: Max entries of the L1 (default: a quarter of ``keys``, so L2 has work too).
        zipf_s: Zipf exponent: the product of popularity rank k is requested ~ 1/k**s.
        seed: Seed of the data and of the request sequence (runs are reproducible).
        db_latency_ms: Simulated network latency added to every database query.
        redis_url: Use ``RedisCache.from_url(redis_url)`` as L2 instead of a SQLiteCache.
        baseline: Also run the workload without the cache.
        baseline_seconds: How long the baseline runs (it is slow, so it runs a short slice).
        progress: Draw a progress bar on stderr.

    """

    duration: float = 8.0
    requests: int | None = None
    concurrency: int = 64
    keys: int = 10_000
    l1_size: int | None = None
    zipf_s: float = 1.0
    seed: int = 7
    db_latency_ms: float = 2.0
    redis_url: str | None = None
    baseline: bool = True
    baseline_seconds: float = 2.0
    progress: bool = True


@dataclass(frozen=True)
class RunResult:
    """One measured run (or part of one): how many requests, how long, what they cost.

    Latencies are seconds per request as the caller saw them, waits included (for the
    database, the L2, or another task loading the same key). ``stats`` counts what the cache
    did during the run (``None`` for the run without a cache).
    """

    requests: int
    seconds: float
    database_queries: int
    p50: float
    p95: float
    p99: float
    stats: Stats | None = None

    @property
    def requests_per_second(self) -> float:
        """Throughput of the run."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def l1_hit_ratio(self) -> float:
        """Share of requests answered by the L1."""
        s = self.stats
        lookups = 0 if s is None else s.memory_hits + s.memory_misses
        return s.memory_hits / lookups if s is not None and lookups else 0.0

    @property
    def l2_hit_ratio(self) -> float:
        """Share of L2 lookups (L1 misses that led a load) answered by the L2."""
        s = self.stats
        lookups = 0 if s is None else s.distributed_hits + s.distributed_misses
        return s.distributed_hits / lookups if s is not None and lookups else 0.0

    @property
    def hit_ratio(self) -> float:
        """Share of lookups answered by L1 or L2 (``Stats.hit_ratio``)."""
        return 0.0 if self.stats is None else self.stats.hit_ratio


@dataclass(frozen=True)
class DemoResult:
    """Everything the demo measured; :meth:`report` prints it, :meth:`table` returns it.

    ``cached`` is the whole run with the cache, from cold; ``warm`` is its part after the
    first :data:`WARM_UP` of it, when the popular products are cached; ``baseline`` is the
    same workload without the cache (``None`` with ``baseline=False``).
    """

    config: DemoConfig
    l1_size: int
    l2_name: str
    cached: RunResult
    warm: RunResult
    baseline: RunResult | None
    distinct_keys: int

    @property
    def stats(self) -> Stats:
        """The cache's counters over the whole cached run."""
        assert self.cached.stats is not None
        return self.cached.stats

    @property
    def speedup(self) -> float | None:
        """Requests/s with the cache (whole run) over requests/s without it (None: no baseline)."""
        return self._speedup(self.cached)

    @property
    def warm_speedup(self) -> float | None:
        """Requests/s with a warm cache over requests/s without it (None: no baseline)."""
        return self._speedup(self.warm)

    def _speedup(self, run: RunResult) -> float | None:
        if self.baseline is None or self.baseline.requests_per_second == 0:
            return None
        return run.requests_per_second / self.baseline.requests_per_second

    def comparison(self, run: RunResult | None = None) -> list[Comparison] | None:
        """Compare ``run`` (default: the whole cached run) with the run without the cache.

        One :class:`Comparison` each for throughput, p50, p95 and p99 (None: no baseline).
        """
        b = self.baseline
        if b is None:
            return None
        r = run if run is not None else self.cached
        return [
            Comparison("throughput", r.requests_per_second, b.requests_per_second, True),
            Comparison("p50", r.p50, b.p50, False),
            Comparison("p95", r.p95, b.p95, False),
            Comparison("p99", r.p99, b.p99, False),
        ]

    def verdict(self) -> str | None:
        """The headline, in plain words: throughput and every percentile, slower ones too.

        Compares the whole cached run (from a cold start) with the run without the cache,
        then names what was still slower once warm (None: no baseline).
        """
        cold, warm = self.comparison(), self.comparison(self.warm)
        if cold is None or warm is None:
            return None
        throughput, *percentiles = cold
        unit = "requests/s"
        figures = (
            f"({throughput.cached:,.0f} vs {throughput.baseline:,.0f} {unit}, from a cold start)"
        )
        if throughput.better is None:
            text = f"Verdict: about as many {unit} with the cache as without it {figures}. "
        else:
            text = f"Verdict: {throughput.describe()} with the cache than without it {figures}. "
        text += "; ".join(
            f"{c.name} was {c.describe()} with the cache "
            f"({format_duration(c.cached)} vs {format_duration(c.baseline)})"
            for c in percentiles
        )
        text += "."
        slower_warm = [c for c in warm[1:] if c.better is False]
        share = f"{1 - WARM_UP:.0%}"
        if slower_warm:
            text += f" Once warm (the last {share} of the run), " + ", ".join(
                f"{c.name} was still {c.describe()}" for c in slower_warm
            )
            text += "."
        elif any(c.better is False for c in percentiles):
            text += (
                f" Once warm (the last {share} of the run), no percentile was slower with "
                f"the cache: the slower requests came in the first {WARM_UP:.0%}, while it "
                "filled."
            )
        return text

    @property
    def slower(self) -> list[str]:
        """The percentiles ("p95", ...) that were slower with the cache (whole run)."""
        return [c.name for c in self.comparison() or [] if c.name != "throughput" and c.worse]

    def report(self, file: TextIO | None = None, *, rich: bool | None = None) -> None:
        """Print the results: the cache's counters, the results table, the comparison, notes.

        Drawn with rich when ``file`` (default stdout) is a terminal and rich is installed
        (``rich=False``: always plain text, as :meth:`table` returns it). The verdict comes
        last, where a terminal leaves it in view.
        """
        out = file if file is not None else sys.stdout
        b = self.baseline
        # Every counter, zeros included: the errors rows show what did not go wrong, too.
        out.write(f"cache.stats() at the end of the cached run:\n{self.stats}\n\n")
        runs = [self.cached, self.warm, *([b] if b is not None else [])]

        def row(
            name: str, cell: Callable[[RunResult], str], cached_only: bool = False
        ) -> list[str]:
            cells = [cell(r) for r in runs]
            if cached_only and b is not None:
                cells[-1] = ""  # no cache, no hit ratio
            return [name, *cells]

        warm_share = f"{1 - WARM_UP:.0%}"
        columns = ["", "with DataFerry", f"warm (last {warm_share})", "without cache"]
        rows = [
            row("requests", lambda r: f"{r.requests:,}"),
            row("seconds", lambda r: f"{r.seconds:.1f}"),
            row("requests/s", lambda r: f"{r.requests_per_second:,.0f}"),
            row("latency p50", lambda r: format_duration(r.p50)),
            row("latency p95", lambda r: format_duration(r.p95)),
            row("latency p99", lambda r: format_duration(r.p99)),
            row("factory calls (DB queries)", lambda r: f"{r.database_queries:,}"),
            row("hit ratio L1", lambda r: f"{r.l1_hit_ratio:.1%}", cached_only=True),
            row("hit ratio L2 (of L2 lookups)", lambda r: f"{r.l2_hit_ratio:.1%}", True),
            row("hit ratio overall", lambda r: f"{r.hit_ratio:.1%}", cached_only=True),
        ]
        shown = len(runs) + 1  # no baseline, no "without cache" column
        numeric = [False, True, True, True][:shown]
        print_table("Results", columns[:shown], rows, file=out, numeric=numeric, rich=rich)

        cold, warm = self.comparison(), self.comparison(self.warm)
        if cold is not None and warm is not None:
            out.write("\n")
            print_table(
                "With the cache vs without it",
                ["", "from a cold start", f"warm (last {warm_share})"],
                [
                    [
                        "throughput" if c.name == "throughput" else f"latency {c.name}",
                        c.describe(),
                        w.describe(),
                    ]
                    for c, w in zip(cold, warm, strict=True)
                ],
                file=out,
                numeric=[False, True, True],
                rich=rich,
            )

        c = self.cached
        notes = [
            f"The cache started empty: {c.requests:,} requests for {self.distinct_keys:,} "
            f"distinct products cost {c.database_queries:,} database queries "
            f"({c.database_queries / max(c.requests, 1):.2%} of the requests).",
        ]
        if b is not None and b.requests_per_second > 0:
            notes.append(
                f"Without the cache every request is a database query. The baseline ran for "
                f"{b.seconds:.1f} s only ({b.requests:,} requests); extrapolated at its "
                f"{b.requests_per_second:,.0f} requests/s, the cached run's {c.requests:,} "
                f"requests would take ~{_s(c.requests / b.requests_per_second)} s instead of "
                f"{c.seconds:.1f} s."
            )
        for note in notes:
            out.write("\n")
            print_paragraph(note, file=out, rich=rich)
        if self.stats.distributed_errors:
            out.write("\n")
            print_paragraph(
                f"Warning: {self.stats.distributed_errors:,} L2 errors (answered by the factory).",
                file=out,
                style="bold red",
                rich=rich,
            )
        verdict = self.verdict()
        if verdict is not None:
            out.write("\n")
            style = "bold yellow" if self.slower else "bold green"
            print_paragraph(verdict, file=out, style=style, rich=rich)
        out.flush()

    def table(self) -> str:
        """Return what :meth:`report` prints, as plain text (no trailing newline)."""
        buffer = io.StringIO()
        self.report(buffer, rich=False)
        return buffer.getvalue().rstrip("\n")


@dataclass(frozen=True)
class Comparison:
    """One figure of a run with the cache against the same figure without it.

    ``higher_is_better`` is true for throughput, false for latencies.
    """

    name: str
    cached: float
    baseline: float
    higher_is_better: bool

    @property
    def factor(self) -> float:
        """How many times better or worse (>= 1; ``inf`` against zero)."""
        low, high = sorted((self.cached, self.baseline))
        if high == low:
            return 1.0
        return high / low if low > 0 else float("inf")

    @property
    def better(self) -> bool | None:
        """True: better with the cache; False: worse; None: about the same (within 5%)."""
        if self.factor < 1.05:
            return None
        return (self.cached > self.baseline) == self.higher_is_better

    @property
    def worse(self) -> bool:
        """Whether the cache made this figure worse (by 5% or more)."""
        return self.better is False

    def describe(self) -> str:
        """E.g. ``'3.4x more requests/s'``, ``'3.1x slower'``, ``'about the same'``."""
        if self.better is None:
            return "about the same"
        times = _times(self.factor)
        if self.higher_is_better:
            return f"{times} {'more' if self.better else 'fewer'} requests/s"
        return f"{times} {'faster' if self.better else 'slower'}"


def _times(factor: float) -> str:
    if factor == float("inf"):
        return "∞x"
    return f"{factor:.1f}x" if factor < 10 else f"{factor:,.0f}x"


def _s(seconds: float) -> str:
    # A short run extrapolates to under a second: "~0 s" would read as "no time at all".
    return f"{seconds:,.1f}" if seconds < 10 else f"{seconds:,.0f}"


# -- the database ---------------------------------------------------------------------------------

_CATEGORIES = ("kitchen", "garden", "books", "toys", "outdoor", "office", "audio", "lighting")
_ADJECTIVES = ("Compact", "Classic", "Rugged", "Smart", "Deluxe", "Eco", "Pro", "Mini", "Vintage")
_NOUNS = ("Kettle", "Lamp", "Backpack", "Speaker", "Notebook", "Drill", "Tent", "Blender", "Chair")
_COLORS = ("black", "white", "red", "blue", "green", "oak", "steel")

_QUERY = """
    SELECT p.id, p.sku, p.name, p.category, p.price_cents, p.stock, p.description,
           p.attributes, p.updated_at, COUNT(r.id), AVG(r.rating)
    FROM products AS p LEFT JOIN reviews AS r ON r.product_id = p.id
    WHERE p.id = ?
    GROUP BY p.id
"""


class ProductDatabase:
    """A real SQLite database of products, read as if it were across a network.

    :meth:`load_product` waits ``latency`` seconds (the simulated round trip), then runs a real
    query in a worker thread, so the event loop keeps serving other tasks meanwhile.
    """

    def __init__(self, path: Path, *, latency: float) -> None:
        self.path = path
        self.latency = latency
        self.queries = 0
        # sqlite3 connections are per thread; keep them all to close them at the end.
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @classmethod
    def create(cls, path: Path, *, products: int, seed: int, latency: float) -> ProductDatabase:
        """Create and fill the database file at ``path`` (reproducibly from ``seed``)."""
        rng = random.Random(seed)
        with sqlite3.connect(path) as conn:
            conn.executescript(
                """
                CREATE TABLE products (
                    id INTEGER PRIMARY KEY, sku TEXT NOT NULL, name TEXT NOT NULL,
                    category TEXT NOT NULL, price_cents INTEGER NOT NULL, stock INTEGER NOT NULL,
                    description TEXT NOT NULL, attributes TEXT NOT NULL, updated_at TEXT NOT NULL
                );
                CREATE TABLE reviews (
                    id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL, rating INTEGER NOT NULL
                );
                """
            )
            conn.executemany(
                "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_fake_product(pid, rng) for pid in range(1, products + 1)),
            )
            conn.executemany(
                "INSERT INTO reviews (product_id, rating) VALUES (?, ?)",
                (
                    (pid, rng.randint(1, 5))
                    for pid in range(1, products + 1)
                    for _ in range(rng.randint(0, 8))
                ),
            )
            conn.execute("CREATE INDEX reviews_by_product ON reviews (product_id)")
        conn.close()
        return cls(path, latency=latency)

    async def load_product(self, product_id: int) -> dict[str, Any]:
        """Fetch one product (with its review summary) as a JSON-able dict."""
        self.queries += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        return await asyncio.to_thread(self._query, product_id)

    def _query(self, product_id: int) -> dict[str, Any]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                f"{self.path.as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        row = conn.execute(_QUERY, (product_id,)).fetchone()
        if row is None:
            raise LookupError(f"no product {product_id}")
        pid, sku, name, category, price, stock, description, attributes, updated, n, avg = row
        return {
            "id": pid,
            "sku": sku,
            "name": name,
            "category": category,
            "price": {"amount_cents": price, "currency": "EUR"},
            "stock": stock,
            "description": description,
            "attributes": json.loads(attributes),
            "reviews": {"count": n, "average": round(avg, 2) if avg is not None else None},
            "updated_at": updated,
        }

    def close(self) -> None:
        """Close every connection the worker threads opened."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


def _fake_product(pid: int, rng: random.Random) -> tuple[Any, ...]:
    adjective, noun = rng.choice(_ADJECTIVES), rng.choice(_NOUNS)
    category = rng.choice(_CATEGORIES)
    attributes = {
        "color": rng.choice(_COLORS),
        "weight_g": rng.randint(80, 9000),
        "tags": rng.sample(("new", "sale", "bestseller", "eco", "gift", "limited"), 2),
    }
    description = (
        f"The {adjective.lower()} {noun.lower()} for {category}: built to last, easy to clean, "
        f"and backed by our {rng.randint(1, 5)}-year warranty. Ships in {rng.randint(1, 9)} days."
    )
    return (
        pid,
        f"SKU-{pid:07d}",
        f"{adjective} {noun} {rng.randint(100, 999)}",
        category,
        rng.randint(199, 99_999),
        rng.randint(0, 500),
        description,
        json.dumps(attributes),
        f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z",
    )


# -- the workload ---------------------------------------------------------------------------------


class ZipfKeys:
    """Product ids drawn with Zipf popularity: the product of rank k is drawn ~ 1/k**s.

    Cumulative weights are computed once; each draw is then a bisection into them
    (``random.choices(cum_weights=...)``). Ranks are shuffled over the ids, so popularity has
    nothing to do with id order.
    """

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        self._ids = list(range(1, n + 1))
        rng.shuffle(self._ids)
        self._cum_weights = list(itertools.accumulate(1.0 / rank**s for rank in range(1, n + 1)))
        self._rng = rng

    def draw(self, k: int) -> list[int]:
        """Return ``k`` product ids."""
        return self._rng.choices(self._ids, cum_weights=self._cum_weights, k=k)


#: How often :func:`_drive` tells the progress bar how far it is (the bar throttles itself).
_PROGRESS_TICK = 0.1


def _progress_total(seconds: float | None, budget: int | None) -> float:
    """The total of a :func:`_drive` run's progress: its budget, else its seconds."""
    if budget is not None:
        return float(budget)
    assert seconds is not None
    return seconds


@dataclass(frozen=True)
class _Trace:
    """What :func:`_drive` saw: each request's latency, and when the warm part began."""

    latencies: array[float]
    seconds: float
    warm_index: int  # requests completed before the warm part
    warm_seconds: float  # duration of the warm part


async def _drive(
    request: Callable[[int], Awaitable[object]],
    keys: ZipfKeys,
    *,
    concurrency: int,
    seconds: float | None,
    budget: int | None,
    update: ProgressUpdate | None = None,
    on_warm: Callable[[], None] = lambda: None,
) -> _Trace:
    """Run ``request(product_id)`` from ``concurrency`` tasks until time or budget runs out.

    ``update(done, status)`` (from :func:`~dataferry._console.progress`, whose total is
    :func:`_progress_total`) hears how far the run is every tenth of a second and at the end:
    requests done with a budget, else seconds elapsed. ``on_warm()`` is called once, when the
    first :data:`WARM_UP` of the time or budget is spent (to snapshot counters).
    """
    latencies: array[float] = array("d")  # one event loop thread: appends need no lock
    issued = 0
    start = time.perf_counter()
    end = start + seconds if seconds is not None else float("inf")
    limit = budget if budget is not None else sys.maxsize
    warm_time = start + seconds * WARM_UP if seconds is not None else float("inf")
    warm_count = int(budget * WARM_UP) if budget is not None else sys.maxsize
    warm_at: tuple[int, float] | None = None

    async def client() -> None:
        nonlocal issued, warm_at
        while True:
            for product_id in keys.draw(64):
                if issued >= limit:
                    return
                issued += 1
                t0 = time.perf_counter()
                await request(product_id)
                t1 = time.perf_counter()
                latencies.append(t1 - t0)
                if warm_at is None and (t1 >= warm_time or len(latencies) >= warm_count):
                    warm_at = (len(latencies), t1)
                    on_warm()
                if t1 >= end:
                    return
                # An L1 hit never suspends; yield as a server does between requests, so
                # every client (and the progress bar) gets its turn.
                await asyncio.sleep(0)

    def report(now: float) -> None:
        if update is None:
            return
        elapsed = now - start
        count = len(latencies)
        rate = count / elapsed if elapsed > 0 else 0.0
        done = float(count) if seconds is None else min(elapsed, seconds)
        update(done, f"{count:,} requests, {rate:,.0f}/s")

    async def reporter() -> None:
        while True:
            await asyncio.sleep(_PROGRESS_TICK)
            report(time.perf_counter())

    ticker = asyncio.create_task(reporter())
    try:
        await asyncio.gather(*(client() for _ in range(concurrency)))
    finally:
        ticker.cancel()
    stop = time.perf_counter()
    report(stop)
    warm_index, warm_start = warm_at if warm_at is not None else (len(latencies), stop)
    return _Trace(latencies, stop - start, warm_index, stop - warm_start)


def _summarise(
    latencies: Sequence[float], seconds: float, queries: int, stats: Stats | None = None
) -> RunResult:
    ordered = sorted(latencies)
    n = len(ordered)

    def pct(q: float) -> float:
        return ordered[min(n - 1, int(q * n))] if n else 0.0

    return RunResult(
        requests=n,
        seconds=seconds,
        database_queries=queries,
        p50=pct(0.50),
        p95=pct(0.95),
        p99=pct(0.99),
        stats=stats,
    )


def _stats_between(before: Stats, after: Stats) -> Stats:
    """The counters of what happened between two snapshots (sizes are taken from ``after``)."""
    counts = after.as_dict()
    for name, value in before.as_dict().items():
        if name not in ("memory_entries", "memory_weight"):
            counts[name] -= value
    changed: dict[str, Any] = dict(counts)  # ints only: the histogram stays ``after``'s
    return dataclasses.replace(after, **changed)


# -- the demo -------------------------------------------------------------------------------------


def _make_l2(config: DemoConfig, workdir: Path) -> tuple[DistributedCache, str]:
    """Return the L2 backend and its description."""
    if config.redis_url is not None:
        redis = RedisCache.from_url(config.redis_url)
        return redis, repr(redis)  # the repr hides a password in the URL
    return SQLiteCache(workdir / "l2-cache.sqlite"), "SQLiteCache (embedded, no server)"


def _plan(config: DemoConfig, l1_size: int, l2_name: str) -> list[list[str]]:
    """What the demo is about to run, as (what, how) rows."""
    if config.requests is not None:
        length = f"{config.requests:,} requests"
    else:
        length = f"{config.duration:g} s"
    if config.baseline:
        baseline = f"then {config.baseline_seconds:g} s of the same workload without the cache"
    else:
        baseline = "skipped (--no-baseline)"
    return [
        [
            "workload",
            f"{config.concurrency} concurrent tasks look products up by id, popular ones more "
            f"often (Zipf s={config.zipf_s:g}; 0 = uniform); seed {config.seed}",
        ],
        ["keys", f"{config.keys:,} products (distinct keys)"],
        ["cached run", f"{length} through the cache, starting empty"],
        ["baseline", baseline],
        [
            "database",
            f"SQLite in a temporary directory, {config.db_latency_ms:g} ms simulated network "
            "latency per query",
        ],
        ["cache", f"L1 MemoryCache(max_entries={l1_size:,}) + L2 {l2_name}"],
    ]


async def _demo(config: DemoConfig, out: TextIO, err: TextIO) -> DemoResult:
    l1_size = config.l1_size if config.l1_size is not None else max(1, config.keys // 4)
    with tempfile.TemporaryDirectory(prefix="dataferry-demo-") as tmp:
        workdir = Path(tmp)
        l2, l2_name = _make_l2(config, workdir)
        try:
            print_table("dataferry demo", ["", ""], _plan(config, l1_size, l2_name), file=out)
            out.write("\n")
            out.flush()
            err.write(
                textwrap.fill(
                    f"creating a SQLite database of {config.keys:,} products...",
                    terminal_width(),
                )
                + "\n"
            )
            err.flush()
            db = await asyncio.to_thread(
                ProductDatabase.create,
                workdir / "products.sqlite",
                products=config.keys,
                seed=config.seed,
                latency=config.db_latency_ms / 1000,
            )
        except BaseException:
            await l2.aclose()  # _measure's cache closes it on the way that gets there
            raise
        try:
            return await _measure(config, db, l2, l2_name, l1_size, out, err)
        finally:
            db.close()


#: The progress bars' labels, as wide as each other so the two bars line up.
_WITH, _WITHOUT = "with cache   ", "without cache"


async def _measure(
    config: DemoConfig,
    db: ProductDatabase,
    l2: DistributedCache,
    l2_name: str,
    l1_size: int,
    out: TextIO,
    err: TextIO,
) -> DemoResult:
    # A namespace of its own per run: a shared Redis never mixes this run with others.
    namespace = f"dataferry-demo-{secrets.token_hex(4)}"
    cache = AsyncDataFerry(
        memory=MemoryCache(max_entries=l1_size),
        distributed=l2,
        namespace=namespace,
        default_ttl=600,
    )
    async with cache:
        # Fail early and clearly when the L2 can't be reached (the cache itself would just
        # count the errors and carry on without L2).
        await l2.aget(f"{namespace}:ping")

        requested: set[int] = set()

        async def cached_request(product_id: int) -> object:
            requested.add(product_id)
            return await cache.get_or_set(
                f"product:{product_id}", lambda: db.load_product(product_id)
            )

        at_warm: list[tuple[Stats, int]] = []
        seconds = None if config.requests is not None else config.duration
        total = _progress_total(seconds, config.requests)
        with progress(total, _WITH, file=err, enabled=config.progress) as update:
            trace = await _drive(
                cached_request,
                ZipfKeys(config.keys, config.zipf_s, random.Random(config.seed)),
                concurrency=config.concurrency,
                seconds=seconds,
                budget=config.requests,
                update=update,
                on_warm=lambda: at_warm.append((cache.stats(), db.queries)),
            )
        stats = cache.stats()
        warm_stats, warm_queries = at_warm[0] if at_warm else (stats, db.queries)
        cached = _summarise(trace.latencies, trace.seconds, db.queries, stats)
        warm = _summarise(
            trace.latencies[trace.warm_index :],
            trace.warm_seconds,
            db.queries - warm_queries,
            _stats_between(warm_stats, stats),
        )
        if config.redis_url is not None:  # leave a shared server as we found it
            await cache.remove_many([f"product:{pid}" for pid in requested])

    baseline = None
    if config.baseline:
        db.queries = 0
        total = _progress_total(config.baseline_seconds, None)
        with progress(total, _WITHOUT, file=err, enabled=config.progress) as update:
            trace = await _drive(
                db.load_product,
                ZipfKeys(config.keys, config.zipf_s, random.Random(config.seed)),
                concurrency=config.concurrency,
                seconds=config.baseline_seconds,
                budget=None,
                update=update,
            )
        baseline = _summarise(trace.latencies, trace.seconds, db.queries)

    result = DemoResult(
        config=config,
        l1_size=l1_size,
        l2_name=l2_name,
        cached=cached,
        warm=warm,
        baseline=baseline,
        distinct_keys=len(requested),
    )
    result.report(out)
    return result


def run_demo(
    config: DemoConfig | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> DemoResult:
    """Run the demo (``asyncio.run``), print its plan and report to ``out``; return the results.

    Progress goes to ``err`` (default: ``sys.stderr``). Raises
    :class:`~dataferry.DistributedCacheError` when the L2 (e.g. ``--redis``) can't be reached.
    """
    config = config if config is not None else DemoConfig()
    return asyncio.run(
        _demo(
            config, out if out is not None else sys.stdout, err if err is not None else sys.stderr
        )
    )
