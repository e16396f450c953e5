"""DataFerry metrics for Prometheus to scrape, through OpenTelemetry's Prometheus exporter.

    pip install 'dataferry[prometheus]'
    python examples/prometheus.py [--port 9464] [--once]

``PrometheusMetricReader`` turns the OpenTelemetry metrics of the meter provider it is given
into a ``prometheus_client`` collector, and ``start_http_server`` serves them on
``/metrics``. OpenTelemetry names become Prometheus names: dots turn into underscores,
counters end in ``_total`` and the unit is appended (``dataferry.cache.hits`` is
``dataferry_cache_hits_total``, ``dataferry.operation.duration`` is
``dataferry_operation_duration_seconds``).

The cache is the embedded one (L1 plus a SQLite L2 in a temporary directory), so no server is
needed. Without ``--once`` the script keeps doing cache work every second until Ctrl-C, and
Prometheus can scrape ``http://HOST:PORT/metrics``; with ``--once`` it does one batch of work,
fetches its own ``/metrics``, prints the ``dataferry_`` lines (but the histograms' ``_bucket``
lines, one per bucket bound) and exits.

The port comes from ``--port``, else ``$DATAFERRY_METRICS_PORT``, else 0 (a free port, printed).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import sys
import tempfile
import urllib.request
from pathlib import Path

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import start_http_server

import dataferry as df


async def load_product(pid: int) -> dict[str, object]:
    """Stand-in for a database query."""
    await asyncio.sleep(0.001)
    return {"id": pid, "name": f"product {pid}", "price": 10 + pid % 90}


async def work(cache: df.AsyncDataFerry, rounds: int) -> None:
    """A skewed read workload: a few hot products, a long tail, an update now and then."""
    rng = random.Random(7)
    for _ in range(rounds):
        pid = min(int(rng.paretovariate(1.2)), 500)
        await cache.get_or_set(f"product:{pid}", functools.partial(load_product, pid), ttl=60)
        if rng.random() < 0.02:
            await cache.remove(f"product:{pid}")


def scrape(port: int) -> str:
    """Fetch this process's own ``/metrics`` page, as Prometheus would."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
    return text


async def main(port: int, once: bool) -> int:
    """Serve the metrics on ``port`` and run the workload (once, or until Ctrl-C)."""
    # Metrics only: this provider is handed to DataFerry, not installed as the global one, so
    # nothing else in the process reports through it. (With set_meter_provider(provider),
    # the default Telemetry() would find it by itself.)
    reader = PrometheusMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "dataferry-prometheus-example"}),
    )
    server, _thread = start_http_server(port, addr="127.0.0.1")
    port = server.server_port
    print(f"serving metrics on http://127.0.0.1:{port}/metrics", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        cache = df.AsyncDataFerry(
            # A small L1, so that the long tail of the workload is served by L2.
            memory=df.MemoryCache(max_entries=32),
            distributed=df.SQLiteCache(Path(tmp) / "cache.db"),
            namespace="shop",
            telemetry=df.Telemetry(meter_provider=provider, traces=False),
        )
        try:
            async with cache:
                if once:
                    await work(cache, 2_000)
                    # The counters are read from the cache at each scrape: no flush needed.
                    page = scrape(port)
                    lines = [line for line in page.splitlines() if "dataferry_" in line]
                    shown = [line for line in lines if "_bucket{" not in line]
                    print("\n".join(shown))
                    print(f"({len(lines) - len(shown)} histogram _bucket lines not shown)")
                    print(f"\n{cache.stats()}")
                    return 0 if lines else 1
                while True:  # until Ctrl-C
                    await work(cache, 200)
                    await asyncio.sleep(1)
        finally:
            server.shutdown()
            server.server_close()
            provider.shutdown()


def cli(argv: list[str] | None = None) -> int:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("DATAFERRY_METRICS_PORT", "0")),
        help="port of /metrics (default: $DATAFERRY_METRICS_PORT, else 0: a free port)",
    )
    parser.add_argument(
        "--once", action="store_true", help="work once, print our own /metrics, exit"
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(main(args.port, args.once))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(cli())
