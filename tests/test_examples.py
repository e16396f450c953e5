"""The observability examples run and print what they promise; docs/observability.md is complete.

The examples run as users run them (``python examples/x.py`` in a subprocess, no server: they
use the embedded SQLite L2). The doc checks compare the doc with what the library really
creates (instruments, span names, event classes, ``Telemetry`` options), so a new instrument
or event can't be added without documenting it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from opentelemetry.metrics import NoOpMeter, NoOpMeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dataferry as df
import dataferry.events
from dataferry._telemetry import COUNTER_NAMES

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "observability.md"
TIMEOUT = 120  # seconds per example: they take about one on an idle machine


def run_example(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


# == examples/otel_console.py ======================================================================

SPAN_LINE = re.compile(
    r"^span (?P<name>\S+)\s+(?P<ms>[\d.]+) ms  id=(?P<id>[0-9a-f]{16}) "
    r"parent=(?P<parent>[0-9a-f]{16}|-) (?P<status>\w+) (?P<attrs>\{.*?\})(?P<events>.*)$"
)


def parse_spans(out: str) -> list[dict[str, Any]]:
    spans = []
    for line in out.splitlines():
        m = SPAN_LINE.match(line)
        if m:
            span = m.groupdict()
            span["attrs"] = json.loads(span["attrs"])
            spans.append(span)
    return spans


def metric_values(out: str) -> dict[str, list[str]]:
    """``metric NAME (...)`` followed by its indented points, as {name: [point lines]}."""
    metrics: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("metric "):
            current = metrics.setdefault(line.split()[1], [])
        elif line.startswith("    ") and current is not None:
            current.append(line.strip())
        else:
            current = None
    return metrics


def test_console_example_prints_the_span_tree_and_the_metrics() -> None:
    out = run_example("otel_console.py")
    spans = parse_spans(out)
    by_id = {s["id"]: s for s in spans}
    (request,) = [s for s in spans if s["name"] == "handle_request"]
    assert request["parent"] == "-"

    # The miss: get_or_set under the app's span, with the L2 lookup, factory and L2 write.
    miss = next(s for s in spans if s["name"] == "dataferry.get_or_set")
    assert miss["parent"] == request["id"]
    children = {s["name"] for s in spans if s["parent"] == miss["id"]}
    assert {"dataferry.distributed.get", "dataferry.factory", "dataferry.distributed.set"} <= (
        children
    )
    # The L2 hit (get skipping L1) and the full miss of get, both under the app's span.
    gets = [s for s in spans if s["name"] == "dataferry.get"]
    assert [g["attrs"]["dataferry.outcome"] for g in gets] == ["hit", "miss"]
    assert all(g["parent"] == request["id"] for g in gets)
    # L1 hits record nothing by default, and keys are not recorded.
    assert not [s for s in spans if s["name"] == "dataferry.memory.get"]
    assert not [s for s in spans if "dataferry.key" in s["attrs"]]
    # Fail-safe: the factory's span is an error with the exception, its operation is fine.
    (failed,) = [s for s in spans if s["status"] == "ERROR"]
    assert failed["name"] == "dataferry.factory"
    assert "event=exception" in failed["events"]
    assert by_id[failed["parent"]]["name"] == "dataferry.get_or_set"
    assert by_id[failed["parent"]]["status"] != "ERROR"
    assert "served {'total': 42}" in out

    # The export at force_flush(), while the cache is open (another follows at shutdown).
    while_open = out.split("-- metrics (collected now", 1)[1].split("-- stats()", 1)[0]
    metrics = metric_values(while_open)
    for name in ("dataferry.cache.hits", "dataferry.operation.duration", *COUNTER_NAMES.values()):
        assert name in metrics, name
    failsafe = metrics["dataferry.failsafe.activations"]
    assert failsafe == ['{"dataferry.namespace": "console"} value=1']
    hits = "\n".join(metrics["dataferry.cache.hits"])
    assert '"level": "memory"} value=1' in hits
    assert '"level": "distributed"} value=1' in hits
    # At shutdown, after the cache closed: its counters are kept, its gauges are gone.
    at_shutdown = metric_values(out.split("-- metrics at shutdown", 1)[1])
    assert at_shutdown["dataferry.failsafe.activations"] == failsafe
    assert "dataferry.memory.entries" not in at_shutdown


def test_console_example_json_with_keys_and_memory_hit_spans() -> None:
    out = run_example("otel_console.py", "--json", "--record-keys", "--trace-memory-hits")
    # The SDK's own JSON exporters: quoted names, one document per span.
    assert '"name": "dataferry.memory.get"' in out
    assert '"dataferry.outcome": "hit"' in out
    assert '"dataferry.key": "user:1"' in out  # the caller's key, on the operation span
    assert '"name": "dataferry.get_or_set"' in out
    assert '"name": "dataferry.cache.hits"' in out


# == examples/prometheus.py ========================================================================


def prometheus_name(instrument: str, suffix: str = "") -> str:
    return instrument.replace(".", "_") + suffix


def test_prometheus_example_serves_every_instrument() -> None:
    out = run_example("prometheus.py", "--once")
    assert re.search(r"serving metrics on http://127\.0\.0\.1:\d+/metrics", out)
    types = dict(re.findall(r"^# TYPE (\S+) (\w+)$", out, re.MULTILINE))
    for name in COUNTER_NAMES.values():
        assert types.get(prometheus_name(name, "_total")) == "counter", name
    assert types["dataferry_cache_hits_total"] == "counter"
    assert types["dataferry_cache_misses_total"] == "counter"
    for gauge in ("memory_entries", "memory_weight", "recovery_pending", "circuit_state"):
        assert types[f"dataferry_{gauge}"] == "gauge"
    assert types["dataferry_operation_duration_seconds"] == "histogram"

    def value(pattern: str) -> float:
        m = re.search(rf"^{pattern}\S* (\S+)$", out, re.MULTILINE)
        assert m, pattern
        return float(m.group(1))

    # 2,000 lookups of a skewed workload: mostly L1 hits, some misses, a factory call each.
    l1_hits = value(r'dataferry_cache_hits_total\{[^}]*level="memory"')
    l1_misses = value(r'dataferry_cache_misses_total\{[^}]*level="memory"')
    assert l1_hits + l1_misses == 2000
    assert l1_hits > 1000
    assert value("dataferry_factory_calls_total") == value(
        r'dataferry_cache_misses_total\{[^}]*level="distributed"'
    )
    assert value(r'dataferry_operation_duration_seconds_count\{[^}]*operation="get_or_set"') > 0
    assert value("dataferry_memory_entries") == 32  # its L1 is full
    assert re.search(r"^\(\d+ histogram _bucket lines not shown\)$", out, re.MULTILINE)
    assert 'dataferry_namespace="shop"' in out


# == docs/observability.md =========================================================================


class RecordingMeter(NoOpMeter):
    """A no-op meter that notes every instrument created on it: (kind, name, unit)."""

    def __init__(self, name: str, seen: list[tuple[str, str, str]]) -> None:
        super().__init__(name)
        self.seen = seen

    def _note(self, kind: str, name: str, unit: str) -> None:
        self.seen.append((kind, name, unit))

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Any:
        self._note("counter", name, unit)
        return super().create_counter(name, unit, description)

    def create_up_down_counter(self, name: str, unit: str = "", description: str = "") -> Any:
        self._note("up-down counter", name, unit)
        return super().create_up_down_counter(name, unit, description)

    def create_gauge(self, name: str, unit: str = "", description: str = "") -> Any:
        self._note("gauge", name, unit)
        return super().create_gauge(name, unit, description)

    def create_histogram(self, name: str, unit: str = "", description: str = "", **kw: Any) -> Any:
        self._note("histogram", name, unit)
        return super().create_histogram(name, unit, description, **kw)

    def create_observable_counter(self, name: str, callbacks: Any = None, **kw: Any) -> Any:
        self._note("counter (observable)", name, kw.get("unit", ""))
        return super().create_observable_counter(name, callbacks, **kw)

    def create_observable_up_down_counter(self, name: str, callbacks: Any = None, **kw: Any) -> Any:
        self._note("up-down counter (observable)", name, kw.get("unit", ""))
        return super().create_observable_up_down_counter(name, callbacks, **kw)

    def create_observable_gauge(self, name: str, callbacks: Any = None, **kw: Any) -> Any:
        self._note("gauge (observable)", name, kw.get("unit", ""))
        return super().create_observable_gauge(name, callbacks, **kw)


class RecordingMeterProvider(NoOpMeterProvider):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return RecordingMeter(name, self.seen)


def doc_section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert m, f"docs/observability.md has no section '## {title}'"
    return m.group(1)


def table_rows(section: str) -> dict[str, list[str]]:
    """Rows of the markdown tables of ``section`` whose first cell is `code`, by that code."""
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and cells:
            rows[cells[0].strip("`")] = cells
    return rows


def created_instruments() -> list[tuple[str, str, str]]:
    provider = RecordingMeterProvider()
    cache = df.DataFerry(telemetry=df.Telemetry(meter_provider=provider))
    cache.close()
    assert provider.seen, "the cache created no instrument on its meter provider"
    return provider.seen


def test_doc_lists_every_instrument_with_its_type_and_unit() -> None:
    instruments = created_instruments()
    names = {name for _, name, _ in instruments}
    assert set(COUNTER_NAMES.values()) <= names  # the recording meter saw them all
    rows = table_rows(doc_section("Metrics"))
    for kind, name, unit in instruments:
        assert name in rows, f"docs/observability.md: no row for the instrument {name}"
        row = rows[name]
        assert row[1] == kind, f"{name}: the doc says {row[1]!r}, the code creates a {kind}"
        assert row[2] == f"`{unit}`", f"{name}: the doc says unit {row[2]}, the code {unit!r}"
    stale = {name for name in rows if name.startswith("dataferry.")} - names
    assert not stale, f"docs/observability.md lists instruments that don't exist: {stale}"
    # Each Stats counter is named in its instrument's row.
    for counter, name in COUNTER_NAMES.items():
        assert counter in rows[name][4], f"the row of {name} doesn't name Stats.{counter}"


async def exercise(cache: df.AsyncDataFerry) -> None:
    """Every operation of the facade that records a span, on a cache with an L2."""
    await cache.get_or_set("a", lambda: 1)  # miss: get_or_set, L2 get, factory, L2 set
    await cache.get_or_set("a", lambda: 1)  # L1 hit (memory.get with trace_memory_hits)
    await cache.get("nope")
    await cache.try_get("a", options=df.EntryOptions(skip_memory=True))
    await cache.exists("a")
    await cache.get_many(["a", "b"])
    await cache.get_or_set_many(["c", "d"], lambda keys: dict.fromkeys(keys, 0))
    await cache.set("e", 1, tags=["t"])
    await cache.set_many({"f": 1, "g": 2})
    await cache.expire("e")
    await cache.remove("f")
    await cache.remove_many(["g", "c"])
    await cache.remove_by_tag("t")
    await cache.clear()
    await cache.get_or_set("h", lambda: 1, options=df.EntryOptions(distributed_lock=True))


def test_doc_lists_every_span_the_cache_records(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def main() -> None:
        telemetry = df.Telemetry(
            tracer_provider=provider, metrics=False, trace_memory_hits=True, record_keys=True
        )
        cache = df.AsyncDataFerry(
            distributed=df.SQLiteCache(tmp_path / "cache.db"), telemetry=telemetry
        )
        async with cache:
            await exercise(cache)

    asyncio.run(main())
    seen = {span.name for span in exporter.get_finished_spans()}
    # The workload reached every kind: operations, L2 calls, the factory, L1 lookups.
    assert {"dataferry.get_or_set", "dataferry.clear", "dataferry.factory"} <= seen
    assert {"dataferry.distributed.get", "dataferry.memory.get"} <= seen
    spans = doc_section("Spans")
    for name in sorted(seen):
        operation = name.removeprefix("dataferry.")
        if name.startswith("dataferry.distributed."):
            # L2 calls are listed by operation name in the dataferry.distributed.* rows.
            assert f"`{operation.removeprefix('distributed.')}`" in spans, name
        else:
            assert f"| `{name}` |" in spans, f"docs/observability.md: no row for the span {name}"


def test_doc_lists_every_event_and_telemetry_option() -> None:
    events = doc_section("Events")
    rows = table_rows(events)
    classes = [
        cls
        for _, cls in inspect.getmembers(dataferry.events, inspect.isclass)
        if issubclass(cls, dataferry.events.CacheEvent) and cls is not dataferry.events.CacheEvent
    ]
    assert len(classes) >= 10
    for cls in classes:
        assert f"`{cls.__name__}`" in events, f"event class {cls.__name__} is not documented"
        for bus_name in cls.names:
            assert any(bus_name in key for key in rows), f"bus event {bus_name} is not listed"
    options = doc_section("`Telemetry` options")
    for name in inspect.signature(df.Telemetry).parameters:
        assert f"| `{name}` |" in options, f"Telemetry({name}=...) is not documented"


def test_doc_cost_tables_are_filled_in() -> None:
    # The cost tables hold figures measured by benchmarks/bench_telemetry.py.
    costs = doc_section("What it costs") + doc_section("L1-hit spans")
    assert "BENCH_" not in costs
    assert len(re.findall(r"\d\.\d+x", costs)) >= 10


# == examples/fastapi_app.py =======================================================================


async def test_fastapi_example_caches_validates_and_invalidates() -> None:
    import importlib

    import httpx

    # The module uvicorn loads (``uvicorn examples.fastapi_app:app``), imported the same way.
    example = importlib.import_module("examples.fastapi_app")
    assert example.app.title == "Catalogue"
    db = example.Database(latency=0)
    cache = df.AsyncDataFerry(namespace="catalogue")
    app = example.create_app(cache, db)
    transport = httpx.ASGITransport(app=app)  # runs no lifespan: entered here
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        # A product: computed once, then from the cache, with a validator.
        first = await client.get("/products/1")
        again = await client.get("/products/1")
        assert first.json() == {
            "name": "Teapot",
            "name_fr": "Théière",
            "category": "kitchen",
            "price": 24.0,
        }
        assert again.content == first.content
        assert db.queries == 1
        assert first.headers["cache-control"] == "max-age=60"
        revalidated = await client.get(
            "/products/1", headers={"If-None-Match": first.headers["etag"]}
        )
        assert (revalidated.status_code, revalidated.content) == (304, b"")
        # Not found: answered every time, never cached.
        assert [(await client.get("/products/99")).status_code for _ in range(2)] == [404, 404]
        assert db.queries == 3

        # The list: one entry per language, whatever the order of the query string.
        fr = {"Accept-Language": "fr"}
        cheap_fr = await client.get("/products?category=kitchen&max_price=30", headers=fr)
        assert cheap_fr.json() == [{"id": 1, "name": "Théière", "price": 24.0}]
        assert cheap_fr.headers["vary"] == "Accept-Language"
        await client.get("/products?max_price=30&category=kitchen", headers=fr)
        assert db.queries == 4
        cheap_en = await client.get("/products?category=kitchen&max_price=30")
        assert cheap_en.json() == [{"id": 1, "name": "Teapot", "price": 24.0}]
        assert db.queries == 5

        # A value cached by a handler through the injected cache.
        stats = [(await client.get("/categories/kitchen/stats")).json() for _ in range(2)]
        assert (
            stats[0] == stats[1] == {"category": "kitchen", "products": 2, "average_price": 31.75}
        )
        assert db.queries == 6

        # An update invalidates by tag: the product, its lists and the statistics.
        teapot = {"name": "Teapot", "name_fr": "Théière", "category": "kitchen", "price": 20.0}
        assert (await client.put("/products/1", json=teapot)).status_code == 200
        updated = await client.get("/products/1", headers={"If-None-Match": first.headers["etag"]})
        assert updated.status_code == 200
        assert updated.json()["price"] == 20.0
        cheap_fr = await client.get("/products?category=kitchen&max_price=30", headers=fr)
        assert cheap_fr.json() == [{"id": 1, "name": "Théière", "price": 20.0}]
        stats_now = (await client.get("/categories/kitchen/stats")).json()
        assert stats_now["average_price"] == 29.75
        # The other product's page did not depend on the change: still cached.
        await client.get("/products/2")
        queries = db.queries
        await client.get("/products/2")
        assert db.queries == queries
    assert cache.closed
