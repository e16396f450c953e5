"""SQLiteCache: the embedded L2 for the processes of one host, in one SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from dataferry._backends._locks import check_lock
from dataferry._errors import ConfigurationError, DistributedCacheError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process repair lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["SQLiteCache"]

logger = logging.getLogger("dataferry")

_T = TypeVar("_T")

_TABLE = "dataferry_cache"
# The distributed locks, apart from the entries: a lock is not a value (get() never sees it,
# set() never overwrites it). Small: a row per lock held, or left by a holder that crashed.
_LOCKS = "dataferry_locks"
# SQLite builds before 3.32 allow 999 bound variables per statement; stay well under.
_CHUNK = 500
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} "
    "(key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {_TABLE}_expires_at ON {_TABLE} (expires_at)",
    f"CREATE TABLE IF NOT EXISTS {_LOCKS} "
    "(name TEXT PRIMARY KEY, token BLOB NOT NULL, expires_at REAL NOT NULL)",
)
_GET = f"SELECT value FROM {_TABLE} WHERE key = ? AND expires_at > ?"
_SET = f"INSERT OR REPLACE INTO {_TABLE} (key, value, expires_at) VALUES (?, ?, ?)"
_CAS = f"UPDATE {_TABLE} SET value = ? WHERE key = ? AND value = ? AND expires_at > ?"
_DELETE = f"DELETE FROM {_TABLE} WHERE key = ? AND expires_at > ?"
_PURGE = f"DELETE FROM {_TABLE} WHERE expires_at <= ?"
# Take a lock: insert it, or take over a row whose holder's time ran out (an UPSERT, SQLite
# 3.24+). One statement, so atomic against every connection and process: it changes a row
# (rowcount 1) only if the lock was free. Parameters: name, token, expires_at, now.
_LOCK_ACQUIRE = (
    f"INSERT INTO {_LOCKS} (name, token, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at "
    f"WHERE {_LOCKS}.expires_at <= ?"
)
# An expired lock is free, as in Redis: its former holder can neither release nor extend it.
_LOCK_RELEASE = f"DELETE FROM {_LOCKS} WHERE name = ? AND token = ? AND expires_at > ?"
_LOCK_EXTEND = f"UPDATE {_LOCKS} SET expires_at = ? WHERE name = ? AND token = ? AND expires_at > ?"
_LOCK_PURGE = f"DELETE FROM {_LOCKS} WHERE expires_at <= ?"

# SQLITE_CORRUPT and SQLITE_NOTADB (primary codes; extended codes keep them in the low byte).
_CORRUPTION_CODES = frozenset({11, 26})
# How often (seconds) a cache checks that its path still names the file it has open: another
# process may have moved a corrupt file aside and put a fresh one in its place.
_IDENTITY_CHECK_INTERVAL = 1.0
# Files SQLite keeps next to a database, which belong to it and move with it.
_SIDE_FILES = ("-wal", "-shm", "-journal")
_LOCK_SUFFIX = ".dataferry-lock"
_aside_counter = itertools.count(1)
# At most this many async writes go in one transaction (the rest in the next one): a batch holds
# the file's write lock, which other processes may be waiting for.
_MAX_BATCH = 1024
_Identity = tuple[int, int]


def _chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), _CHUNK):
        yield keys[start : start + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _is_corruption(exc: BaseException) -> bool:
    """Whether SQLite said the file is damaged or not a database (not busy, not a bad query)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int):
        return code & 0xFF in _CORRUPTION_CODES
    text = str(exc)  # pragma: no cover - Python 3.10
    return "not a database" in text or "malformed" in text  # pragma: no cover


