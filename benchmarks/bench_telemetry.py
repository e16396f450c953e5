"""Telemetry overhead: what OpenTelemetry costs per L1 hit, L2 hit and miss.

    .venv/bin/python benchmarks/bench_telemetry.py [--rounds 15] [--hit-rounds 45]
        [--scale 1.0] [--only {api,sdk}] [--clock {wall,cpu}] [--strict]

Every row compares a cache with telemetry against the same cache built with
``telemetry=None``, in the same process, interleaved round by round (A B A B ..., the order
rotated each round); it shows the median ns per call of each side, the median extra cost per
call, and the median of the per-round ratios with their range.

1. **API only** (issue 11's target): the default ``Telemetry()`` with no SDK configured (the
   global providers are the API's no-op proxies, checked), on the L1-hit path: async
   ``get_or_set`` hit and sync ``get`` hit; target <= 1.03x, over ``--hit-rounds`` (45)
   rounds. The hit path runs the same code either way, so a control row (a second
   ``telemetry=None`` cache against the first) shows the run's noise floor. Also, for
   information, ``trace_memory_hits=True`` with the API only (a no-op span per hit).
2. **SDK installed**: a ``MeterProvider`` with an ``InMemoryMetricReader`` and a
   ``TracerProvider`` with a ``BatchSpanProcessor`` whose exporter counts and drops the spans
   (the production pipeline minus the network), both passed through ``Telemetry(...)`` (the
   globals are never set). Rows: L1 hits (default, and ``trace_memory_hits=True``), L2 hits
   (Redis, no L1: an operation span and an L2 span, and two durations, per call) and misses
   (L1 + Redis, a new key per call: operation, L2 get, factory and L2 set spans), async and
   sync. The async L2 hit is also measured with the API only, and with the SDK for metrics
   only (``traces=False``) and spans only (``metrics=False``). No targets: the figures are
   what ``docs/observability.md`` quotes.

The script starts its own ``redis-server`` on a free port (see ``_redis.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import redis
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
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import dataferry as df

VALUE: dict[str, Any] = {"id": 1, "name": "x" * 100}
KEYS = [f"user:{i}" for i in range(1000)]


@dataclass
class Row(Pair):
    target: float | None = None

    def extra(self) -> float:
        return statistics.median(
            o - b for o, b in zip(self.ours.samples, self.base.samples, strict=True)
        )

    def met(self) -> bool:
        return self.target is None or statistics.median(self.ratios()) <= self.target

    def line(self) -> str:
        r = self.ratios()
        target = "-" if self.target is None else f"<= {self.target:g}x"
        met = "-" if self.target is None else ("yes" if self.met() else "**NO**")
        return (
            f"| {self.what} | {self.ours.name} | {ns(statistics.median(self.ours.samples))} "
            f"| {ns(statistics.median(self.base.samples))} | {ns(self.extra(), sign=True)} "
            f"| {statistics.median(r):.3f}x ({min(r):.3f}-{max(r):.3f}) | {target} | {met} |"
        )


def ns(value: float, sign: bool = False) -> str:
    text = f"{value:+,.0f}" if sign else f"{value:,.0f}"
    return f"{text} ns"


def factory() -> dict[str, Any]:
    return VALUE


# -- the cache shapes under test ----------------------------------------------------------


def hit_async(cache: df.AsyncDataFerry) -> Callable[[int], Awaitable[float]]:
    """Async get_or_set hits on the prefilled KEYS (ops rounded to whole passes)."""

    async def run(ops: int) -> None:
        get_or_set = cache.get_or_set
        for _ in range(max(1, ops // len(KEYS))):
            for key in KEYS:
                await get_or_set(key, factory)

    return timed_async(run)


def hit_sync(cache: df.DataFerry) -> Callable[[int], Awaitable[float]]:
    """Sync get hits on the prefilled KEYS."""

    def run(ops: int) -> None:
        get = cache.get
        for _ in range(max(1, ops // len(KEYS))):
            for key in KEYS:
                get(key)

    return timed_sync(run)


def miss_async(cache: df.AsyncDataFerry) -> Callable[[int], Awaitable[float]]:
    async def run(ops: int) -> None:
        for key in fresh_keys(ops):
            await cache.get_or_set(key, factory, ttl=60)

    return timed_async(run)


def miss_sync(cache: df.DataFerry) -> Callable[[int], Awaitable[float]]:
    def run(ops: int) -> None:
        for key in fresh_keys(ops):
            cache.get_or_set(key, factory, ttl=60)

    return timed_sync(run)


def l2_hit_async(cache: df.AsyncDataFerry) -> Callable[[int], Awaitable[float]]:
    async def run(ops: int) -> None:
        for key in itertools.islice(itertools.cycle(KEYS), ops):
            await cache.get_or_set(key, factory)

    return timed_async(run)


def l2_hit_sync(cache: df.DataFerry) -> Callable[[int], Awaitable[float]]:
    def run(ops: int) -> None:
        for key in itertools.islice(itertools.cycle(KEYS), ops):
            cache.get_or_set(key, factory)

    return timed_sync(run)


# -- the SDK ---------------------------------------------------------------------------------


class CountingExporter(SpanExporter):
    """Counts the spans it is given and drops them: the export pipeline minus the network."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


