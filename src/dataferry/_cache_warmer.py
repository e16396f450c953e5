"""CacheWarmer: pre-populate a cache (async or sync) from seeders, concurrently."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from datetime import timedelta

from dataferry._async._facade import AsyncDataFerry
from dataferry._async._warmer import warm as async_warm
from dataferry._errors import ConfigurationError
from dataferry._options import EntryOptions
from dataferry._sync._facade import DataFerry
from dataferry._sync._warmer import warm as sync_warm
from dataferry._synchronization import _is_async_callable
from dataferry._warming import KeySeeder, Seeder, WarmPlan, WarmProgress, WarmReport

__all__ = ["CacheWarmer"]


class CacheWarmer:
    """Pre-populates a cache from seeders, ``concurrency`` writes at a time.

    ::

        report = await CacheWarmer(cache, seeders=[top_products(), KeySeeder(user_keys,
                                   load_many=load_users)], concurrency=16).run()
        logger.info("cache warmed: %s", report)

    A seeder is one of:

    - an iterable, or an async iterable, of ``(key, value)`` pairs (a dict counts as its
      items); a value may be an :class:`Entry` to give it its own ttl or tags;
    - a :class:`KeySeeder`: keys whose values ``load(key)`` or ``load_many(keys)`` gives.

    The seeders are read one after another, each no faster than its items are written; at
    most ``concurrency`` writes (or loads, or batches of keys) are in flight at once. Nothing
    stops the run but cancellation: an item that is not a ``(key, value)`` pair or has an
    invalid key (a :class:`ConfigurationError` / :class:`InvalidKeyError` naming it, and
    nothing written for it), a loader or a write that raises, a seeder that raises while it is
    iterated (its other items are lost, the next seeder goes on), a progress callback that
    raises (logged to the ``dataferry`` logger): each is counted in the :class:`WarmReport`
    that the run returns, whose ``errors`` keep the first 100.

    With an :class:`AsyncDataFerry` call ``await warmer.run()`` (asyncio tasks; a plain
    iterable is read in the event loop, so a seeder that does I/O should be an async one);
    with a :class:`DataFerry` call ``warmer.run_sync()`` (a pool of ``concurrency`` threads,
    which takes only sync seeders and loaders). A warmer may run again: seeders that are lists
    or dicts are read again; iterators and generators have nothing left.

    Args:
        cache: The cache (or tenant view) to warm.
        seeders: A list of seeders.
        concurrency: Most writes in flight at once (default 16).
        ttl: Seconds the entries stay fresh (default: the cache's ``default_ttl``).
        tags: Tags of every entry.
        options: Options of every write (e.g. ``EntryOptions(skip_memory=True)`` to fill L2
            only and keep this process's L1 for its own traffic).
        overwrite: Write every item even if the cache holds a fresh value for its key. By
            default (``False``) a key the cache holds fresh (in L1 or L2) is skipped: a pair
            is not written, a key is not loaded. (A stale entry kept for fail-safe is
            replaced.)
        progress: Called with a :class:`WarmProgress` each time ``progress_every`` more items
            were dealt with, and once more when the run ends (``finished=True``); never two
            calls at once. With ``run_sync()``, from the worker threads.
        progress_every: Items between two progress calls (default 100).

    Raises:
        ConfigurationError: ``cache`` is not a cache, ``seeders`` is not a list (or tuple)
            of seeders, or another argument is invalid.

    """

    __slots__ = ("_cache", "_plan")

    def __init__(
        self,
        cache: AsyncDataFerry | DataFerry,
        *,
        seeders: Sequence[Seeder],
        concurrency: int = 16,
        ttl: float | timedelta | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
        overwrite: bool = False,
        progress: Callable[[WarmProgress], object] | None = None,
        progress_every: int = 100,
    ) -> None:
        if not isinstance(cache, (AsyncDataFerry, DataFerry)):
            raise ConfigurationError(
                f"CacheWarmer warms an AsyncDataFerry or a DataFerry, got {cache!r:.100}"
            )
        _check_seeders(seeders)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if not isinstance(overwrite, bool):
            raise ConfigurationError(f"overwrite must be a bool, got {overwrite!r}")
        if progress is not None and not callable(progress):
            raise ConfigurationError(f"progress must be callable, got {progress!r}")
        if (
            isinstance(progress_every, bool)
            or not isinstance(progress_every, int)
            or progress_every < 1
        ):
            raise ConfigurationError(f"progress_every must be an int >= 1, got {progress_every!r}")
        core = cache._core
        core.resolve(ttl, options)  # a bad ttl or options raises now, not for every item
        self._cache = cache
        self._plan = WarmPlan(
            seeders=tuple(seeders),
            concurrency=concurrency,
            ttl=ttl,
            tags=core.tags_of(tags),
            options=options,
            overwrite=overwrite,
            progress=progress,
            progress_every=progress_every,
        )

    @property
    def cache(self) -> AsyncDataFerry | DataFerry:
        """The cache this warmer fills."""
        return self._cache

    async def run(self) -> WarmReport:
        """Warm an :class:`AsyncDataFerry`: read every seeder, write its items; the report.

        Raises:
            ConfigurationError: The cache is a :class:`DataFerry` (call :meth:`run_sync`).
            CacheClosedError: The cache is closed.

        """
        cache = self._cache
        if not isinstance(cache, AsyncDataFerry):
            raise ConfigurationError(
                "CacheWarmer.run() warms an AsyncDataFerry; this cache is a DataFerry: "
                "call warmer.run_sync() instead"
            )
        return await async_warm(cache, self._plan)

    def run_sync(self) -> WarmReport:
        """Warm a :class:`DataFerry` with a pool of ``concurrency`` threads; the report.

        Raises:
            ConfigurationError: The cache is an :class:`AsyncDataFerry` (``await``
                :meth:`run`), or a seeder is async (an async iterable, a KeySeeder with
                async keys or an async loader); nothing is written then.
            CacheClosedError: The cache is closed.

        """
        cache = self._cache
        if not isinstance(cache, DataFerry):
            raise ConfigurationError(
                "CacheWarmer.run_sync() warms a DataFerry; this cache is an AsyncDataFerry: "
                "use `await warmer.run()` instead"
            )
        for index, seeder in enumerate(self._plan.seeders):
            _check_sync(index, seeder)
        return sync_warm(cache, self._plan)

    def __repr__(self) -> str:
        plan = self._plan
        return (
            f"CacheWarmer({self._cache!r}, {len(plan.seeders)} seeders, "
            f"concurrency={plan.concurrency})"
        )


def _check_seeders(seeders: object) -> None:
    if not isinstance(seeders, (list, tuple)):
        raise ConfigurationError(
            "seeders must be a list of seeders (iterables or async iterables of (key, value) "
            f"pairs, dicts, KeySeeder), got {seeders.__class__.__name__}; a single seeder "
            "goes in a list: seeders=[...]"
        )
    for index, seeder in enumerate(seeders):
        if isinstance(seeder, (KeySeeder, Mapping, AsyncIterable)):
            continue
        if isinstance(seeder, (str, bytes)) or not isinstance(seeder, Iterable):
            raise ConfigurationError(
                f"seeders[{index}] is not a seeder (an iterable of (key, value) pairs, an "
                f"async iterable of them, a dict or a KeySeeder): {seeder!r:.100}"
            )
        if isinstance(seeder, (list, tuple)) and seeder and isinstance(seeder[0], str):
            # The usual slip: the pairs (or keys) themselves instead of a list of seeders.
            raise ConfigurationError(
                f"seeders[{index}] = {seeder!r:.100} holds str, not (key, value) pairs: "
                "pass seeders=[[(key, value), ...]], or KeySeeder(keys, load=...) for keys"
            )


def _check_sync(index: int, seeder: object) -> None:
    """Refuse, before anything is written, a seeder that ``run_sync()`` can't read."""
    keys: object = seeder
    if isinstance(seeder, KeySeeder):
        keys = seeder.keys
        loader = seeder.load if seeder.load is not None else seeder.load_many
        if loader is not None and _is_async_callable(loader):
            raise ConfigurationError(
                f"seeders[{index}]: the loader of {seeder!r} is async: run_sync() needs a sync "
                "one (or use an AsyncDataFerry and `await warmer.run()`)"
            )
    if isinstance(keys, AsyncIterable) and not isinstance(keys, (Iterable, Mapping)):
        raise ConfigurationError(
            f"seeders[{index}] is an async iterable ({keys!r:.100}): run_sync() needs a sync "
            "one (or use an AsyncDataFerry and `await warmer.run()`)"
        )
