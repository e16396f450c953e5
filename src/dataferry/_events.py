"""One place for cache events: counters that ``stats()`` reads and telemetry exports.

Call sites bump plain integer attributes (``events.factory_calls += 1``): that is the cheapest
thing Python can do, so the hot paths pay nothing for observability. Readers (``stats()``, the
OpenTelemetry observable counters) take snapshots. Increments race benignly between threads:
a counter may very rarely lose one increment under heavy thread contention, which is
acceptable for statistics and never affects cached values.

Rare events that carry details (a decode error, an L2 failure) also go to listeners registered
with :meth:`CacheEvents.subscribe`, so telemetry can attach attributes without new call sites.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from dataferry._errors import ConfigurationError

__all__ = ["COUNTERS", "GAUGES", "LATENCY_BOUNDS_MS", "CacheEvents", "LatencyHistogram", "Stats"]

#: Upper bounds (milliseconds) of the buckets of the backplane's latency histogram; a last
#: bucket counts what is above the largest.
LATENCY_BOUNDS_MS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0)

#: Counter attribute names, in the order ``Stats`` lists them.
COUNTERS = (
    "distributed_hits",
    "distributed_misses",
    "factory_calls",
    "factory_errors",
    "stampede_joins",
    "failsafe_activations",
    "factory_timeouts",
    "refreshes",
    "lock_waits",
    "lock_timeouts",
    "distributed_errors",
    "decode_errors",
    "backplane_messages",
    "backplane_sent",
    "backplane_dropped",
    "payload_too_large",
    "circuit_breaks",
    "recovery_replays",
    "recovery_drops",
)

#: Attributes that hold a current level, not a running count (set, never incremented).
GAUGES = ("recovery_pending",)

Listener = Callable[[str, dict[str, Any]], None]

logger = logging.getLogger("dataferry")


class CacheEvents:
    """Mutable event counters shared by one cache and all of its tenant views.

    Listeners are kept in a tuple that is replaced (never mutated) on subscribe and
    unsubscribe, so a listener may subscribe or unsubscribe, itself or others, while an event
    is being dispatched, from any thread: the dispatch in progress uses the tuple it started
    with. A listener that raises is logged (with its traceback the first time, then at debug
    level) and never breaks the cache call that emitted the event.
    """

    __slots__ = (
        *COUNTERS,
        *GAUGES,
        "_failed",
        "_latency",
        "_latency_sum",
        "_listeners",
        "_lock",
        "hot",
        "hot_listeners",
    )

    distributed_hits: int
    distributed_misses: int
    factory_calls: int
    factory_errors: int
    stampede_joins: int
    failsafe_activations: int
    factory_timeouts: int
    refreshes: int
    lock_waits: int
    lock_timeouts: int
    distributed_errors: int
    decode_errors: int
    backplane_messages: int
    backplane_sent: int
    backplane_dropped: int
    payload_too_large: int
    circuit_breaks: int
    recovery_replays: int
    recovery_drops: int
    recovery_pending: int

    def __init__(self) -> None:
        for name in (*COUNTERS, *GAUGES):
            setattr(self, name, 0)
        self._listeners: tuple[Listener, ...] = ()
        self._failed: set[int] = set()
        self._lock = threading.Lock()
        self._latency = [0] * (len(LATENCY_BOUNDS_MS) + 1)
        self._latency_sum = 0.0
        #: Whether hits, misses and evictions are reported one by one (someone listens).
        self.hot = False
        self.hot_listeners = 0

    def observe_latency(self, ms: float) -> None:
        """Count one backplane message received ``ms`` milliseconds after it was published."""
        self._latency[bisect.bisect_left(LATENCY_BOUNDS_MS, ms)] += 1
        self._latency_sum += ms

    def latency(self) -> LatencyHistogram:
        """A snapshot of the backplane latency histogram."""
        return LatencyHistogram(LATENCY_BOUNDS_MS, tuple(self._latency), self._latency_sum)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, attributes)`` on every :meth:`emit`; returns an unsubscribe.

        The returned function removes this subscription; calling it again does nothing.
        """
        if not callable(listener):
            raise ConfigurationError(f"listener must be callable, got {listener!r}")
        token = _Subscription(listener)
        with self._lock:
            self._listeners = (*self._listeners, token)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not token)

        return unsubscribe

    def emit(self, event: str, **attributes: Any) -> None:
        """Count ``event`` (a counter name) and tell the listeners, with details."""
        setattr(self, event, getattr(self, event) + 1)
        self.notify(event, **attributes)

    def notify(self, event: str, **attributes: Any) -> None:
        """Tell the listeners of ``event`` (already counted by the caller)."""
        for listener in self._listeners:
            try:
                listener(event, attributes)
            except Exception:
                self._listener_failed(listener, event)

    def _listener_failed(self, listener: Listener, event: str) -> None:
        ident = id(listener)
        if ident in self._failed:
            logger.debug("event listener %r raised again on %r", listener, event, exc_info=True)
            return
        self._failed.add(ident)
        logger.error(
            "event listener %r raised on %r; the cache call went on (later failures of this "
            "listener are logged at debug level)",
            listener,
            event,
            exc_info=True,
        )

    def counts(self) -> dict[str, int]:
        """Return a snapshot of every counter and gauge."""
        return {name: getattr(self, name) for name in (*COUNTERS, *GAUGES)}


