"""SQLiteCache: the embedded L2 for the processes of one host, in one SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from dataferry._errors import ConfigurationError, DistributedCacheError

__all__ = ["SQLiteCache"]

_T = TypeVar("_T")

_TABLE = "dataferry_cache"
# SQLite builds before 3.32 allow 999 bound variables per statement; stay well under.
_CHUNK = 500
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} "
    "(key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {_TABLE}_expires_at ON {_TABLE} (expires_at)",
)
_GET = f"SELECT value FROM {_TABLE} WHERE key = ? AND expires_at > ?"
_SET = f"INSERT OR REPLACE INTO {_TABLE} (key, value, expires_at) VALUES (?, ?, ?)"
_REPLACE = f"UPDATE {_TABLE} SET value = ? WHERE key = ? AND expires_at > ?"
_DELETE = f"DELETE FROM {_TABLE} WHERE key = ? AND expires_at > ?"
_PURGE = f"DELETE FROM {_TABLE} WHERE expires_at <= ?"


def _chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), _CHUNK):
        yield keys[start : start + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[None]:
    # Connections run in autocommit mode (isolation_level=None), so batches open their own
    # transaction. Writers take the write lock up front (IMMEDIATE): a deferred transaction
    # that upgrades to a writer gets SQLITE_BUSY at once instead of waiting busy_timeout.
    conn.execute(f"BEGIN {mode}")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SQLiteCache:
    """The distributed cache (L2) in a SQLite file, shared by the processes of one host.

    Entries live in one table (``key TEXT PRIMARY KEY, value BLOB, expires_at REAL``, a wall-
    clock time so every process agrees on it). The database runs in WAL mode with a
    ``busy_timeout``, so several processes and threads read and write it at once. Expired rows
    are invisible at once and deleted in bulk every ``purge_every`` writes or
    ``purge_interval`` seconds, whichever comes first.

    Each thread gets its own connection. SQLite has no async I/O: the async writes run the
    sync code in a worker thread (``asyncio.to_thread``), since a write may wait up to
    ``busy_timeout`` for another process's lock. Reads run inline on the event loop by default:
    in WAL mode a reader never waits for a writer, and an indexed lookup of a local file costs
    a few microseconds, far less than the hop to a worker thread (``inline_reads=False``
    sends reads to a thread too, for a database on slow storage). ``SQLiteCache(":memory:")`` keeps
    the data in this process only, on a single connection behind a lock (an in-memory
    database cannot be shared between connections without SQLite's shared-cache mode, whose
    table locks fail instead of waiting); :meth:`close` discards it.

    Every ``sqlite3.Error`` or ``OSError`` is raised as :class:`~dataferry.DistributedCacheError`.
    Nothing is opened until the first call.

    Args:
        path: The database file (created if missing), or ``":memory:"``.
        busy_timeout: Seconds a call waits for another writer's lock before failing.
        purge_every: Purge expired rows after this many writes in this process.
        purge_interval: Purge expired rows on a write at least this often (seconds).
        inline_reads: Run async reads on the event loop instead of in a worker thread.

    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        purge_every: int = 1000,
        purge_interval: float = 60.0,
        inline_reads: bool = True,
    ) -> None:
        if busy_timeout < 0 or purge_every < 1 or purge_interval < 0:
            raise ConfigurationError(
                "SQLiteCache needs busy_timeout >= 0, purge_every >= 1, purge_interval >= 0"
            )
        self._path = os.fspath(path)
        self._busy_timeout = busy_timeout
        self._purge_every = purge_every
        self._purge_interval = purge_interval
        self._inline_reads = inline_reads
        self._memory = self._path == ":memory:" or self._path == ""
        self._local = threading.local()
        # Guards _connections and, for ":memory:", every use of the single connection.
        self._lock = threading.RLock()
        self._connections: list[sqlite3.Connection] = []
        self._shared: sqlite3.Connection | None = None
        self._writes = 0
        self._next_purge = time.monotonic() + purge_interval

    def __repr__(self) -> str:
        return f"SQLiteCache({self._path!r})"

    # -- connections ---------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,  # SQLite's busy_timeout
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            if not self._memory:
                # A cache can lose its last writes in a power cut: NORMAL skips the fsync per
                # commit that FULL does, and WAL keeps readers and the writer out of each
                # other's way. The mode is stored in the file: the first connection switches it
                # (waiting up to busy_timeout for a racing process), later ones find it set.
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            for statement in _SCHEMA:
                conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._connections.append(conn)
        return conn

    def _run(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            if self._memory:
                with self._lock:
                    conn = self._shared
                    if conn is None:
                        conn = self._shared = self._open()
                    return op(conn)
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._open()
            return op(conn)
        except (sqlite3.Error, OSError) as exc:
            raise DistributedCacheError(
                f"SQLite {self._path!r} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _wrote(self, conn: sqlite3.Connection, count: int) -> None:
        # Amortised purge: one DELETE (on the expires_at index) per purge_every writes or
        # purge_interval seconds. The counter is per process and racy across threads, which
        # only shifts when the next purge happens.
        self._writes += count
        now = time.monotonic()
        if self._writes >= self._purge_every or now >= self._next_purge:
            self._writes = 0
            self._next_purge = now + self._purge_interval
            conn.execute(_PURGE, (time.time(),))

    # -- sync half -----------------------------------------------------------------------------

    def get(self, key: str, /) -> bytes | None:
        """Return the bytes stored under ``key``, or ``None`` (absent or expired)."""

        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(_GET, (key, time.time())).fetchone()
            return None if row is None else bytes(row[0])

        return self._run(op)

    def get_many(self, keys: Sequence[str], /) -> list[bytes | None]:
        """Return the bytes for each key in order, with one ``SELECT ... IN`` per 500 keys."""
        if not keys:
            return []

        def op(conn: sqlite3.Connection) -> list[bytes | None]:
            found: dict[str, bytes] = {}
            now = time.time()
            with _transaction(conn, "DEFERRED"):  # one snapshot across chunks
                for chunk in _chunks(keys):
                    rows = conn.execute(
                        f"SELECT key, value FROM {_TABLE} "
                        f"WHERE key IN ({_marks(len(chunk))}) AND expires_at > ?",
                        (*chunk, now),
                    )
                    found.update((k, bytes(v)) for k, v in rows)
            return [found.get(key) for key in keys]

        return self._run(op)

    def set(self, key: str, value: bytes, ttl: float, /) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds."""

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(_SET, (key, value, time.time() + ttl))
            self._wrote(conn, 1)

        self._run(op)

    def set_many(self, items: Sequence[tuple[str, bytes, float]], /) -> None:
        """Store each ``(key, value, ttl)`` in one transaction."""
        if not items:
            return

        def op(conn: sqlite3.Connection) -> None:
            now = time.time()
            with _transaction(conn):
                conn.executemany(_SET, [(k, v, now + ttl) for k, v, ttl in items])
            self._wrote(conn, len(items))

        self._run(op)

    def replace(self, key: str, value: bytes, /) -> bool:
        """Overwrite a live key, keeping its expiry; return whether it existed."""

        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute(_REPLACE, (value, key, time.time())).rowcount > 0

        return self._run(op)

    def ttl(self, key: str, /) -> float | None:
        """Return the seconds ``key`` has left, or None if absent or expired."""

        def op(conn: sqlite3.Connection) -> float | None:
            now = time.time()
            row = conn.execute(
                f"SELECT expires_at FROM {_TABLE} WHERE key = ? AND expires_at > ?", (key, now)
            ).fetchone()
            return None if row is None else float(row[0]) - now

        return self._run(op)

    def delete(self, key: str, /) -> bool:
        """Delete ``key``; return whether it existed (and had not expired)."""

        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute(_DELETE, (key, time.time())).rowcount > 0

        return self._run(op)

    def delete_many(self, keys: Sequence[str], /) -> int:
        """Delete the keys in one transaction; return how many live ones existed."""
        if not keys:
            return 0

        def op(conn: sqlite3.Connection) -> int:
            deleted = 0
            now = time.time()
            with _transaction(conn):
                # Duplicates would not change the count, but dedupe to keep chunks small.
                unique = list(dict.fromkeys(keys))
                for chunk in _chunks(unique):
                    deleted += conn.execute(
                        f"DELETE FROM {_TABLE} "
                        f"WHERE key IN ({_marks(len(chunk))}) AND expires_at > ?",
                        (*chunk, now),
                    ).rowcount
            return deleted

        return self._run(op)

    def close(self) -> None:
        """Close every connection (any thread's); the next call opens new ones.

        With ``":memory:"`` the data is gone.
        """
        with self._lock:
            connections, self._connections = self._connections, []
            self._shared = None
            # A fresh threading.local drops every thread's reference to the closed connections.
            self._local = threading.local()
        for conn in connections:
            conn.close()

    # -- async half ----------------------------------------------------------------------------

    async def aget(self, key: str, /) -> bytes | None:
        """Async :meth:`get` (inline, or in a worker thread when ``inline_reads=False``)."""
        if self._inline_reads:
            return self.get(key)
        return await asyncio.to_thread(self.get, key)

    async def aget_many(self, keys: Sequence[str], /) -> list[bytes | None]:
        """Async :meth:`get_many` (inline, or in a worker thread when ``inline_reads=False``)."""
        if self._inline_reads:
            return self.get_many(keys)
        return await asyncio.to_thread(self.get_many, keys)

    async def aset(self, key: str, value: bytes, ttl: float, /) -> None:
        """Async :meth:`set` (in a worker thread)."""
        await asyncio.to_thread(self.set, key, value, ttl)

    async def aset_many(self, items: Sequence[tuple[str, bytes, float]], /) -> None:
        """Async :meth:`set_many` (in a worker thread)."""
        await asyncio.to_thread(self.set_many, items)

    async def areplace(self, key: str, value: bytes, /) -> bool:
        """Async :meth:`replace` (in a worker thread)."""
        return await asyncio.to_thread(self.replace, key, value)

    async def attl(self, key: str, /) -> float | None:
        """Async :meth:`ttl` (in a worker thread)."""
        return await asyncio.to_thread(self.ttl, key)

    async def adelete(self, key: str, /) -> bool:
        """Async :meth:`delete` (in a worker thread)."""
        return await asyncio.to_thread(self.delete, key)

    async def adelete_many(self, keys: Sequence[str], /) -> int:
        """Async :meth:`delete_many` (in a worker thread)."""
        return await asyncio.to_thread(self.delete_many, keys)

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()
