"""DataFerry's OpenTelemetry spans and metrics, printed to the console by the SDK's exporters.

    pip install dataferry opentelemetry-sdk
    python examples/otel_console.py [--json] [--record-keys] [--trace-memory-hits]

The cache is the embedded one (L1 plus a SQLite L2 in a temporary directory): no server needed.
The script builds a tracer provider (``ConsoleSpanExporter``) and a meter provider
(``PeriodicExportingMetricReader`` around ``ConsoleMetricExporter``), hands both to the cache
through ``df.Telemetry(...)`` (the global providers stay untouched), does a little cache work
inside a ``handle_request`` span of its own, and flushes the metrics before it exits.

What to look for:

- a miss is a ``dataferry.get_or_set`` span (a child of ``handle_request``) with children
  ``dataferry.distributed.get`` (the L2 lookup), ``dataferry.factory`` and
  ``dataferry.distributed.set``;
- the L1 hit that follows records no span at all (``--trace-memory-hits``: a
  ``dataferry.memory.get`` span for it);
- a factory that raises while a stale value is at hand is answered by fail-safe: the
  ``dataferry.factory`` span has status ERROR and the exception as an event, the
  ``dataferry.failsafe.activations`` counter reads 1;
- the counters (``dataferry.cache.hits`` per ``level``, ``dataferry.factory.calls``...) are
  read from the cache when the metrics are collected; ``dataferry.operation.duration`` is a
  histogram of the operations that went past L1, per ``operation`` and ``outcome``.

Spans are printed one per line (``--json``: the SDK's own JSON, one document per span), as
each one ends: children before their parent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    HistogramDataPoint,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

import dataferry as df


def span_line(span: ReadableSpan) -> str:
    """One span on one line: name, duration, parent, status and attributes."""
    ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    ctx = span.get_span_context()
    ident = f"{ctx.span_id:016x}" if ctx is not None else "-"
    parent = f"{span.parent.span_id:016x}" if span.parent is not None else "-"
    status = span.status.status_code.name
    attrs = json.dumps(dict(span.attributes or {}), sort_keys=True)
    events = "".join(f" event={e.name}" for e in span.events)
    return (
        f"span {span.name:<28} {ms:8.3f} ms  id={ident} parent={parent} {status} {attrs}{events}\n"
    )


def metrics_lines(data: MetricsData) -> str:
    """Every metric with its data points, one point per line."""
    lines = []
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = type(metric.data).__name__
                lines.append(f"metric {metric.name} ({kind}, unit {metric.unit})")
                for point in metric.data.data_points:
                    attrs = json.dumps(dict(point.attributes or {}), sort_keys=True)
                    if isinstance(point, HistogramDataPoint):
                        value = f"count={point.count} sum={point.sum:.6f}"
                    elif isinstance(point, NumberDataPoint):
                        value = f"value={point.value}"
                    else:  # pragma: no cover - DataFerry reports no other kind
                        value = repr(point)
                    lines.append(f"    {attrs} {value}")
    return "\n".join(lines) + "\n"


async def load_user(uid: int) -> dict[str, object]:
    """Stand-in for a database query."""
    await asyncio.sleep(0.002)
    return {"id": uid, "name": f"user {uid}"}


async def broken_source() -> dict[str, object]:
    """A data source that is down."""
    raise ConnectionError("database unreachable")


async def main(args: argparse.Namespace) -> None:
    """Set up the SDK, run a little cache work, flush the metrics."""
    resource = Resource.create({"service.name": "dataferry-console-example"})
    span_exporter = ConsoleSpanExporter() if args.json else ConsoleSpanExporter(formatter=span_line)
    # SimpleSpanProcessor prints each span as it ends; in production use BatchSpanProcessor
    # (spans are handed to a background thread and exported in batches).
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    metric_exporter = (
        ConsoleMetricExporter() if args.json else ConsoleMetricExporter(formatter=metrics_lines)
    )
    # Exports every minute, and once more at force_flush() below: this short script sees one.
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=60_000)
    meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
    tracer = tracer_provider.get_tracer("example")

    telemetry = df.Telemetry(
        meter_provider=meter_provider,
        tracer_provider=tracer_provider,
        record_keys=args.record_keys,
        trace_memory_hits=args.trace_memory_hits,
    )
    with tempfile.TemporaryDirectory() as tmp:
        cache = df.AsyncDataFerry(
            distributed=df.SQLiteCache(Path(tmp) / "cache.db"),
            namespace="console",
            telemetry=telemetry,
        )
        async with cache:
            with tracer.start_as_current_span("handle_request"):
                print("-- get_or_set user:1, a miss: L2 lookup, factory, L2 write")
                await cache.get_or_set("user:1", lambda: load_user(1), ttl=60)
                print("-- get_or_set user:1 again, an L1 hit (no span by default)")
                await cache.get_or_set("user:1", lambda: load_user(1), ttl=60)
                print("-- get user:1 skipping L1: an L2 hit")
                await cache.get("user:1", options=df.EntryOptions(skip_memory=True))
                print("-- get user:2: a miss in L1 and L2, no factory")
                await cache.get("user:2")

            print("-- report:7 is stale, its source fails: fail-safe serves the stale value")
            opts = df.EntryOptions(ttl=60, fail_safe=True)
            await cache.set("report:7", {"total": 42}, options=opts)
            await cache.expire("report:7")
            report = await cache.get_or_set("report:7", broken_source, options=opts)
            print(f"   served {report}")

            print("-- metrics (collected now, while the cache is open)")
            meter_provider.force_flush()
        print(f"-- stats() of the same counters:\n{cache.stats()}")
    # Shutting down exports once more: a closed cache's counters are kept (a cumulative
    # counter never goes back), its gauges are gone.
    print("-- metrics at shutdown, after the cache closed")
    meter_provider.shutdown()
    tracer_provider.shutdown()


def cli(argv: list[str] | None = None) -> int:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="the SDK's JSON output")
    parser.add_argument(
        "--record-keys", action="store_true", help="put the cache key on spans (dataferry.key)"
    )
    parser.add_argument("--trace-memory-hits", action="store_true", help="a span for L1 hits too")
    args = parser.parse_args(argv)
    # DataFerry logs to the "dataferry" logger (warnings: L2 outages, undecodable entries...).
    logging.basicConfig(level=logging.WARNING, format="log %(levelname)s %(name)s: %(message)s")
    asyncio.run(main(args))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
