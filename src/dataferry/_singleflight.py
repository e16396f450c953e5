"""Single-flight: concurrent callers of one key share one computation (stampede protection).

A flight has two phases: a cheap one (the L2 read) that the first caller runs inline, and an
expensive one (the factory) that runs only when the cheap one misses. Later callers join the
flight and get its result. Two hand-written twins, because their primitives differ: asyncio
futures and tasks for the async facade, threads and ``concurrent.futures.Future`` for the sync
one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dataferry._core import MISS
from dataferry._events import CacheEvents

__all__ = ["AsyncSingleFlight", "SingleFlight"]

T = TypeVar("T")


class AsyncSingleFlight:
    """At most one computation per key at a time; later callers await the same result.

    The first caller runs ``inline()`` itself (no task: an L2 hit costs one future), and on
    ``MISS`` starts ``background()`` in its own task. Every caller awaits the result through
    :func:`asyncio.shield`, so a caller that is cancelled or times out stops waiting without
    cancelling the work the others wait for; if the first caller is cancelled during
    ``inline()``, a task takes the flight over. An exception reaches every waiter and is not
    remembered: the next caller starts afresh.
    """

    __slots__ = ("_events", "_flights")

    def __init__(self, events: CacheEvents) -> None:
        self._flights: dict[str, asyncio.Future[Any]] = {}
        self._events = events

    async def run(
        self,
        key: str,
        inline: Callable[[], Awaitable[Any]],
        background: Callable[[], Awaitable[Any]],
    ) -> Any:
        """Return ``inline()``'s value, or ``background()``'s when it returns ``MISS``."""
        flights = self._flights
        fut = flights.get(key)
        if fut is not None:
            self._events.stampede_joins += 1
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        flights[key] = fut
        try:
            result = await inline()
        except asyncio.CancelledError:
            self._spawn(key, fut, self._whole(inline, background))
            raise
        except BaseException as exc:
            self._settle(key, fut, None, exc)
            raise
        if result is not MISS:
            self._settle(key, fut, result, None)
            return result
        self._spawn(key, fut, background())
        return await asyncio.shield(fut)

    @staticmethod
    async def _whole(
        inline: Callable[[], Awaitable[Any]], background: Callable[[], Awaitable[Any]]
    ) -> Any:
        result = await inline()
        return await background() if result is MISS else result

    def _spawn(self, key: str, fut: asyncio.Future[Any], work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)

        def done(t: asyncio.Task[Any]) -> None:
            if t.cancelled():
                self._settle(key, fut, None, asyncio.CancelledError())
            else:
                exc = t.exception()
                self._settle(key, fut, None if exc else t.result(), exc)

        task.add_done_callback(done)

    def _settle(
        self, key: str, fut: asyncio.Future[Any], result: Any, exc: BaseException | None
    ) -> None:
        if self._flights.get(key) is fut:
            del self._flights[key]
        if fut.done():
            return
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)
            # Mark it retrieved: when nobody joined, nobody reads it, and asyncio would log
            # "exception was never retrieved" for a failure that was already raised.
            fut.exception()

    def __len__(self) -> int:
        return len(self._flights)


class _Flight:
    """One in-progress computation of the sync twin; the Event is made only if someone waits."""

    __slots__ = ("error", "event", "result")

    def __init__(self) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.event: threading.Event | None = None


class SingleFlight:
    """Thread twin of :class:`AsyncSingleFlight`: the first thread computes, others wait.

    The uncontended path takes the lock twice and allocates one small object; a
    ``threading.Event`` is created only when a second thread actually joins.
    """

    __slots__ = ("_events", "_flights", "_lock")

    def __init__(self, events: CacheEvents) -> None:
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self._events = events

    def run(self, key: str, inline: Callable[[], Any], background: Callable[[], Any]) -> Any:
        """Return ``inline()``'s value, or ``background()``'s when it returns ``MISS``."""
        lock = self._lock
        wait: threading.Event | None = None
        with lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
            else:
                wait = flight.event
                if wait is None:
                    wait = flight.event = threading.Event()
        if wait is not None:
            self._events.stampede_joins += 1
            wait.wait()
            if flight.error is not None:
                raise flight.error
            return flight.result
        try:
            result = inline()
            if result is MISS:
                result = background()
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.result = result
            return result
        finally:
            # Publish under the lock: a joiner either sees the flight gone (and starts its
            # own) or registered its Event before we read it here.
            with lock:
                del self._flights[key]
                done = flight.event
            if done is not None:
                done.set()

    def __len__(self) -> int:
        return len(self._flights)
