"""Chaos layers for the tests: plugged into a cache's L2 pipeline with ``distributed_layers=``.

They implement the public ``DistributedLayer`` protocol, wrap a real backend's calls, and never
fake Redis: a gate holds chosen operations until the test opens it; a fault layer fails them.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import dataferry as df


class Gate:
    """Holds the chosen operations until :meth:`open`; counts every operation it sees.

    ``reached`` (async) / ``reached_sync`` (threads) are set when a held call arrives, so a
    test can wait for "the read is in flight" instead of yielding and hoping.
    """

    def __init__(self, *operations: str) -> None:
        self.operations = set(operations or ("get",))
        self.calls: Counter[str] = Counter()
        self._opened = threading.Event()
        self._aopened: asyncio.Event | None = None
        self._areached: asyncio.Event | None = None
        self.reached_sync = threading.Event()

    @property
    def reached(self) -> asyncio.Event:
        if self._areached is None:
            self._areached = asyncio.Event()
        return self._areached

    def open(self) -> None:
        self._opened.set()
        if self._aopened is not None:
            self._aopened.set()

    async def arun(
        self, operation: str, keys: Sequence[str], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        self.calls[operation] += 1
        if operation in self.operations and not self._opened.is_set():
            if self._aopened is None:
                self._aopened = asyncio.Event()
            self.reached.set()
            await self._aopened.wait()
        return await call()

    def run(self, operation: str, keys: Sequence[str], call: Callable[[], Any]) -> Any:
        self.calls[operation] += 1
        if operation in self.operations:
            self.reached_sync.set()
            assert self._opened.wait(10), "the test never opened the gate"
        return call()


class Faults:
    """Fails the chosen operations with ``error`` (any exception) while ``failing`` is true."""

    def __init__(self, error: Exception, *operations: str) -> None:
        self.error = error
        self.operations = set(operations)
        self.failing = True
        self.calls: Counter[str] = Counter()

    def _check(self, operation: str) -> None:
        self.calls[operation] += 1
        if self.failing and (not self.operations or operation in self.operations):
            raise self.error

    async def arun(
        self, operation: str, keys: Sequence[str], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        self._check(operation)
        return await call()

    def run(self, operation: str, keys: Sequence[str], call: Callable[[], Any]) -> Any:
        self._check(operation)
        return call()


class EntryCalls:
    """Records the L2 calls that touch entries (``{ns}:k:...``), not lock, tag or clear records.

    ``calls``: ``(operation, entry keys)`` in order; ``ops``: how many calls per operation;
    ``reads``: the ``get`` / ``get_many`` calls.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.ops: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def reads(self) -> list[tuple[str, list[str]]]:
        return [(op, keys) for op, keys in self.calls if op in ("get", "get_many")]

    def _see(self, operation: str, keys: Sequence[str]) -> None:
        entries = [k for k in keys if k.split(":", 2)[1:2] == ["k"]]
        if entries:
            with self._lock:
                self.calls.append((operation, entries))
                self.ops[operation] += 1

    async def arun(
        self, operation: str, keys: Sequence[str], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        self._see(operation, keys)
        return await call()

    def run(self, operation: str, keys: Sequence[str], call: Callable[[], Any]) -> Any:
        self._see(operation, keys)
        return call()


def count_events(cache: Any, name: str) -> Callable[[int], threading.Event]:
    """``until(n)``: an event set once ``cache`` has emitted ``name`` n times (any thread)."""
    seen = [0]
    waiters: list[tuple[int, threading.Event]] = []
    lock = threading.Lock()

    def listener(event: str, attributes: dict[str, Any]) -> None:
        if event != name:
            return
        with lock:
            seen[0] += 1
            for n, ev in waiters:
                if seen[0] >= n:
                    ev.set()

    cache.subscribe(listener)

    def until(n: int) -> threading.Event:
        ev = threading.Event()
        with lock:
            waiters.append((n, ev))
            if seen[0] >= n:
                ev.set()
        return ev

    return until


async def wait_event(event: threading.Event, timeout: float = 10.0) -> None:
    """Await a threading.Event from async code without blocking the loop for long."""
    loop = asyncio.get_running_loop()
    ok = await loop.run_in_executor(None, event.wait, timeout)
    assert ok, "timed out waiting for the event"


class AsyncLatch:
    """A factory's brake for async tests: :meth:`wait` blocks until the test calls :meth:`open`."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self.entered = 0

    def _ev(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    async def wait(self) -> None:
        self.entered += 1
        await asyncio.wait_for(self._ev().wait(), 10)

    def open(self) -> None:
        self._ev().set()


class Latch:
    """Thread twin of :class:`AsyncLatch` (sync factories run in worker threads)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.entered = 0

    def wait(self) -> None:
        self.entered += 1
        assert self._event.wait(10), "the test never opened the latch"

    def open(self) -> None:
        self._event.set()


async def async_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Await ``predicate()`` until it is true (background work the test can't await directly)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition never became true"
        await asyncio.sleep(0.005)


def sync_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Thread twin of :func:`async_until`."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


class AsyncReading:
    """Runs ``fn()`` (a cache call) in the background: a task here, a thread in the sync twin."""

    def __init__(self, fn: Callable[[], Awaitable[Any]]) -> None:
        self._task = asyncio.ensure_future(fn())

    async def result(self) -> Any:
        return await asyncio.wait_for(self._task, 10)


class Reading:
    """Thread twin of :class:`AsyncReading`."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._out: list[Any] = []
        self._thread = threading.Thread(target=lambda: self._out.append(fn()))
        self._thread.start()

    def result(self) -> Any:
        self._thread.join(10)
        assert self._out, "the background call never finished"
        return self._out[0]


class HoldAfter:
    """Lets the chosen L2 calls reach Redis, then holds their answer until :meth:`release`.

    A read that began before another node's write comes back with the old value late: the race
    that versioned invalidation closes. Holding a ``"set"``: a write that landed, its caller
    not told yet.
    """

    def __init__(self, operation: str = "get") -> None:
        self.operation = operation
        self.holding = False
        self.answered = threading.Event()
        self._release = threading.Event()

    def release(self) -> None:
        self._release.set()

    async def arun(
        self, operation: str, keys: Sequence[str], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        result = await call()
        if operation == self.operation and self.holding:
            self.holding = False
            self.answered.set()
            await wait_event(self._release)
        return result

    def run(self, operation: str, keys: Sequence[str], call: Callable[[], Any]) -> Any:
        result = call()
        if operation == self.operation and self.holding:
            self.holding = False
            self.answered.set()
            assert self._release.wait(10)
        return result


async def async_wait(event: threading.Event, timeout: float = 10.0) -> None:
    """Await a threading.Event (set by another thread) without blocking the loop for long."""
    await wait_event(event, timeout)


def sync_wait(event: threading.Event, timeout: float = 10.0) -> None:
    """Thread twin of :func:`async_wait`."""
    assert event.wait(timeout), "timed out waiting for the event"


__all__ = [
    "AsyncLatch",
    "AsyncReading",
    "EntryCalls",
    "Faults",
    "Gate",
    "HoldAfter",
    "Latch",
    "Reading",
    "async_until",
    "async_wait",
    "count_events",
    "df",
    "sync_until",
    "sync_wait",
    "wait_event",
]
