# GENERATED from src/dataferry/_async/_pipeline.py by scripts/unasync.py: do not edit.
"""The read-and-compute flow of one ``get_or_set`` miss: fail-safe, factory timeouts, refresh.

A :class:`Compute` is the work a single-flight runs for one key (see
:class:`~dataferry._sync._flight.MissWork`): read L2, else call the factory and store
its value. Around that plain path it adds, when the call's options ask for it:

- **fail-safe**: a stale value (kept ``fail_safe_max`` past its expiry, in L1 or L2) is served
  when the factory raises or times out, then treated as fresh for ``fail_safe_throttle``;
- **factory timeouts**: past ``factory_soft_timeout`` (with a stale value to serve) or
  ``factory_hard_timeout``, callers stop waiting; the factory finishes in the background and
  its value is stored then;
- **refresh** (eager refresh, XFetch): a value past its refresh point is served at once while
  one background refresh, shared by every caller, computes the next one;
- **the distributed lock** (``distributed_lock=True``): after an L2 miss, the factory runs only
  under the key's lock in L2; a caller that finds the lock taken polls L2 for the holder's
  value (backing off) until ``distributed_lock_timeout``, taking the lock itself if the holder
  gives it up without a value. A background refresh that finds it taken leaves the refresh to
  its holder.
"""

from __future__ import annotations

import inspect
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from dataferry._sync._flight import run_alone
from dataferry._callables import Factory
from dataferry._core import MISS, NO_L1, NO_TELEMETRY
from dataferry._errors import DistributedCacheError, FactoryTimeoutError
from dataferry._freshness import L1Meta, refresh_due, refresh_point
from dataferry._keys import lock_key
from dataferry._resolve import Resolved
from dataferry._synchronization import TIMED_OUT, Run

if TYPE_CHECKING:
    from dataferry._sync._facade import DataFerry

__all__ = ["Compute", "Stale", "Staged", "serve_refreshing"]

logger = logging.getLogger("dataferry")

#: What :meth:`Compute.start` returns for a factory run under a timeout.
_TIMED: Any = type("_Timed", (), {"__repr__": lambda self: "TIMED"})()
#: What a refresh's read returns when another process holds the key's lock (it refreshes).
_HELD: Any = type("_Held", (), {"__repr__": lambda self: "HELD"})()
#: Polling of L2 by a caller waiting for another process's value: first and longest pause.
_POLL_FIRST = 0.002
_POLL_MAX = 0.05


class Staged:
    """An L2 write left to do: ``data`` under ``skey`` for ``ttl`` s (``data`` None: delete).

    ``version`` is the key's invalidation version when it was staged; ``opts`` are the call's
    options (whether L2 errors raise, whether the write may happen in
    the background).
    """

    __slots__ = ("background", "data", "held", "opts", "skey", "ttl", "version")

    def __init__(
        self,
        skey: str,
        data: bytes | None,
        ttl: float,
        opts: Resolved,
        version: int,
        held: object = NO_L1,
    ) -> None:
        self.skey = skey
        self.data = data
        self.ttl = ttl
        self.opts = opts
        #: The key's invalidation version when the write was staged.
        self.version = version
        #: The L1 entry the write made (None: none; NO_L1: the write left L1 alone).
        self.held = held
        #: Write in the background (the option, or the L2 read of this flight failed).
        self.background = opts.background_distributed_writes


class Stale:
    """A value past its expiry, still kept for fail-safe."""

    __slots__ = ("created_at", "logical_expiry", "tags", "value")

    def __init__(
        self, value: Any, created_at: float, logical_expiry: float, tags: tuple[str, ...]
    ) -> None:
        self.value = value
        self.created_at = created_at
        self.logical_expiry = logical_expiry
        self.tags = tags


def serve_refreshing(
    cache: DataFerry,
    skey: str,
    opts: Resolved,
    type: Any,
    factory: Factory[Any] | None,
    tags: tuple[str, ...],
) -> tuple[Any, Stale | None]:
    """The L1 miss path's look at what L1 still keeps of ``skey``.

    Returns ``(value, None)`` for a value past its refresh point but not its expiry (served;
    a background refresh starts when ``factory`` is given), else ``(MISS, stale)`` with the
    fail-safe candidate L1 holds (or None).
    """
    memory = cache._core.memory
    if memory is None or opts.skip_memory:
        return MISS, None
    found = memory.get_stale(skey)
    if found is None:
        return MISS, None
    value, meta, fresh = found
    if not isinstance(meta, L1Meta):
        return MISS, None
    now = time.time()
    if fresh or refresh_due(meta, now):
        if factory is not None and not fresh:
            start_refresh(cache, skey, factory, opts, tags, type)
        typed = value if type is None else cache._core.typed(value, meta, type)
        if typed is not MISS:
            return typed, None
    if opts.fail_safe and meta.logical_expiry + opts.stale_window > now:
        return MISS, Stale(value, meta.created_at, meta.logical_expiry, meta.tags)
    return MISS, None


