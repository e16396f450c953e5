"""OpenTelemetry metrics and traces, on the OpenTelemetry API only (the SDK is the app's choice).

Metrics cost the hot paths nothing: every counter is an *observable* instrument whose callback
reads the counters the cache keeps anyway (:class:`~dataferry._events.CacheEvents`, the L1's
stats) when the application's metric reader collects. One set of instruments per meter
provider serves every cache of the process (a callback reports each live cache under its
``dataferry.namespace``; caches of one namespace add up). The only instruments recorded on a
call are the histograms (``dataferry.operation.duration``, ``dataferry.backplane.latency``),
on paths that go past L1.

Traces: a span per cache operation that goes past L1 (an L1 hit records none unless
``trace_memory_hits``), with child spans for each L2 call (a layer of the L2 pipeline, inside
the timeout, retry and circuit breaker: one span per attempt), the factory, a wait for another
process's distributed lock, and backplane publishes. Errors are recorded on spans. Keys are
not recorded unless ``record_keys`` (they may be personal data).

Until the application installs an SDK (globally, or through :class:`Telemetry`), spans and
duration records are skipped altogether: the API's no-op providers would cost a few
microseconds per slow-path call for nothing. The cache looks for an SDK at most once a second,
so spans begin within a second of a global SDK being installed after the cache was made.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Status, StatusCode

from dataferry._errors import ConfigurationError
from dataferry._events import COUNTERS, LATENCY_BOUNDS_MS
from dataferry._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from dataferry._core import Core

__all__ = ["COUNTER_NAMES", "DEFAULT_TELEMETRY", "CacheTelemetry", "Telemetry"]

#: The OpenTelemetry instrument of each counter of :class:`~dataferry.Stats`. The memory and
#: distributed hits and misses are one instrument each, with a ``level`` attribute.
COUNTER_NAMES: Final = {
    "factory_calls": "dataferry.factory.calls",
    "factory_errors": "dataferry.factory.errors",
    "factory_timeouts": "dataferry.factory.timeouts",
    "stampede_joins": "dataferry.stampede.joins",
    "failsafe_activations": "dataferry.failsafe.activations",
    "refreshes": "dataferry.refreshes",
    "lock_waits": "dataferry.lock.waits",
    "lock_timeouts": "dataferry.lock.timeouts",
    "distributed_errors": "dataferry.distributed.errors",
    "decode_errors": "dataferry.decode.errors",
    "backplane_messages": "dataferry.backplane.messages",
    "backplane_sent": "dataferry.backplane.sent",
    "backplane_dropped": "dataferry.backplane.dropped",
    "payload_too_large": "dataferry.payload_too_large",
    "circuit_breaks": "dataferry.circuit.breaks",
    "recovery_replays": "dataferry.recovery.replays",
    "recovery_drops": "dataferry.recovery.drops",
}
assert set(COUNTER_NAMES) | {"distributed_hits", "distributed_misses"} == set(COUNTERS)

#: Upper bounds (seconds) of the buckets of ``dataferry.operation.duration``: an L2 round trip
#: is ~0.1-1 ms, a factory or a timed-out call up to seconds.
DURATION_BOUNDS_S: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: Seconds between two looks at whether the application installed an OpenTelemetry SDK.
PROVIDER_CHECK: Final = 1.0

#: The circuit breaker's state as the ``dataferry.circuit.state`` gauge reports it.
CIRCUIT_STATES: Final = {"closed": 0, "half_open": 1, "open": 2}


class Telemetry:
    """How a cache reports to OpenTelemetry (pass it as ``telemetry=``; ``None``: not at all).

    Args:
        meter_provider: Where metrics go (default: the global one, even if it is set after
            the cache is created).
        tracer_provider: Where spans go (default: the global one).
        metrics: Report metrics.
        traces: Record spans.
        record_keys: Put the cache key on spans (``dataferry.key``) and in log messages. Off
            by default: keys may be personal data (``user:alice@example.com``); messages then
            name a key by a short hash of it.
        trace_memory_hits: Record a span for L1 hits too. Off by default: an L1 hit costs
            about 0.3 µs, a span with the SDK tens of microseconds (47 µs measured by
            ``benchmarks/bench_telemetry.py``).
        tenant_attribute: Put the tenant id on spans and the operation histogram
            (``dataferry.tenant``). Off by default: one time series per tenant.

    """

    __slots__ = (
        "meter_provider",
        "metrics",
        "record_keys",
        "tenant_attribute",
        "trace_memory_hits",
        "tracer_provider",
        "traces",
    )

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        metrics: bool = True,
        traces: bool = True,
        record_keys: bool = False,
        trace_memory_hits: bool = False,
        tenant_attribute: bool = False,
    ) -> None:
        for name, value in (
            ("metrics", metrics),
            ("traces", traces),
            ("record_keys", record_keys),
            ("trace_memory_hits", trace_memory_hits),
            ("tenant_attribute", tenant_attribute),
        ):
            if not isinstance(value, bool):
                raise ConfigurationError(f"Telemetry({name}=...) must be a bool, got {value!r}")
        self.meter_provider = meter_provider
        self.tracer_provider = tracer_provider
        self.metrics = metrics
        self.traces = traces
        self.record_keys = record_keys
        self.trace_memory_hits = trace_memory_hits
        self.tenant_attribute = tenant_attribute

    def __repr__(self) -> str:
        flags = ", ".join(
            f"{n}={getattr(self, n)!r}"
            for n in ("metrics", "traces", "record_keys", "trace_memory_hits", "tenant_attribute")
        )
        return f"Telemetry({flags})"


#: What a cache uses when it is given no ``telemetry=``: the global providers, no keys.
DEFAULT_TELEMETRY: Final = Telemetry()


def check_telemetry(value: object) -> Telemetry | None:
    """``value`` if it is a :class:`Telemetry` or None, else raise ConfigurationError."""
    if value is not None and not isinstance(value, Telemetry):
        raise ConfigurationError(f"telemetry must be a Telemetry or None, got {value!r}")
    return value


# == Metrics =======================================================================================


class _Instruments:
    """The instruments of one meter provider, shared by every cache that reports to it."""

    def __init__(self, provider: MeterProvider | None) -> None:
        meter = metrics.get_meter("dataferry", __version__, meter_provider=provider)
        self.caches: weakref.WeakSet[CacheTelemetry] = weakref.WeakSet()
        self._lock = threading.Lock()
        # Counts of closed caches, so a cumulative counter never goes back when one closes.
        self._retired: dict[tuple[str, str], dict[tuple[tuple[str, str], ...], int]] = {}
        self.duration = meter.create_histogram(
            "dataferry.operation.duration",
            unit="s",
            description="Duration of cache operations that go past L1, of L2 calls and of "
            "factory calls (attribute operation)",
            # The SDK's default buckets (0, 5, 10, ... 10000) suit milliseconds: in seconds
            # every cache operation would fall in the first one.
            explicit_bucket_boundaries_advisory=list(DURATION_BOUNDS_S),
        )
        self.latency = meter.create_histogram(
            "dataferry.backplane.latency",
            unit="ms",
            description="Backplane messages: publish on another node to L1 drop here",
            explicit_bucket_boundaries_advisory=list(LATENCY_BOUNDS_MS),
        )
        meter.create_observable_counter(
            "dataferry.cache.hits",
            callbacks=[self._levels("hits")],
            unit="{hit}",
            description="Lookups answered from L1 (level=memory) or L2 (level=distributed)",
        )
        meter.create_observable_counter(
            "dataferry.cache.misses",
            callbacks=[self._levels("misses")],
            unit="{miss}",
            description="Lookups not answered from L1 (level=memory) or L2 (level=distributed)",
        )
        meter.create_observable_counter(
            "dataferry.memory.evictions",
            callbacks=[lambda options: self._observe(("evictions", ""))],
            unit="{entry}",
            description="Entries L1 dropped: reason=size (limits) or expired",
        )
        for counter, name in COUNTER_NAMES.items():
            meter.create_observable_counter(
                name,
                callbacks=[self._counter(counter)],
                unit="1",
                description=f"Stats.{counter} of the cache",
            )
        meter.create_observable_gauge(
            "dataferry.memory.entries",
            callbacks=[self._gauge(lambda t: t.memory_stat("entries"), sum)],
            unit="{entry}",
            description="Entries held in L1",
        )
        meter.create_observable_gauge(
            "dataferry.memory.weight",
            callbacks=[self._gauge(lambda t: t.memory_stat("weight"), sum)],
            unit="1",
            description="Weight held in L1 (entries, or bytes with a weigher)",
        )
        meter.create_observable_gauge(
            "dataferry.recovery.pending",
            callbacks=[self._gauge(lambda t: t.core.events.recovery_pending, sum)],
            unit="{operation}",
            description="L2 writes queued (background, or waiting for auto-recovery)",
        )
        meter.create_observable_gauge(
            "dataferry.circuit.state",
            callbacks=[self._gauge(lambda t: t.circuit_state(), max)],
            unit="1",
            description="L2 circuit breaker: 0 closed, 1 half-open, 2 open",
        )

    def add(self, cache: CacheTelemetry) -> None:
        self.caches.add(cache)

    def retire(self, cache: CacheTelemetry | None, counts: list[_Count]) -> None:
        """Keep a closed (or collected) cache's counts: counters must not go back."""
        with self._lock:
            if cache is not None:
                self.caches.discard(cache)
            for (instrument, attrs), value in counts:
                tally = self._retired.setdefault(instrument, {})
                tally[attrs] = tally.get(attrs, 0) + value

    def _observe(self, instrument: tuple[str, str]) -> Iterable[Observation]:
        with self._lock:
            totals = dict(self._retired.get(instrument, {}))
            live = list(self.caches)
        for cache in live:
            for attrs, value in cache.values(instrument):
                totals[attrs] = totals.get(attrs, 0) + value
        return [Observation(value, dict(attrs)) for attrs, value in totals.items()]

    def _levels(self, kind: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        return lambda options: self._observe(("level", kind))

    def _counter(self, counter: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        return lambda options: self._observe(("counter", counter))

    def _gauge(
        self,
        read: Callable[[CacheTelemetry], float],
        combine: Callable[[list[float]], float],
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        # Caches of one namespace report one point, ``combine`` of their values (sum of
        # entries, the worst circuit state): an observable gauge keeps only the last of
        # several observations with the same attributes, so one per cache would drop some.
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                live = list(self.caches)
            per_namespace: dict[str, list[float]] = {}
            for cache in live:
                per_namespace.setdefault(cache.namespace, []).append(read(cache))
            return [
                Observation(combine(values), {"dataferry.namespace": namespace})
                for namespace, values in per_namespace.items()
            ]

        return callback


_instruments: dict[int, tuple[Any, _Instruments]] = {}
_instruments_lock = threading.Lock()


def _instruments_for(provider: MeterProvider | None) -> _Instruments:
    # One set per provider (None: the global one); the provider is kept alive with it.
    with _instruments_lock:
        found = _instruments.get(id(provider))
        if found is None or found[0] is not provider:
            found = (provider, _Instruments(provider))
            _instruments[id(provider)] = found
        return found[1]


_Attrs = tuple[tuple[str, str], ...]
_Count = tuple[tuple[tuple[str, str], _Attrs], int]


def _values(
    events: Any, memory: Any, base: _Attrs, instrument: tuple[str, str]
) -> Iterator[tuple[_Attrs, int]]:
    """``(attributes, value)`` of one cache for one counter instrument."""
    kind, name = instrument
    if kind == "counter":
        yield base, int(getattr(events, name))
        return
    if kind == "evictions":
        if memory is not None:
            stats = memory.stats()
            yield (*base, ("reason", "size")), int(stats.evictions_size)
            yield (*base, ("reason", "expired")), int(stats.evictions_expired)
        return
    if memory is not None:
        yield (*base, ("level", "memory")), int(getattr(memory.stats(), name))
    yield (*base, ("level", "distributed")), int(getattr(events, f"distributed_{name}"))


def _counts(events: Any, memory: Any, base: _Attrs) -> Iterator[_Count]:
    """Every counter observation of one cache (what is kept when it goes)."""
    instruments = [("level", "hits"), ("level", "misses"), ("evictions", "")]
    instruments += [("counter", counter) for counter in COUNTER_NAMES]
    for instrument in instruments:
        for attrs, value in _values(events, memory, base, instrument):
            yield (instrument, attrs), value


def _retire_collected(
    instruments: _Instruments, events: Any, memory: Any, base: dict[str, str]
) -> None:
    # A cache collected without being closed (weakref.finalize: it is gone, these are not).
    instruments.retire(None, list(_counts(events, memory, tuple(base.items()))))


# == Per cache =====================================================================================


class CacheTelemetry:
    """The telemetry of one cache (and its tenant views)."""

    def __init__(self, config: Telemetry, core: Core) -> None:
        self.config = config
        self.core = core
        self.namespace = core.namespace
        #: The attributes every observation of this cache carries.
        self.base = {"dataferry.namespace": core.namespace}
        self._base_items = tuple(self.base.items())
        #: The L2 circuit breaker's state ("closed", "half_open", "open"), set by the facade.
        self.breaker: Callable[[], str] | None = None
        self._instruments = _instruments_for(config.meter_provider) if config.metrics else None
        self._tracer = (
            trace.get_tracer("dataferry", __version__, tracer_provider=config.tracer_provider)
            if config.traces
            else None
        )
        self._finalizer: weakref.finalize[Any, Any] | None = None
        #: Whether spans / duration records reach a real provider (see _live_tracer).
        #: The tracer and the duration histogram once they reach a real provider (see _look).
        self._live_tracer: Any = None
        self._duration: Any = None
        self._next_check = 0.0
        self._settled = False
        if self._instruments is not None:
            self._instruments.add(self)
            # A cache dropped without being closed keeps its counts too: when it is collected,
            # they are taken from what it leaves (its counters and its L1), not from it.
            self._finalizer = weakref.finalize(
                self, _retire_collected, self._instruments, core.events, core.memory, self.base
            )

    # -- metrics, read by the callbacks --------------------------------------------------------

    def memory_stat(self, name: str) -> int:
        memory = self.core.memory
        return 0 if memory is None else int(getattr(memory.stats(), name))

    def circuit_state(self) -> int:
        return CIRCUIT_STATES.get(self.breaker() if self.breaker is not None else "closed", 0)

    def values(
        self, instrument: tuple[str, str]
    ) -> Iterator[tuple[tuple[tuple[str, str], ...], int]]:
        """``(attributes, value)`` of this cache for one counter instrument."""
        return _values(self.core.events, self.core.memory, self._base_items, instrument)

    def retire(self) -> None:
        """The cache closed: keep its counts in the totals, stop reading it."""
        finalizer = self._finalizer
        if finalizer is not None and finalizer.detach() is not None:
            assert self._instruments is not None
            counts = list(_counts(self.core.events, self.core.memory, self._base_items))
            self._instruments.retire(self, counts)

    def observe_latency(self, ms: float) -> None:
        """A backplane message was applied ``ms`` after it was published."""
        if self._instruments is not None:
            self._instruments.latency.record(ms, self.base)

    # -- spans and durations --------------------------------------------------------------------

    def operation(self, name: str, key: str | None = None, tenant: str | None = None) -> Any:
        """A cache operation that goes past L1: its span, and its duration in the histogram."""
        return self._begin(name, key, tenant)

    def step(self, name: str, key: str | None = None) -> Any:
        """A part of an operation (``factory``, ``lock.wait``, ``backplane.publish``...)."""
        return self._begin(name, key, None)

    def l2_call(self, operation: str, keys: Sequence[str]) -> Any:
        """One attempt of an L2 call (``distributed.<operation>``; the key if it is one)."""
        return self._begin(operation, keys[0] if len(keys) == 1 else None, None, "distributed.")

    def _begin(self, name: str, key: str | None, tenant: str | None, prefix: str = "") -> Any:
        if not self._settled:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + PROVIDER_CHECK
                self._look()
        tracer, duration = self._live_tracer, self._duration
        if tracer is None and duration is None:
            return NO_OPERATION
        return _Operation(self, prefix + name, key, tenant, tracer, duration)

    def _look(self) -> None:
        # Until the application installs an SDK, the API's global providers are proxies whose
        # spans and records do nothing, yet cost microseconds each (context attach, attribute
        # dicts; asking the API for its providers reads the environment): skip them, and look
        # again at most every PROVIDER_CHECK seconds. A real provider (it can only be set
        # once) is used from then on; each side is settled once off or live.
        config = self.config
        if (
            self._tracer is not None
            and self._live_tracer is None
            and (
                config.tracer_provider is not None
                or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
            )
        ):
            self._live_tracer = self._tracer
        instruments = self._instruments
        if instruments is not None and self._duration is None:
            provider = config.meter_provider or metrics.get_meter_provider()
            if type(provider).__name__ != "_ProxyMeterProvider":
                self._duration = instruments.duration
        self._settled = (self._tracer is None or self._live_tracer is not None) and (
            instruments is None or self._duration is not None
        )

    def traced(self, memory: Any) -> _TracedMemory:
        """``memory`` as the L1-hit path sees it with ``trace_memory_hits``: a span per get."""
        return _TracedMemory(memory, self)


class _Operation:
    """A span (current while it lasts) and a duration, as a context manager."""

    __slots__ = (
        "_attrs",
        "_duration",
        "_key",
        "_name",
        "_span",
        "_t0",
        "_tel",
        "_token",
        "_tracer",
        "outcome",
    )

    def __init__(
        self,
        tel: CacheTelemetry,
        operation: str,
        key: str | None,
        tenant: str | None,
        tracer: Any,
        duration: Any,
    ) -> None:
        self._tel = tel
        self._tracer = tracer
        self._duration = duration
        self._name = f"dataferry.{operation}"
        attrs: dict[str, Any] = {"dataferry.namespace": tel.namespace, "operation": operation}
        config = tel.config
        if tenant is not None and config.tenant_attribute:
            attrs["dataferry.tenant"] = tenant
        self._attrs = attrs
        self._key = key if config.record_keys else None
        self._span: Span | None = None
        self._token: object = None
        #: What came of it, as the histogram's ``outcome`` attribute (default "ok"/"error").
        self.outcome: str | None = None

    def __enter__(self) -> _Operation:
        tracer = self._tracer
        if tracer is not None:
            attrs = dict(self._attrs)
            if self._key is not None:
                attrs["dataferry.key"] = self._key
            span = tracer.start_span(self._name, attributes=attrs)
            self._span = span
            self._token = otel_context.attach(trace.set_span_in_context(span))
        self._t0 = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._t0
        outcome = self.outcome or ("ok" if exc is None else "error")
        duration = self._duration
        if duration is not None:
            duration.record(elapsed, {**self._attrs, "outcome": outcome})
        span = self._span
        if span is not None:
            if exc is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("dataferry.outcome", outcome)
            span.end()
            otel_context.detach(self._token)  # type: ignore[arg-type]


class _NoOperation:
    """What an operation is while nothing records: a context manager that does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoOperation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    @property
    def outcome(self) -> None:
        return None

    @outcome.setter
    def outcome(self, value: str) -> None:
        pass


NO_OPERATION: Final[Any] = _NoOperation()


class _TracedMemory:
    """The L1 for the facades' hit path, with a ``dataferry.memory.get`` span per lookup."""

    __slots__ = ("_memory", "_tel")

    def __init__(self, memory: Any, tel: CacheTelemetry) -> None:
        self._memory = memory
        self._tel = tel

    def get(self, key: str, default: Any = None) -> Any:
        with self._tel.step("memory.get") as op:
            value = self._memory.get(key, default)
            op.outcome = "miss" if value is default else "hit"
            return value

    def get_entry(self, key: str) -> Any:
        # The facades' typed lookups (``type=``) read ``(value, meta)`` through here too.
        with self._tel.step("memory.get") as op:
            entry = self._memory.get_entry(key)
            op.outcome = "miss" if entry is None else "hit"
            return entry
