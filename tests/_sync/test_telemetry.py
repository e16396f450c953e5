# GENERATED from tests/_async/test_telemetry.py by scripts/unasync.py: do not edit.
"""OpenTelemetry metrics and spans, read back with the SDK's in-memory reader and exporter.

Every test gives its caches an SDK of their own (a ``MeterProvider`` with an
``InMemoryMetricReader``, a ``TracerProvider`` with an ``InMemorySpanExporter``) through
``df.Telemetry(...)``: the global providers are never set, as every test runs in one process.
The L2 is a real redis-server of the test harness. The sync twin
(tests/_sync/test_telemetry.py) is generated from this file.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, Histogram, InMemoryMetricReader, Sum
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import dataferry as df
from tests.chaos import (
    Latch,
    Reading,
    Faults,
    HoldAfter,
    sync_until,
    sync_wait,
    count_events,
)

NS = "tel"
L2_ONLY = df.EntryOptions(skip_memory=True)  # past L1 to L2 even when L1 holds the key
LOCKED = df.EntryOptions(distributed_lock=True)
# A key that is personal data: it must appear in no span and no metric unless asked for.
KEY = "user:alice@example.com"

#: Every counter instrument and the Stats field it reports.
COUNTERS = {
    "dataferry.factory.calls": "factory_calls",
    "dataferry.factory.errors": "factory_errors",
    "dataferry.factory.timeouts": "factory_timeouts",
    "dataferry.stampede.joins": "stampede_joins",
    "dataferry.failsafe.activations": "failsafe_activations",
    "dataferry.refreshes": "refreshes",
    "dataferry.lock.waits": "lock_waits",
    "dataferry.lock.timeouts": "lock_timeouts",
    "dataferry.distributed.errors": "distributed_errors",
    "dataferry.decode.errors": "decode_errors",
    "dataferry.backplane.messages": "backplane_messages",
    "dataferry.backplane.sent": "backplane_sent",
    "dataferry.backplane.dropped": "backplane_dropped",
    "dataferry.payload_too_large": "payload_too_large",
    "dataferry.circuit.breaks": "circuit_breaks",
    "dataferry.recovery.replays": "recovery_replays",
    "dataferry.recovery.drops": "recovery_drops",
}
#: The hit and miss counters: one instrument each, the level as an attribute.
LEVELS = {
    ("dataferry.cache.hits", "memory"): "memory_hits",
    ("dataferry.cache.hits", "distributed"): "distributed_hits",
    ("dataferry.cache.misses", "memory"): "memory_misses",
    ("dataferry.cache.misses", "distributed"): "distributed_misses",
}
GAUGES = (
    "dataferry.memory.entries",
    "dataferry.memory.weight",
    "dataferry.recovery.pending",
    "dataferry.circuit.state",
)
EVICTIONS = "dataferry.memory.evictions"
DURATION = "dataferry.operation.duration"
LATENCY = "dataferry.backplane.latency"

Points = dict[tuple[tuple[str, Any], ...], Any]


class Otel:
    """One test's own OpenTelemetry SDK: metrics and spans kept in memory."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        self.exporter = InMemorySpanExporter()
        self.tracers = TracerProvider(shutdown_on_exit=False)
        self.tracers.add_span_processor(SimpleSpanProcessor(self.exporter))

    def telemetry(self, **kwargs: Any) -> df.Telemetry:
        """A cache's ``telemetry=`` reporting to this SDK."""
        return df.Telemetry(meter_provider=self.meters, tracer_provider=self.tracers, **kwargs)

    def collect(self) -> dict[str, Any]:
        """Collect now: ``{instrument name: its data (Sum, Gauge or Histogram)}``."""
        data = self.reader.get_metrics_data()
        found: dict[str, Any] = {}
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "dataferry"
                for metric in scope.metrics:
                    assert metric.name not in found
                    found[metric.name] = metric.data
        return found

    def spans(self) -> list[ReadableSpan]:
        """The spans ended so far, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def shutdown(self) -> None:
        self.meters.shutdown()
        self.tracers.shutdown()


@pytest.fixture
def otel() -> Iterator[Otel]:
    sdk = Otel()
    try:
        yield sdk
    finally:
        sdk.shutdown()


@pytest.fixture
def other_otel() -> Iterator[Otel]:
    """A second SDK, for a second node (as another process would have)."""
    sdk = Otel()
    try:
        yield sdk
    finally:
        sdk.shutdown()


def node(backend: Any, telemetry: df.Telemetry | None, **kwargs: Any) -> df.DataFerry:
    kwargs.setdefault("namespace", NS)
    return df.DataFerry(distributed=backend, telemetry=telemetry, **kwargs)


def points(data: Any) -> Points:
    """``{sorted attribute items: value}`` of a metric (a histogram point for histograms)."""
    found: Points = {}
    for point in data.data_points:
        attrs = tuple(sorted(point.attributes.items()))
        assert attrs not in found, f"two points with the attributes {attrs}"
        found[attrs] = point if isinstance(data, Histogram) else point.value
    return found


def at(namespace: str = NS, **extra: str) -> tuple[tuple[str, Any], ...]:
    """The attributes of a point of ``namespace`` (``level=...`` and such as keywords)."""
    return tuple(sorted({"dataferry.namespace": namespace, **extra}.items()))


def reported(metrics: dict[str, Any], namespace: str = NS) -> dict[tuple[str, str], int]:
    """Every counter of ``namespace`` as ``{(instrument, level or ""): value}``."""
    found = {}
    for name in COUNTERS:
        found[(name, "")] = points(metrics[name])[at(namespace)]
    for name, level in LEVELS:
        series = points(metrics[name])
        if level == "memory" and at(namespace, level=level) not in series:
            series[at(namespace, level=level)] = 0  # a cache without L1 reports no such series
        found[(name, level)] = series[at(namespace, level=level)]
    return found


def expected(*stats: df.Stats) -> dict[tuple[str, str], int]:
    """What :func:`reported` should read for caches with these ``stats()``, added up."""
    found = {(name, ""): sum(getattr(s, field) for s in stats) for name, field in COUNTERS.items()}
    for (name, level), field in LEVELS.items():
        found[(name, level)] = sum(getattr(s, field) for s in stats)
    return found


def durations(metrics: dict[str, Any]) -> dict[tuple[str, str], int]:
    """``{(operation, outcome): count}`` of the operation duration histogram."""
    found = {}
    for attrs, point in points(metrics[DURATION]).items():
        a = dict(attrs)
        assert set(a) == {"dataferry.namespace", "operation", "outcome"}, a
        found[(a["operation"], a["outcome"])] = point.count
    return found


def roots(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is None]


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def names(spans: Sequence[ReadableSpan]) -> list[str]:
    return sorted(s.name for s in spans)


def only(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, names(spans)
    return found[0]


def descends(spans: Sequence[ReadableSpan], span: ReadableSpan, root: ReadableSpan) -> bool:
    """Whether ``span`` is ``root`` or below it (following parents among ``spans``)."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    assert root.context is not None
    current: ReadableSpan | None = span
    while current is not None:
        if current.context is not None and current.context.span_id == root.context.span_id:
            return True
        current = by_id.get(current.parent.span_id) if current.parent is not None else None
    return False