def start_refresh(
    cache: DataFerry,
    skey: str,
    factory: Factory[Any],
    opts: Resolved,
    tags: tuple[str, ...],
    type: Any,
) -> None:
    """Start one background refresh of ``skey`` unless one is running already."""
    core = cache._core
    refreshing = core.refreshing
    if skey in refreshing or cache._runtime.closed:
        return
    refreshing.add(skey)  # a race may start two refreshes; the flight still runs one factory
    core.events.refreshes += 1
    try:
        cache._runtime.background(_refresh, cache, skey, factory, opts, tags, type)
    except Exception:  # the cache closed under us: nothing to refresh for
        refreshing.discard(skey)


def _refresh(
    cache: DataFerry,
    skey: str,
    factory: Factory[Any],
    opts: Resolved,
    tags: tuple[str, ...],
    type: Any,
) -> None:
    core = cache._core
    try:
        # Not through the key's flight: a refresh may start inside that flight's L2 read (it
        # would join its own caller), and core.refreshing already allows one per key.
        run_alone(Compute(cache, skey, factory, opts, tags, type, None, refresh=True))
    except Exception as exc:
        # The old value stays (fresh until its expiry), so a failing factory isn't called
        # again on every read until then.
        core.log.warn(
            "refresh_failed", "background refresh of {key} failed: %s", type(exc).__name__, key=skey
        )
        _keep_until_expiry(cache, skey, opts)
    finally:
        core.refreshing.discard(skey)


def _keep_until_expiry(cache: DataFerry, skey: str, opts: Resolved) -> None:
    memory = cache._core.memory
    found = None if memory is None else memory.get_stale(skey)
    if memory is None or found is None:
        return
    value, meta, _ = found
    if not isinstance(meta, L1Meta):
        return
    now = time.time()
    if meta.logical_expiry > now:
        keep = L1Meta(meta.created_at, meta.logical_expiry, meta.tags, meta.type)
        memory.set(skey, value, meta.logical_expiry - now, meta=keep, stale_ttl=opts.stale_window)