@dataclass
class Sdk:
    reader: InMemoryMetricReader
    meters: MeterProvider
    exporter: CountingExporter
    tracers: TracerProvider

    @classmethod
    def create(cls) -> Sdk:
        reader = InMemoryMetricReader()
        exporter = CountingExporter()
        tracers = TracerProvider()
        tracers.add_span_processor(BatchSpanProcessor(exporter))
        return cls(reader, MeterProvider(metric_readers=[reader]), exporter, tracers)

    def telemetry(self, **kwargs: bool) -> df.Telemetry:
        return df.Telemetry(meter_provider=self.meters, tracer_provider=self.tracers, **kwargs)

    def durations(self) -> int:
        """Operations recorded in ``dataferry.operation.duration`` so far."""
        total = 0
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data is not None else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "dataferry.operation.duration":
                        points = metric.data.data_points
                        total += sum(p.count for p in points if isinstance(p, HistogramDataPoint))
        return total


# -- the benchmarks --------------------------------------------------------------------------


async def bench_api_only(rounds: int, hit_rounds: int, scale: float) -> list[Row]:
    # The claim is about an application that did not configure an SDK: make sure no
    # one (an environment variable, an auto-instrumentation) installed one.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
    none_a = df.AsyncDataFerry(telemetry=None)
    none_a2 = df.AsyncDataFerry(telemetry=None)
    api_a = df.AsyncDataFerry()  # the default: Telemetry(), global (no-op) providers
    api_a_traced = df.AsyncDataFerry(telemetry=df.Telemetry(trace_memory_hits=True))
    none_s = df.DataFerry(telemetry=None)
    none_s2 = df.DataFerry(telemetry=None)
    api_s = df.DataFerry(telemetry=df.Telemetry())
    for cache in (none_a, none_a2, api_a, api_a_traced):
        for key in KEYS:
            await cache.set(key, VALUE)
    for scache in (none_s, none_s2, api_s):
        for key in KEYS:
            scache.set(key, VALUE)

    # The L1-hit code is the same with and without telemetry, so the ratio is 1.0 plus noise
    # (and whatever the two caches' memory layouts do): the control rows, a second
    # telemetry=None cache against the first, show how large that noise is in this run.
    base_a = Side("`None`", hit_async(none_a))
    base_s = Side("`None`", hit_sync(none_s))
    async_rows = [
        Row(
            "async get_or_set, L1 hit",
            Side("`Telemetry()`, API only", hit_async(api_a)),
            base_a,
            1.03,
        ),
        Row("async get_or_set, L1 hit", Side("`None` (control)", hit_async(none_a2)), base_a),
    ]
    sync_rows = [
        Row("sync get, L1 hit", Side("`Telemetry()`, API only", hit_sync(api_s)), base_s, 1.03),
        Row("sync get, L1 hit", Side("`None` (control)", hit_sync(none_s2)), base_s),
    ]
    traced = Row(
        "async get_or_set, L1 hit",
        Side("`trace_memory_hits=True`, API only", hit_async(api_a_traced)),
        Side("`None`", hit_async(none_a)),
    )
    ops = int(200_000 * scale)
    await interleave(async_rows, hit_rounds, ops)
    await interleave(sync_rows, hit_rounds, ops)
    await interleave([traced], rounds, ops // 4)
    for cache in (none_a, none_a2, api_a, api_a_traced):
        await cache.aclose()
    for scache in (none_s, none_s2, api_s):
        scache.close()
    return [*async_rows, *sync_rows, traced]


async def bench_sdk_l1(sdk: Sdk, rounds: int, scale: float) -> list[Row]:
    none_a = df.AsyncDataFerry(telemetry=None)
    sdk_a = df.AsyncDataFerry(telemetry=sdk.telemetry())
    sdk_a_traced = df.AsyncDataFerry(telemetry=sdk.telemetry(trace_memory_hits=True))
    none_s = df.DataFerry(telemetry=None)
    sdk_s = df.DataFerry(telemetry=sdk.telemetry())
    sdk_s_traced = df.DataFerry(telemetry=sdk.telemetry(trace_memory_hits=True))
    for cache in (none_a, sdk_a, sdk_a_traced):
        for key in KEYS:
            await cache.set(key, VALUE)
    for scache in (none_s, sdk_s, sdk_s_traced):
        for key in KEYS:
            scache.set(key, VALUE)
    base_a = Side("`None`", hit_async(none_a))
    base_s = Side("`None`", hit_sync(none_s))
    rows = [
        Row("async get_or_set, L1 hit", Side("`Telemetry(...)`, SDK", hit_async(sdk_a)), base_a),
        Row(
            "async get_or_set, L1 hit",
            Side("`trace_memory_hits=True`, SDK", hit_async(sdk_a_traced)),
            base_a,
        ),
        Row("sync get, L1 hit", Side("`Telemetry(...)`, SDK", hit_sync(sdk_s)), base_s),
        Row(
            "sync get, L1 hit",
            Side("`trace_memory_hits=True`, SDK", hit_sync(sdk_s_traced)),
            base_s,
        ),
    ]
    # Fewer ops than the API-only rows: a traced hit costs tens of times more.
    ops = int(50_000 * scale)
    await interleave(rows[:2], rounds, ops)
    await interleave(rows[2:], rounds, ops)
    for cache in (none_a, sdk_a, sdk_a_traced):
        await cache.aclose()
    for scache in (none_s, sdk_s, sdk_s_traced):
        scache.close()
    return rows


async def bench_sdk_redis(sdk: Sdk, url: str, rounds: int, scale: float) -> list[Row]:
    def acache(ns: str, telemetry: df.Telemetry | None, memory: bool) -> df.AsyncDataFerry:
        return df.AsyncDataFerry(
            memory=df.MemoryCache() if memory else None,
            distributed=df.RedisCache.from_url(url),
            namespace=ns,
            telemetry=telemetry,
        )

    def scache(ns: str, telemetry: df.Telemetry | None, memory: bool) -> df.DataFerry:
        return df.DataFerry(
            memory=df.MemoryCache() if memory else None,
            distributed=df.RedisCache.from_url(url),
            namespace=ns,
            telemetry=telemetry,
        )

    # L2 hits: no L1, KEYS written once per namespace.
    l2_none_a = acache("l2none", None, False)
    l2_api_a = acache("l2api", df.Telemetry(), False)
    l2_sdk_a = acache("l2sdk", sdk.telemetry(), False)
    l2_metrics_a = acache("l2metrics", sdk.telemetry(traces=False), False)
    l2_traces_a = acache("l2traces", sdk.telemetry(metrics=False), False)
    l2_none_s = scache("l2none", None, False)
    l2_sdk_s = scache("l2sdk", sdk.telemetry(), False)
    for cache in (l2_none_a, l2_api_a, l2_sdk_a, l2_metrics_a, l2_traces_a):
        for key in KEYS:
            await cache.set(key, VALUE, ttl=3600)
    # Misses: L1 + L2, a new key per call.
    miss_none_a = acache("missnone", None, True)
    miss_sdk_a = acache("misssdk", sdk.telemetry(), True)
    miss_none_s = scache("missnone", None, True)
    miss_sdk_s = scache("misssdk", sdk.telemetry(), True)

    base_l2a = Side("`None`", l2_hit_async(l2_none_a))
    rows = [
        Row(
            "async get_or_set, L2 hit (Redis, no L1)",
            Side("`Telemetry()`, API only", l2_hit_async(l2_api_a)),
            base_l2a,
        ),
        Row(
            "async get_or_set, L2 hit (Redis, no L1)",
            Side("`Telemetry(...)`, SDK", l2_hit_async(l2_sdk_a)),
            base_l2a,
        ),
        Row(
            "async get_or_set, L2 hit (Redis, no L1)",
            Side("`traces=False`, SDK", l2_hit_async(l2_metrics_a)),
            base_l2a,
        ),
        Row(
            "async get_or_set, L2 hit (Redis, no L1)",
            Side("`metrics=False`, SDK", l2_hit_async(l2_traces_a)),
            base_l2a,
        ),
        Row(
            "sync get_or_set, L2 hit (Redis, no L1)",
            Side("`Telemetry(...)`, SDK", l2_hit_sync(l2_sdk_s)),
            Side("`None`", l2_hit_sync(l2_none_s)),
        ),
        Row(
            "async get_or_set, miss (L1 + Redis, factory)",
            Side("`Telemetry(...)`, SDK", miss_async(miss_sdk_a)),
            Side("`None`", miss_async(miss_none_a)),
        ),
        Row(
            "sync get_or_set, miss (L1 + Redis, factory)",
            Side("`Telemetry(...)`, SDK", miss_sync(miss_sdk_s)),
            Side("`None`", miss_sync(miss_none_s)),
        ),
    ]
    await interleave(rows[:4], rounds, int(2000 * scale))
    await interleave(rows[4:5], rounds, int(2000 * scale))
    await interleave(rows[5:6], rounds, int(1000 * scale))
    await interleave(rows[6:], rounds, int(1000 * scale))
    for cache in (
        l2_none_a,
        l2_api_a,
        l2_sdk_a,
        l2_metrics_a,
        l2_traces_a,
        miss_none_a,
        miss_sdk_a,
    ):
        await cache.aclose()
    for sc in (l2_none_s, l2_sdk_s, miss_none_s, miss_sdk_s):
        sc.close()
    return rows


async def main_async(
    rounds: int, hit_rounds: int, scale: float, only: str | None
) -> tuple[list[Row], str]:
    rows: list[Row] = []
    if only in (None, "api"):
        rows += await bench_api_only(rounds, hit_rounds, scale)
    sdk = Sdk.create()
    if only in (None, "sdk"):
        rows += await bench_sdk_l1(sdk, rounds, scale)
        with redis_server() as url:
            rows += await bench_sdk_redis(sdk, url, rounds, scale)
    sdk.tracers.force_flush()
    # The SDK side must really have recorded: a benchmark of a pipeline that silently did
    # nothing would flatter it.
    spans, durations = sdk.exporter.spans, sdk.durations()
    if only != "api" and (spans == 0 or durations == 0):
        raise SystemExit(f"the SDK recorded nothing: {spans} spans, {durations} durations")
    sdk.tracers.shutdown()
    sdk.meters.shutdown()
    return rows, f"SDK side: {spans:,} spans exported, {durations:,} operation durations recorded"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--hit-rounds", type=int, default=45, help="rounds of the API-only L1-hit rows (cheap)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the calls per sample (0.1: quick)"
    )
    parser.add_argument("--only", choices=["api", "sdk"])
    args = parse_args(parser, argv)
    t0 = time.perf_counter()
    rows, checks = asyncio.run(main_async(args.rounds, args.hit_rounds, args.scale, args.only))
    print(
        f"bench_telemetry: Python {sys.version.split()[0]}, opentelemetry-api "
        f"{version('opentelemetry-api')}, opentelemetry-sdk {version('opentelemetry-sdk')}, "
        f"redis-py {redis.__version__}, {args.clock} clock, median of {args.rounds} rounds "
        f"({args.hit_rounds} for the API-only L1 hits), "
        f"{time.perf_counter() - t0:.0f} s\n"
    )
    print(
        "| path | telemetry | with | `telemetry=None` | extra per call | ratio (range) "
        "| target | met |"
    )
    print("|---|---|--:|--:|--:|--:|--:|:-:|")
    for row in rows:
        print(row.line())
    if args.only != "api":
        print(f"\n{checks}")
    missed = [r for r in rows if not r.met()]
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