class _Subscription:
    """One subscription: the same function subscribed twice is two subscriptions."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Listener) -> None:
        self._fn = fn

    def __call__(self, event: str, attributes: dict[str, Any]) -> None:
        self._fn(event, attributes)

    def __repr__(self) -> str:
        return repr(self._fn)


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    """How long backplane messages took from publish (on the sending node) to L1 drop (here).

    ``counts[i]`` messages took at most ``bounds[i]`` ms (and more than ``bounds[i - 1]``);
    the last count is for messages slower than ``bounds[-1]``. Clocks of two hosts are
    compared, so across hosts the figures include their clock offset.
    """

    bounds: tuple[float, ...] = LATENCY_BOUNDS_MS
    """Upper bounds of the buckets, in milliseconds."""
    counts: tuple[int, ...] = (0,) * (len(LATENCY_BOUNDS_MS) + 1)
    """Messages per bucket (one more than ``bounds``)."""
    total_ms: float = 0.0
    """Sum of every latency, in milliseconds."""

    @property
    def count(self) -> int:
        """Messages observed."""
        return sum(self.counts)

    @property
    def mean_ms(self) -> float:
        """Mean latency in milliseconds (0.0 before any message)."""
        n = self.count
        return self.total_ms / n if n else 0.0

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding quantile ``q`` (in ``[0, 1]``), in ms.

        ``inf`` if it falls in the last bucket; 0.0 before any message.
        """
        if not 0.0 <= q <= 1.0:
            raise ConfigurationError(f"a quantile is in [0, 1], got {q!r}")
        n = self.count
        if not n:
            return 0.0
        rank = q * n
        seen = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            seen += count
            if seen >= rank and count:
                return bound
        return float("inf")  # pragma: no cover - the loop always returns

    def __str__(self) -> str:
        """One line: ``count 120, mean 0.42 ms, p50 <= 0.5 ms, p99 <= 2 ms``.

        The quantiles are bucket upper bounds, hence the ``<=`` (``> 1000 ms`` past the last
        bound); an empty histogram reads ``count 0, mean -, p50 -, p99 -``.
        """
        n = self.count
        if not n:
            return "count 0, mean -, p50 -, p99 -"
        return (
            f"count {n:,}, mean {_mean_ms(self.mean_ms)} ms, "
            f"p50 {self._bucket(0.5)}, p99 {self._bucket(0.99)}"
        )

    def _bucket(self, q: float) -> str:
        bound = self.quantile(q)
        if bound == float("inf"):
            return f"> {self.bounds[-1] if self.bounds else 0.0:g} ms"
        return f"<= {bound:g} ms"


def _mean_ms(ms: float) -> str:
    # Three significant digits or so, never an exponent: 0.42, 12.3, 1,234.
    if ms < 10:
        return f"{ms:.2f}"
    return f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


#: How ``str(Stats)`` groups the fields, in this order. A field missing here is still shown,
#: under "other", so a new counter can't vanish from the table.
_STATS_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "L1 memory",
        (
            "memory_hits",
            "memory_misses",
            "memory_entries",
            "memory_weight",
            "memory_evictions_size",
            "memory_evictions_expired",
        ),
    ),
    ("L2 distributed", ("distributed_hits", "distributed_misses")),
    ("factory", ("factory_calls", "factory_errors", "factory_timeouts")),
    ("stampede / lock", ("stampede_joins", "lock_waits", "lock_timeouts")),
    ("fail-safe / refresh", ("failsafe_activations", "refreshes")),
    (
        "resilience / recovery",
        ("circuit_breaks", "recovery_pending", "recovery_replays", "recovery_drops"),
    ),
    (
        "backplane",
        ("backplane_sent", "backplane_messages", "backplane_dropped", "backplane_latency"),
    ),
    ("errors", ("distributed_errors", "decode_errors", "payload_too_large")),
)

