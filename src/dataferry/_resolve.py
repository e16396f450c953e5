"""Option resolution: cache defaults, then the call's options, then its ``ttl=``, then the factory.

The result is a :class:`Resolved`: every field concrete, so the read and write flows never look
at :data:`~dataferry._options.NOT_GIVEN`. The common call (no options, no ttl) gets the
cache's precomputed defaults without building anything.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from dataferry._errors import ConfigurationError
from dataferry._options import NOT_GIVEN, Entry, EntryOptions, seconds

__all__ = ["Resolved", "Resolver"]


class Resolved:
    """Options with every field decided, for one call (immutable by convention)."""

    __slots__ = ("compress", "encrypt", "l1_ttl", "skip_distributed", "skip_memory", "ttl")

    ttl: float
    l1_ttl: float | None
    skip_memory: bool
    skip_distributed: bool
    compress: bool | None
    encrypt: bool | None

    def __init__(self, options: EntryOptions) -> None:
        # Only ever built from options merged over complete defaults: nothing is NOT_GIVEN.
        for name in self.__slots__:
            value = getattr(options, name)
            assert value is not NOT_GIVEN, name
            object.__setattr__(self, name, value)

    def physical_ttl(self) -> float:
        """Seconds the entry stays stored in L2.

        Its logical ttl today; the fail-safe window (a stale value kept to be served while
        the factory fails) is added here.
        """
        return self.ttl

    def l1_seconds(self, logical_expiry: float, now: float) -> float:
        """Seconds an entry may stay in L1: what is left of its freshness, capped by l1_ttl."""
        left = logical_expiry - now
        l1 = self.l1_ttl
        return l1 if l1 is not None and l1 < left else left

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Resolved options are immutable")

    def __repr__(self) -> str:
        body = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
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
        merged = EntryOptions(**{n: getattr(resolved, n) for n in Resolved.__slots__})
        if opts is not None:
            merged = merged.merged(opts)
        if ttl is not None:
            merged = merged.merged(EntryOptions(ttl=ttl))
        return Resolved(merged)
