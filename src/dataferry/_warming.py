"""The colour-neutral parts of cache warming: seeders, the report, progress, bounded workers.

:class:`~dataferry.CacheWarmer` (``_cache_warmer.py``) validates its arguments into a
:class:`WarmPlan`; the engines in ``_async/_warmer.py`` (and its generated twin
``_sync/_warmer.py``) feed the seeders' items to an :class:`AsyncTaskPool` /
:class:`TaskPool` (at most ``concurrency`` writes in flight) and count outcomes in a
:class:`Tally`, which calls the progress callback and builds the :class:`WarmReport`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, NamedTuple

from dataferry._errors import ConfigurationError, InvalidKeyError
from dataferry._keys import check_key
from dataferry._logging import Throttle, logger
from dataferry._options import Entry, EntryOptions

__all__ = [
    "ERRORS_KEPT",
    "AsyncTaskPool",
    "KeySeeder",
    "Seeder",
    "Tally",
    "TaskPool",
    "WarmFailure",
    "WarmPlan",
    "WarmProgress",
    "WarmReport",
    "async_items",
    "describe",
    "key_of",
    "pair_of",
    "sync_items",
    "unwrap",
]

#: How many failures a :class:`WarmReport` keeps (the others are only counted).
ERRORS_KEPT = 100


class WarmFailure(NamedTuple):
    """One failure of a warm-up: what failed and why (a ``(what, error)`` pair).

    Attributes:
        item: The key whose value could not be loaded or written; for an item that is not
            a valid seeder item, its ``repr`` (cut at 100 characters); for a seeder that
            raised while it was iterated, ``"seeders[i]"``; for a batch of keys that failed
            together, ``"N keys from 'first-key'"``.
        error: The exception (a :class:`~dataferry.ConfigurationError` or
            :class:`~dataferry.InvalidKeyError` for an invalid item; a loader's or
            seeder's own exception as it was raised).

    """

    item: str
    error: Exception


@dataclass(frozen=True, slots=True)
class WarmProgress:
    """Where a running warm-up stands: what the ``progress`` callback receives.

    Attributes:
        loaded: Entries written so far.
        skipped: Keys left as they were (already fresh in the cache).
        failed: Items that failed (and seeders that broke off).
        elapsed: Seconds since the run started.
        finished: Whether this is the last call (the run is over).

    """

    loaded: int
    skipped: int
    failed: int
    elapsed: float
    finished: bool

    @property
    def processed(self) -> int:
        """Items dealt with so far: ``loaded + skipped + failed``."""
        return self.loaded + self.skipped + self.failed


@dataclass(frozen=True, slots=True)
class WarmReport:
    """What :meth:`CacheWarmer.run` returns: counts, duration and the first failures.

    Attributes:
        loaded: Entries written to the cache.
        skipped: Keys left as they were, because the cache held a fresh value for them
            already (only without ``overwrite=True``).
        failed: Items that failed: invalid seeder items, loader or write errors, keys a
            ``load_many`` left out (each counts one), plus one per seeder that raised while
            it was iterated (its remaining items are not known).
        duration: Seconds the run took.
        errors: The first :data:`ERRORS_KEPT` (100) failures, as :class:`WarmFailure`
            ``(item, error)`` pairs, in the order they happened.
        errors_omitted: How many failures more happened than ``errors`` holds.

    """

    loaded: int
    skipped: int
    failed: int
    duration: float
    errors: tuple[WarmFailure, ...] = ()
    errors_omitted: int = 0

    @property
    def processed(self) -> int:
        """Items dealt with: ``loaded + skipped + failed``."""
        return self.loaded + self.skipped + self.failed

    @property
    def ok(self) -> bool:
        """Whether nothing failed."""
        return self.failed == 0

    def __str__(self) -> str:
        text = (
            f"warmed {self.loaded} entries, skipped {self.skipped}, failed {self.failed} "
            f"in {self.duration:.3f} s"
        )
        if self.errors:
            shown = "; ".join(f"{f.item}: {f.error!r:.200}" for f in self.errors[:5])
            more = len(self.errors) - 5 + self.errors_omitted
            text += f" (errors: {shown}{f'; and {more} more' if more > 0 else ''})"
        return text


class KeySeeder:
    """A seeder of keys whose values a loader gives (for :class:`CacheWarmer`).

    ``KeySeeder(keys, load=load_user)`` warms each key with ``load(key)``;
    ``KeySeeder(keys, load_many=load_users)`` warms them in batches of ``batch_size`` keys,
    one ``load_many(keys) -> {key: value}`` per batch (keys it leaves out are failures).
    Loaders may be sync or async (async ones only with an ``AsyncDataFerry``), and ``keys`` an
    iterable or an async iterable of cache keys. Without ``overwrite=True``, a key the cache
    already holds fresh is not loaded at all (it is counted as skipped), and concurrent
    loads of one key share one call, as with ``get_or_set``.

    Raises:
        ConfigurationError: ``keys`` is not an (async) iterable of keys, not exactly one of
            ``load`` and ``load_many`` is given, or ``batch_size`` is not an int >= 1.

    """

    __slots__ = ("batch_size", "keys", "load", "load_many")

    def __init__(
        self,
        keys: Iterable[str] | AsyncIterable[str],
        *,
        load: Callable[[str], object] | None = None,
        load_many: Callable[[list[str]], Mapping[str, object] | Awaitable[Mapping[str, object]]]
        | None = None,
        batch_size: int = 100,
    ) -> None:
        if isinstance(keys, (str, bytes)) or not isinstance(keys, (Iterable, AsyncIterable)):
            raise ConfigurationError(
                f"KeySeeder takes an iterable (or async iterable) of keys, got {keys!r:.100}"
            )
        if (load is None) == (load_many is None):
            raise ConfigurationError("KeySeeder needs exactly one of load= and load_many=")
        if load is not None and not callable(load):
            raise ConfigurationError(f"load must be callable, got {load!r}")
        if load_many is not None and not callable(load_many):
            raise ConfigurationError(f"load_many must be callable, got {load_many!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be an int >= 1, got {batch_size!r}")
        #: The keys to warm.
        self.keys = keys
        #: ``load(key) -> value`` (or None when ``load_many`` is given).
        self.load = load
        #: ``load_many(keys) -> {key: value}`` (or None when ``load`` is given).
        self.load_many = load_many
        #: Keys per ``load_many`` call.
        self.batch_size = batch_size

    def __repr__(self) -> str:
        loader = self.load if self.load is not None else self.load_many
        kind = "load" if self.load is not None else "load_many"
        return f"KeySeeder({self.keys!r:.60}, {kind}={loader!r:.60})"


#: What :class:`CacheWarmer` accepts as one seeder.
Seeder = Iterable[tuple[str, Any]] | AsyncIterable[tuple[str, Any]] | Mapping[str, Any] | KeySeeder


@dataclass(frozen=True, slots=True)
class WarmPlan:
    """The validated arguments of a :class:`CacheWarmer`."""

    seeders: tuple[Any, ...]
    concurrency: int
    ttl: float | timedelta | None
    tags: tuple[str, ...]
    options: EntryOptions | None
    overwrite: bool
    progress: Callable[[WarmProgress], object] | None
    progress_every: int


async def async_items(items: Any) -> AsyncIterator[Any]:
    """The items of an async iterable, or of an iterable (read in the event loop)."""
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
        return
    for item in items:
        yield item


def sync_items(items: Any) -> Iterator[Any]:
    """The items of an iterable (the sync twin of :func:`async_items`)."""
    return iter(items)


def describe(item: object) -> str:
    """A short description of a seeder item for a report (``repr``, cut at 100 characters)."""
    try:
        text = repr(item)
    except Exception:
        text = object.__repr__(item)
    return text if len(text) <= 100 else text[:97] + "..."


def pair_of(item: object) -> tuple[str, Any]:
    """Return the ``(key, value)`` of a pair seeder's item, validated.

    Raises:
        ConfigurationError: ``item`` is not a 2-tuple (or 2-list).
        InvalidKeyError: its key is not a valid cache key.

    """
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise ConfigurationError(f"a seeder yielded {describe(item)}, not a (key, value) pair")
    key, value = item
    try:
        return check_key(key), value
    except InvalidKeyError as exc:
        raise InvalidKeyError(f"{exc}: a seeder yielded the pair {describe(item)}") from None


def key_of(item: object) -> str:
    """Return a key seeder's item, validated.

    Raises:
        InvalidKeyError: ``item`` is not a valid cache key.

    """
    try:
        return check_key(item)
    except InvalidKeyError as exc:
        raise InvalidKeyError(f"{exc}: a KeySeeder yielded {describe(item)}") from None


def unwrap(
    value: Any, plan: WarmPlan
) -> tuple[Any, float | timedelta | None, tuple[str, ...] | Iterable[str], EntryOptions | None]:
    """``(value, ttl, tags, options)`` to write: an :class:`Entry` value adapts the plan's."""
    if type(value) is not Entry:
        return value, plan.ttl, plan.tags, plan.options
    options = plan.options
    if value.options is not None:
        options = (options or EntryOptions()).merged(value.options)
    ttl = plan.ttl if value.ttl is None else value.ttl
    tags = plan.tags if value.tags is None else value.tags
    return value.value, ttl, tags, options


class Tally:
    """The counts of one run (thread-safe); calls the progress callback; builds the report."""

    __slots__ = (
        "_every",
        "_lock",
        "_next",
        "_progress",
        "_report_lock",
        "_started",
        "_throttle",
        "errors",
        "failed",
        "loaded",
        "omitted",
        "skipped",
    )

    def __init__(self, plan: WarmPlan) -> None:
        self.loaded = self.skipped = self.failed = self.omitted = 0
        self.errors: list[WarmFailure] = []
        self._progress = plan.progress
        self._every = plan.progress_every
        self._next = plan.progress_every
        self._lock = threading.Lock()
        # Callbacks one at a time, each with counts at least those of the one before.
        self._report_lock = threading.Lock()
        self._throttle = Throttle()
        self._started = time.monotonic()

    def add(self, *, loaded: int = 0, skipped: int = 0) -> None:
        """Count keys loaded and skipped."""
        with self._lock:
            self.loaded += loaded
            self.skipped += skipped
            due = self._due()
        if due:
            self._report(False)

    def fail(self, item: str, error: Exception, count: int = 1) -> None:
        """Count ``count`` failed items, recorded as one failure (``item``, ``error``)."""
        with self._lock:
            self.failed += count
            if len(self.errors) < ERRORS_KEPT:
                self.errors.append(WarmFailure(item, error))
            else:
                self.omitted += 1
            due = self._due()
        if due:
            self._report(False)

    def _due(self) -> bool:
        # Called under the lock: whether the count just crossed the next progress point.
        if self._progress is None:
            return False
        done = self.loaded + self.skipped + self.failed
        if done < self._next:
            return False
        self._next = done - done % self._every + self._every
        return True

    def _report(self, finished: bool) -> None:
        progress = self._progress
        if progress is None:
            return
        with self._report_lock:
            with self._lock:
                snapshot = WarmProgress(
                    self.loaded,
                    self.skipped,
                    self.failed,
                    time.monotonic() - self._started,
                    finished,
                )
            try:
                progress(snapshot)
            except Exception:
                # A broken progress callback must not stop the warm-up, nor flood the log.
                held = self._throttle.allow()
                if held is not None:
                    logger.warning(
                        "the CacheWarmer progress callback raised (the run goes on)",
                        exc_info=True,
                        extra={"dataferry_event": "warm_progress_error"},
                    )

    def report(self) -> WarmReport:
        """Call the progress callback a last time (``finished``) and return the report."""
        self._report(True)
        with self._lock:
            return WarmReport(
                loaded=self.loaded,
                skipped=self.skipped,
                failed=self.failed,
                duration=time.monotonic() - self._started,
                errors=tuple(self.errors),
                errors_omitted=self.omitted,
            )


class AsyncTaskPool:
    """Runs coroutine functions as tasks of the running loop, at most ``limit`` at once.

    :meth:`submit` waits for a free slot, so a seeder is read no faster than its items are
    written. Leaving ``async with`` waits for every task (or, on an exception, cancels them).
    The functions handle their own errors.
    """

    __slots__ = ("_slots", "_tasks")

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, fn: Callable[..., Coroutine[Any, Any, None]], /, *args: Any) -> None:
        """Start ``fn(*args)`` once fewer than ``limit`` are running."""
        await self._slots.acquire()
        try:
            task = asyncio.get_running_loop().create_task(self._run(fn, args))
        except BaseException:
            self._slots.release()
            raise
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, fn: Callable[..., Coroutine[Any, Any, None]], args: tuple[Any, ...]
    ) -> None:
        try:
            await fn(*args)
        finally:
            self._slots.release()

    async def __aenter__(self) -> AsyncTaskPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                while self._tasks:
                    await asyncio.wait(list(self._tasks))
        finally:
            # Cancelled (or failed) while feeding or waiting: stop what is still running.
            for task in list(self._tasks):
                task.cancel()


class TaskPool:
    """Thread twin of :class:`AsyncTaskPool`: ``limit`` worker threads, ``limit`` jobs at once."""

    __slots__ = ("_executor", "_slots")

    def __init__(self, limit: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=limit, thread_name_prefix="dataferry-warmer"
        )

    def submit(self, fn: Callable[..., None], /, *args: Any) -> None:
        """Start ``fn(*args)`` in a worker thread once fewer than ``limit`` are running."""
        self._slots.acquire()
        try:
            self._executor.submit(self._run, fn, args)
        except BaseException:
            self._slots.release()
            raise

    def _run(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        finally:
            self._slots.release()

    def __enter__(self) -> TaskPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # On an exception (KeyboardInterrupt while feeding), jobs not started are dropped.
        self._executor.shutdown(wait=True, cancel_futures=exc_type is not None)
