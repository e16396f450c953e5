"""The hottest Redis commands, sent straight on connections kept out of redis-py's pool.

redis-py's client wraps every command in about a hundred Python calls: it takes a connection
from its pool (under a lock, with a ``poll()`` to check that the socket holds no stray data),
runs the command through its retry helper and its observability hooks, and puts the connection
back. On loopback that is about half the time of a 1 KB ``GET`` with the sync client, and a
third with asyncio. A cache sends a few simple commands over and over, so for ``GET``, ``MGET``
and ``SET`` (one, or a batch of them in one write: ``set_many``) a
:class:`~dataferry.RedisCache` built by ``from_url`` keeps the connections it uses checked out
of the client's pool, in a list of idle ones, and talks to them through redis-py's own
connection API (``send_packed_command``, ``read_response``): the same sockets, parser (hiredis)
and connection setup (``HELLO``, ``AUTH``, ``SELECT``, client name), without the per-command
bookkeeping. Commands are packed by hiredis's ``pack_command`` (C), not by redis-py's packer:
the asyncio client's is pure Python and joins its buffer once per argument, about 1 ms for an
``MGET`` of 1000 keys where hiredis takes 0.15 ms (the sync client's 0.33 ms), and 2 µs for a
``GET`` where hiredis takes 0.4 µs.

What that bookkeeping guards against is kept:

* a reply that may still arrive for a command whose reading was cut short (a timeout, a
  cancelled task, ``KeyboardInterrupt``): the connection is closed at once (redis-py does it
  in ``read_response``; done here again for whatever else raises), so its next use opens a new
  one and never reads a stale reply;
* a connection the server closed while it sat idle (a restart, the server's ``timeout``): the
  command goes once more on a new connection. Only these three commands take this path, and a
  repeated ``GET``, ``MGET`` or ``SET ... PX`` (or a batch of them) changes nothing; a timeout is
  never repeated;
* a fork: the child forgets the parent's connections (as redis-py's pool does).

The async half lives here; ``scripts/unasync.py`` generates the sync half.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

try:
    from hiredis import pack_command
except ImportError:  # pragma: no cover - redis[hiredis] is a core dependency
    pack_command = None  # type: ignore[assignment]

__all__ = ["AsyncDirect"]

#: Connections kept idle for one pool (more go back to it): a quarter of its max_connections
#: (redis-py's default 100: 25), at most _MAX_IDLE; a pool of fewer than _MIN_POOL is left
#: alone. The pool counts them as in use: it keeps at least three quarters for the rest.
_MAX_IDLE = 64
_MIN_POOL = 64
#: hiredis's packer: a tuple of str, bytes, int or float to one RESP command (typed Any: its
#: stub says a 1-tuple).
_pack: Any = pack_command
#: The pools whose connections are used directly: redis-py's own, exactly (not a Sentinel's,
#: which finds the master on connect, nor a subclass).
_POOLS = (
    redis.ConnectionPool,
    redis.BlockingConnectionPool,
    redis.asyncio.ConnectionPool,
    redis.asyncio.BlockingConnectionPool,
)
#: Every live object, for the fork hook.
_LIVE: weakref.WeakSet[AsyncDirect] = weakref.WeakSet()


class AsyncDirect:
    """Commands sent on connections checked out of one redis-py pool, reused in turn."""

    __slots__ = ("__weakref__", "_cap", "_idle", "_pool")

    def __init__(self, pool: Any, cap: int) -> None:
        self._pool = pool
        # Connected (or closed after a failure: they reconnect on their next command) and not
        # in use. list.pop and list.append are atomic: threads share a sync one.
        self._idle: list[Any] = []
        # At most this many are kept idle; more go back to the pool (its max_connections
        # counts the ones kept here as in use, against the client's other commands).
        self._cap = cap
        _LIVE.add(self)

    @classmethod
    def of(cls, client: Any) -> AsyncDirect | None:
        """One for ``client``'s pool, or None when the client needs its own command path.

        That is: a single-connection client, a pool of another kind (a Sentinel's, which finds
        the master on connect, or a subclass), one with client-side caching, or a pool of
        fewer than 64 connections (redis-py's default is 100): the connections kept here
        count as in use against the client's other commands. Also None without hiredis.
        """
        if _pack is None:  # pragma: no cover - redis[hiredis] is a core dependency
            return None
        pool = getattr(client, "connection_pool", None)
        if getattr(client, "connection", None) is not None or type(pool) not in _POOLS:
            return None
        if getattr(pool, "cache", None) is not None:
            return None
        size = int(getattr(pool, "max_connections", 0))
        if size < _MIN_POOL:
            return None
        return cls(pool, min(_MAX_IDLE, size // 4))

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply (redis-py's exceptions pass through)."""
        return await self._exchange([_packed(args)], None, args[0])

    async def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write (a pipeline, no ``MULTI``) and return their replies.

        An error reply raises redis-py's ``ResponseError``, and the connection is closed
        rather than read further (the replies after it are never read).
        """
        packed = b"".join([_packed(command) for command in commands])
        replies: list[Any] = await self._exchange([packed], len(commands), commands[0][0])
        return replies

    async def _exchange(self, command: list[bytes], count: int | None, name: str) -> Any:
        """Write ``command`` on an idle connection; read one reply, or a list of ``count``."""
        idle = self._idle
        try:
            conn = idle.pop()
            reused = True
        except IndexError:
            conn = await self._connection(name)
            reused = False
        try:
            try:
                reply = await _round_trip(conn, command, count)
            except (RedisConnectionError, OSError) as exc:
                if not reused or isinstance(exc, TimeoutError):
                    raise
                # The server closed it while it sat idle: once more, on a new connection.
                await conn.disconnect()
                reply = await _round_trip(conn, command, count)
        except BaseException:
            # Its reply may still come: never read from it again (a new socket next time).
            # (nowait: positional, which the sync connections of every redis-py take too.)
            await conn.disconnect(True)
            await self._put_back(conn)
            raise
        await self._put_back(conn)
        return reply

    async def _put_back(self, conn: Any) -> None:
        if len(self._idle) < self._cap:
            self._idle.append(conn)
        else:
            await self._pool.release(conn)

    async def _connection(self, command: str) -> Any:
        """A new connection from the pool (connected, checked)."""
        try:
            return await self._pool.get_connection()
        except TypeError:  # pragma: no cover - redis-py < 5.3 wants the command's name
            return await self._pool.get_connection(command)


def _packed(args: tuple[Any, ...]) -> bytes:
    """One command in RESP, by hiredis (C)."""
    try:
        return _pack(args)  # type: ignore[no-any-return]
    except TypeError:
        # hiredis takes str, bytes, memoryview, int and float, not a bytearray: that goes
        # as bytes, as redis-py sends it (anything else stays a TypeError).
        return _pack(tuple(bytes(a) if isinstance(a, bytearray) else a for a in args))  # type: ignore[no-any-return]


async def _round_trip(conn: Any, command: list[bytes], count: int | None) -> Any:
    # A list of one buffer: the sync connections iterate over what they are given.
    await conn.send_packed_command(command)
    if count is None:
        return await conn.read_response()
    return [await conn.read_response() for _ in range(count)]


def _forget_in_child() -> None:  # pragma: no cover - runs in forked children only
    for direct in list(_LIVE):
        direct._idle.clear()


os.register_at_fork(after_in_child=_forget_in_child)
