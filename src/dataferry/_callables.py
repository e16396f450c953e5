"""The shapes of user factories that the facades accept (type aliases)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from dataferry._options import Entry

__all__ = ["AsyncFactory", "AsyncLoadMany", "Factory", "LoadMany"]

T = TypeVar("T")

#: What ``AsyncDataFerry.get_or_set`` accepts: a zero-argument callable returning a value, an
#: :class:`Entry`, or an awaitable of either.
AsyncFactory = Callable[[], T | Entry[T] | Awaitable[T | Entry[T]]]
#: What ``DataFerry.get_or_set`` accepts: a zero-argument callable returning a value or Entry.
Factory = Callable[[], T | Entry[T]]
#: What ``AsyncDataFerry.get_or_set_many`` accepts: ``load_many(missing_keys)`` returning a
#: mapping of the keys it found, or an awaitable of one. Generic in the value type, so
#: ``get_or_set_many`` can return ``dict[str, T]`` (one signature suffices here: a mapping and
#: an awaitable are told apart, unlike a bare ``T`` and an awaitable).
AsyncLoadMany = Callable[[list[str]], Mapping[str, T] | Awaitable[Mapping[str, T]]]
#: What ``DataFerry.get_or_set_many`` accepts: ``load_many(missing_keys) -> {key: value}``.
LoadMany = Callable[[list[str]], Mapping[str, T]]
