# GENERATED from src/dataferry/_async/_loader.py by scripts/unasync.py: do not edit.
"""The batched loader (DataLoader style): concurrent ``load(key)`` calls share one batch.

A loader turns the N+1 pattern (one data-source query per item of a list, each from its own
resolver or task) into one L2 batch read and one ``load_many`` call of the keys L2 lacks, while
every key keeps what a ``get_or_set`` gives it: L1 first, single-flight with every other call
of the cache, fail-safe. The coalescing is the colour's own (:class:`Batcher`: the keys
asked for in one iteration of the event loop; :class:`Batcher`: those asked for by threads
within a small window); a batch is one ``get_or_set_many`` of the cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from dataferry._callables import LoadMany
from dataferry._core import MISS
from dataferry._errors import ConfigurationError, InvalidKeyError
from dataferry._keys import check_key
from dataferry._options import EntryOptions, seconds
from dataferry._synchronization import Batcher, KeyFailure

if TYPE_CHECKING:
    from dataferry._sync._facade import DataFerry

__all__ = ["Loader"]

T = TypeVar("T")


class Loader(Generic[T]):
    """Batches concurrent loads of keys into one L2 read and one ``load_many`` call (DataLoader).

    Made by the cache's :meth:`~DataFerry.loader`. Loads that run concurrently join one batch:
    with the async cache, those that tasks start in the same iteration of the event loop (every
    coroutine of one ``asyncio.gather``, every resolver of one GraphQL field), or within ``window``
    seconds when one is given; with the sync cache, those that threads start within ``window``
    seconds: the first thread waits that long for others, then loads the batch for all of them (by
    default: only while another batch of the loader is loading, until one comes back, at most 1 ms;
    so a thread on its own never waits). One thread's calls run one after another: there, only
    :meth:`load_many` batches. A batch looks its keys up in L1, reads the L1 misses from L2 in one
    round trip and calls ``load_many`` once with the keys L2 lacks; a key asked for twice is loaded
    once. Each key stays single-flight with every other call of the cache (a key another call is
    computing is waited for, not loaded again), and fail-safe when the options ask for it. L1 hits
    are answered at once, without joining a batch.

    A loader keeps no values of its own (the cache does): make one per request or one for the
    application, as suits. A tenant view makes loaders of its tenant.
    """

    __slots__ = (
        "_batcher",
        "_cache",
        "_fast",
        "_l1",
        "_load_many",
        "_options",
        "_opts",
        "_tags",
        "_ttl",
        "_type",
    )

    def __init__(
        self,
        cache: DataFerry,
        load_many: LoadMany[T],
        *,
        ttl: float | timedelta | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
        type: type[T] | None = None,
        max_batch_size: int | None = None,
        window: float | timedelta | None = None,
    ) -> None:
        if not callable(load_many):
            raise ConfigurationError(f"load_many must be callable, got {load_many!r}")
        if max_batch_size is not None and (
            isinstance(max_batch_size, bool)
            or not isinstance(max_batch_size, int)
            or max_batch_size < 1
        ):
            raise ConfigurationError(
                f"max_batch_size must be an int >= 1 or None, got {max_batch_size!r}"
            )
        wait = None if window is None else seconds("window", window)
        core = cache._core
        if type is not None:
            core.codec.check_type(type)
        # Checked and resolved once, here: a bad option raises at loader(), not in a batch.
        self._opts = core.resolve(ttl, options)
        self._tags = core.tags_of(tags)
        self._ttl = ttl
        self._options = options
        self._type = type
        self._cache = cache
        self._load_many = load_many
        # The L1 hit path of get_or_set (a dict lookup), when nothing asks for more.
        self._fast = options is None and type is None
        self._l1 = not self._opts.skip_memory
        self._batcher = Batcher(
            self._run, cache._runtime, window=wait, max_size=max_batch_size
        )

    def load(self, key: str) -> T:
        """Return the value of ``key``: from L1, or from the batch it joins.

        Raises:
            KeyError: ``load_many`` returned no value for ``key`` (nothing is cached).
            InvalidKeyError: ``key`` is not a valid cache key (raised here; the batch goes on).
            ConfigurationError: ``load_many`` returned no mapping.
            Exception: what ``load_many`` raised, in every load of its batch that fail-safe
                had no stale value for (nothing is cached; the next load tries again).

        """
        cache = self._cache
        if self._fast:
            memory = cache._memory  # a closed cache's raises CacheClosedError
            if memory is not None:
                try:
                    value = memory.get(cache._prefix + key, MISS)
                except TypeError:
                    raise InvalidKeyError(
                        f"cache keys must be str, not {key.__class__.__name__}"
                    ) from None
                if value is not MISS:
                    return value  # type: ignore[no-any-return]
        cache._runtime.check_open()
        key = check_key(key)
        if self._l1 and not self._fast:  # options or a type: get_or_set's L1 lookup
            value = cache._l1_get(cache._prefix + key, self._type)
            if value is not MISS:
                return value  # type: ignore[no-any-return]
        found = self._batcher.get((key,))
        value = found.get(key, MISS)
        if value is MISS:
            raise KeyError(key)
        if value.__class__ is KeyFailure:
            raise value.raised()
        return value  # type: ignore[no-any-return]

    def load_many(self, keys: Iterable[str]) -> dict[str, T]:
        """Return ``{key: value}`` for ``keys``, all asked for in one batch (with concurrent loads).

        Keys ``load_many`` returns no value for are absent from the result, as in
        :meth:`DataFerry.get_or_set_many`; every key is checked before any is looked up.

        Raises:
            InvalidKeyError: A key is not a valid cache key (nothing is loaded).
            Exception: What ``load_many`` raised, when fail-safe had no stale value for one
                of ``keys``.

        """
        cache = self._cache
        cache._runtime.check_open()
        wanted = list(dict.fromkeys(cache._core.check_keys(keys)))
        out: dict[str, T] = {}
        rest = wanted
        if self._l1:
            prefix = cache._prefix
            rest = []
            for key in wanted:
                value = cache._l1_get(prefix + key, self._type)
                if value is MISS:
                    rest.append(key)
                else:
                    out[key] = value
            if not rest:
                return out
        found = self._batcher.get(rest)
        for key in rest:
            value = found.get(key, MISS)
            if value is MISS:
                continue
            if value.__class__ is KeyFailure:
                raise value.raised()
            out[key] = value
        return {k: out[k] for k in wanted if k in out}

    def prime(self, key: str, value: T) -> None:
        """Store ``value`` under ``key`` with the loader's ttl, tags and options (a ``set``)."""
        self._cache.set(key, value, ttl=self._ttl, tags=self._tags, options=self._options)

    def clear(self, key: str) -> None:
        """Remove ``key`` from the cache (L1 and L2), so its next load calls ``load_many``."""
        self._cache.remove(key, options=self._options)

    def _run(self, keys: list[str]) -> Mapping[str, Any]:
        """One batch: ``get_or_set_many`` of ``keys`` (checked), failures kept per key."""
        cache = self._cache
        cache._runtime.check_open()
        prefix = cache._prefix
        found, failed = cache._get_or_set_many(
            [(k, prefix + k) for k in keys],
            self._load_many,
            self._opts,
            self._tags,
            self._type,
        )
        found.update(failed)  # each failed key's waiting loads raise a copy of its error
        return found

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._load_many!r}, cache={self._cache!r})"
