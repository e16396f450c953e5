"""Option resolution: cache defaults, then the call's options, then its ``ttl=``, then the factory.

The result is a :class:`Resolved`: every field concrete, so the read and write flows never look
at :data:`~dataferry._options.NOT_GIVEN`. The common call (no options, no ttl) gets the
cache's precomputed defaults without building anything.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any, Final

from dataferry._errors import ConfigurationError
from dataferry._options import NOT_GIVEN, Entry, EntryOptions, seconds
from dataferry._scopes import TAG_RETENTION

__all__ = ["DEFAULT_FAIL_SAFE_MAX", "DEFAULT_FAIL_SAFE_THROTTLE", "Resolved", "Resolver"]

#: How long a stale value is kept for fail-safe by default: a day (as FusionCache).
DEFAULT_FAIL_SAFE_MAX: Final = 86_400.0
#: How long a value served by fail-safe counts as fresh by default.
DEFAULT_FAIL_SAFE_THROTTLE: Final = 30.0
#: How long a caller waits for another process's value under the distributed lock by default.
DEFAULT_LOCK_TIMEOUT: Final = 10.0


class Resolved:
    """Options with every field decided, for one call (immutable by convention)."""

    #: The option fields, in EntryOptions' order.
    FIELDS = (
        "ttl",
        "l1_ttl",
        "skip_memory",
        "skip_distributed",
        "compress",
        "encrypt",
        "fail_safe",
        "fail_safe_max",
        "fail_safe_throttle",
        "factory_soft_timeout",
        "factory_hard_timeout",
        "eager_refresh",
        "early_expiration",
        "jitter",
        "raise_distributed_errors",
        "background_distributed_writes",
        "distributed_lock",
        "distributed_lock_timeout",
    )
    __slots__ = (*FIELDS, "stale_window", "refreshes", "timed")

    ttl: float
    l1_ttl: float | None
    skip_memory: bool
    skip_distributed: bool
    compress: bool | None
    encrypt: bool | None
    fail_safe: bool
    fail_safe_max: float
    fail_safe_throttle: float
    factory_soft_timeout: float | None
    factory_hard_timeout: float | None
    eager_refresh: float | None
    early_expiration: float | None
    jitter: float
    raise_distributed_errors: bool
    background_distributed_writes: bool
    distributed_lock: bool
    distributed_lock_timeout: float
    #: Seconds an entry is kept past its expiry to be served stale (0 without fail-safe).
    stale_window: float
    #: Whether an entry may be refreshed before it expires (eager refresh or XFetch).
    refreshes: bool
    #: Whether the factory runs under a soft or hard timeout.
    timed: bool

    def __init__(self, options: EntryOptions) -> None:
        # Only ever built from options merged over complete defaults: nothing is NOT_GIVEN.
        for name in self.FIELDS:
            value = getattr(options, name)
            assert value is not NOT_GIVEN, name
            object.__setattr__(self, name, value)
        set_ = object.__setattr__
        set_(self, "stale_window", self.fail_safe_max if self.fail_safe else 0.0)
        set_(self, "refreshes", self.eager_refresh is not None or self.early_expiration is not None)
        timed = self.factory_soft_timeout is not None or self.factory_hard_timeout is not None
        set_(self, "timed", timed)

    def logical_ttl(self) -> float:
        """The ttl of one write: ``ttl`` plus up to ``jitter`` seconds drawn at random."""
        jitter = self.jitter
        return self.ttl + random.uniform(0.0, jitter) if jitter else self.ttl

    def physical_ttl(self, ttl: float, tagged: bool = False) -> float:
        """Seconds an entry whose logical ttl is ``ttl`` stays stored in L2.

        The fail-safe window is added, so a stale value is still there to serve while the
        factory fails; the logical expiry in the envelope decides freshness. An entry with
        tags never outlives the record of a removal of its tags (``TAG_RETENTION``).
        """
        physical = ttl + self.stale_window
        return min(physical, TAG_RETENTION) if tagged else physical

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Resolved options are immutable")

    def __repr__(self) -> str:
        body = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.FIELDS)
        return f"Resolved({body})"


class Resolver:
    """Turns a call's ``ttl=`` / ``options=`` (and a factory's :class:`Entry`) into options."""

    __slots__ = ("_base", "_by_ttl", "defaults")

    def __init__(self, default_ttl: float | timedelta, default_options: EntryOptions | None):
        ttl = seconds("default_ttl", default_ttl, allow_zero=False)
        if default_options is not None and not isinstance(default_options, EntryOptions):
            raise ConfigurationError(
                f"default_options must be EntryOptions, got {default_options!r}"
            )
        base = EntryOptions(
            ttl=ttl,
            l1_ttl=None,
            skip_memory=False,
            skip_distributed=False,
            compress=None,
            encrypt=None,
            fail_safe=False,
            fail_safe_max=DEFAULT_FAIL_SAFE_MAX,
            fail_safe_throttle=DEFAULT_FAIL_SAFE_THROTTLE,
            factory_soft_timeout=None,
            factory_hard_timeout=None,
            eager_refresh=None,
            early_expiration=None,
            jitter=0.0,
            raise_distributed_errors=False,
            background_distributed_writes=False,
            distributed_lock=False,
            distributed_lock_timeout=DEFAULT_LOCK_TIMEOUT,
        ).merged(default_options)
        self._base = base
        #: The options of a call that gives none.
        self.defaults = Resolved(base)
        # Calls with only ttl= are common and use few distinct values: reuse their options.
        self._by_ttl: dict[float, Resolved] = {}

    def resolve(self, ttl: float | timedelta | None, options: EntryOptions | None) -> Resolved:
        """Merge the cache defaults, ``options`` and an explicit ``ttl`` (highest priority)."""
        if options is None:
            if ttl is None:
                return self.defaults
            return self._with_ttl(ttl)
        if not isinstance(options, EntryOptions):
            raise ConfigurationError(f"options must be EntryOptions, got {options!r}")
        merged = self._base.merged(options)
        if ttl is not None:
            merged = merged.merged(EntryOptions(ttl=seconds("ttl", ttl)))
        return Resolved(merged)

    def _with_ttl(self, ttl: float | timedelta) -> Resolved:
        found = self._by_ttl.get(ttl) if isinstance(ttl, (int, float)) else None
        if found is not None:
            return found
        value = seconds("ttl", ttl)
        resolved = Resolved(self._base.merged(EntryOptions(ttl=value)))
        if len(self._by_ttl) < 64 and isinstance(ttl, (int, float)):
            self._by_ttl[ttl] = resolved
        return resolved

    def adapt(self, entry: Entry[Any], resolved: Resolved) -> Resolved:
        """Options of a factory's :class:`Entry` result, over the call's options."""
        opts = entry.options
        ttl = entry.ttl
        if opts is None and ttl is None:
            return resolved
        merged = EntryOptions(**{n: getattr(resolved, n) for n in Resolved.FIELDS})
        if opts is not None:
            merged = merged.merged(opts)
        if ttl is not None:
            merged = merged.merged(EntryOptions(ttl=ttl))
        return Resolved(merged)
