"""Event-loop plumbing for the asyncio Redis clients: one client per loop, closed with its loop.

A redis-py asyncio client belongs to the loop that opened its connections: its sockets are that
loop's transports. ``RedisCache.from_url`` therefore builds one client per event loop, and this
module gives it the three things that takes:

* :func:`async_loop_key` / :func:`sync_loop_key`, the key of the per-loop client table on the hot
  path (the running loop for the async half; ``None`` for the sync half, whose one client is
  shared by every thread). ``scripts/unasync.py`` renames the first into the second.
* :class:`LoopGuard`, which runs a coroutine in a loop just before ``asyncio.run()`` (or an
  ``asyncio.Runner``, ``uvloop.run``, pytest-asyncio...) closes it, so the clients built in that
  loop are closed properly in it.
* :class:`PerLoopClients` and :func:`close_with_loop`, the per-loop client table that
  ``RedisCache`` and ``GlideCache`` share: records forgotten when their loop ends, dropped when
  it was closed without shutting down, all closed by ``aclose()``.
* :func:`abandon`, for a client whose loop was closed without that hook running
  (``loop.close()`` without ``loop.shutdown_asyncgens()``): it closes the sockets directly, so
  the dead connections neither leak nor warn (``ResourceWarning: unclosed transport``).

Everything that reaches into redis-py's or asyncio's internals lives here, in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from asyncio import selector_events
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

import redis.asyncio

from dataferry._errors import DistributedCacheError

__all__ = [
    "LoopGuard",
    "LoopRecord",
    "PerLoopClients",
    "abandon",
    "async_loop_key",
    "close_with_loop",
    "connection_loops",
    "sync_loop_key",
]

logger = logging.getLogger("dataferry")

#: The key of the async half's client table: the running loop (about 50 ns).
async_loop_key = asyncio.get_running_loop


def sync_loop_key() -> object:
    """The key of the sync half's client table (``None``): one client for every thread."""
    return None


