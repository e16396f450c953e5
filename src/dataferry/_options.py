"""Per-call options (:class:`EntryOptions`) and the adaptive factory result (:class:`Entry`).

Every :class:`EntryOptions` field defaults to :data:`NOT_GIVEN`, which means "inherit the
cache's default". ``None`` is a value of its own where a field allows it (``l1_ttl=None``: no
separate L1 limit), so a call can unset an option that the cache's defaults set.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any, Final, Generic, TypeVar

from dataferry._errors import ConfigurationError

__all__ = ["MAX_TTL", "NOT_GIVEN", "Entry", "EntryOptions", "NotGiven", "seconds"]

T = TypeVar("T")

#: The longest ttl any option accepts: 100 years, in seconds. Redis refuses expiries whose
#: millisecond deadline overflows a 64-bit integer; a bound far below that keeps every L2 able
#: to store what a call asks for, so a ttl is refused at the call instead of failing as an
#: "outage" at write time.
MAX_TTL: Final = 100 * 365 * 24 * 3600.0


class NotGiven:
    """The type of :data:`NOT_GIVEN`: an option that was not given (inherit the default)."""

    __slots__ = ()
    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


#: "Not given": the option inherits the cache's default (``None`` is a value of its own).
NOT_GIVEN: Final = NotGiven()


def seconds(name: str, value: object, *, allow_zero: bool = True) -> float:
    """Return ``value`` (a number of seconds or a ``timedelta``) as a float, validated.

    Raises :class:`ConfigurationError` for anything else, a negative, NaN or infinite value,
    zero when ``allow_zero`` is false, or more than :data:`MAX_TTL`.
    """
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"{name} must be a number of seconds or a timedelta, got {value!r}"
        )
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
        low = "> 0" if not allow_zero else ">= 0"
        raise ConfigurationError(f"{name} must be a finite number of seconds {low}, got {value!r}")
    if value > MAX_TTL:
        raise ConfigurationError(
            f"{name} must be at most {MAX_TTL:.0f} seconds (100 years), got {value!r}"
        )
    return float(value)


Seconds = float | timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryOptions:
    """Options for one cache call; a field left out inherits the cache's default.

    A field that is not given is :data:`NOT_GIVEN`. Durations are seconds (``int`` or
    ``float``) or a :class:`datetime.timedelta`, and are stored as ``float``.

    Attributes:
        ttl: Seconds the value stays fresh (logical TTL), in L1 and L2. ``0`` means "don't
            cache": the value is returned and any old entry is removed.
        l1_ttl: Seconds the value may stay in L1 (capped by ``ttl``); shorter than ``ttl``
            bounds how long another node's write can go unseen without a backplane. ``None``:
            no separate limit (unsets a default).
        skip_memory: Neither read nor write L1 for this call.
        skip_distributed: Neither read nor write L2 for this call.
        compress: Force compression on (``True``) or off (``False``) for this entry; ``None``:
            the codec decides (compress when it makes the payload smaller).
        encrypt: Force encryption on (``True``) or off (``False``) for this entry; ``None``:
            the codec decides (encrypt when it has an encryptor).
        fail_safe: Keep the entry for ``fail_safe_max`` seconds past its expiry (in L1 and
            L2), and serve that stale value when the factory raises or times out, or when L2
            is down and only L1 still has it. Each use is a ``failsafe_activations`` event.
        fail_safe_max: Seconds a stale value is kept for fail-safe past its expiry (default
            one day).
        fail_safe_throttle: Seconds a stale value served by fail-safe is treated as fresh in
            this process, so a failing factory is called at most once per throttle (default
            30).
        factory_soft_timeout: Seconds to wait for the factory when a stale value exists: past
            it, the stale value is returned and the factory finishes in the background (its
            value then goes to L1 and L2). ``None``: no soft timeout.
        factory_hard_timeout: Seconds to wait for the factory at most: past it, the stale
            value is returned if there is one, else :class:`~dataferry.FactoryTimeoutError`
            is raised; the factory still finishes in the background. ``None``: no limit.
        eager_refresh: A fraction of the ttl in ``(0, 1)``: a hit after that much of the
            entry's life returns at once and starts one background refresh (shared by every
            caller). ``None``: off.
        early_expiration: Probabilistic early expiration (XFetch, Vattani et al., VLDB 2015)
            with this ``beta`` (``1.0`` is the paper's default; larger refreshes earlier): an
            entry is refreshed in the background before it expires, earlier the longer its
            factory takes (measured). ``None``: off.
        jitter: Up to this many seconds, drawn at random per write, are added to the ttl, so
            entries written together don't all expire together. ``0``: none.
        raise_distributed_errors: Raise :class:`~dataferry.DistributedCacheError` (or
            :class:`~dataferry.CircuitOpenError`) when L2 fails, instead of answering from L1
            and the factory.
        background_distributed_writes: Return once L1 holds the value; the L2 write (or
            delete) follows in the background, in order per key.
        distributed_lock: Stampede protection across processes: on a miss, one caller in the
            whole fleet runs the factory, under a lock in L2 (Redis ``SET NX PX`` with a
            token; the SQLite L2 has the same across the processes of one host); callers in
            other processes wait for its value and read it from L2. Within a process, callers
            share one computation whether or not this is on. The lock is for efficiency,
            not correctness: past ``distributed_lock_timeout``, or when the L2 fails, a
            caller runs the factory anyway.
        distributed_lock_timeout: Seconds a caller waits for another process's value before
            running the factory itself; also how long the lock lasts at most, so a holder
            that crashed delays the others by no more than this (default 10).

    Raises:
        ConfigurationError: A field of the wrong type, or a duration out of range.

    """

    ttl: float | timedelta | NotGiven = NOT_GIVEN
    l1_ttl: float | timedelta | NotGiven | None = NOT_GIVEN
    skip_memory: bool | NotGiven = NOT_GIVEN
    skip_distributed: bool | NotGiven = NOT_GIVEN
    compress: bool | NotGiven | None = NOT_GIVEN
    encrypt: bool | NotGiven | None = NOT_GIVEN
    fail_safe: bool | NotGiven = NOT_GIVEN
    fail_safe_max: float | timedelta | NotGiven = NOT_GIVEN
    fail_safe_throttle: float | timedelta | NotGiven = NOT_GIVEN
    factory_soft_timeout: float | timedelta | NotGiven | None = NOT_GIVEN
    factory_hard_timeout: float | timedelta | NotGiven | None = NOT_GIVEN
    eager_refresh: float | NotGiven | None = NOT_GIVEN
    early_expiration: float | NotGiven | None = NOT_GIVEN
    jitter: float | timedelta | NotGiven = NOT_GIVEN
    raise_distributed_errors: bool | NotGiven = NOT_GIVEN
    background_distributed_writes: bool | NotGiven = NOT_GIVEN
    distributed_lock: bool | NotGiven = NOT_GIVEN
    distributed_lock_timeout: float | timedelta | NotGiven = NOT_GIVEN

    def __post_init__(self) -> None:
        # Durations are normalized to float here, once, so resolution never converts again.
        if self.ttl is not NOT_GIVEN:
            object.__setattr__(self, "ttl", seconds("ttl", self.ttl))
        for name in ("l1_ttl", "factory_soft_timeout", "factory_hard_timeout"):
            v = getattr(self, name)
            if v is not NOT_GIVEN and v is not None:
                object.__setattr__(self, name, seconds(name, v, allow_zero=name == "l1_ttl"))
        for name in ("fail_safe_max", "fail_safe_throttle", "jitter"):
            v = getattr(self, name)
            if v is not NOT_GIVEN:
                object.__setattr__(self, name, seconds(name, v))
        v = self.distributed_lock_timeout
        if v is not NOT_GIVEN:
            object.__setattr__(
                self,
                "distributed_lock_timeout",
                seconds("distributed_lock_timeout", v, allow_zero=False),
            )
        for name in (
            "skip_memory",
            "skip_distributed",
            "fail_safe",
            "raise_distributed_errors",
            "background_distributed_writes",
            "distributed_lock",
        ):
            v = getattr(self, name)
            if v is not NOT_GIVEN and not isinstance(v, bool):
                raise ConfigurationError(f"{name} must be a bool, got {v!r}")
        v = self.eager_refresh
        if v is not NOT_GIVEN and v is not None and not _fraction(v):
            raise ConfigurationError(
                f"eager_refresh must be a fraction of the ttl in (0, 1) or None, got {v!r}"
            )
        v = self.early_expiration
        if v is not NOT_GIVEN and v is not None and not _positive(v):
            raise ConfigurationError(
                f"early_expiration must be a number > 0 (XFetch's beta) or None, got {v!r}"
            )
        for name in ("compress", "encrypt"):
            v = getattr(self, name)
            if v is not NOT_GIVEN and v is not None and not isinstance(v, bool):
                raise ConfigurationError(f"{name} must be a bool or None, got {v!r}")

    def given(self) -> dict[str, Any]:
        """Return the fields that were given, as a dict."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not NOT_GIVEN
        }

    def merged(self, other: EntryOptions | None) -> EntryOptions:
        """Return these options with every field that ``other`` gives taken from ``other``."""
        if other is None:
            return self
        if not isinstance(other, EntryOptions):
            raise ConfigurationError(f"options must be EntryOptions, got {other!r}")
        changes = other.given()
        return replace(self, **changes) if changes else self


def _fraction(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and 0 < v < 1


def _positive(v: object) -> bool:
    return (
        not isinstance(v, bool) and isinstance(v, (int, float)) and 0 < v < math.inf  # not NaN
    )


def _check_tags_type(tags: object) -> None:
    if tags is not None and (isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable)):
        raise ConfigurationError(f"tags must be an iterable of str, got {tags!r}")


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    """A factory result that adapts its own cache options (adaptive caching).

    A factory may return ``Entry(value, ttl=5)`` instead of ``value`` to cache this value for
    a different time than the call asked for (for example a shorter ttl for a "not found"),
    with other tags, or with other :class:`EntryOptions`. ``ttl=0`` returns the value without
    caching it.
    """

    value: T
    ttl: float | timedelta | None = None
    tags: Iterable[str] | None = field(default=None)
    options: EntryOptions | None = None

    def __post_init__(self) -> None:
        if self.ttl is not None:
            object.__setattr__(self, "ttl", seconds("ttl", self.ttl))
        _check_tags_type(self.tags)
        if self.options is not None and not isinstance(self.options, EntryOptions):
            raise ConfigurationError(f"options must be EntryOptions, got {self.options!r}")
