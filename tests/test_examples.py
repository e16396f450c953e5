"""The examples run and do what they promise; docs/observability.md is complete.

The examples run as users run them (``python examples/x.py`` in a subprocess): without a
server (the embedded SQLite L2), and, for the worker, the multi-tenant setup and the Django
project, against a real redis-server of the test harness (``DATAFERRY_URL``), whose contents
are then checked from the outside (redis-py, ``dataferry inspect``). The FastAPI app runs
through httpx's ASGI transport. The doc checks compare the doc with what the library really
creates (instruments, span names, event classes, ``Telemetry`` options), so a new instrument
or event can't be added without documenting it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
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


def example_env(**variables: str) -> dict[str, str]:
    """This process's environment without DataFerry's settings, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATAFERRY_URL", "DATAFERRY_KEYS")}
    return {**env, **variables}


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
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


# == examples/worker.py ============================================================================


def expected_totals(worker: Any, orders: list[Any]) -> float:
    """The revenue of ``orders`` priced from the services' own data (no cache)."""
    total = 0.0
    for order in orders:
        net = sum(worker.product(pid)["price"] * qty for pid, qty in order.lines)
        discount = worker.customer_record(order.customer)["discount"]
        total += round(net * (1 - discount) * worker.RATES[order.currency], 2)
    return round(total, 2)


def test_worker_calls_each_service_once_per_key_across_threads(redis_url: str) -> None:
    import importlib

    import redis

    worker = importlib.import_module("examples.worker")
    jobs, seed = 200, 7
    out = run_example(
        "worker.py",
        "--json",
        f"--jobs={jobs}",
        "--threads=8",
        f"--seed={seed}",
        env=example_env(DATAFERRY_URL=redis_url),
    )
    summary = json.loads(out)
    assert summary["l2"] == redis_url
    first, outage = summary["batches"]
    orders = worker.make_orders(jobs, seed)
    later = worker.make_orders(jobs, seed + 1, first_id=jobs + 1)

    def keys(batch: list[Any]) -> dict[str, set[str]]:
        return {
            "rates": {f"rate:{o.currency}" for o in batch},
            "catalogue": {f"product:{pid}" for o in batch for pid, _ in o.lines},
            "crm": {f"customer:{o.customer}" for o in batch},
        }

    # Batch 1: 8 threads, each service called exactly once per key the orders need.
    needed = keys(orders)
    for service, calls in first["calls"].items():
        assert set(calls) == needed[service], service
        assert set(calls.values()) == {1}, f"{service} called more than once for a key: {calls}"
    assert first["orders"] == jobs
    assert first["revenue"] == expected_totals(worker, orders)

    # Batch 2, rates service down: every order priced with the stale rates (the right
    # figures), the failing service called once per rate, new keys of the others once each.
    assert outage["orders"] == jobs
    assert outage["revenue"] == expected_totals(worker, later)
    now = keys(later)
    assert outage["calls"]["rates"] == dict.fromkeys(sorted(now["rates"]), 1)
    for service in ("catalogue", "crm"):
        assert outage["calls"][service] == dict.fromkeys(sorted(now[service] - needed[service]), 1)
    stats = summary["stats"]
    assert stats["failsafe_activations"] == stats["factory_errors"] == len(now["rates"])
    assert stats["distributed_errors"] == stats["decode_errors"] == 0

    # The reference data is in Redis, where other workers find it.
    client = redis.Redis.from_url(redis_url)
    try:
        stored = {k.decode() for k in client.scan_iter("worker:*", count=1000)}
    finally:
        client.close()
    for service_keys in needed.values():
        assert {f"worker:k:{k}" for k in service_keys} <= stored


def test_worker_runs_without_a_server() -> None:
    out = run_example("worker.py", "--jobs=30", "--threads=4", env=example_env())
    assert re.search(r"^worker: 30 orders per batch on 4 threads, L2 sqlite:///", out, re.MULTILINE)
    assert re.search(r"^batch 1: 30 orders priced in [\d.]+ s; rates \d calls", out, re.MULTILINE)
    assert "batch 2, rates service down: 30 orders priced with stale rates" in out
    assert re.search(r"^  failsafe_activations +[1-5]$", out, re.MULTILINE)  # stats() table