def the_error(span: ReadableSpan, kind: type[BaseException], message: str) -> None:
    """``span`` ended in error with ``kind(message)`` recorded as its exception event."""
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == kind.__name__
    assert span.attributes is not None
    assert span.attributes["dataferry.outcome"] == "error"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == kind.__name__
    assert event.attributes["exception.message"] == message


def failing() -> Any:
    raise RuntimeError("the database is down")


class SpanProbe:
    """A layer that notes the current span of every L2 call reaching it."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    # Both halves of the layer protocol, kept as they are in the generated sync twin.
    async def arun(self, operation: str, keys: Any, call: Any) -> Any:  # unasync: keep
        self.seen.append(trace.get_current_span())
        return await call()  # unasync: keep

    def run(self, operation: str, keys: Sequence[str], call: Callable[[], Any]) -> Any:
        self.seen.append(trace.get_current_span())
        return call()


# -- configuration --------------------------------------------------------------------------------


def test_telemetry_options_are_checked() -> None:
    with pytest.raises(df.ConfigurationError):
        df.Telemetry(record_keys="yes")  # type: ignore[arg-type]
    with pytest.raises(df.ConfigurationError):
        df.DataFerry(telemetry="otel")  # type: ignore[arg-type]
    assert repr(df.Telemetry(record_keys=True)) == (
        "Telemetry(metrics=True, traces=True, record_keys=True, trace_memory_hits=False, "
        "tenant_attribute=False)"
    )


# -- metrics --------------------------------------------------------------------------------------


def test_every_instrument_is_reported_with_the_values_of_stats(
    l2_backend: Any, otel: Otel
) -> None:
    cache = node(l2_backend, otel.telemetry())
    with cache:
        assert cache.get_or_set("a", lambda: 1) == 1  # L1 and L2 miss, factory
        assert cache.get_or_set("a", lambda: 2) == 1  # L1 hit
        assert cache.get("a", options=L2_ONLY) == 1  # L2 hit
        assert cache.get("nope") is None  # L1 and L2 miss
        with pytest.raises(RuntimeError):
            cache.get_or_set("bad", failing)
        cache.set_many({"x": 1, "y": 2})
        metrics = otel.collect()
        stats = cache.stats()

        # Every instrument, no other (no backplane: its latency histogram has no point).
        assert set(metrics) == {*COUNTERS, "dataferry.cache.hits", "dataferry.cache.misses"} | {
            *GAUGES,
            DURATION,
            EVICTIONS,
        }
        for name, data in metrics.items():
            for attrs in points(data):
                assert dict(attrs)["dataferry.namespace"] == NS, name
        # Counters are monotonic cumulative sums, one point each (hits/misses: one per level).
        for name in [*COUNTERS, "dataferry.cache.hits", "dataferry.cache.misses", EVICTIONS]:
            assert isinstance(metrics[name], Sum)
            assert metrics[name].is_monotonic
        assert points(metrics[EVICTIONS]) == {
            at(reason="size"): stats.memory_evictions_size,
            at(reason="expired"): stats.memory_evictions_expired,
        }
        assert set(points(metrics["dataferry.cache.hits"])) == {
            at(level="memory"),
            at(level="distributed"),
        }
        assert reported(metrics) == expected(stats)
        assert (stats.memory_hits, stats.distributed_hits) == (1, 1)
        assert stats.distributed_misses >= 2
        assert (stats.factory_calls, stats.factory_errors) == (2, 1)
        # Gauges: the levels now.
        for name in GAUGES:
            assert isinstance(metrics[name], Gauge)
        assert points(metrics["dataferry.memory.entries"]) == {at(): stats.memory_entries}
        assert stats.memory_entries == 3  # a, x, y
        assert points(metrics["dataferry.memory.weight"]) == {at(): stats.memory_weight}
        assert points(metrics["dataferry.recovery.pending"]) == {at(): 0}
        assert points(metrics["dataferry.circuit.state"]) == {at(): 0}  # closed
        # The duration of every operation past L1, and of its parts, by outcome.
        counts = durations(metrics)
        assert counts[("get_or_set", "ok")] == 1  # the L1 hit is not in it
        assert counts[("get_or_set", "error")] == 1
        assert counts[("get", "hit")] == counts[("get", "miss")] == 1
        assert counts[("set_many", "ok")] == 1
        assert counts[("factory", "ok")] == counts[("factory", "error")] == 1
        assert counts[("distributed.get", "ok")] == 4  # a, a (L2_ONLY), nope, bad
        assert counts[("distributed.set_many", "ok")] == 1
        histogram = metrics[DURATION]
        assert isinstance(histogram, Histogram)
        point = points(histogram)[at(operation="get_or_set", outcome="ok")]
        assert 0 < point.sum < 10
        # Buckets fit seconds-long durations of sub-millisecond calls (not the SDK's defaults).
        assert 0 < point.explicit_bounds[0] < 0.001
        assert point.explicit_bounds[-1] >= 1

        # Collected again later: the counters are the running totals, not added twice.
        assert cache.get_or_set("a", lambda: 3) == 1
        cache.remove("x")
        metrics = otel.collect()
        stats = cache.stats()
        assert reported(metrics) == expected(stats)
        assert stats.memory_hits == 2
        assert points(metrics["dataferry.memory.entries"]) == {at(): 2}
        assert durations(metrics)[("get_or_set", "ok")] == 1
        assert durations(metrics)[("remove", "ok")] == 1


def test_a_cache_dropped_without_closing_keeps_its_counts(otel: Otel) -> None:
    cache = df.DataFerry(namespace=NS, telemetry=otel.telemetry())  # L1 only
    cache.get_or_set("a", lambda: 1)
    cache.get_or_set("a", lambda: 1)
    before = reported(otel.collect())
    assert before[("dataferry.factory.calls", "")] == 1
    del cache
    gc.collect()
    assert reported(otel.collect()) == before  # counters never go back


def test_a_closed_caches_counts_are_kept_and_caches_of_a_namespace_add_up(
    redis_url: str, otel: Otel
) -> None:
    def redis() -> Any:
        return df.RedisCache.from_url(redis_url)

    first = node(redis(), otel.telemetry())
    with first:
        first.get_or_set("a", lambda: 1)
        first.get_or_set("a", lambda: 1)
        first.get("b")
        before = reported(otel.collect())
        assert before == expected(first.stats())
    gone = first.stats()
    # Closed: its counts stay in the totals (a counter never goes back); its levels are gone.
    metrics = otel.collect()
    assert reported(metrics) == before
    assert before[("dataferry.factory.calls", "")] == 1
    for name in GAUGES:
        if name in metrics:
            assert at() not in points(metrics[name])

    second, third = node(redis(), otel.telemetry()), node(redis(), otel.telemetry())
    other = node(redis(), otel.telemetry(), namespace="other")
    with second, third, other:
        assert second.get_or_set("a", lambda: 2) == 1  # from L2
        second.set("c", 3)
        third.get_or_set("d", lambda: 4)
        third.get_or_set("d", lambda: 4)
        other.get_or_set("z", lambda: 5)
        metrics = otel.collect()
        # Caches of one namespace add up, with what the closed one counted.
        totals = reported(metrics)
        assert totals == expected(gone, second.stats(), third.stats())
        assert all(totals[name] >= before[name] for name in before)
        assert totals[("dataferry.factory.calls", "")] == 2
        # Their levels add up too (an observable gauge keeps one value per attribute set).
        entries = second.stats().memory_entries + third.stats().memory_entries
        assert entries == 3
        assert points(metrics["dataferry.memory.entries"])[at()] == entries
        assert points(metrics["dataferry.circuit.state"])[at()] == 0
        # Another namespace is a series of its own.
        assert reported(metrics, "other") == expected(other.stats())
        assert points(metrics["dataferry.memory.entries"])[at("other")] == 1


def test_the_circuit_state_gauge_follows_the_breaker(l2_backend: Any, otel: Otel) -> None:
    faults, hold = Faults(ConnectionError("redis down")), HoldAfter()
    faults.failing = False
    policy = df.Resilience(failure_threshold=2, retries=0, cooldown=0.2, timeout=5)
    cache = node(
        l2_backend,
        otel.telemetry(),
        memory=None,
        distributed_layers=[faults, hold],
        resilience=policy,
    )

    def state() -> Any:
        return points(otel.collect()["dataferry.circuit.state"])[at()]

    with cache:
        cache.set("k", "v")
        assert cache.get("k") == "v"
        assert state() == 0
        faults.failing = True
        assert cache.get("a") is None
        assert cache.get("b") is None
        assert cache.stats().circuit_breaks == 1
        assert state() == 2  # open
        metrics = otel.collect()
        assert reported(metrics) == expected(cache.stats())
        assert reported(metrics)[("dataferry.circuit.breaks", "")] == 1
        # A call the open breaker skips never reaches the L2 pipeline: no L2 span under it.
        # (The telemetry layer is inside the breaker: an L2 span per call that reached it. On a
        # machine so slow that the cooldown is over already, this call is a failed probe.)
        otel.exporter.clear()
        reached = faults.calls["get"]
        assert cache.get("c") is None
        reached = faults.calls["get"] - reached
        spans = otel.spans()
        assert names(spans) == ["dataferry.distributed.get"] * reached + ["dataferry.get"]
        assert only(spans, "dataferry.get").attributes == {
            "dataferry.namespace": NS,
            "operation": "get",
            "dataferry.outcome": "miss",
        }
        assert reached == cache.stats().circuit_breaks - 1  # 0: skipped, as it should be

        # After the cooldown one call goes through as a probe: half-open while it is out.
        faults.failing = False
        hold.holding = True

        def probed() -> bool:
            cache.get("k")
            return hold.answered.is_set()

        probing = Reading(lambda: sync_until(probed))
        sync_wait(hold.answered)
        assert state() == 1
        hold.release()
        probing.result()
        assert state() == 0  # the probe succeeded: closed


def test_the_recovery_pending_gauge_counts_queued_writes(l2_backend: Any, otel: Otel) -> None:
    faults = Faults(ConnectionError("redis down"), "set")
    policy = df.Resilience(failure_threshold=0, recovery_interval=60, timeout=5)
    cache = node(l2_backend, otel.telemetry(), distributed_layers=[faults], resilience=policy)

    def pending() -> Any:
        return points(otel.collect()["dataferry.recovery.pending"])[at()]

    with cache:
        for key in ("a", "b", "c"):
            cache.set(key, key)
        assert cache.stats().recovery_pending == 3
        assert pending() == 3
        assert reported(otel.collect())[("dataferry.distributed.errors", "")] == 3
        # The failed writes are errors on their L2 spans, not on the operations'.
        assert names(otel.spans()).count("dataferry.distributed.set") == 3
        for span in otel.spans():
            assert span.attributes is not None
            if span.name == "dataferry.distributed.set":
                the_error(span, ConnectionError, "redis down")
            elif span.name == "dataferry.set":
                assert span.status.status_code is StatusCode.UNSET
                assert span.attributes["dataferry.outcome"] == "ok"
        faults.failing = False
        # A successful L2 call starts the replay at once (recovery_interval is long).
        assert cache.get("other", options=L2_ONLY) is None

        def replayed() -> bool:
            return cache.stats().recovery_pending == 0

        sync_until(replayed)
        assert pending() == 0
        metrics = otel.collect()
        assert reported(metrics) == expected(cache.stats())
        assert reported(metrics)[("dataferry.recovery.replays", "")] >= 1


# -- spans ----------------------------------------------------------------------------------------


def test_a_miss_is_an_operation_span_with_its_l2_and_factory_spans_as_children(
    l2_backend: Any, otel: Otel
) -> None:
    cache = node(l2_backend, otel.telemetry())
    with cache:
        cache.get("warm")  # first use: the namespace's clear record is read too
        otel.exporter.clear()
        started = time.time_ns()
        assert cache.get_or_set("k", lambda: "v") == "v"
        spans = otel.spans()
        (root,) = roots(spans)
        assert root.name == "dataferry.get_or_set"
        assert root.attributes == {
            "dataferry.namespace": NS,
            "operation": "get_or_set",
            "dataferry.outcome": "ok",
        }
        assert root.status.status_code is StatusCode.UNSET
        kids = children(spans, root)
        assert len(kids) == len(spans) - 1  # every other span is a child of the operation
        assert names(kids) == [
            "dataferry.distributed.get",
            "dataferry.distributed.set",
            "dataferry.factory",
        ]
        assert root.context is not None
        assert root.start_time is not None
        assert root.end_time is not None
        assert started <= root.start_time
        for kid in kids:
            assert kid.context is not None
            assert kid.context.trace_id == root.context.trace_id
            assert kid.start_time is not None
            assert kid.end_time is not None
            assert root.start_time <= kid.start_time <= kid.end_time <= root.end_time
            assert kid.attributes is not None
            assert kid.attributes["operation"] == kid.name.removeprefix("dataferry.")
            assert kid.attributes["dataferry.outcome"] == "ok"
            assert kid.attributes["dataferry.namespace"] == NS
        # In that order: the L2 read, the factory, the L2 write.
        assert [k.name for k in sorted(kids, key=lambda s: s.start_time or 0)] == [
            "dataferry.distributed.get",
            "dataferry.factory",
            "dataferry.distributed.set",
        ]

        # L1 hits record nothing.
        otel.exporter.clear()
        assert cache.get_or_set("k", lambda: "w") == "v"
        assert cache.get("k") == "v"
        assert cache.get_many(["k"]) == {"k": "v"}
        assert otel.spans() == []

        # A lookup past L1: outcome hit or miss.
        for call, outcome in (
            (lambda: cache.get("k", options=L2_ONLY), "hit"),
            (lambda: cache.get("absent"), "miss"),
            (lambda: cache.try_get("k", options=L2_ONLY), "hit"),
            (lambda: cache.exists("absent"), "miss"),
        ):
            otel.exporter.clear()
            call()
            spans = otel.spans()
            root = only(spans, "dataferry.get")
            assert root.parent is None
            assert root.attributes is not None
            assert root.attributes["dataferry.outcome"] == outcome
            assert names(children(spans, root)) == ["dataferry.distributed.get"]
            assert len(spans) == 2


def test_every_operation_past_l1_has_its_span(l2_backend: Any, otel: Otel) -> None:
    cache = node(l2_backend, otel.telemetry())
    with cache:
        cache.get("warm")
        operations: list[tuple[str, Callable[[], Any], set[str]]] = [
            ("get_or_set", lambda: cache.get_or_set("a", lambda: 1, tags=["t"]), {"get", "set"}),
            ("get", lambda: cache.get("a", options=L2_ONLY), {"get"}),
            ("get_many", lambda: cache.get_many(["m", "n"]), {"get_many"}),
            (
                "get_or_set_many",
                lambda: cache.get_or_set_many(["m", "n"], lambda keys: {k: 0 for k in keys}),
                {"get_many", "set_many"},
            ),
            ("set", lambda: cache.set("s", 1), {"set"}),
            ("set_many", lambda: cache.set_many({"s": 1, "u": 2}), {"set_many"}),
            ("remove", lambda: cache.remove("s"), {"delete"}),
            ("remove_many", lambda: cache.remove_many(["s", "u"]), {"delete_many"}),
            ("expire", lambda: cache.expire("a"), {"get", "compare_and_set"}),
            ("remove_by_tag", lambda: cache.remove_by_tag("t"), {"set"}),
            ("clear", lambda: cache.clear(), {"set"}),
        ]
        for operation, call, l2 in operations:
            otel.exporter.clear()
            call()
            spans = otel.spans()
            (root,) = roots(spans)
            assert root.name == f"dataferry.{operation}"
            assert root.attributes is not None
            assert root.attributes["operation"] == operation
            assert root.attributes["dataferry.namespace"] == NS
            assert root.attributes["dataferry.outcome"] == ("hit" if operation == "get" else "ok")
            assert all(descends(spans, span, root) for span in spans)
            kids = names(children(spans, root))
            assert {f"dataferry.distributed.{name}" for name in l2} <= set(kids), operation
            if operation.startswith("get_or_set"):
                assert "dataferry.factory" in kids


def test_an_error_is_recorded_on_the_factory_and_operation_spans(
    l2_backend: Any, otel: Otel
) -> None:
    cache = node(l2_backend, otel.telemetry())
    with cache:
        cache.get("warm")
        otel.exporter.clear()
        with pytest.raises(RuntimeError):
            cache.get_or_set("k", failing)
        spans = otel.spans()
        (root,) = roots(spans)
        assert root.name == "dataferry.get_or_set"
        the_error(root, RuntimeError, "the database is down")
        factory = only(children(spans, root), "dataferry.factory")
        the_error(factory, RuntimeError, "the database is down")
        # The L2 read went well: not an error.
        read = only(children(spans, root), "dataferry.distributed.get")
        assert read.status.status_code is StatusCode.UNSET
        assert not read.events
        assert durations(otel.collect())[("get_or_set", "error")] == 1


def test_each_l2_attempt_is_a_span_that_records_its_error(
    l2_backend: Any, otel: Otel
) -> None:
    faults = Faults(ConnectionError("redis down"), "get")
    policy = df.Resilience(failure_threshold=0, retries=2, timeout=5)
    cache = node(l2_backend, otel.telemetry(), distributed_layers=[faults], resilience=policy)
    with cache:
        cache.set("k", "v", options=df.EntryOptions(skip_memory=True))  # L2 only
        otel.exporter.clear()
        assert cache.get("k") is None  # the L2 failed: a miss, no exception
        spans = otel.spans()
        root = only(spans, "dataferry.get")
        assert root.status.status_code is StatusCode.UNSET
        assert root.attributes is not None
        assert root.attributes["dataferry.outcome"] == "miss"
        attempts = [s for s in children(spans, root) if s.name == "dataferry.distributed.get"]
        assert len(attempts) == faults.calls["get"] == 3  # the telemetry layer: inside the retry
        for attempt in attempts:
            the_error(attempt, ConnectionError, "redis down")
        assert durations(otel.collect())[("distributed.get", "error")] == 3




def test_l1_hits_are_traced_only_with_trace_memory_hits(l2_backend: Any, otel: Otel) -> None:
    plain = node(l2_backend, otel.telemetry())
    traced = node(l2_backend, otel.telemetry(trace_memory_hits=True), namespace="traced")
    with plain, traced:
        for cache in (plain, traced):
            cache.set("k", 1)
            cache.get("warm")
        otel.exporter.clear()
        assert plain.get("k") == 1
        assert plain.get("k", type=int) == 1
        assert plain.get_or_set("k", lambda: 2) == 1
        assert otel.spans() == []

        assert traced.get("k") == 1
        assert traced.get("k", type=int) == 1  # a typed lookup
        assert traced.get_or_set("k", lambda: 2) == 1
        spans = otel.spans()
        assert names(spans) == ["dataferry.memory.get"] * 3
        for span in spans:
            assert span.parent is None
            assert span.attributes == {
                "dataferry.namespace": "traced",
                "operation": "memory.get",
                "dataferry.outcome": "hit",
            }
        # An L1 miss: the lookup's span (a miss), then the operation's.
        otel.exporter.clear()
        assert traced.get("absent") is None
        spans = otel.spans()
        assert names(spans) == [
            "dataferry.distributed.get",
            "dataferry.get",
            "dataferry.memory.get",
        ]
        lookup = only(spans, "dataferry.memory.get")
        assert lookup.attributes is not None
        assert lookup.attributes["dataferry.outcome"] == "miss"
        counts = durations(otel.collect())
        assert counts[("memory.get", "hit")] == 3
        assert counts[("memory.get", "miss")] == 2  # "warm" too


def test_keys_are_recorded_only_with_record_keys(l2_backend: Any, otel: Otel) -> None:
    def calls(cache: df.DataFerry) -> list[Callable[[], Any]]:
        return [
            lambda: cache.get_or_set(KEY, lambda: 1),
            lambda: cache.get(KEY, options=L2_ONLY),
            lambda: cache.set(KEY, 2),
            lambda: cache.expire(KEY),
            lambda: cache.remove(KEY),
        ]

    plain = node(l2_backend, otel.telemetry())
    with plain:
        for call in calls(plain):
            call()
        spans = otel.spans()
        assert len(spans) >= 10
        for span in spans:
            assert span.attributes is not None
            assert "dataferry.key" not in span.attributes
            assert not any(KEY in str(value) for value in span.attributes.values())
        for data in otel.collect().values():
            for attrs in points(data):
                assert not any(KEY in str(value) for _, value in attrs)

    otel.exporter.clear()
    keyed = node(l2_backend, otel.telemetry(record_keys=True), namespace="keyed")
    with keyed:
        for call in calls(keyed):
            call()
        spans = otel.spans()
        for root in roots(spans):
            assert root.attributes is not None
            assert root.attributes["dataferry.key"] == KEY
        l2 = [s for s in spans if s.name.startswith("dataferry.distributed.")]
        assert len([s for s in l2 if KEY in str((s.attributes or {}).get("dataferry.key"))]) >= 5
        # Never in the metrics: a key would be a time series of its own.
        for data in otel.collect().values():
            for attrs in points(data):
                assert not any(KEY in str(value) for _, value in attrs)


def test_the_tenant_is_recorded_only_with_tenant_attribute(
    l2_backend: Any, otel: Otel
) -> None:
    tenants = node(l2_backend, otel.telemetry(tenant_attribute=True))
    plain = node(l2_backend, otel.telemetry(), namespace="plain")
    with tenants, plain:
        tenants.tenant("acme").get_or_set("k", lambda: 1)
        tenants.get_or_set("k", lambda: 2)  # the root cache: no tenant
        plain.tenant("acme").get_or_set("k", lambda: 3)
        spans = otel.spans()
        per_namespace: dict[Any, list[Any]] = {}
        for root in roots(spans):
            assert root.attributes is not None
            assert root.name == "dataferry.get_or_set"
            namespace = root.attributes["dataferry.namespace"]
            per_namespace.setdefault(namespace, []).append(root.attributes.get("dataferry.tenant"))
        assert per_namespace[NS] == ["acme", None]  # in the order they ended
        assert per_namespace["plain"] == [None]
        # The operation histogram has a series per tenant; its parts don't.
        series = [dict(attrs) for attrs in points(otel.collect()[DURATION])]
        with_tenant = [s for s in series if "dataferry.tenant" in s]
        assert with_tenant == [
            {
                "dataferry.namespace": NS,
                "dataferry.tenant": "acme",
                "operation": "get_or_set",
                "outcome": "ok",
            }
        ]


def test_no_telemetry_reports_nothing_and_adds_no_layer(l2_backend: Any, otel: Otel) -> None:
    tracer = otel.tracers.get_tracer("the application")
    for telemetry in (None, otel.telemetry(metrics=False, traces=False)):
        probe = SpanProbe()
        cache = node(l2_backend, telemetry, distributed_layers=[probe])
        otel.exporter.clear()
        with cache:
            with tracer.start_as_current_span("request") as request:
                assert cache.get_or_set("k", lambda: 1) == 1
                assert cache.get("absent") is None
        # The L2 calls ran right in the application's span: no operation or L2 span between.
        assert len(probe.seen) >= 3
        assert all(span is request for span in probe.seen)
        assert names(otel.spans()) == ["request"]
        assert otel.collect() == {}

    # With telemetry, the same probe sees the L2 call's own span.
    probe = SpanProbe()
    cache = node(l2_backend, otel.telemetry(metrics=False), distributed_layers=[probe])
    with cache:
        with tracer.start_as_current_span("request") as request:
            assert cache.get("absent") is None
        assert probe.seen
        assert all(span is not request for span in probe.seen)
        spans = otel.spans()
        assert only(spans, "dataferry.get").parent is not None  # below the application's
        assert otel.collect() == {}  # metrics=False


def test_traces_false_reports_metrics_only(l2_backend: Any, otel: Otel) -> None:
    cache = node(l2_backend, otel.telemetry(traces=False))
    with cache:
        cache.get_or_set("k", lambda: 1)
        assert otel.spans() == []
        metrics = otel.collect()
        assert reported(metrics) == expected(cache.stats())
        assert durations(metrics)[("get_or_set", "ok")] == 1


def test_a_lock_wait_is_a_span_with_its_polls_as_children(redis_url: str, otel: Otel) -> None:
    holder = node(df.RedisCache.from_url(redis_url), None)
    waiter = node(df.RedisCache.from_url(redis_url), otel.telemetry())
    latch = Latch()

    def slow() -> str:
        latch.wait()
        return "from the holder"

    waits = count_events(waiter, "lock_waits")
    with holder, waiter:
        first = Reading(lambda: holder.get_or_set("report", slow, options=LOCKED))

        def holder_computes() -> bool:
            return latch.entered == 1

        sync_until(holder_computes)
        second = Reading(lambda: waiter.get_or_set("report", failing, options=LOCKED))
        sync_wait(waits(1))
        latch.open()
        assert first.result() == "from the holder"
        assert second.result() == "from the holder"
        spans = otel.spans()
        root = only(roots(spans), "dataferry.get_or_set")
        kids = children(spans, root)
        assert {"dataferry.distributed.acquire_lock", "dataferry.lock.wait"} <= set(names(kids))
        assert "dataferry.factory" not in names(spans)
        wait = only(kids, "dataferry.lock.wait")
        assert wait.attributes is not None
        assert wait.attributes["dataferry.outcome"] == "value"  # the holder's, from L2
        polls = children(spans, wait)
        assert polls
        assert "dataferry.distributed.get" in names(polls)
        assert all(descends(spans, span, root) for span in spans)
        metrics = otel.collect()
        assert reported(metrics)[("dataferry.lock.waits", "")] == waiter.stats().lock_waits == 1
        assert durations(metrics)[("lock.wait", "value")] == 1


def test_the_backplane_reports_publishes_messages_and_latency(
    redis_url: str, otel: Otel, other_otel: Otel
) -> None:
    def fleet_node(sdk: Otel) -> df.DataFerry:
        return node(
            df.RedisCache.from_url(redis_url),
            sdk.telemetry(),
            backplane=df.RedisBackplane.from_url(redis_url),
        )

    a, b = fleet_node(otel), fleet_node(other_otel)
    heard = count_events(b, "backplane_messages")
    with a, b:
        a.set("k", 1)
        sync_wait(heard(1))
        a.remove("k")
        sync_wait(heard(2))
        # The sender: a publish span under each operation.
        spans = otel.spans()
        for operation in ("dataferry.set", "dataferry.remove"):
            root = only(roots(spans), operation)
            publish = only(children(spans, root), "dataferry.backplane.publish")
            assert publish.attributes is not None
            assert publish.attributes["dataferry.outcome"] == "ok"
        sent = otel.collect()
        assert reported(sent)[("dataferry.backplane.sent", "")] == a.stats().backplane_sent >= 2
        assert reported(sent)[("dataferry.backplane.messages", "")] == 0
        assert LATENCY not in sent  # a node never hears itself
        assert durations(sent)[("backplane.publish", "ok")] == a.stats().backplane_sent
        # The receiver: the messages, and their publish-to-L1-drop latency.
        received = other_otel.collect()
        stats = b.stats()
        assert reported(received) == expected(stats)
        assert reported(received)[("dataferry.backplane.messages", "")] == 2
        (point,) = points(received[LATENCY]).values()
        assert points(received[LATENCY]) == {at(): point}
        assert point.count == stats.backplane_latency.count == 2
        assert point.sum == pytest.approx(stats.backplane_latency.mean_ms * 2)
        assert 0 < point.sum < 20_000
        assert tuple(point.explicit_bounds)[:3] == (0.25, 0.5, 1.0)  # milliseconds
