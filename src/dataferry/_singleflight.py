"""Single-flight: concurrent callers of one key share one computation (stampede protection).

Two hand-written twins, because their primitives differ: asyncio tasks and futures for the
async facade, threads and ``concurrent.futures.Future`` for the sync one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from dataferry._events import CacheEvents

__all__ = ["AsyncSingleFlight", "SingleFlight"]

T = TypeVar("T")


class AsyncSingleFlight:
    """Run at most one ``fn()`` per key at a time; later callers await the same result.

    The computation runs in its own task and every caller (the first one too) awaits it
    through :func:`asyncio.shield`, so a caller that is cancelled or times out stops waiting
    without cancelling the work the others are waiting for. An exception reaches every
    waiter and nothing is remembered: the next caller starts afresh.
    """

    __slots__ = ("_events", "_flights")

    def __init__(self, events: CacheEvents) -> None:
        self._flights: dict[str, asyncio.Task[Any]] = {}
        self._events = events

    async def run(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Return ``await fn()``, shared with every concurrent caller for ``key``."""
        task = self._flights.get(key)
        if task is None:
            task = asyncio.ensure_future(fn())
            self._flights[key] = task
            task.add_done_callback(lambda t, k=key: self._done(k, t))  # type: ignore[misc]
        else:
            self._events.stampede_joins += 1
        return await asyncio.shield(task)

    def _done(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            # Mark the exception retrieved: when every waiter was cancelled nobody reads it,
            # and asyncio would log "exception was never retrieved" for an expected failure.
            task.exception()

    def __len__(self) -> int:
        return len(self._flights)


class SingleFlight:
    """Thread twin of :class:`AsyncSingleFlight`: the first thread computes, others wait."""

    __slots__ = ("_events", "_flights", "_lock")

    def __init__(self, events: CacheEvents) -> None:
        self._flights: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()
        self._events = events

    def run(self, key: str, fn: Callable[[], T]) -> T:
        """Return ``fn()``, shared with every concurrent caller for ``key``."""
        with self._lock:
            fut = self._flights.get(key)
            leader = fut is None
            if fut is None:
                fut = self._flights[key] = Future()
        if not leader:
            self._events.stampede_joins += 1
            return fut.result()  # type: ignore[no-any-return]
        try:
            result = fn()
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            with self._lock:
                del self._flights[key]

    def __len__(self) -> int:
        return len(self._flights)