# == examples/multi_tenant.py ======================================================================


def inspect_entry(url: str, tenant: str, key: str, *args: str, env: dict[str, str]) -> Any:
    """``dataferry inspect --json`` of a tenant's entry of the example, as an operator runs it."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "dataferry", "inspect", key, "--redis", url),
            *("--namespace=saas", f"--tenant={tenant}", "--keys-env=DATAFERRY_KEYS", "--json"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_multi_tenant_example_isolates_erases_and_rotates(redis_url: str) -> None:
    import redis

    env = example_env(DATAFERRY_URL=redis_url, DATAFERRY_KEYS=f"t1:{df.Keyring.generate_key()}")
    found = json.loads(run_example("multi_tenant.py", "--json", env=env))
    assert (found["old_primary"], found["new_primary"]) == ("t1", "rotated-1")
    acme1 = {"name": "Wile E. Coyote", "email": "wile@acme.example", "plan": "pro"}
    globex1 = {"name": "Hank Scorpio", "email": "hank@globex.example", "plan": "team"}
    globex2 = {"name": "Homer Simpson", "email": "homer@globex.example", "plan": "free"}

    # Isolation: one key, one entry per tenant, none for the root cache; moved bytes are a miss.
    isolation = found["isolation"]
    assert isolation["reads"] == {"acme": acme1, "globex": globex1, "root": None}
    assert isolation["plaintext_in_l2"] is False
    assert isolation["swapped_read"] is None
    assert isolation["decode_errors"] == 1
    # Rotation: entries written under the old primary still decrypt.
    assert found["rotation"]["old_entries"] == {"acme": acme1, "globex": globex1}
    # Erasure of acme: on the node that erased (L1 too) and on another node.
    erasure = found["erasure"]
    erased = {"customer:1": None, "customer:2": None}
    kept = {"customer:1": globex1, "customer:2": globex2}
    assert erasure["same_node"] == {"acme": erased, "globex": kept, "acme_with_l1": erased}
    assert erasure["other_node"] == {"acme": erased, "globex": kept}
    assert erasure["erased_bytes_still_stored"] == {"customer:1": True, "customer:2": True}
    assert erasure["written_after"]["name"] == "Marvin"
    # Retiring the old key: its entries are misses, the new key's are not.
    assert found["retirement"] == {"globex": {"customer:1": None, "customer:2": globex2}}

    # From the outside: the bytes in Redis are ciphertext...
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.get("saas:t:acme:customer:1")
    finally:
        client.close()
    assert raw
    assert b"Coyote" not in raw
    assert b"wile@" not in raw
    # ...acme's erased entry is there but undecryptable with the keyring, globex's decrypts,
    # and what was written after the rotation carries the new key's id.
    acme = inspect_entry(redis_url, "acme", "customer:1", env=env)
    assert acme["found"]
    assert acme["envelope"]["key_id"] == "t1"
    assert "value" not in acme
    assert acme["value_note"].startswith("could not decode")
    globex = inspect_entry(redis_url, "globex", "customer:1", env=env)
    assert (globex["envelope"]["key_id"], globex["value"]) == ("t1", globex1)
    rotated = inspect_entry(redis_url, "globex", "customer:2", "--no-value", env=env)
    assert rotated["envelope"]["key_id"] == "rotated-1"
    assert "encrypted" in rotated["envelope"]["flags"]


def test_multi_tenant_example_runs_without_a_server() -> None:
    out = run_example("multi_tenant.py", env=example_env())
    assert re.search(
        r"^L2 sqlite:///.*; keyring generated for this run: ids \['demo-1'\]", out, re.M
    )
    lines = [line.split() for line in out.splitlines()]
    assert ["acme", "customer:1", "Wile", "E.", "Coyote"] in lines
    assert ["root", "customer:1", "miss"] in lines
    assert "plaintext visible: False" in out
    assert ["acme", "customer:1", "miss,", "customer:2", "miss"] in lines
    assert "acme's erased entries still in the L2, undecryptable: True" in out
    assert ["globex", "customer:1", "miss,", "customer:2", "Homer", "Simpson"] in lines


# == examples/django_project =======================================================================

DJANGO_PROJECT = ROOT / "examples" / "django_project"

#: Run in the project's directory (``python -c``): Django's test client sends the requests given
#: as JSON in argv[1]; prints, as JSON, each response's status, X-Cache header and JSON body,
#: then the cache's stats().
DJANGO_DRIVER = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
import django
django.setup()
from django.core.cache import caches
from django.test import Client
from django.test.utils import setup_test_environment
from dataferry.contrib.django import shutdown_caches
setup_test_environment()
client = Client()
out = []
for method, path, data in json.loads(sys.argv[1]):
    r = client.get(path) if method == "GET" else client.post(path, data)
    body = r.json() if r["Content-Type"] == "application/json" else None
    out.append([r.status_code, r.get("X-Cache"), body])
stats = caches["default"].dataferry.stats().as_dict()
shutdown_caches()
print(json.dumps({"responses": out, "stats": stats}))
"""


