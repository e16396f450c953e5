"""Typed cache events: subscribe with ``cache.on(EventType, handler)``.

Every event a cache reports, as a small frozen dataclass::

    from dataferry.events import FactoryError, FailSafeActivation

    def alert(event: FactoryError) -> None:
        log.warning("loading %s failed: %s", event.key, event.error)

    stop = cache.on(FactoryError, alert)   # ... later: stop()

Handlers run in the task or thread that caused the event (backplane events: the backplane's
thread), synchronously, and must be quick. They can't break a cache call: an exception a
handler raises is logged and dropped. ``key`` is the storage key (``{namespace}:k:{key}``, or
``{namespace}:t:{tenant}:{key}``): it may be personal data, so don't log it where that matters.

:class:`Hit`, :class:`Miss` and :class:`Eviction` happen on the hottest paths. They cost
nothing until something subscribes to them; then every L1 lookup pays for one call more
(about 0.2 µs plus the handler). The counters of :meth:`~dataferry.AsyncDataFerry.stats` and
the OpenTelemetry metrics count them without that cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

__all__ = [
    "BackplaneMessage",
    "BackplaneStateChange",
    "CacheEvent",
    "CircuitStateChange",
    "DecodeFailure",
    "DistributedFailure",
    "Eviction",
    "FactoryCall",
    "FactoryError",
    "FailSafeActivation",
    "Hit",
    "LockTimeout",
    "LockWait",
    "Miss",
    "RecoveryDrop",
    "StampedeJoin",
]


@dataclass(frozen=True, slots=True)
class CacheEvent:
    """The base of every event (subscribe to it to get them all)."""

    #: The event-bus names this class stands for (see ``cache.subscribe``).
    names: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def build(cls, name: str, attributes: Mapping[str, Any]) -> CacheEvent:
        """The event for the bus event ``name`` with ``attributes`` (internal)."""
        wanted = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in attributes.items() if k in wanted})


@dataclass(frozen=True, slots=True)
class Hit(CacheEvent):
    """A lookup answered from L1 (``level="memory"``) or L2 (``"distributed"``)."""

    names: ClassVar[tuple[str, ...]] = ("memory_hits", "distributed_hits")
    key: str
    level: Literal["memory", "distributed"]

    @classmethod
    def build(cls, name: str, attributes: Mapping[str, Any]) -> CacheEvent:  # noqa: D102
        return cls(attributes["key"], "memory" if name == "memory_hits" else "distributed")


@dataclass(frozen=True, slots=True)
class Miss(CacheEvent):
    """A lookup L1 (``level="memory"``) or L2 (``"distributed"``) could not answer."""

    names: ClassVar[tuple[str, ...]] = ("memory_misses", "distributed_misses")
    key: str
    level: Literal["memory", "distributed"]

    @classmethod
    def build(cls, name: str, attributes: Mapping[str, Any]) -> CacheEvent:  # noqa: D102
        return cls(attributes["key"], "memory" if name == "memory_misses" else "distributed")


@dataclass(frozen=True, slots=True)
class Eviction(CacheEvent):
    """L1 dropped ``key`` to stay within its size limits (expirations are not evictions)."""

    names: ClassVar[tuple[str, ...]] = ("evictions",)
    key: str


@dataclass(frozen=True, slots=True)
class FactoryCall(CacheEvent):
    """A factory (or ``load_many``) was called for ``key`` (``None`` for a batch)."""

    names: ClassVar[tuple[str, ...]] = ("factory_calls",)
    key: str | None


@dataclass(frozen=True, slots=True)
class FactoryError(CacheEvent):
    """A factory raised: ``error`` is the exception's class name."""

    names: ClassVar[tuple[str, ...]] = ("factory_errors",)
    key: str | None
    error: str


@dataclass(frozen=True, slots=True)
class FailSafeActivation(CacheEvent):
    """A stale value was served (``reason``: factory_error, soft_timeout, hard_timeout)."""

    names: ClassVar[tuple[str, ...]] = ("failsafe_activations",)
    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class StampedeJoin(CacheEvent):
    """A caller joined another caller's computation of the same key."""

    names: ClassVar[tuple[str, ...]] = ("stampede_joins",)

    @classmethod
    def build(cls, name: str, attributes: Mapping[str, Any]) -> CacheEvent:  # noqa: D102
        return cls()


@dataclass(frozen=True, slots=True)
class LockWait(CacheEvent):
    """A miss found another process holding the key's distributed lock, and waits."""

    names: ClassVar[tuple[str, ...]] = ("lock_waits",)
    key: str


@dataclass(frozen=True, slots=True)
class LockTimeout(CacheEvent):
    """A wait for another process's distributed lock ran out: the factory runs here."""

    names: ClassVar[tuple[str, ...]] = ("lock_timeouts",)
    key: str


@dataclass(frozen=True, slots=True)
class DistributedFailure(CacheEvent):
    """An L2 call failed (or was skipped by the open circuit breaker)."""

    names: ClassVar[tuple[str, ...]] = ("distributed_errors",)
    operation: str
    error: str


@dataclass(frozen=True, slots=True)
class CircuitStateChange(CacheEvent):
    """The L2 circuit breaker is now ``open``, ``half_open`` or ``closed``."""

    names: ClassVar[tuple[str, ...]] = ("circuit_state",)
    state: str


@dataclass(frozen=True, slots=True)
class DecodeFailure(CacheEvent):
    """An L2 entry could not be decoded (corrupted, tampered, unknown key...): a miss."""

    names: ClassVar[tuple[str, ...]] = ("decode_errors",)
    key: str | None
    error: str


@dataclass(frozen=True, slots=True)
class RecoveryDrop(CacheEvent):
    """``count`` queued L2 writes were given up (the queue's bound, or closing)."""

    names: ClassVar[tuple[str, ...]] = ("recovery_drops",)
    count: int


@dataclass(frozen=True, slots=True)
class BackplaneMessage(CacheEvent):
    """Another node's invalidation applied to L1, ``latency_ms`` after it was published.

    ``action``: set, remove, expire, tag or clear.
    """

    names: ClassVar[tuple[str, ...]] = ("backplane_messages",)
    action: str
    key: str
    latency_ms: float


@dataclass(frozen=True, slots=True)
class BackplaneStateChange(CacheEvent):
    """The backplane's subscription is ``connected``, ``disconnected`` or ``reconnected``."""

    names: ClassVar[tuple[str, ...]] = ("backplane_state",)
    state: str


#: The bus name of each event, and its class.
BY_NAME: dict[str, type[CacheEvent]] = {
    name: cls
    for cls in (
        Hit,
        Miss,
        Eviction,
        FactoryCall,
        FactoryError,
        FailSafeActivation,
        StampedeJoin,
        LockWait,
        LockTimeout,
        DistributedFailure,
        CircuitStateChange,
        DecodeFailure,
        RecoveryDrop,
        BackplaneMessage,
        BackplaneStateChange,
    )
    for name in cls.names
}

#: Events on the hottest paths: reported only while something subscribes to them.
HOT = frozenset(
    {"memory_hits", "memory_misses", "distributed_hits", "distributed_misses", "evictions"}
)
