"""Freshness decisions, no I/O: when an entry leaves L1, is due for a refresh, or is stale.

An entry has a logical expiry (in the L2 envelope and in :class:`~dataferry._core.L1Meta`).
Around it:

- **refresh point** (eager refresh, XFetch): from then on a read still gets the value, and
  one background refresh starts. In L1 the entry's ttl ends at the refresh point, so hits
  before it cost a dict lookup; after it, the L1 miss path finds the entry with
  :meth:`~dataferry.MemoryCache.get_stale` and serves it while the refresh runs.
- **fail-safe window** (``fail_safe_max`` past the expiry): the entry is still stored, in L2
  and L1, to be served if the factory fails.

Times here are wall-clock seconds (``time.time()``), as in the envelope.
"""

from __future__ import annotations

import math
import random
from typing import Any

from dataferry._resolve import Resolved

__all__ = ["L1Meta", "L1Plan", "plan_l1", "refresh_due", "refresh_point"]


class L1Meta:
    """What an L1 entry carries besides its value (L1 stores it opaquely).

    ``created_at`` and ``logical_expiry`` are wall-clock seconds (as in the L2 envelope);
    ``type`` is the ``type=`` the value was decoded into from L2, or None for a live value
    that a ``set`` or a factory produced. ``refresh_at`` is when a background refresh is due
    (None: never), ``l1_until`` when L1 stops trusting the entry (``l1_ttl``), ``cost`` the
    seconds its factory took here (0: unknown), for XFetch.
    """

    __slots__ = ("cost", "created_at", "l1_until", "logical_expiry", "refresh_at", "tags", "type")

    def __init__(
        self,
        created_at: float,
        logical_expiry: float,
        tags: tuple[str, ...],
        type: Any,
        refresh_at: float | None = None,
        l1_until: float = math.inf,
        cost: float = 0.0,
    ) -> None:
        self.created_at = created_at
        self.logical_expiry = logical_expiry
        self.tags = tags
        self.type = type
        self.refresh_at = refresh_at
        self.l1_until = l1_until
        self.cost = cost

    def __repr__(self) -> str:
        return (
            f"L1Meta(created_at={self.created_at!r}, logical_expiry={self.logical_expiry!r}, "
            f"tags={self.tags!r}, type={self.type!r}, refresh_at={self.refresh_at!r})"
        )


class L1Plan:
    """How to store one entry in L1: its ttl, how long it is kept stale, its metadata."""

    __slots__ = ("meta", "refresh_now", "stale_ttl", "ttl")

    def __init__(self, ttl: float, stale_ttl: float, meta: L1Meta | None, refresh_now: bool):
        self.ttl = ttl
        self.stale_ttl = stale_ttl
        self.meta = meta
        #: The entry is already past its refresh point: start a refresh now.
        self.refresh_now = refresh_now


def _xfetch_point(logical_expiry: float, cost: float, beta: float) -> float:
    # XFetch draws "expiry - cost * beta * -ln(U)": the costlier the recomputation, the
    # earlier (on average) it starts. 1 - random() is in (0, 1], so the log is finite.
    return logical_expiry - cost * beta * -math.log(1.0 - random.random())


def plan_l1(
    opts: Resolved,
    created_at: float,
    logical_expiry: float,
    tags: tuple[str, ...],
    type: Any,
    now: float,
    cost: float,
) -> L1Plan:
    """Decide how an entry created at ``created_at`` goes into L1 at ``now``.

    ``cost`` is the factory's duration when this process computed the value, else the
    cache's running average (XFetch needs one; 0 disables it for this entry).
    """
    l1_ttl = opts.l1_ttl
    l1_until = logical_expiry if l1_ttl is None else min(logical_expiry, now + l1_ttl)
    refresh_at = refresh_point(opts, created_at, logical_expiry, cost)
    refresh_now = refresh_at is not None and refresh_at <= now
    fresh_until = l1_until
    if refresh_at is not None:
        # Already due (XFetch with a large cost or beta): fresh for a moment only, so the
        # next read serves it and starts the refresh.
        fresh_until = min(l1_until, max(refresh_at, now + 0.001))
    keep_until = logical_expiry + opts.stale_window
    stale_ttl = keep_until - fresh_until if (opts.stale_window or refresh_at is not None) else 0.0
    meta = None  # plain entries carry none: L1 stays lean
    if tags or type is not None or stale_ttl > 0:
        meta = L1Meta(created_at, logical_expiry, tags, type, refresh_at, l1_until, cost)
    return L1Plan(fresh_until - now, max(stale_ttl, 0.0), meta, refresh_now)


def refresh_point(
    opts: Resolved, created_at: float, logical_expiry: float, cost: float
) -> float | None:
    """When an entry is due for a background refresh (eager refresh, XFetch), or None.

    XFetch's point is drawn at random, anew on each call.
    """
    if not opts.refreshes:
        return None
    point = None
    eager = opts.eager_refresh
    if eager is not None:
        point = created_at + eager * (logical_expiry - created_at)
    beta = opts.early_expiration
    if beta is not None and cost > 0:
        x = _xfetch_point(logical_expiry, cost, beta)
        point = x if point is None else min(point, x)
    return point


def refresh_due(meta: object, now: float) -> bool:
    """Whether an L1 entry past its L1 ttl may still be served while a refresh runs."""
    if not isinstance(meta, L1Meta):
        return False
    refresh_at = meta.refresh_at
    return refresh_at is not None and refresh_at <= now < min(meta.logical_expiry, meta.l1_until)
