"""How a cache protects its callers from a slow or failing L2: timeout, retry, circuit breaker.

:class:`Resilience` is the public configuration. The machinery below is what the L2 accessor
(``_async/_l2.py``, written once for both colours) runs every call through, in this order:
timeout → retry (reads only) → circuit breaker → the user's ``distributed_layers`` → backend.

Why no library: the hot path budget is about 2 µs per L2 call. Measured on this project's
machine (per call, a trivial coroutine): tenacity ``AsyncRetrying`` 30-50 µs, stamina 41-44 µs,
purgatory 2.3-3.3 µs (breaker only, async and sync), aiobreaker 3.0-3.5 µs (unmaintained since
2021), circuitbreaker 1.9-2.4 µs (breaker only), pybreaker 3.9-4.2 µs (sync only), and even
``asyncio.timeout`` 6.5 µs (12 µs on uvloop: one timer handle per call). None gives a timeout,
a read-only retry and a breaker for both colours within the budget, so this module keeps them
small: the breaker is a state attribute read without a lock while closed, and timeouts are
enforced by one watchdog timer per event loop (armed only while calls are in flight) that
cancels calls past their deadline, instead of a timer per call.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dataferry._errors import CircuitOpenError, ConfigurationError
from dataferry._events import CacheEvents

__all__ = [
    "CLOSED",
    "DEFAULT_RESILIENCE",
    "HALF_OPEN",
    "OPEN",
    "AsyncTimeouts",
    "CircuitBreaker",
    "Resilience",
    "Timeouts",
    "check_resilience",
]

logger = logging.getLogger("dataferry")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

#: A timeout is checked this many times per ``timeout``: a call is abandoned after between
#: (TICKS - 1) / TICKS and all of its timeout (never later, unless the event loop is blocked).
TICKS = 5


def _seconds(name: str, value: object, *, allow_none: bool = False, positive: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        need = "> 0" if positive else ">= 0"
        extra = " (or None)" if allow_none else ""
        raise ConfigurationError(
            f"Resilience({name}=...) must be a finite number of seconds {need}{extra}, "
            f"got {value!r}"
        )
    return float(value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"Resilience({name}=...) must be an int >= 0, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class Resilience:
    """How a cache protects its callers from a slow or failing L2 (Redis, SQLite...).

    Pass it as ``AsyncDataFerry(..., resilience=Resilience(...))`` (or to ``DataFerry``); the
    default is ``Resilience()`` with the values below, and ``resilience=None`` turns all of it
    off (every L2 call then waits as long as the backend's own timeouts let it). Every L2 call
    goes through a timeout, a retry (reads only) and a circuit breaker, then through the
    cache's ``distributed_layers``, then reaches the backend. Whatever fails, the caller is
    answered from L1 and the factory (unless it asked for ``raise_distributed_errors``).

    Args:
        timeout: Most seconds one L2 operation may take, retries included (default 0.25;
            ``None``: no limit). ``AsyncDataFerry`` abandons the call at the deadline (between
            4/5 of ``timeout`` and ``timeout``, checked by one timer per event loop).
            ``DataFerry`` can't interrupt a blocking socket: it relies on the backend's own
            timeouts, so keep them at or below ``timeout`` (``RedisCache.from_url`` and
            ``from_sentinel`` default to ``socket_timeout=socket_connect_timeout=0.25``, which
            matches); it never starts a retry that the deadline would not leave room for.
        retries: Extra attempts after a failed read (``get``, ``get_many``; default 1). Writes
            and deletes are never retried here: a failed one is queued for auto-recovery. A
            retry never starts past the deadline, nor when the breaker is open, nor after a
            timeout.
        retry_backoff: ``(low, high)`` seconds: a retry first waits a random time in between
            (default ``(0.005, 0.05)``), so many callers don't hit a recovering server at once.
        failure_threshold: Consecutive failed L2 attempts that open the circuit breaker
            (default 5; 0: no breaker). While open, L2 calls are skipped at once (a read is a
            miss, a write is queued) for ``cooldown`` seconds; then one call goes through as a
            probe (half-open): its success closes the breaker, its failure opens it again.
            Any successful L2 call closes it. State changes are logged (warning on opening,
            info on closing), counted in ``Stats.circuit_breaks`` (openings) and sent to
            listeners as the event ``circuit_state`` with ``state`` = ``open``,
            ``half_open`` or ``closed``.
        cooldown: Seconds the breaker stays open before letting a probe through (default 5).
        recovery_queue: Most failed L2 writes kept, one per key, to replay when the L2
            answers again (default 10_000; 0: no auto-recovery). A newer write or delete of a
            key replaces its queued one, and one that succeeds removes it, so a replay never
            overwrites newer data. Deletes are never dropped (they carry no value: a lost
            delete would let every node read the value it removed); when the bound is
            reached, the oldest queued write is turned into a delete of its key (so no node
            reads the value it meant to replace) and counted in ``Stats.recovery_drops``.
        recovery_interval: Seconds between replay attempts while writes are queued and the L2
            fails (default 1). A successful L2 call also starts a replay at once, so a cache
            that only serves L1 hits still recovers through this probe.

    Raises:
        ConfigurationError: A value of the wrong type or out of range.

    """

    timeout: float | None = 0.25
    retries: int = 1
    retry_backoff: tuple[float, float] = (0.005, 0.05)
    failure_threshold: int = 5
    cooldown: float = 5.0
    recovery_queue: int = 10_000
    recovery_interval: float = 1.0

    def __post_init__(self) -> None:
        put = object.__setattr__  # frozen: normalise ints to floats once, here
        put(self, "timeout", _seconds("timeout", self.timeout, allow_none=True, positive=True))
        put(self, "retries", _count("retries", self.retries))
        backoff = self.retry_backoff
        if not isinstance(backoff, tuple) or len(backoff) != 2:
            raise ConfigurationError(
                f"Resilience(retry_backoff=...) must be a (low, high) tuple, got {backoff!r}"
            )
        low = _seconds("retry_backoff", backoff[0])
        high = _seconds("retry_backoff", backoff[1])
        if low > high:
            raise ConfigurationError(f"Resilience(retry_backoff=...) needs low <= high: {backoff}")
        put(self, "retry_backoff", (low, high))
        put(self, "failure_threshold", _count("failure_threshold", self.failure_threshold))
        put(self, "cooldown", _seconds("cooldown", self.cooldown))
        put(self, "recovery_queue", _count("recovery_queue", self.recovery_queue))
        put(
            self,
            "recovery_interval",
            _seconds("recovery_interval", self.recovery_interval, positive=True),
        )


#: What a cache uses when ``resilience=`` is not given.
DEFAULT_RESILIENCE = Resilience()


def check_resilience(value: object) -> Resilience | None:
    """``value`` if it is a :class:`Resilience` or None, else a ConfigurationError."""
    if value is None or isinstance(value, Resilience):
        return value
    raise ConfigurationError(f"resilience must be a Resilience or None, got {value!r}")


# -- circuit breaker -------------------------------------------------------------------------------


class CircuitBreaker:
    """Closed / open / half-open, on consecutive failures; thread-safe.

    ``state`` is read without the lock on the hot path: while closed, a call pays one
    attribute comparison. Transitions take the lock; their log lines and events are sent after
    it is released, so a listener can't deadlock the breaker.
    """

    __slots__ = (
        "_cause",
        "_cooldown",
        "_events",
        "_failures",
        "_lock",
        "_threshold",
        "_until",
        "state",
    )

    state: str

    def __init__(self, threshold: int, cooldown: float, events: CacheEvents) -> None:
        self.state = CLOSED
        # 0 = no breaker: a threshold nothing reaches.
        self._threshold = threshold if threshold > 0 else math.inf
        self._cooldown = cooldown
        self._events = events
        self._failures = 0
        self._until = 0.0
        self._cause: BaseException | None = None
        self._lock = threading.Lock()

    def admit(self) -> bool:
        """Let a call through while not closed: True if it is the half-open probe.

        Raises CircuitOpenError (chained to the failure that opened the breaker) when the
        call must be skipped.
        """
        with self._lock:
            state = self.state
            if state is OPEN and time.monotonic() >= self._until:
                self.state = HALF_OPEN
                probe = True
            elif state is CLOSED:
                return False
            else:
                probe = False
            cause = self._cause
        if probe:
            logger.debug("distributed cache circuit breaker half-open: probing the L2")
            self._events.notify("circuit_state", state=HALF_OPEN)
            return True
        raise CircuitOpenError(
            "the distributed cache is skipped: its circuit breaker is open"
        ) from cause

    def failure(self, exc: BaseException, probe: bool) -> None:
        """Record a failed attempt (``probe``: the half-open probe's)."""
        with self._lock:
            self._cause = exc
            if self.state is CLOSED:
                self._failures += 1
                if self._failures < self._threshold:
                    return
                first = True
            elif probe and self.state is HALF_OPEN:
                first = False
            else:  # an attempt that started before the breaker opened: already counted
                return
            self.state = OPEN
            self._until = time.monotonic() + self._cooldown
            failures = self._failures
        self._events.circuit_breaks += 1
        if first:
            logger.warning(
                "distributed cache circuit breaker opened after %d consecutive failures "
                "(last: %s: %s); skipping the L2 for %.3g s",
                failures,
                type(exc).__name__,
                exc,
                self._cooldown,
            )
        else:
            logger.debug("distributed cache probe failed (%s); breaker open again", exc)
        self._events.notify("circuit_state", state=OPEN, error=type(exc).__name__)

    def success(self) -> None:
        """Record a successful attempt: reset the count, close the breaker if it was not."""
        with self._lock:
            self._failures = 0
            if self.state is CLOSED:
                return
            self.state = CLOSED
            self._cause = None
        logger.info("distributed cache circuit breaker closed: the L2 answers again")
        self._events.notify("circuit_state", state=CLOSED)

    def abandon(self) -> None:
        """The probe ended without an answer (cancelled): let the next call probe."""
        with self._lock:
            if self.state is HALF_OPEN:
                self.state = OPEN
                self._until = 0.0

    def end_cooldown(self) -> None:
        """Let the next call probe now (closing the cache drains its queue with one)."""
        with self._lock:
            if self.state is OPEN:
                self._until = 0.0


# -- timeouts --------------------------------------------------------------------------------------


if sys.version_info < (3, 12):  # pragma: no cover - depends on the interpreter
    # asyncio.current_task() is written in Python before 3.12 (it looks the loop up again):
    # its dict, read directly, saves a third of the timeout's cost per call.
    _current_task: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None]
    _current_task = asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]
