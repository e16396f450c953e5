"""Single-flight: concurrent callers of one key share one computation (stampede protection).

A flight has two phases: a cheap one (the L2 read) that the first caller runs inline, and an
expensive one (the factory) that runs only when the cheap one misses. In async code the
expensive phase runs in a task the cache owns, so a caller that is cancelled or times out stops
waiting without cancelling the work others wait for; in the generated sync twin it runs in the
first caller's thread. Later callers join the flight:

- a joiner waits at most ``join_timeout`` seconds, then computes on its own (a stuck factory
  never blocks the others forever);
- an exception reaches every waiter, each as its own copy, and is not remembered;
- when the work is cancelled (the cache is closing, the first caller was cancelled during the
  L2 read and its hand-over was cancelled too), joiners never see a ``CancelledError`` that is
  not theirs: they start the flight again (or get :class:`~dataferry.CacheClosedError`).

Flights are per event loop: a cache used from two loops (two ``asyncio.run`` calls, or loops
in two threads) never makes one loop wait for another's future.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from dataferry._core import MISS
from dataferry._events import CacheEvents
from dataferry._synchronization import (
    TIMED_OUT,
    AsyncCancelled,
    AsyncOutcome,
    AsyncRuntime,
    KeyFailure,
)

__all__ = ["ABSENT", "AsyncMissWork", "AsyncSingleFlight", "run_alone"]

#: A batch producer left this key out (not found): its joiners compute it themselves.
ABSENT: Any = type("_Absent", (), {"__repr__": lambda self: "ABSENT"})()
#: The work was cancelled before it settled: joiners start the flight again.
_RETRY: Any = type("_Retry", (), {"__repr__": lambda self: "RETRY"})()

Work = Callable[[], Awaitable[Any]]


class AsyncMissWork(Protocol):
    """What a flight does for one key: read it, else compute it (the facade implements it)."""

    async def read(self) -> Any:
        """The value from L2 (also put in L1), or ``MISS``."""
        ...

    def start(self) -> Any:
        """Call the factory.

        Returns a ``(value, staged)`` tuple when it returned a value (already in L1;
        ``staged`` goes to :meth:`finish`), or anything else (the factory's awaitable, or a
        marker of work still to do) for :meth:`complete` to finish in the background.
        """
        ...

    async def finish(self, staged: Any) -> None:
        """Write what :meth:`start` staged to L2."""
        ...

    async def complete(self, pending: Any) -> Any:
        """Finish what :meth:`start` began, store the value (L1 and L2) and return it."""
        ...


ManyWork = Callable[[list[str]], Awaitable[Mapping[str, Any]]]


async def run_alone(work: AsyncMissWork) -> Any:
    """Do ``work`` without a flight: read, else compute and store; return the value."""
    result = await work.read()
    if result is not MISS:
        return result
    begun = work.start()
    if type(begun) is not tuple:
        return await work.complete(begun)
    value, staged = begun
    await work.finish(staged)
    return value


class AsyncSingleFlight:
    """At most one computation per key at a time (per event loop); others join it."""

    __slots__ = ("_events", "_flights", "_lock", "_runtime", "join_timeout")

    def __init__(self, events: CacheEvents, runtime: AsyncRuntime, join_timeout: float) -> None:
        self._flights: dict[str, AsyncOutcome] = {}
        # A real lock in both colours: an async cache may be used from loops in two threads.
        self._lock = threading.Lock()
        self._events = events
        self._runtime = runtime
        self.join_timeout = join_timeout

    def _enter(self, key: str) -> tuple[AsyncOutcome, bool]:
        """The flight of ``key`` and whether this caller leads it (joins counted here)."""
        with self._lock:
            outcome = self._flights.get(key)
            if outcome is None or not outcome.usable():
                outcome = self._flights[key] = AsyncOutcome()
                return outcome, True
            # Counted under the lock, so the count is exact; listeners are told outside it
            # (one of them may call the cache).
            self._events.stampede_joins += 1
        self._events.notify("stampede_joins")
        return outcome, False

    def _settle(
        self, key: str, outcome: AsyncOutcome, value: Any, error: BaseException | None
    ) -> None:
        with self._lock:
            if self._flights.get(key) is outcome:
                del self._flights[key]
        outcome.settle(value, error)

    async def run(self, key: str, work: AsyncMissWork) -> Any:
        """Return ``work``'s value for ``key``: read, or computed once for every caller."""
        while True:
            outcome, leader = self._enter(key)
            if leader:
                result = await self._lead(key, outcome, work)
            else:
                result = await outcome.wait(self.join_timeout)
                if result is TIMED_OUT:
                    return await run_alone(work)
            if result is not _RETRY and result is not ABSENT:
                return result
            self._runtime.check_open()

    async def _lead(self, key: str, outcome: AsyncOutcome, work: AsyncMissWork) -> Any:
        try:
            result = await work.read()
        except AsyncCancelled:
            # Cancelled during the cheap phase: a task takes the whole flight over, so the
            # callers who joined still get a value.
            self._runtime.spawn(self._produce, key, outcome, lambda: run_alone(work))
            raise
        except BaseException as exc:
            self._settle(key, outcome, None, exc)
            raise
        if result is not MISS:
            self._settle(key, outcome, result, None)
            return result
        try:
            begun = work.start()
        except BaseException as exc:
            self._settle(key, outcome, None, exc)
            raise
        if type(begun) is not tuple:
            # The factory is a coroutine (or runs in a thread): a task the cache owns drives
            # it, so a cancelled caller never cancels it for the others.
            self._runtime.spawn(self._produce, key, outcome, lambda: work.complete(begun))
            return await outcome.wait(None)
        # A sync factory has already run, here, with no event-loop round trip: joiners get
        # the value at once; the L2 write follows (if this caller is cancelled during it, the
        # value is still in L1 and with every joiner; only other nodes may miss it).
        value, staged = begun
        self._settle(key, outcome, value, None)
        await work.finish(staged)
        return value

    async def _produce(self, key: str, outcome: AsyncOutcome, work: Work) -> None:
        try:
            result = await work()
        except AsyncCancelled:
            self._settle(key, outcome, _RETRY, None)
            raise
        except Exception as exc:
            self._settle(key, outcome, None, exc)
        except BaseException as exc:
            self._settle(key, outcome, None, exc)
            raise
        else:
            self._settle(key, outcome, result, None)

    # -- batches --------------------------------------------------------------------------------

    async def run_many(
        self, keys: list[str], inline: ManyWork, background: ManyWork
    ) -> dict[str, Any]:
        """Per-key single-flight for a batch: ``{key: value}`` for the keys found or loaded.

        The keys nobody is computing are led by this call, with one ``inline(keys)`` (the L2
        batch read) and one ``background(missing)`` (the batch load) for all of them; keys that
        another call is computing are joined. ``background`` may leave keys out (not found) or
        map them to a :class:`KeyFailure`; a key whose flight failed (led or joined) is mapped
        to a :class:`KeyFailure` in the result too.
        """
        found: dict[str, Any] = {}
        pending = list(dict.fromkeys(keys))
        while pending:
            lead: dict[str, AsyncOutcome] = {}
            joined: dict[str, AsyncOutcome] = {}
            for key in pending:
                outcome, leader = self._enter(key)
                (lead if leader else joined)[key] = outcome
            pending = []
            if lead:
                await self._lead_many(lead, inline, background)
            alone: list[str] = []
            for key, outcome in (*lead.items(), *joined.items()):
                try:
                    result = await outcome.wait(None if key in lead else self.join_timeout)
                except Exception as exc:  # this key's failure, not the batch's
                    found[key] = KeyFailure(exc)
                    continue
                if result is TIMED_OUT:
                    alone.append(key)
                elif result is _RETRY:
                    pending.append(key)
                elif result is ABSENT:
                    if key in joined:  # another caller's batch load left it out: try ours
                        pending.append(key)
                else:
                    found[key] = result
            if alone:
                found.update(await self._alone_many(alone, inline, background))
            if pending:
                self._runtime.check_open()
        return found

    async def _lead_many(
        self, lead: dict[str, AsyncOutcome], inline: ManyWork, background: ManyWork
    ) -> None:
        keys = list(lead)
        try:
            hits = await inline(keys)
        except AsyncCancelled:
            self._runtime.spawn(
                self._produce_many, lead, lambda: self._alone_many(keys, inline, background)
            )
            raise
        except BaseException as exc:
            for key, outcome in lead.items():
                self._settle(key, outcome, None, exc)
            raise
        missing: dict[str, AsyncOutcome] = {}
        for key, outcome in lead.items():
            if key in hits:
                self._settle(key, outcome, hits[key], None)
            else:
                missing[key] = outcome
        if missing:
            names = list(missing)
            self._runtime.spawn(self._produce_many, missing, lambda: background(names))

    async def _produce_many(
        self, outcomes: dict[str, AsyncOutcome], work: Callable[[], Awaitable[Mapping[str, Any]]]
    ) -> None:
        try:
            results = await work()
        except AsyncCancelled:
            for key, outcome in outcomes.items():
                self._settle(key, outcome, _RETRY, None)
            raise
        except BaseException as exc:
            for key, outcome in outcomes.items():
                self._settle(key, outcome, None, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for key, outcome in outcomes.items():
                result = results.get(key, ABSENT)
                if type(result) is KeyFailure:
                    self._settle(key, outcome, None, result.error)
                else:
                    self._settle(key, outcome, result, None)

    @staticmethod
    async def _alone_many(
        keys: list[str], inline: ManyWork, background: ManyWork
    ) -> dict[str, Any]:
        hits = dict(await inline(keys))
        rest = [k for k in keys if k not in hits]
        if rest:
            hits.update(await background(rest))
        return hits