class Compute:
    """The miss work of one ``get_or_set`` call, run by its flight (see MissWork)."""

    __slots__ = (
        "_cache",
        "_factory",
        "_l2_failed",
        "_late",
        "_lock",
        "_opts",
        "_refresh",
        "_skey",
        "_started",
        "_t0",
        "_tags",
        "_type",
        "stale",
    )

    def __init__(
        self,
        cache: DataFerry,
        skey: str,
        factory: Factory[Any],
        opts: Resolved,
        tags: tuple[str, ...],
        type: Any,
        stale: Stale | None,
        *,
        refresh: bool = False,
    ) -> None:
        self._cache = cache
        self._skey = skey
        self._factory = factory
        self._opts = opts
        self._tags = tags
        self._type = type
        self._refresh = refresh
        self._l2_failed = False
        self._t0 = 0.0
        #: (lock key, token) while this work holds the key's distributed lock.
        self._lock: tuple[str, bytes] | None = None
        #: The factory outlived its callers (timeout): its late finish releases the lock.
        self._late = False
        #: The fail-safe candidate: the newest stale value found in L1 or L2.
        self.stale = stale
        #: The key's invalidation version when this work began (see :meth:`_stage`).
        self._started = cache._core.versions.current()

    # -- the flight's phases ------------------------------------------------------------------

    def _get(self) -> bytes | None:
        # The L2 read; when it failed, the write of the computed value goes in the background
        # (queued for recovery), so a caller pays at most one L2 timeout, not two.
        l2 = self._cache._l2
        assert l2 is not None
        try:
            return l2.get(self._skey, raise_errors=True)
        except DistributedCacheError:
            if self._opts.raise_distributed_errors:
                raise
            self._l2_failed = True
            return None

    def read(self) -> Any:
        result = self._read()
        opts = self._opts
        if (
            result is MISS
            and opts.distributed_lock
            and not opts.skip_distributed
            and not self._l2_failed
            and self._cache._l2 is not None
        ):
            return self._wait_or_lock()
        return result

    def _read(self) -> Any:
        opts = self._opts
        cache = self._cache
        l2 = cache._l2
        if l2 is None or opts.skip_distributed:
            return MISS
        core = cache._core
        skey = self._skey
        started = core.versions.current()
        floor = cache._floor()
        data = self._get()
        if not opts.fail_safe and not opts.refreshes:
            return cache._accept_l2(skey, data, opts, self._type, started, floor)
        dec = None if data is None else core.decode(skey, data, cache._tenant, self._type, floor)
        if dec is not None and dec.tags and cache._tag_removed(dec.tags, dec.created_at):
            dec = None  # removed by tag: neither fresh nor a fail-safe candidate
        now = time.time()
        if dec is not None and data is not None:
            if dec.logical_expiry > now:
                plan = cache._fill_l1(
                    skey, dec, opts, self._type, len(data), now, core.cost, started
                )
                due = plan.refresh_now if plan is not None else self._due(dec, now, core.cost)
                if not self._refresh:
                    core.counted(skey, True)
                    if due:
                        self._start_refresh()
                    return dec.value
                if not due:  # another node refreshed it already
                    return dec.value
            elif opts.fail_safe and dec.logical_expiry + opts.stale_window > now:
                stale = self.stale
                if stale is None or dec.created_at > stale.created_at:
                    self.stale = Stale(dec.value, dec.created_at, dec.logical_expiry, dec.tags)
        if not self._refresh:
            core.counted(skey, False)
        return MISS

    # -- the distributed lock -------------------------------------------------------------------

    def _wait_or_lock(self) -> Any:
        """After an L2 miss: MISS once this work may run the factory, or the holder's value."""
        cache = self._cache
        l2 = cache._l2
        assert l2 is not None
        core = cache._core
        opts = self._opts
        skey = self._skey
        name = lock_key(core.namespace, skey)
        token = secrets.token_bytes(16)
        timeout = opts.distributed_lock_timeout
        taken = l2.acquire_lock(name, token, timeout)
        if taken is None:  # L2 failed (counted): the lock is for efficiency, compute
            return MISS
        if taken:
            self._lock = (name, token)
            return MISS
        if self._refresh:
            return _HELD  # the holder is computing the next value: nothing to refresh here
        core.events.emit("lock_waits", key=skey)
        with core.step("lock.wait") as step:
            value = self._wait_for_holder(name, token, timeout)
            if value is not MISS:
                step.outcome = "value"  # the holder's, read from L2
            else:
                step.outcome = "locked" if self._lock is not None else "timeout"
            return value

    def _wait_for_holder(self, name: str, token: bytes, timeout: float) -> Any:
        """Poll L2 for the value of the lock's holder (see :meth:`_wait_or_lock`)."""
        cache = self._cache
        l2 = cache._l2
        assert l2 is not None
        core = cache._core
        opts = self._opts
        skey = self._skey
        deadline = time.monotonic() + timeout
        pause = _POLL_FIRST
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                core.events.emit("lock_timeouts", key=skey)
                core.log.warn(
                    "lock_timeout",
                    "waited %.1f s for the distributed lock of {key}; running the factory",
                    timeout,
                    key=skey,
                )
                return MISS
            cache._runtime.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_MAX)
            started = core.versions.current()
            floor = cache._floor()
            data = l2.get(skey)
            value = cache._accept_l2(skey, data, opts, self._type, started, floor)
            if value is not MISS:
                return value
            # No value yet: the holder may have failed or crashed (its lock then expires).
            taken = l2.acquire_lock(name, token, timeout)
            if taken is None:
                return MISS
            if taken:
                self._lock = (name, token)
                # The holder writes its value before it releases the lock: it may have done
                # both since the read above. Read once more, or the factory runs twice.
                started = core.versions.current()
                data = l2.get(skey)
                value = cache._accept_l2(skey, data, opts, self._type, started, floor)
                if value is not MISS:
                    self._unlock()
                return value

    def _unlock(self) -> None:
        held, self._lock = self._lock, None
        if held is not None and self._cache._l2 is not None:
            self._cache._l2.release_lock(*held)

    def _unlock_later(self) -> None:
        # From sync code that can't the release: let a background task do it.
        if self._lock is None:
            return
        try:
            self._cache._runtime.background(self._unlock)
        except Exception:  # the cache closed: the lock expires on its own
            self._lock = None

    def _due(self, dec: Any, now: float, cost: float) -> bool:
        # Refresh due for an entry read from L2 without an L1 to plan it in.
        point = refresh_point(self._opts, dec.created_at, dec.logical_expiry, cost)
        return point is not None and point <= now

    def _start_refresh(self) -> None:
        start_refresh(self._cache, self._skey, self._factory, self._opts, self._tags, self._type)

    def start(self) -> Any:
        opts = self._opts
        if opts.timed and (opts.factory_hard_timeout is not None or self.stale is not None):
            return _TIMED
        cache = self._cache
        events = cache._core.events
        events.emit("factory_calls", key=self._skey)
        self._t0 = time.perf_counter()
        runtime = cache._runtime
        # A factory run here and now gets its span here; one that returns an awaitable (a
        # coroutine function, an offloaded one) gets it in complete(), around the await.
        step = cache._core.step("factory") if runtime.inline(self._factory) else NO_TELEMETRY
        try:
            with step:
                result = runtime.begin(self._factory)
        except Exception as exc:
            events.emit("factory_errors", key=self._skey, error=type(exc).__name__)
            try:
                return self._fall_back(exc, "factory_error"), None
            except BaseException:
                self._unlock_later()
                raise
        if inspect.isawaitable(result):
            return result
        try:
            return self._stage(result)
        except BaseException:
            self._unlock_later()
            raise

    def finish(self, staged: Staged | None) -> None:
        try:
            self._cache._commit(staged)
        finally:
            if self._lock is not None:
                self._unlock()

    def complete(self, pending: Any) -> Any:
        try:
            if pending is _TIMED:
                return self._timed()
            try:
                with self._cache._core.step("factory"):
                    result = pending
            except Exception as exc:
                self._cache._core.events.emit(
                    "factory_errors", key=self._skey, error=type(exc).__name__
                )
                return self._fall_back(exc, "factory_error")
            value, staged = self._stage(result)
            self._cache._commit(staged)
            return value
        finally:
            if self._lock is not None and not self._late:
                self._unlock()

    # -- timeouts and fail-safe -----------------------------------------------------------------

    def _timed(self) -> Any:
        cache = self._cache
        opts = self._opts
        events = cache._core.events
        events.emit("factory_calls", key=self._skey)
        self._t0 = time.perf_counter()
        run = cache._runtime.start(self._factory)
        soft = opts.factory_soft_timeout if self.stale is not None else None
        hard = opts.factory_hard_timeout
        limit = soft if hard is None else hard if soft is None else min(soft, hard)
        try:
            with cache._core.step("factory") as step:
                result = run.wait(limit)
                if result is TIMED_OUT:
                    step.outcome = "timeout"
        except Exception as exc:
            events.emit("factory_errors", key=self._skey, error=type(exc).__name__)
            return self._fall_back(exc, "factory_error")
        if result is TIMED_OUT:
            events.factory_timeouts += 1
            self._late = True
            run.then(self._finish_late)
            reason = "soft_timeout" if limit == soft else "hard_timeout"
            timeout = FactoryTimeoutError(
                f"the factory of {self._skey!r} did not finish within {limit} s; "
                "it goes on in the background and its value will be cached"
            )
            return self._fall_back(timeout, reason)
        value, staged = self._stage(result)
        cache._commit(staged)
        return value

    def _finish_late(self, run: Run) -> None:
        """Store the value of a factory that finished after its callers stopped waiting."""
        try:
            try:
                result = run.wait(None)
            except Exception as exc:
                self._cache._core.events.emit(
                    "factory_errors", key=self._skey, error=type(exc).__name__
                )
                self._cache._core.log.warn(
                    "factory_error",
                    "the factory of {key} failed after its timeout: %s",
                    type(exc).__name__,
                    key=self._skey,
                )
                return
            _, staged = self._stage(result)
            self._cache._commit(staged)
        finally:
            self._unlock()

    def _fall_back(self, exc: Exception, reason: str) -> Any:
        """Serve the stale value for a failed or late factory, or raise ``exc``."""
        stale = self.stale
        if stale is None or not self._opts.fail_safe:
            raise exc
        cache = self._cache
        core = cache._core
        core.events.emit("failsafe_activations", key=self._skey, reason=reason)
        core.log.warn(
            "failsafe", "serving a stale value of {key} (fail-safe: %s)", reason, key=self._skey
        )
        memory = core.memory
        opts = self._opts
        if memory is not None and not opts.skip_memory and not cache._runtime.closed:
            # Throttle: the stale value counts as fresh here for a while, so a broken data
            # source is asked again at most once per fail_safe_throttle.
            now = time.time()
            keep = stale.logical_expiry + opts.stale_window - now
            throttle = min(opts.fail_safe_throttle, max(keep, 0.0))
            if throttle > 0:
                meta = L1Meta(stale.created_at, stale.logical_expiry, stale.tags, None)
                memory.set(self._skey, stale.value, throttle, meta=meta, stale_ttl=keep - throttle)
        return stale.value

    def _stage(self, result: Any) -> tuple[Any, Staged | None]:
        cache = self._cache
        core = cache._core
        cost = time.perf_counter() - self._t0
        core.record_cost(cost)
        value, opts, tags = core.adapt(result, self._opts, self._tags)
        staged = cache._stage(
            self._skey, value, opts, tags, strict=False, cost=cost, started=self._started
        )
        if staged is not None and self._l2_failed:
            staged.background = True
        return value, staged