else:  # pragma: no cover
    _current_task = asyncio.current_task


class _LoopWatch:
    """The in-flight calls of one event loop and the timer that abandons late ones."""

    __slots__ = ("armed", "calls", "expired", "interval", "loop", "tick")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.tick = 0
        self.armed = False
        # task -> the tick at which it is past its deadline
        self.calls: dict[asyncio.Task[Any], int] = {}
        self.expired: set[asyncio.Task[Any]] = set()

    def arm(self) -> None:
        self.armed = True
        self.loop.call_later(self.interval, self.check)

    def check(self) -> None:
        # One timer per loop, re-armed only while calls are in flight: a call costs a dict
        # insert and delete, not a timer handle of its own.
        self.tick += 1
        calls = self.calls
        if not calls:
            self.armed = False
            return
        tick = self.tick
        expired = self.expired
        for task, due in list(calls.items()):
            if due <= tick and task not in expired:
                expired.add(task)
                task.cancel()
        self.loop.call_later(self.interval, self.check)


class AsyncTimeouts:
    """Deadlines for async L2 calls: a late call's task is cancelled, then uncancelled.

    ``enter()`` registers the running task, ``leave(token)`` forgets it; a call that catches
    ``CancelledError`` asks :meth:`expired` whether it was its deadline (then it is a timeout
    and the task's cancellation is undone, as ``asyncio.timeout`` does) or a real cancel.
    """

    __slots__ = ("_loops", "interval", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.interval = 0.0 if timeout is None else timeout / TICKS
        self._loops: dict[asyncio.AbstractEventLoop, _LoopWatch] = {}

    def enter(self) -> Any:
        """Start the deadline of a call in the running task; return its token."""
        if self.timeout is None:
            return None
        loop = asyncio.get_running_loop()
        task = _current_task(loop)
        if task is None:  # pragma: no cover - awaited outside any task
            return None
        watch = self._loops.get(loop)
        if watch is None:
            watch = self._watch(loop)
        watch.calls[task] = watch.tick + TICKS
        if not watch.armed:
            watch.arm()
        return (watch, task)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> _LoopWatch:
        for old in [x for x in self._loops if x.is_closed()]:  # forget finished loops
            self._loops.pop(old, None)
        watch = self._loops[loop] = _LoopWatch(loop, self.interval)
        return watch

    def leave(self, token: Any) -> None:
        """End the deadline of the call ``token`` was returned for."""
        if token is None:
            return
        watch, task = token
        watch.calls.pop(task, None)
        if task in watch.expired:  # cancelled, but the call ended before it saw it
            watch.expired.discard(task)
            if hasattr(task, "uncancel"):  # pragma: no branch - Python >= 3.11
                task.uncancel()

    def expired(self, token: Any) -> bool:
        """After a CancelledError: whether it was this call's deadline (then undone)."""
        if token is None:
            return False
        watch, task = token
        if task not in watch.expired:
            return False
        watch.expired.discard(task)
        if hasattr(task, "uncancel"):  # pragma: no branch - Python >= 3.11
            # Someone else cancelled the task too: that cancellation goes on.
            return bool(task.uncancel() == 0)
        return True  # pragma: no cover - Python 3.10

    def time_left(self, token: Any) -> float:
        """Seconds (roughly) before the call's deadline."""
        if token is None:
            return math.inf
        watch, task = token
        due = watch.calls.get(task)
        return math.inf if due is None else (due - watch.tick) * self.interval

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (a retry's backoff)."""
        await asyncio.sleep(seconds)


class Timeouts:
    """Sync twin of :class:`AsyncTimeouts`: a blocking call can't be interrupted.

    The backend's socket timeouts bound a call; this only keeps retries within the deadline.
    """

    __slots__ = ("interval", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.interval = 0.0 if timeout is None else timeout / TICKS

    def enter(self) -> Any:
        """Start the deadline of a call; return its token (the start time)."""
        return time.monotonic()

    def leave(self, token: Any) -> None:
        """Nothing to undo for a sync call."""

    def expired(self, token: Any) -> bool:
        """Sync calls are never cancelled: always False."""
        return False

    def time_left(self, token: Any) -> float:
        """Seconds before the call's deadline."""
        if self.timeout is None:
            return math.inf
        return float(self.timeout - (time.monotonic() - token))

    def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (a retry's backoff)."""
        time.sleep(seconds)
