"""Calling user factories: sync or async, and unwrapping adaptive :class:`Entry` results."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from dataferry._errors import ConfigurationError
from dataferry._options import Entry

__all__ = ["AsyncFactory", "AsyncLoadMany", "Factory", "LoadMany", "acall", "call"]

T = TypeVar("T")

#: What ``AsyncDataFerry.get_or_set`` accepts: a zero-argument callable returning a value, an
#: :class:`Entry`, or an awaitable of either.
AsyncFactory = Callable[[], T | Entry[T] | Awaitable[T | Entry[T]]]
#: What ``DataFerry.get_or_set`` accepts: a zero-argument callable returning a value or Entry.
Factory = Callable[[], T | Entry[T]]
#: What ``AsyncDataFerry.get_or_set_many`` accepts: ``load_many(missing_keys)`` returning a
#: mapping of the keys it found, or an awaitable of one.
AsyncLoadMany = Callable[[list[str]], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]
#: What ``DataFerry.get_or_set_many`` accepts: ``load_many(missing_keys) -> {key: value}``.
LoadMany = Callable[[list[str]], Mapping[str, Any]]


async def acall(fn: Callable[[], Any]) -> Any:
    """Call ``fn()`` and await the result if it is awaitable."""
    result = fn()
    if inspect.isawaitable(result):
        result = await result
    return result


def call(fn: Callable[[], Any]) -> Any:
    """Call ``fn()``; an awaitable result is a mistake in sync code and is refused."""
    result = fn()
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # don't leak a "coroutine was never awaited" warning
        raise ConfigurationError(
            "the sync DataFerry got an async factory; use AsyncDataFerry or a sync function"
        )
    return result