def _identity(path: str) -> _Identity | None:
    """The file ``path`` names now (device, inode), or ``None`` if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _close_retired(conn: sqlite3.Connection) -> None:
    # A connection being replaced, maybe to a file that was moved aside. (Closing the last
    # connection to a WAL database checkpoints and deletes its -wal / -shm files by name,
    # which would now be the fresh file's, but SQLite skips that for a database file that was
    # moved since it was opened.)
    with contextlib.suppress(Exception):
        conn.close()


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


@contextlib.contextmanager
def _savepoint(conn: sqlite3.Connection) -> Iterator[None]:
    # One write of a batch that takes several statements: all of them or none, while the
    # batch's transaction goes on.
    conn.execute("SAVEPOINT dataferry_write")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled the whole transaction back already
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK TO dataferry_write")
                conn.execute("RELEASE dataferry_write")
        raise
    conn.execute("RELEASE dataferry_write")


def _set_rows(
    conn: sqlite3.Connection, items: Sequence[tuple[str, bytes, float]], now: float
) -> None:
    conn.executemany(_SET, [(k, v, now + ttl) for k, v, ttl in items])


def _delete_keys(conn: sqlite3.Connection, keys: Sequence[str], now: float) -> int:
    deleted = 0
    # Duplicates would not change the count, but dedupe to keep chunks small.
    unique = list(dict.fromkeys(keys))
    for chunk in _chunks(unique):
        deleted += conn.execute(
            f"DELETE FROM {_TABLE} WHERE key IN ({_marks(len(chunk))}) AND expires_at > ?",
            (*chunk, now),
        ).rowcount
    return deleted


# -- the async writes of a batch: each applies one caller's write, at the batch's time ----------


def _apply_set(conn: sqlite3.Connection, now: float, args: Any) -> None:
    key, value, ttl = args
    conn.execute(_SET, (key, value, now + ttl))


def _apply_set_many(conn: sqlite3.Connection, now: float, items: Any) -> None:
    with _savepoint(conn):
        _set_rows(conn, items, now)


def _apply_compare_and_set(conn: sqlite3.Connection, now: float, args: Any) -> bool:
    key, expected, value = args
    return conn.execute(_CAS, (value, key, expected, now)).rowcount > 0


def _apply_delete(conn: sqlite3.Connection, now: float, key: Any) -> bool:
    return conn.execute(_DELETE, (key, now)).rowcount > 0


def _apply_delete_many(conn: sqlite3.Connection, now: float, keys: Any) -> int:
    with _savepoint(conn):
        return _delete_keys(conn, keys, now)


# The lock operations read the clock themselves, under the write lock, rather than use the
# batch's time, read before its BEGIN IMMEDIATE (which may wait up to busy_timeout for another
# process): a lock's ttl counts from the moment it is taken.


def _acquire_lock(conn: sqlite3.Connection, _: float, args: Any) -> bool:
    name, token, ttl = args
    now = time.time()
    return conn.execute(_LOCK_ACQUIRE, (name, token, now + ttl, now)).rowcount > 0


def _release_lock(conn: sqlite3.Connection, _: float, args: Any) -> bool:
    name, token = args
    return conn.execute(_LOCK_RELEASE, (name, token, time.time())).rowcount > 0


def _extend_lock(conn: sqlite3.Connection, _: float, args: Any) -> bool:
    name, token, ttl = args
    now = time.time()
    return conn.execute(_LOCK_EXTEND, (now + ttl, name, token, now)).rowcount > 0


_Apply = Callable[[sqlite3.Connection, float, Any], Any]


class _Write:
    """One caller's async write, waiting in its loop's batch; its outcome, once applied."""

    __slots__ = ("apply", "args", "dropped", "error", "future", "result", "rows")

    def __init__(self, apply: _Apply, args: Any, rows: int, future: asyncio.Future[Any]) -> None:
        self.apply = apply
        self.args = args
        self.rows = rows  # rows it writes, for the purge counter
        self.future = future
        # Set by its caller, cancelled while waiting: a batch that has not taken it skips it.
        self.dropped = False
        self.result: Any = None
        self.error: Exception | None = None


class _LoopWrites:
    """One event loop's async writes: those waiting, and whether a worker is committing them."""

    __slots__ = ("draining", "lock", "loop", "pending", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # Guards pending and draining, shared by the loop's thread and the worker thread.
        self.lock = threading.Lock()
        self.pending: list[_Write] = []
        # A worker thread is committing this loop's writes (at most one at a time).
        self.draining = False
        # aclose() calls waiting for the worker to be done.
        self.waiters: list[asyncio.Future[None]] = []


class _Handle:
    """One thread's connection, with the file it opened and the cache generation it belongs to."""

    __slots__ = ("conn", "generation", "identity", "lock", "thread")

    def __init__(
        self, conn: sqlite3.Connection, generation: int, identity: _Identity | None
    ) -> None:
        self.conn: sqlite3.Connection | None = conn
        self.generation = generation
        self.identity = identity
        # Held by the owning thread while it uses the connection, and by a thread closing it
        # (a repair, close()): a connection is never closed under a running statement.
        self.lock = threading.Lock()
        self.thread = threading.current_thread()


class _OpenError(Exception):
    """Opening a connection failed (the cause is chained); carries the file it tried."""

    def __init__(self, identity: _Identity | None, generation: int) -> None:
        super().__init__()
        self.identity = identity
        self.generation = generation


class _Retired(Exception):
    """The connection was closed by another thread (a repair) between lookup and use."""


class SQLiteCache:
    """The distributed cache (L2) in a SQLite file, shared by the processes of one host.

    Entries live in one table (``key TEXT PRIMARY KEY, value BLOB, expires_at REAL``, a wall-
    clock time so every process agrees on it). The database runs in WAL mode with a
    ``busy_timeout``, so several processes and threads read and write it at once. Expired rows
    are invisible at once and deleted in bulk every ``purge_every`` writes or
    ``purge_interval`` seconds, whichever comes first.

    Each thread gets its own connection (those of finished threads, such as the worker threads
    of an event loop that ended, are closed when the next connection opens). SQLite has no
    async I/O: the async writes run in a worker thread (the loop's default executor, so any
    event loop can use the cache), since a write may wait up to ``busy_timeout`` for another
    process's lock. They are committed in groups: the writes (``aset``, ``aset_many``,
    ``acompare_and_set``, ``adelete``, ``adelete_many``, and the lock operations) that the
    tasks of one event loop make in one turn of the loop, or while that loop's previous group
    is being committed, go together, in their order, in one transaction and one hop to a
    worker thread. Each caller gets its own result or error: a write that fails is undone
    alone and the others are committed. Each loop has its own groups; a caller cancelled
    before its write was taken drops it, and a write already taken completes. Reads run
    inline on the event loop by
    default: in WAL mode a reader never waits for a writer, and an indexed lookup of a local
    file costs a few microseconds, far less than the hop to a worker thread
    (``inline_reads=False`` sends reads to a thread too, for a database on slow storage).
    ``SQLiteCache(":memory:")`` keeps the data in this process only, on a single connection
    behind a lock (an in-memory database cannot be shared between connections without SQLite's
    shared-cache mode, whose table locks fail instead of waiting); :meth:`close` discards it.

    **Locks.** :meth:`acquire_lock` / :meth:`aacquire_lock` take a named lock for every process
    sharing the file: a row (``name``, the holder's ``token``, ``expires_at``) in a table of its
    own (``dataferry_locks``), inserted, or taken over once its time ran out, by one atomic
    statement. Release and extend act only for the token that holds a lock that has not
    expired. Rows of locks whose holders crashed are deleted with the expired entries.

    **Self-repair.** A file that SQLite reports as corrupt or as not a database (garbage
    written over it, truncated, another kind of file) is a cache that lost its contents: the
    call that meets it checks it (``PRAGMA quick_check``), renames it to
    ``<path>.corrupt-<time>-<pid>-<n>`` (with its ``-wal`` / ``-shm`` files), puts an empty
    database in its place, logs one ERROR on the ``dataferry`` logger and runs again on the
    fresh file. Processes sharing the file take a lock file (``<path>.dataferry-lock``, POSIX
    only) around every repair and every connection they open, and a process only moves aside
    the very file (same inode) it found corrupt, after a fresh connection confirmed the damage:
    when two processes meet the corruption, the second finds a fresh file in place and
    switches to it. A process that never meets the corruption reopens on the fresh file within a
    second of its next call (the path is checked, at most once a second, to still name the file
    it has open); until then its calls may still read and write the moved file.

    Every error (``sqlite3.Error``, ``OSError`` and any other exception) is raised as
    :class:`~dataferry.DistributedCacheError`. Nothing is opened until the first call.

    Args:
        path: The database file (created if missing; its directory must exist), or
            ``":memory:"``.
        busy_timeout: Seconds a call waits for another writer's lock before failing.
        purge_every: Purge expired rows after this many writes in this process.
        purge_interval: Purge expired rows on a write at least this often (seconds).
        inline_reads: Run async reads on the event loop instead of in a worker thread.

    Raises:
        ConfigurationError: Bad settings, a path whose directory does not exist, or a path
            that is a directory.

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
        self._memory = self._path == ":memory:" or self._path == ""
        if not self._memory:
            directory = os.path.dirname(os.path.abspath(self._path))
            if not os.path.isdir(directory):
                raise ConfigurationError(
                    f"SQLiteCache({self._path!r}): the directory {directory!r} does not exist"
                )
            if os.path.isdir(self._path):
                raise ConfigurationError(
                    f"SQLiteCache({self._path!r}) is a directory: give the path of a file"
                )
        self._busy_timeout = busy_timeout
        self._purge_every = purge_every
        self._purge_interval = purge_interval
        self._inline_reads = inline_reads
        self._local = threading.local()
        # Guards _handles, _generation, _identity and, for ":memory:", every use of the single
        # connection.
        self._lock = threading.RLock()
        self._handles: set[_Handle] = set()
        # Bumped when every connection must be reopened (close, repair, file replaced).
        self._generation = 0
        # The file this process's connections have open (the last one opened).
        self._identity: _Identity | None = None
        self._next_identity_check = 0.0
        # One repair at a time in this process (the lock file serializes processes).
        self._repair_lock = threading.Lock()
        self._repair_failed = False
        self._shared: sqlite3.Connection | None = None
        self._writes = 0
        self._next_purge = time.monotonic() + purge_interval
        # The async writes of each event loop that wrote (a closed loop's are forgotten when
        # another loop first writes).
        self._loop_writes: dict[asyncio.AbstractEventLoop, _LoopWrites] = {}
        self._loop_writes_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteCache({self._path!r})"

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
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
                self._switch_to_wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
            for statement in _SCHEMA:
                conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return conn

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is
        # locked" at once (no busy handler) when connections opening the same new file race
        # for it: retry until busy_timeout, as the busy handler would have waited.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.002)

    @contextlib.contextmanager
    def _file_lock(self, *, exclusive: bool) -> Iterator[None]:
        """Hold the lock file shared (opening a connection) or exclusive (repairing)."""
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self._path + _LOCK_SUFFIX, flags, 0o666)
        except OSError as exc:  # pragma: no cover - a read-only directory: no lock to take
            logger.debug("SQLiteCache %r: no lock file (%s)", self._path, exc)
            yield
            return
        try:
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            # flock() locks belong to the open file, so threads of one process exclude each
            # other too. Wait a bounded time: a process frozen in a repair must not hang us.
            deadline = time.monotonic() + max(self._busy_timeout, 1.0)
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(
                            f"{self._path + _LOCK_SUFFIX!r} is held by a repair"
                        ) from None
                    time.sleep(0.002)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _open(self) -> _Handle:
        generation = self._generation
        identity: _Identity | None = None
        try:
            # Shared: no repair runs while a connection opens, so the file it opens is the one
            # `identity` names, and never a file half-way through being replaced.
            with self._file_lock(exclusive=False):
                generation = self._generation
                identity = _identity(self._path)
                conn = self._connect()
                if identity is None:  # created just now
                    identity = _identity(self._path)
        except Exception as exc:
            raise _OpenError(identity, generation) from exc
        handle = _Handle(conn, generation, identity)
        with self._lock:
            finished = [h for h in self._handles if not h.thread.is_alive()]
            self._handles.difference_update(finished)
            self._handles.add(handle)
            self._identity = identity
        for old in finished:  # their threads are gone: nobody else uses them
            if old.conn is not None:
                old.conn.close()
                old.conn = None
        return handle

    def _handle(self) -> _Handle:
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is None or handle.generation != self._generation or handle.conn is None:
            if handle is not None:
                self._discard(handle)
            handle = self._local.handle = self._open()
        return handle

    def _discard(self, handle: _Handle) -> None:
        with self._lock:
            self._handles.discard(handle)
        with handle.lock:
            conn, handle.conn = handle.conn, None
        if conn is not None:
            _close_retired(conn)

    def _retire_all(self) -> None:
        """Close every connection of this process (they reopen on their next use)."""
        with self._lock:
            self._generation += 1
            self._identity = None
            handles, self._handles = self._handles, set()
        for handle in handles:
            with handle.lock:  # waits for a statement running in the owning thread
                conn, handle.conn = handle.conn, None
            if conn is not None:
                _close_retired(conn)

    def _check_identity(self) -> None:
        # At most once a second: does the path still name the file we have open? If another
        # process moved it aside (a repair), reopen on the file now there.
        now = time.monotonic()
        if now < self._next_identity_check:
            return
        self._next_identity_check = now + _IDENTITY_CHECK_INTERVAL
        identity = self._identity
        if identity is None or _identity(self._path) == identity:
            return
        with self._repair_lock:
            if self._identity == identity:
                logger.info("SQLiteCache %r: the file was replaced; reopening it", self._path)
                self._retire_all()

    def _run(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._memory:
            try:
                with self._lock:
                    conn = self._shared
                    if conn is None:
                        conn = self._shared = self._connect()
                    return op(conn)
            except Exception as exc:
                raise self._failed(exc) from exc
        self._check_identity()
        repaired = False
        for _ in range(3):
            generation, identity = self._generation, self._identity
            try:
                try:
                    handle = self._handle()
                except _OpenError as wrapped:
                    generation, identity = wrapped.generation, wrapped.identity
                    raise wrapped.__cause__ from None  # type: ignore[misc]
                generation, identity = handle.generation, handle.identity
                with handle.lock:
                    conn = handle.conn
                    if conn is None:
                        raise _Retired
                    return op(conn)
            except _Retired:
                continue
            except Exception as exc:
                if repaired:
                    raise self._failed(exc) from exc
                if _is_corruption(exc) and self._recover(exc, generation, identity):
                    repaired = True
                    continue
                raise self._failed(exc) from exc
        # Retired by other threads' repairs three times over.
        raise DistributedCacheError(  # pragma: no cover
            f"SQLite {self._path!r}: the connection kept being replaced"
        )

    def _failed(self, exc: BaseException) -> DistributedCacheError:
        return DistributedCacheError(f"SQLite {self._path!r} failed: {type(exc).__name__}: {exc}")

    # -- self-repair ---------------------------------------------------------------------------

    def _recover(self, exc: BaseException, generation: int, identity: _Identity | None) -> bool:
        """After a corruption error on the file ``identity``: repair, or reopen; retry if True."""
        try:
            with self._repair_lock:
                if self._generation != generation:
                    return True  # another thread of this process dealt with it: reopen
                with self._file_lock(exclusive=True):
                    current = _identity(self._path)
                    if current is None or current != identity:
                        # Another process already put a fresh file in place: use it. Never
                        # move aside a file other than the one found corrupt.
                        logger.info(
                            "SQLiteCache %r: the corrupt file was already replaced; reopening",
                            self._path,
                        )
                        self._retire_all()
                        return True
                    if not self._confirm_corrupt():
                        # A fresh connection finds the file sound: only ours had a bad view
                        # of it. Reopen, and move nothing (other processes may be using it).
                        logger.warning(
                            "SQLiteCache %r: a connection reported %s, but the file checks "
                            "out; reopening",
                            self._path,
                            exc,
                        )
                        self._retire_all()
                        return True
                    self._retire_all()
                    aside = self._replace_corrupt()
        except Exception as repair_error:
            # Logged at ERROR once per cache (every call would meet it again), then at DEBUG.
            level = logging.DEBUG if self._repair_failed else logging.ERROR
            self._repair_failed = True
            logger.log(
                level,
                "SQLiteCache %r is corrupt (%s) and could not be repaired: %s: %s",
                self._path,
                exc,
                type(repair_error).__name__,
                repair_error,
            )
            return False
        logger.error(
            "SQLiteCache %r was corrupt (%s: %s): moved it to %r and started an empty cache",
            self._path,
            type(exc).__name__,
            exc,
            aside,
        )
        return True

    def _confirm_corrupt(self) -> bool:
        # The error came from a connection that may hold a stale view: ask a fresh one. A
        # healthy file is never moved aside (another process may be using it).
        try:
            with contextlib.closing(
                sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
            ) as conn:
                rows = conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return _is_corruption(exc)
        return rows != [("ok",)]

    def _replace_corrupt(self) -> str:
        """Under the exclusive lock: move the file aside and put an empty database in its place."""
        path = self._path
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = f"{path}.corrupt-{stamp}-{os.getpid()}-{next(_aside_counter)}"
        # Build the fresh file first, under another name: the path never names a half-made
        # database. Closing its only connection checkpoints and removes its -wal/-shm.
        fresh = f"{path}.rebuild-{os.getpid()}-{threading.get_ident()}"
        for suffix in ("", *_SIDE_FILES):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(fresh + suffix)
        with contextlib.closing(sqlite3.connect(fresh, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            for statement in _SCHEMA:
                conn.execute(statement)
        with contextlib.suppress(OSError):  # the same permissions (a file shared by a group)
            os.chmod(fresh, stat.S_IMODE(os.stat(path).st_mode))
        # Keep the corrupt file for a post-mortem: a hard link, so that the path names a file
        # at every moment (a rename where links are not supported).
        try:
            os.link(path, aside)
        except OSError:  # pragma: no cover - no hard links on this file system
            os.replace(path, aside)
        # Its -wal / -shm / -journal go with it, before the fresh file takes the path: SQLite
        # would otherwise replay the old log into the new database.
        for suffix in _SIDE_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.replace(path + suffix, aside + suffix)
        os.replace(fresh, path)
        return aside

    def _wrote(self, conn: sqlite3.Connection, count: int) -> None:
        # Amortised purge: one DELETE (on the expires_at index) per purge_every writes or
        # purge_interval seconds. The counter is per process and racy across threads, which
        # only shifts when the next purge happens.
        self._writes += count
        now = time.monotonic()
        if self._writes >= self._purge_every or now >= self._next_purge:
            self._writes = 0
            self._next_purge = now + self._purge_interval
            wall = time.time()
            conn.execute(_PURGE, (wall,))
            conn.execute(_LOCK_PURGE, (wall,))  # those left by holders that crashed

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
            with _transaction(conn):
                _set_rows(conn, items, time.time())
            self._wrote(conn, len(items))

        self._run(op)

    def compare_and_set(self, key: str, expected: bytes, value: bytes, /) -> bool:
        """Replace a live key's bytes by ``value`` if they are exactly ``expected``.

        The expiry is kept. One ``UPDATE ... WHERE value = ?`` statement, atomic against every
        other connection and process: return whether it replaced them.
        """

        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute(_CAS, (value, key, expected, time.time())).rowcount > 0

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
            with _transaction(conn):
                return _delete_keys(conn, keys, time.time())

        return self._run(op)

    def acquire_lock(self, name: str, token: bytes, ttl: float, /) -> bool:
        """Take the lock ``name`` for ``ttl`` seconds if it is free; return whether it did.

        One statement (an insert, or the takeover of a lock whose time ran out), atomic against
        every thread and process sharing the file. Expiry uses the wall clock, as entries do.
        """
        check_lock(name, token, ttl)
        return self._run(functools.partial(self._locked, _acquire_lock, (name, token, ttl)))

    def release_lock(self, name: str, token: bytes, /) -> bool:
        """Free the lock ``name`` if ``token`` holds it (and it has not expired)."""
        check_lock(name, token)
        return self._run(lambda conn: _release_lock(conn, 0.0, (name, token)))

    def extend_lock(self, name: str, token: bytes, ttl: float, /) -> bool:
        """Make the lock ``name`` expire ``ttl`` seconds from now if ``token`` still holds it."""
        check_lock(name, token, ttl)
        return self._run(functools.partial(self._locked, _extend_lock, (name, token, ttl)))

    @staticmethod
    def _locked(apply: _Apply, args: Any, conn: sqlite3.Connection) -> bool:
        # Under the write lock (BEGIN IMMEDIATE, which may wait busy_timeout for another
        # process) before the clock is read: the ttl counts from when the lock is taken.
        with _transaction(conn):
            return bool(apply(conn, 0.0, args))

    def close(self) -> None:
        """Close every connection (any thread's); the next call opens new ones.

        With ``":memory:"`` the data is gone.
        """
        with self._lock:
            shared, self._shared = self._shared, None
            self._generation += 1
            handles, self._handles = self._handles, set()
        for handle in handles:
            with handle.lock:
                conn, handle.conn = handle.conn, None
            if conn is not None:
                conn.close()
        if shared is not None:
            shared.close()

    # -- async writes: group commit ---------------------------------------------------------

    async def _write(self, apply: _Apply, args: Any, rows: int) -> Any:
        """Queue a write in the running loop's batch and wait for its own outcome."""
        loop = asyncio.get_running_loop()
        batch = self._loop_writes.get(loop)
        if batch is None:
            batch = self._loop_batch(loop)
        future: asyncio.Future[Any] = loop.create_future()
        write = _Write(apply, args, rows, future)
        with batch.lock:
            batch.pending.append(write)
            start, batch.draining = not batch.draining, True
        if start:
            # On the next turn of the loop: the writes of every task that runs in this turn
            # join the first batch (one turn costs microseconds; the hop to a thread, far more).
            loop.call_soon(self._start_drain, batch)
        try:
            return await future
        except asyncio.CancelledError:
            write.dropped = True  # skipped if not taken yet; a write in flight completes
            raise

    def _loop_batch(self, loop: asyncio.AbstractEventLoop) -> _LoopWrites:
        with self._loop_writes_lock:
            batch = self._loop_writes.get(loop)
            if batch is None:
                # Forget the loops that were closed (asyncio.run() ended, a thread's loop).
                for closed in [other for other in self._loop_writes if other.is_closed()]:
                    del self._loop_writes[closed]
                batch = self._loop_writes[loop] = _LoopWrites(loop)
        return batch

    def _start_drain(self, batch: _LoopWrites) -> None:
        try:
            job = batch.loop.run_in_executor(None, self._drain, batch)
        except RuntimeError:  # the loop's executor was shut down (the loop is ending)
            self._drain(batch)  # commit here rather than lose the writes
            batch.loop.call_soon(self._drain_ended, batch)
            return
        job.add_done_callback(functools.partial(self._drained, batch))

    def _drain(self, batch: _LoopWrites) -> None:
        """In a worker thread: commit the loop's writes, batch after batch, until none wait.

        The writes that arrive while a batch is being committed make the next batch. Each batch
        is handed back to the loop as soon as it is committed (the callers wake up one turn of
        the loop later, as with to_thread).
        """
        while True:
            with batch.lock:
                taken = batch.pending[:_MAX_BATCH]
                del batch.pending[:_MAX_BATCH]
            writes = [w for w in taken if not w.dropped]
            error: BaseException | None = None
            if writes:
                try:
                    self._commit(writes)
                except BaseException as exc:  # delivered to every caller of the batch
                    error = exc
                # RuntimeError: the loop is closed, and nobody waits for these results.
                with contextlib.suppress(RuntimeError):
                    batch.loop.call_soon_threadsafe(self._deliver, writes, error)
            with batch.lock:
                if not batch.pending:
                    batch.draining = False
                    return

    def _drained(self, batch: _LoopWrites, job: asyncio.Future[None]) -> None:
        """In the loop, when the worker's job ended (after its last delivery)."""
        if job.cancelled() or job.exception() is not None:  # pragma: no cover - defensive
            # The job never ran or broke: fail what waits rather than leave it hanging.
            with batch.lock:
                writes, batch.pending = batch.pending, []
                batch.draining = False
            reason = "cancelled" if job.cancelled() else repr(job.exception())
            error = DistributedCacheError(f"SQLite {self._path!r}: a write batch was {reason}")
            self._deliver(writes, error)
        self._drain_ended(batch)

    def _drain_ended(self, batch: _LoopWrites) -> None:
        if batch.draining:  # another job started since: it will wake the waiters
            return
        waiters, batch.waiters = batch.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _deliver(self, writes: list[_Write], error: BaseException | None) -> None:
        """In the loop: give each caller of a batch its result or its error."""
        for write in writes:
            future = write.future
            if future.done():  # its caller was cancelled meanwhile
                continue
            if error is not None:  # the whole batch failed: the same error for everyone
                future.set_exception(self._copy_error(error))
            elif write.error is not None:
                failure = self._failed(write.error)
                failure.__cause__ = write.error
                future.set_exception(failure)
            else:
                future.set_result(write.result)

    def _copy_error(self, error: BaseException) -> DistributedCacheError:
        # One exception object per caller: each raise adds to its traceback.
        cause = error.__cause__ if isinstance(error, DistributedCacheError) else error
        copy = (
            DistributedCacheError(str(error))
            if isinstance(error, DistributedCacheError)
            else self._failed(error)
        )
        copy.__cause__ = cause
        return copy

    def _commit(self, writes: list[_Write]) -> None:
        """In a worker thread: apply the writes in one transaction (repairing a corrupt file)."""
        self._run(functools.partial(self._apply_batch, writes))

    def _apply_batch(self, writes: list[_Write], conn: sqlite3.Connection) -> None:
        # From scratch on every call: after a repair, _run calls again on the fresh file.
        for write in writes:
            write.result = write.error = None
        todo = writes
        while todo and self._transact(conn, todo):
            # A write's error made SQLite roll the whole transaction back: it fails alone, and
            # the others (whose effects were undone) go again, without it and without any other
            # write that failed.
            todo = [w for w in todo if w.error is None]
            for write in todo:
                write.result = None
        rows = sum(w.rows for w in writes if w.error is None)
        if rows:
            try:
                self._wrote(conn, rows)
            except Exception as exc:  # the writes are committed: the purge waits for later
                if _is_corruption(exc):
                    raise
                logger.debug("SQLiteCache %r: purging expired rows failed: %s", self._path, exc)

    def _transact(self, conn: sqlite3.Connection, writes: list[_Write]) -> bool:
        """Apply the writes in one transaction and commit; True if one's error lost it."""
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for write in writes:
                try:
                    write.result = write.apply(conn, now, write.args)
                except Exception as exc:
                    if _is_corruption(exc):
                        raise  # the file, not this write: repair, and the batch goes again
                    write.error = exc
                    if not conn.in_transaction:
                        return True
                    # SQLite undid the failing statement (or its savepoint) alone.
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return False

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
        """Async :meth:`set`, committed with the loop's other writes (see :class:`SQLiteCache`)."""
        await self._write(_apply_set, (key, value, ttl), 1)

    async def aset_many(self, items: Sequence[tuple[str, bytes, float]], /) -> None:
        """Async :meth:`set_many`, committed with the loop's other writes (all or none)."""
        if items:
            await self._write(_apply_set_many, items, len(items))

    async def acompare_and_set(self, key: str, expected: bytes, value: bytes, /) -> bool:
        """Async :meth:`compare_and_set`, committed with the loop's other writes."""
        return bool(await self._write(_apply_compare_and_set, (key, expected, value), 0))

    async def attl(self, key: str, /) -> float | None:
        """Async :meth:`ttl` (in a worker thread)."""
        return await asyncio.to_thread(self.ttl, key)

    async def adelete(self, key: str, /) -> bool:
        """Async :meth:`delete`, committed with the loop's other writes."""
        return bool(await self._write(_apply_delete, key, 0))

    async def adelete_many(self, keys: Sequence[str], /) -> int:
        """Async :meth:`delete_many`, committed with the loop's other writes (all or none)."""
        if not keys:
            return 0
        return int(await self._write(_apply_delete_many, keys, 0))

    async def aacquire_lock(self, name: str, token: bytes, ttl: float, /) -> bool:
        """Async :meth:`acquire_lock`, committed with the loop's other writes."""
        check_lock(name, token, ttl)
        # One row written: counts towards the purge that also clears crashed holders' locks.
        return bool(await self._write(_acquire_lock, (name, token, ttl), 1))

    async def arelease_lock(self, name: str, token: bytes, /) -> bool:
        """Async :meth:`release_lock`, committed with the loop's other writes."""
        check_lock(name, token)
        return bool(await self._write(_release_lock, (name, token), 0))

    async def aextend_lock(self, name: str, token: bytes, ttl: float, /) -> bool:
        """Async :meth:`extend_lock`, committed with the loop's other writes."""
        check_lock(name, token, ttl)
        return bool(await self._write(_extend_lock, (name, token, ttl), 0))

    async def aclose(self) -> None:
        """Wait for this loop's async writes in flight, then :meth:`close`."""
        batch = self._loop_writes.get(asyncio.get_running_loop())
        if batch is not None and batch.draining:
            waiter: asyncio.Future[None] = batch.loop.create_future()
            batch.waiters.append(waiter)
            await waiter
        self.close()
