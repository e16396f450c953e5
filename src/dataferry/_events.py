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

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["COUNTERS", "CacheEvents", "Stats"]

#: Counter attribute names, in the order ``Stats`` lists them.
COUNTERS = (
    "distributed_hits",
    "distributed_misses",
    "factory_calls",
    "factory_errors",
    "stampede_joins",
    "failsafe_activations",
    "distributed_errors",
    "decode_errors",
    "backplane_messages",
    "payload_too_large",
)

Listener = Callable[[str, dict[str, Any]], None]


class CacheEvents:
    """Mutable event counters shared by one cache and all of its tenant views."""

    __slots__ = (*COUNTERS, "_listeners")

    distributed_hits: int
    distributed_misses: int
    factory_calls: int
    factory_errors: int
    stampede_joins: int
    failsafe_activations: int
    distributed_errors: int
    decode_errors: int
    backplane_messages: int
    payload_too_large: int

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, attributes)`` on every :meth:`emit`; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, event: str, **attributes: Any) -> None:
        """Count ``event`` (a counter name) and tell the listeners, with details."""
        setattr(self, event, getattr(self, event) + 1)
        for listener in self._listeners:
            listener(event, attributes)

    def counts(self) -> dict[str, int]:
        """Return a snapshot of every counter."""
        return {name: getattr(self, name) for name in COUNTERS}


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of a cache's counters, returned by ``stats()``.

    ``memory_*`` fields come from the L1 :class:`~dataferry.MemoryCache` (zero without L1);
    the others count what the facade did.
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
    distributed_errors: int = 0
    decode_errors: int = 0
    backplane_messages: int = 0
    payload_too_large: int = 0

    @property
    def hits(self) -> int:
        """Hits at any level (a request answered from L1 or L2)."""
        return self.memory_hits + self.distributed_hits

    @property
    def hit_ratio(self) -> float:
        """Fraction of lookups answered from L1 or L2 (0.0 when nothing was looked up)."""
        requests = self.memory_hits + self.memory_misses
        if requests == 0:  # no L1: every lookup went to L2
            requests = self.distributed_hits + self.distributed_misses
        return self.hits / requests if requests else 0.0

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
