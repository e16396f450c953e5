"""Data sources: the protocols ``cache.through(source)`` accepts, and their checks.

A data source is where the values of a kind of entity really live (a database table, a
service): :class:`AsyncDataSource` for ``AsyncDataFerry.through`` (which accepts a
:class:`DataSource` too, like it accepts sync factories), :class:`DataSource` for
``DataFerry.through``. The facade-side objects that read and write through the cache are
``AsyncCachedSource`` (``_async/_datasource.py``) and its generated twin ``CachedSource``.

Both protocols are structural: any object with these four methods is a source, whatever its
parameter names (they are positional-only here). Their contract:

- ``load(id)`` returns the value, or ``None`` when the source has none: ``None`` is cached
  like any value (a negative entry, so a missing id doesn't reach the source on every read),
  for ``not_found_ttl`` seconds if ``through()`` was given one. Errors propagate and are not
  cached (fail-safe, when on, serves the last good value instead).
- ``load_many(ids)`` returns a mapping ``{id: value}`` keyed by the ids it was given; an id it
  leaves out (or maps to ``None``) is "not found", exactly as ``load`` returning ``None``.
- ``save(id, value)`` stores the value or raises: the cache is written only once it returned.
- ``delete(id)`` removes it or raises: the cache entry is removed only once it returned.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from dataferry._errors import ConfigurationError, InvalidKeyError
from dataferry._synchronization import _is_async_callable

__all__ = [
    "SOURCE_METHODS",
    "AsyncDataSource",
    "AsyncSourceLike",
    "DataSource",
    "SourceLike",
    "check_prefix",
    "check_source",
    "source_key",
]

K = TypeVar("K")
V = TypeVar("V")

#: The methods every data source has (checked when ``through()`` is called).
SOURCE_METHODS = ("load", "load_many", "save", "delete")


class AsyncDataSource(Protocol[K, V]):
    """Where values really live, with async methods (for ``AsyncDataFerry.through``).

    ``K`` is the type of the ids (``str``, ``int`` or ``uuid.UUID``), ``V`` of the values.
    Any class with these four methods is one (no need to subclass)::

        class UserSource:
            async def load(self, user_id: int) -> User | None: ...
            async def load_many(self, ids: list[int]) -> dict[int, User]: ...
            async def save(self, user_id: int, user: User) -> None: ...
            async def delete(self, user_id: int) -> None: ...
    """

    async def load(self, id: K, /) -> V | None:
        """Return the value of ``id``, or ``None`` if the source has none (cached as such)."""
        ...

    async def load_many(self, ids: list[K], /) -> Mapping[K, V]:
        """Return ``{id: value}`` for the ids found; ids left out are "not found"."""
        ...

    async def save(self, id: K, value: V, /) -> object:
        """Store ``value`` under ``id``, or raise (then the cache is not written)."""
        ...

    async def delete(self, id: K, /) -> object:
        """Delete ``id``, or raise (then the cache entry stays)."""
        ...


class DataSource(Protocol[K, V]):
    """Where values really live, with sync methods (for ``DataFerry.through``).

    The same contract as :class:`AsyncDataSource` (whose docs say more), with plain methods.
    ``AsyncDataFerry.through`` accepts one too (its methods then run in the event loop, or in
    the cache's worker threads with ``offload_sync_factories=True``).
    """

    def load(self, id: K, /) -> V | None:
        """Return the value of ``id``, or ``None`` if the source has none (cached as such)."""
        ...

    def load_many(self, ids: list[K], /) -> Mapping[K, V]:
        """Return ``{id: value}`` for the ids found; ids left out are "not found"."""
        ...

    def save(self, id: K, value: V, /) -> object:
        """Store ``value`` under ``id``, or raise (then the cache is not written)."""
        ...

    def delete(self, id: K, /) -> object:
        """Delete ``id``, or raise (then the cache entry stays)."""
        ...


#: What ``AsyncDataFerry.through`` accepts: a source with async methods or with sync ones.
AsyncSourceLike = AsyncDataSource[K, V] | DataSource[K, V]
#: What ``DataFerry.through`` accepts (the generated twin of :data:`AsyncSourceLike`).
SourceLike = DataSource[K, V]


def check_source(source: object, *, facade: str) -> None:
    """Raise :class:`ConfigurationError` unless ``source`` is a data source ``facade`` can use.

    ``facade`` is the name of the cache class (``"DataFerry"`` refuses async methods).
    """
    missing = [m for m in SOURCE_METHODS if not callable(getattr(source, m, None))]
    if missing:
        raise ConfigurationError(
            f"{facade}.through() needs a data source with the methods load, load_many, save "
            f"and delete; {source!r} has no {', '.join(missing)}"
        )
    if facade == "DataFerry":
        coroutines = [m for m in SOURCE_METHODS if _is_async_callable(getattr(source, m))]
        if coroutines:
            raise ConfigurationError(
                f"DataFerry.through() got a source with async methods ({', '.join(coroutines)}) "
                f"of {source!r}: use AsyncDataFerry, or a source with sync methods"
            )


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is a non-empty str, else raise :class:`ConfigurationError`."""
    if not isinstance(prefix, str) or not prefix:
        raise ConfigurationError(
            f"through() needs prefix=, a non-empty str such as 'user', got {prefix!r}"
        )
    return prefix


def source_key(prefix: str, id: Any) -> str:
    """Return the cache key ``f"{prefix}:{id}"`` of an id (a str, int or UUID).

    Other types are refused: their ``str()`` may not be stable (a default ``repr`` holds a
    memory address), and a key that changes from one process to the next never hits.

    Raises:
        InvalidKeyError: ``id`` is not a non-empty str, an int (not a bool) or a UUID.

    """
    if isinstance(id, str):
        if not id:
            raise InvalidKeyError("data source ids must not be empty")
    elif isinstance(id, bool) or not isinstance(id, (int, uuid.UUID)):
        raise InvalidKeyError(
            f"data source ids must be str, int or UUID, got {type(id).__name__}: {id!r:.100}"
        )
    return f"{prefix}:{id}"
