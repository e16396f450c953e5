"""Per-call options (:class:`EntryOptions`) and the adaptive factory result (:class:`Entry`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Generic, TypeVar

from dataferry._errors import ConfigurationError

__all__ = ["Entry", "EntryOptions"]

T = TypeVar("T")

_UNSET: Any = object()


def _check_seconds(name: str, value: object, *, allow_zero: bool = True) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero) or math.isinf(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryOptions:
    """Options for one cache call; ``None`` fields inherit the cache's defaults.

    Attributes:
        ttl: Seconds the value stays fresh (logical TTL), in L1 and L2.
        l1_ttl: Seconds the value may stay in L1 (capped by ``ttl``); shorter than ``ttl``
            bounds how long another node's write can go unseen without a backplane.
        skip_memory: Neither read nor write L1 for this call.
        skip_distributed: Neither read nor write L2 for this call.
        compress: Force compression on (``True``) or off (``False``) for this entry.
        encrypt: Force encryption on (``True``) or off (``False``) for this entry.

    """

    ttl: float | None = None
    l1_ttl: float | None = None
    skip_memory: bool | None = None
    skip_distributed: bool | None = None
    compress: bool | None = None
    encrypt: bool | None = None

    def __post_init__(self) -> None:
        _check_seconds("ttl", self.ttl)
        _check_seconds("l1_ttl", self.l1_ttl)
        for f in ("skip_memory", "skip_distributed", "compress", "encrypt"):
            v = getattr(self, f)
            if v is not None and not isinstance(v, bool):
                raise ConfigurationError(f"{f} must be a bool or None, got {v!r}")

    def merged(self, other: EntryOptions | None) -> EntryOptions:
        """Return these options with every field that ``other`` sets taken from ``other``."""
        if other is None:
            return self
        changes = {
            f.name: getattr(other, f.name)
            for f in fields(other)
            if getattr(other, f.name) is not None
        }
        return replace(self, **changes) if changes else self


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    """A factory result that adapts its own cache options (adaptive caching).

    A factory may return ``Entry(value, ttl=5)`` instead of ``value`` to cache this value for
    a different time than the call asked for (for example a shorter ttl for a "not found").
    """

    value: T
    ttl: float | None = None
    tags: Iterable[str] | None = field(default=None)
    options: EntryOptions | None = None

    def __post_init__(self) -> None:
        _check_seconds("ttl", self.ttl)