class LoopGuard:
    """Run ``callback()`` in the running loop when the loop shuts down its async generators.

    ``asyncio.run()`` and ``asyncio.Runner`` call ``loop.shutdown_asyncgens()`` after the main
    task ends and before ``loop.close()``: that closes every async generator the loop saw start,
    running its ``finally`` block *in the loop*. The guard is such a generator, started at once
    (the loop registers it on its first step; it keeps only a weak reference, so the owner of
    the guard keeps it alive). :meth:`disarm` cancels the callback (the clients were closed
    another way). A loop closed without ``shutdown_asyncgens()`` never runs the callback.
    """

    __slots__ = ("__weakref__", "_agen", "_callback")

    def __init__(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._callback: Callable[[], Awaitable[None]] | None = callback
        self._agen = _watch(weakref.ref(self))
        # Step the generator to its first yield without awaiting: its firstiter hook (the
        # running loop's) registers it with the loop. The step never suspends, so it ends
        # with StopIteration, as any completed awaitable.
        with contextlib.suppress(StopIteration):
            self._agen.asend(None).send(None)

    def disarm(self) -> None:
        """Forget the callback: the loop's shutdown will do nothing for this guard."""
        self._callback = None

    def _take(self) -> Callable[[], Awaitable[None]] | None:
        callback, self._callback = self._callback, None
        return callback


async def _watch(guard: weakref.ref[LoopGuard]) -> AsyncGenerator[None, None]:
    # Holds the guard weakly: a guard (and its callback) dropped by its owner is not kept
    # alive by the loop. A dropped, unfinished generator is handed to the loop's finalizer
    # hook, which closes it in the loop (or does nothing once the loop is closed).
    try:
        yield
    finally:
        owner = guard()
        callback = owner._take() if owner is not None else None
        if callback is not None:
            await callback()


def loop_shutting_down(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` already shut its async generators down (a guard would never run)."""
    return bool(getattr(loop, "_asyncgens_shutdown_called", False))


# -- redis-py internals ------------------------------------------------------------------------


def _connections(client: Any) -> Iterator[Any]:
    """Every connection object of a redis-py asyncio client (standalone, Cluster, Sentinel)."""
    if isinstance(client, redis.asyncio.RedisCluster):
        manager = client.nodes_manager
        seen: set[int] = set()
        for table in (manager.nodes_cache, manager.startup_nodes):
            for node in list(table.values()):
                if id(node) not in seen:
                    seen.add(id(node))
                    yield from list(node._connections)
        return
    single = getattr(client, "connection", None)
    if single is not None:
        yield single
    pool = client.connection_pool
    yield from list(getattr(pool, "_available_connections", ()))
    yield from list(getattr(pool, "_in_use_connections", ()))
    # A Sentinel-managed master asks the Sentinels (clients of their own) for the master's
    # address on every new connection.
    sentinels = getattr(pool, "sentinel_manager", None)
    if sentinels is not None:
        for sentinel in sentinels.sentinels:
            yield from _connections(sentinel)


def connection_loops(client: Any) -> set[asyncio.AbstractEventLoop]:
    """The loops the open connections of ``client`` belong to."""
    loops: set[asyncio.AbstractEventLoop] = set()
    for connection in _connections(client):
        writer = getattr(connection, "_writer", None)
        loop = getattr(writer, "_loop", None)
        if loop is not None:
            loops.add(loop)
    return loops


def abandon(client: Any) -> None:
    """Close the connections of a client whose event loop is closed, without that loop.

    ``aclose()`` cannot run any more (closing a transport schedules a callback in its closed
    loop: ``RuntimeError: Event loop is closed``), and a client left as it is warns when it
    is collected (``unclosed transport``, ``unclosed Connection``, ``Unclosed RedisCluster``).
    So close each socket directly and mark transport, connection and client closed.
    """
    for connection in _connections(client):
        writer = getattr(connection, "_writer", None)
        if writer is None:
            continue
        _abandon_transport(writer.transport)
        connection._reader = connection._writer = None
        with contextlib.suppress(Exception):
            connection._parser.on_disconnect()
    if isinstance(client, redis.asyncio.RedisCluster):
        # What aclose() sets: the client is closed (and would initialize again on use).
        client._initialize = True


# asyncio's own transports (the default loop); not in typeshed.
_SELECTOR_TRANSPORT: Any = getattr(selector_events, "_SelectorTransport")  # noqa: B009


def _abandon_transport(transport: Any) -> None:
    ssl_protocol = getattr(transport, "_ssl_protocol", None)
    if ssl_protocol is not None:  # pragma: no cover - TLS: the socket is one layer down
        transport._closed = True
        transport = getattr(ssl_protocol, "_transport", None)
        if transport is None:
            return
    if isinstance(transport, _SELECTOR_TRANSPORT):
        # What _force_close() and _call_connection_lost() do, minus the loop callbacks.
        transport._closing = True
        sock, transport._sock = transport._sock, None
        if sock is not None:
            sock.close()
    else:  # pragma: no cover - other loops (uvloop) close their sockets when they close
        with contextlib.suppress(Exception):
            transport.abort()


# -- the per-loop client table of a backend ------------------------------------------------------


class LoopRecord(Protocol):
    """What a backend keeps per event loop: its clients, and the guard that closes them."""

    guard: LoopGuard | None

    async def aclose(self) -> BaseException | None:
        """Close the clients in their (running) loop; return the first error. Idempotent."""

    def abandon(self) -> None:
        """Drop the clients of a closed loop without it."""


R = TypeVar("R", bound=LoopRecord)


class PerLoopClients(Generic[R]):
    """The bookkeeping of a backend that builds one asyncio client per event loop.

    The backend (``RedisCache``, ``GlideCache``) builds a record when a loop first needs a
    client and arms its guard with :func:`close_with_loop`; this mixin forgets records whose
    loop ended, drops those of loops closed without shutting down, and closes them all in
    :meth:`_aclose_loops`. The backend defines ``_async_lock``, ``_async_records`` (loop ->
    record) and ``_async_clients`` (loop -> client, the hot path's table).
    """

    _async_lock: threading.Lock
    _async_records: dict[asyncio.AbstractEventLoop, R]
    _async_clients: dict[Any, Any]
    _async_direct: dict[Any, Any]  # loop -> the client's direct command path (RedisCache)
    _async_given: Any  # an asyncio client passed in (not closed here), or None

    async def aclose(self) -> None:
        """Close the asyncio clients this cache built; a client passed in is left to its owner.

        The running loop's clients are closed here; those of other loops still running (in
        other threads) are closed in their own loop; those of closed loops at once. The next
        async call, in any loop, builds a new client.
        """
        if self._async_given is not None:
            return
        error = await self._aclose_loops()
        if error is not None:  # pragma: no cover - closing rarely fails
            raise DistributedCacheError(f"close failed: {type(error).__name__}: {error}") from error

    def _drop_dead_loops(self) -> None:
        """Drop the clients of loops closed without closing them (from ``close()``)."""
        with self._async_lock:
            dead = self._take_dead_loops()
        for record in dead:
            record.abandon()

    def _take_dead_loops(self) -> list[R]:
        # Under _async_lock: remove the records of loops closed without shutting down their
        # async generators (the guard never ran); the caller abandons them outside the lock.
        dead = [loop for loop in self._async_records if loop.is_closed()]
        for loop in dead:
            self._async_clients.pop(loop, None)
            self._async_direct.pop(loop, None)
        return [self._async_records.pop(loop) for loop in dead]

    def _forget_loop(self, loop: asyncio.AbstractEventLoop, record: R) -> None:
        with self._async_lock:
            if self._async_records.get(loop) is record:
                del self._async_records[loop]
                self._async_clients.pop(loop, None)
                self._async_direct.pop(loop, None)

    async def _aclose_loops(self) -> BaseException | None:
        """Close every loop's clients; return the first error of the running loop's close.

        The running loop's are closed here, those of other running loops (in other threads)
        in their own loop, those of closed loops at once.
        """
        loop = asyncio.get_running_loop()
        with self._async_lock:
            records = self._async_records
            self._async_records = {}
            self._async_clients.clear()
            self._async_direct.clear()
        error: BaseException | None = None
        for other, record in records.items():
            if other is loop:
                error = await record.aclose() or error
            elif other.is_closed():
                record.abandon()
            else:
                try:
                    other.call_soon_threadsafe(_close_soon, record)
                except RuntimeError:  # closed in the meantime
                    record.abandon()
        return error


def close_with_loop(
    owner: PerLoopClients[R], loop: asyncio.AbstractEventLoop, record: R, what: str
) -> None:
    """Arm ``record``'s guard: when ``loop`` shuts down, ``owner`` forgets it and it closes.

    ``what`` names the clients in the debug message of a failed close. Nothing is armed for a
    loop already shutting down (its guard would never run).
    """
    if loop_shutting_down(loop):
        return
    ref = weakref.ref(owner)

    async def on_shutdown() -> None:
        # Runs in `loop` from loop.shutdown_asyncgens() (asyncio.run, Runner...), just before
        # the loop closes: the last moment its clients can be closed properly. Nobody awaits
        # this, so a failure is only logged.
        cache = ref()
        if cache is not None:
            cache._forget_loop(loop, record)
        error = await record.aclose()
        if error is not None:  # pragma: no cover - closing rarely fails
            logger.debug("closing the %s of a finished event loop failed: %r", what, error)

    record.guard = LoopGuard(on_shutdown)


def _close_soon(record: LoopRecord) -> None:
    # In the record's own loop (scheduled from another thread by _aclose_loops()). If that loop
    # ends before the task is done, its guard (still armed) closes the clients.
    task = asyncio.get_running_loop().create_task(record.aclose())
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


# Strong references to the closing tasks started in other loops (a loop keeps weak ones only).
_CLOSING: set[asyncio.Task[BaseException | None]] = set()