#: Fields that hold a level at the time of the snapshot, not a running count since start.
_LEVELS = frozenset({"memory_entries", "memory_weight", *GAUGES})


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of a cache's counters, returned by ``stats()``.

    ``memory_*`` fields come from the L1 :class:`~dataferry.MemoryCache` (zero without L1);
    the others count what the facade did. ``circuit_breaks`` counts the openings of the L2
    circuit breaker; ``recovery_pending`` is the number of L2 writes waiting to be replayed
    (or written in the background) now; ``recovery_replays`` counts queued writes the L2 took
    later; ``recovery_drops`` counts queued writes given up (turned into deletes by the
    queue's bound, or still queued when ``close_timeout`` ran out). ``lock_waits`` counts
    misses that found another process holding the key's distributed lock and waited for its
    value; ``lock_timeouts`` those that waited ``distributed_lock_timeout`` in vain and ran
    the factory themselves. ``backplane_sent`` / ``backplane_messages`` count the
    invalidations published / received (and applied); ``backplane_latency`` is the histogram
    of the received ones' publish-to-L1-drop latency (not part of :meth:`as_dict`).
    """

    memory_hits: int = 0
    memory_misses: int = 0
    memory_entries: int = 0
    memory_weight: int = 0
    memory_evictions_size: int = 0
    memory_evictions_expired: int = 0
    distributed_hits: int = 0
    distributed_misses: int = 0
    factory_calls: int = 0
    factory_errors: int = 0
    stampede_joins: int = 0
    failsafe_activations: int = 0
    factory_timeouts: int = 0
    refreshes: int = 0
    lock_waits: int = 0
    lock_timeouts: int = 0
    distributed_errors: int = 0
    decode_errors: int = 0
    backplane_messages: int = 0
    backplane_sent: int = 0
    backplane_dropped: int = 0
    payload_too_large: int = 0
    circuit_breaks: int = 0
    recovery_pending: int = 0
    recovery_replays: int = 0
    recovery_drops: int = 0
    backplane_latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    @property
    def hits(self) -> int:
        """Hits at any level (a request answered from L1 or L2)."""
        return self.memory_hits + self.distributed_hits

    @property
    def hit_ratio(self) -> float:
        """Fraction of lookups answered from L1 or L2 (0.0 when nothing was looked up)."""
        requests = self._lookups()
        return self.hits / requests if requests else 0.0

    def _lookups(self) -> int:
        requests = self.memory_hits + self.memory_misses
        if requests == 0:  # no L1: every lookup went to L2
            requests = self.distributed_hits + self.distributed_misses
        return requests

    def as_dict(self) -> dict[str, int]:
        """Return the counters (and gauges) as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.type == "int"}

    def __str__(self) -> str:
        """Every counter and gauge as an aligned plain-text table, grouped by what it is about.

        The first line gives the hit ratio; then one row per field, under a heading (L1
        memory, L2 distributed, factory, ...), zeros included, so a reader scanning for
        ``decode_errors`` finds it even when nothing went wrong. Rows marked ``(now)`` are
        levels at the time of the snapshot, not counts since start. ``repr()`` stays the
        dataclass's.
        """
        names = [f.name for f in fields(self)]
        listed = {name for _, group in _STATS_GROUPS for name in group}
        groups = [
            (heading, [name for name in group if name in names]) for heading, group in _STATS_GROUPS
        ]
        others = [name for name in names if name not in listed]
        if others:
            groups.append(("other", others))
        cells: dict[str, str] = {}
        numbers: dict[str, str] = {}
        for name in names:
            value = getattr(self, name)
            if isinstance(value, int):
                numbers[name] = f"{value:,}"
            else:
                cells[name] = str(value)
        name_width = max(map(len, names))
        number_width = max(map(len, numbers.values()), default=0)

        lookups = self._lookups()
        if lookups:
            ratio = f"{self.hit_ratio:.1%} ({self.hits:,} hits of {lookups:,} lookups, L1 or L2)"
        else:
            ratio = "- (no lookups yet)"
        lines = [f"DataFerry stats: hit ratio {ratio}"]
        for heading, group in groups:
            lines.append(heading)
            for name in group:
                if name in numbers:
                    row = f"  {name:<{name_width}}  {numbers[name]:>{number_width}}"
                    lines.append(row + ("  (now)" if name in _LEVELS else ""))
                else:  # the latency histogram: one line of its own, from the number column
                    lines.append(f"  {name:<{name_width}}  {cells[name]}")
        return "\n".join(lines)