def drive_django(requests: list[tuple[str, str, Any]], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", DJANGO_DRIVER, json.dumps(requests)],
        cwd=DJANGO_PROJECT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_django_project_caches_in_redis_and_invalidates_on_commit(
    redis_url: str, tmp_path: Path
) -> None:
    import redis

    env = example_env(DATAFERRY_URL=redis_url, DJANGO_DATABASE=str(tmp_path / "db.sqlite3"))
    env.pop("DJANGO_SETTINGS_MODULE", None)
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=DJANGO_PROJECT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "Applying catalog.0001_initial... OK" in migrate.stdout

    teapot = {"id": 1, "name": "Teapot", "price_cents": 2400}
    cheaper = {**teapot, "price_cents": 2000}
    others = [
        {"id": 2, "name": "Kettle", "price_cents": 3950},
        {"id": 3, "name": "Mug", "price_cents": 800},
    ]
    first = drive_django(
        [
            ("GET", "/products/1/", None),
            ("GET", "/products/1/", None),
            ("GET", "/products/", None),
            ("GET", "/products/", None),
            ("POST", "/products/1/price/", {"price_cents": "2000"}),
            ("GET", "/products/1/", None),
            ("GET", "/products/", None),
            ("POST", "/products/1/price/", {"price_cents": "-5"}),
            ("GET", "/products/1/", None),
            ("GET", "/products/9/", None),
            ("GET", "/products/9/", None),
        ],
        env,
    )
    assert first["responses"] == [
        # Computed once, then from the cache.
        [200, "miss", teapot],
        [200, "hit", teapot],
        [200, "miss", [teapot, *others]],
        [200, "hit", [teapot, *others]],
        # The committed update invalidates the product and, by tag, the list.
        [200, None, {"id": 1, "price_cents": 2000}],
        [200, "miss", cheaper],
        [200, "miss", [cheaper, *others]],
        # The database refuses a negative price: rolled back, so nothing is invalidated.
        [400, None, {"error": "price_cents must not be negative"}],
        [200, "hit", cheaper],
        # An unknown product is a 404 each time, never cached.
        [404, None, None],
        [404, None, None],
    ]
    assert first["stats"]["factory_errors"] == 2  # the two 404s: computed, raised, not stored
    assert first["stats"]["backplane_sent"] > 0  # on Redis, invalidations reach other processes

    # The entries are in Redis ("{namespace}:k:" + Django's key ":1:product:1")...
    client = redis.Redis.from_url(redis_url)
    try:
        stored = {k.decode() for k in client.scan_iter("catalog:*", count=1000)}
    finally:
        client.close()
    assert {"catalog:k::1:product:1", "catalog:k::1:products"} <= stored
    # ...so another process (an empty L1) serves them without computing.
    second = drive_django([("GET", "/products/1/", None), ("GET", "/products/", None)], env)
    assert second["responses"] == [[200, "hit", cheaper], [200, "hit", [cheaper, *others]]]
    assert (second["stats"]["distributed_hits"], second["stats"]["factory_calls"]) == (2, 0)
