"""Read-through and write-through a data source: what ``AsyncDataFerry.through`` returns.

The sync ``CachedSource`` is generated from this file. Reads go through ``get_or_set`` /
``get_or_set_many`` (single-flight, fail-safe, tags and options of the cache); writes go to
the source first and to the cache only once the source took them, so the cache never holds a
value that the source refused.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from dataferry._errors import ConfigurationError
from dataferry._options import Entry, EntryOptions, seconds
from dataferry._sources import AsyncSourceLike, check_prefix, check_source, source_key

if TYPE_CHECKING:
    from dataferry._async._facade import AsyncDataFerry

__all__ = ["AsyncCachedSource"]

K = TypeVar("K")
V = TypeVar("V")


class AsyncCachedSource(Generic[K, V]):
    """A data source read and written through the cache; made by ``cache.through(...)``.

    ``users = cache.through(UserSource(), prefix="user")``: the value of id ``7`` is cached
    under the key ``"user:7"`` (in the cache's or the view's namespace and tenant), with the
    ttl, tags and options given to ``through()``.

    - :meth:`get` / :meth:`get_many` read through the cache: a miss loads from the source
      (``load`` / one ``load_many`` for all the misses), once for every concurrent caller.
      ``None`` from the source means "not found" and is cached too (see ``not_found_ttl``).
    - :meth:`save` writes the source first, then the cache (L1, L2, and the backplane tells
      the other nodes): a source that raises leaves the cache as it was.
    - :meth:`delete` deletes from the source first, then from the cache everywhere.

    Only writes made through it (or :meth:`key` and ``cache.remove``) reach the cache: a
    change made to the source behind its back is seen once the entry expires. A load that
    began before a :meth:`save` or :meth:`delete` of the same id (through this cache, or
    through another node's when a backplane tells this one) and ends after it answers its
    callers but is not stored, so the saved value is not overwritten by the one read before.
    """

    __slots__ = (
        "_cache",
        "_not_found_ttl",
        "_options",
        "_prefix",
        "_read_type",
        "_source",
        "_tags",
        "_ttl",
    )

    def __init__(
        self,
        cache: AsyncDataFerry,
        source: AsyncSourceLike[K, V],
        *,
        prefix: str,
        ttl: float | timedelta | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
        type: type[V] | None = None,
        not_found_ttl: float | timedelta | None = None,
    ) -> None:
        check_source(source, facade="AsyncDataFerry")
        self._prefix = check_prefix(prefix)
        core = cache._core
        core.resolve(ttl, options)  # bad ttl or options: raise here, not at the first read
        self._tags = core.tags_of(tags)
        # "Not found" is cached as None, so a typed read must accept None as well.
        self._read_type: Any = None if type is None else typing.Optional[type]  # noqa: UP045
        core.codec.check_type(self._read_type)
        self._not_found_ttl = (
            None if not_found_ttl is None else seconds("not_found_ttl", not_found_ttl)
        )
        self._cache = cache
        self._source = source
        self._ttl = ttl
        self._options = options

    @property
    def source(self) -> AsyncSourceLike[K, V]:
        """The data source."""
        return self._source

    @property
    def prefix(self) -> str:
        """The prefix of the cache keys: id ``7`` is cached as ``f"{prefix}:7"``."""
        return self._prefix

    def key(self, id: K) -> str:
        """Return the cache key of ``id``: ``f"{prefix}:{id}"``.

        Raises:
            InvalidKeyError: ``id`` is not a non-empty str, an int or a UUID.

        """
        return source_key(self._prefix, id)

    async def get(self, id: K) -> V | None:
        """Return the value of ``id``: from the cache, else loaded from the source and cached.

        Concurrent callers of a missing id share one ``source.load(id)``; its exception
        reaches each of them and is not cached. ``None`` (not found) is cached too.

        Raises:
            InvalidKeyError: ``id`` is not a non-empty str, an int or a UUID.

        """
        key = source_key(self._prefix, id)
        source = self._source
        runtime = self._cache._runtime
        not_found_ttl = self._not_found_ttl

        async def load() -> Any:
            value = await runtime.call(lambda: source.load(id))
            if value is None and not_found_ttl is not None:
                return Entry(None, ttl=not_found_ttl)
            return value

        value: Any = await self._cache.get_or_set(
            key, load, ttl=self._ttl, tags=self._tags, options=self._options, type=self._read_type
        )
        return typing.cast("V | None", value)

    async def get_many(self, ids: Iterable[K]) -> dict[K, V]:
        """Return ``{id: value}`` for the ids found, loading the misses with one ``load_many``.

        Ids the source doesn't have are left out of the result (and cached as not found, as
        :meth:`get` does). Each id is single-flight, as with :meth:`get`.

        Raises:
            InvalidKeyError: an id is not a non-empty str, an int or a UUID (nothing is read).

        """
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise ConfigurationError(f"get_many takes an iterable of ids, got {ids!r:.100}")
        prefix = self._prefix
        by_key: dict[str, K] = {}
        for id in ids:
            by_key.setdefault(source_key(prefix, id), id)
        if not by_key:
            return {}
        cache = self._cache
        source = self._source
        not_found_ttl = self._not_found_ttl

        async def load_many(keys: list[str]) -> dict[str, Any]:
            wanted = [by_key[k] for k in keys]
            loaded = await cache._runtime.call(lambda: source.load_many(wanted))
            if not isinstance(loaded, Mapping):
                raise ConfigurationError(
                    f"{source!r}.load_many must return a mapping, got {loaded.__class__.__name__}"
                )
            found: dict[str, Any] = {}
            missing: list[str] = []
            for key, id in zip(keys, wanted, strict=True):
                value = loaded.get(id)
                if value is None:
                    missing.append(key)
                else:
                    found[key] = value
            if missing and not_found_ttl is None:
                found.update(dict.fromkeys(missing))  # cached as not found, as the rest
            elif missing and not_found_ttl:  # not found has a ttl of its own (0: not cached)
                await cache.set_many(
                    dict.fromkeys(missing),
                    ttl=not_found_ttl,
                    tags=self._tags,
                    options=self._options,
                )
            return found

        values: dict[str, Any] = await cache.get_or_set_many(
            list(by_key),
            load_many,
            ttl=self._ttl,
            tags=self._tags,
            options=self._options,
            type=self._read_type,
        )
        return {id: values[k] for k, id in by_key.items() if values.get(k) is not None}

    async def save(self, id: K, value: V) -> None:
        """Write ``value`` to the source, then to the cache (L1, L2 and the other nodes' L1).

        If the source raises, its exception propagates and the cache is not touched: it
        keeps what the source still holds. If the cache can't take the value (e.g. a
        :class:`~dataferry.SerializationError`), the old entry is removed before the error
        propagates, so no reader is served the value the source replaced.

        Raises:
            InvalidKeyError: ``id`` is not a non-empty str, an int or a UUID (nothing written).
            CacheClosedError: The cache is closed (the source is not called).

        """
        key = source_key(self._prefix, id)
        cache = self._cache
        source = self._source
        cache._runtime.check_open()  # a closed cache can't follow the source: don't start
        await cache._runtime.call(lambda: source.save(id, value))
        try:
            await cache.set(key, value, ttl=self._ttl, tags=self._tags, options=self._options)
        except Exception:
            try:
                await cache.remove(key, options=self._options)
            except Exception as exc:  # e.g. L2 down with raise_distributed_errors
                cache._core.log.warn(
                    "through_cleanup_failed",
                    "through(): {key} not removed after a failed write: %s",
                    type(exc).__name__,
                    key=key,
                )
            raise

    async def delete(self, id: K) -> None:
        """Delete ``id`` from the source, then from the cache everywhere (L1, L2, other nodes).

        If the source raises, its exception propagates and the cache entry stays.

        Raises:
            InvalidKeyError: ``id`` is not a non-empty str, an int or a UUID (nothing deleted).
            CacheClosedError: The cache is closed (the source is not called).

        """
        key = source_key(self._prefix, id)
        source = self._source
        self._cache._runtime.check_open()
        await self._cache._runtime.call(lambda: source.delete(id))
        await self._cache.remove(key, options=self._options)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._source!r}, prefix={self._prefix!r}, "
            f"cache={self._cache!r})"
        )
