"""``@cache.cached(...)``: a function's results cached by its arguments (sync twin generated).

The facade's ``cached`` method delegates here. Everything about a function is decided once,
when it is decorated (its key builder, the type its values decode into, how it binds in a
class), so a call that hits L1 costs one key build and one L1 lookup (see
``benchmarks/bench_decorator.py``); a miss goes through the cache's ``get_or_set``, and so has
its single-flight, fail-safe, tags, timeouts and L2.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, cast, overload

from typing_extensions import Self

from dataferry._core import MISS
from dataferry._decorator_keys import (
    KeyMaker,
    ReturnType,
    Target,
    analyze,
    check_key_option,
    key_builder,
)
from dataferry._errors import ConfigurationError
from dataferry._options import Entry, EntryOptions
from dataferry._synchronization import _is_async_callable

if TYPE_CHECKING:
    from dataferry._async._facade import AsyncDataFerry

__all__ = [
    "AsyncCachedClassMethod",
    "AsyncCachedDecorator",
    "AsyncCachedFunction",
    "cached_decorator",
]

P = ParamSpec("P")
P2 = ParamSpec("P2")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
S = TypeVar("S")
C = TypeVar("C")
C_contra = TypeVar("C_contra", contravariant=True)

#: Named in the sync twin's error for coroutine functions (kept verbatim by unasync).
_ASYNC_CACHE = "AsyncDataFerry"  # unasync: keep


# -- what type checkers see ---------------------------------------------------------------------


class AsyncCachedFunction(Protocol[P, T_co]):
    """A function (or method) decorated with ``@cache.cached(...)``.

    Called as the function was (its parameters are kept for type checkers), it returns the
    cached value. ``invalidate(...)`` and ``key(...)`` take the same arguments as a call.
    Accessed on an instance, a decorated method is bound like the method it replaces.
    """

    @property
    def cache(self) -> AsyncDataFerry:
        """The cache (or tenant view) the values are cached in."""
        ...

    @property
    def __wrapped__(self) -> Callable[..., Any]: ...

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T_co: ...

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Remove the cached value of this call from L1 and L2 (``cache.remove(key)``)."""
        ...

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Return the cache key of this call (without namespace or tenant prefix)."""
        ...

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None, /) -> Self: ...

    @overload
    def __get__(
        self: AsyncCachedFunction[Concatenate[S, P2], T_co],
        instance: S,
        owner: type[Any] | None = None,
        /,
    ) -> AsyncCachedFunction[P2, T_co]: ...

    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None, /) -> Self: ...


class AsyncCachedClassMethod(Protocol[C_contra, P, T_co]):
    """A decorated function whose first parameter is a class: a classmethod, once bound.

    Accessed on its class or an instance, it is the :class:`AsyncCachedFunction` of the
    function without its ``cls`` parameter.
    """

    async def __call__(self, cls: type[C_contra], /, *args: P.args, **kwargs: P.kwargs) -> T_co: ...

    async def invalidate(self, cls: type[C_contra], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Remove the cached value of this call from L1 and L2."""
        ...

    def key(self, cls: type[C_contra], /, *args: P.args, **kwargs: P.kwargs) -> str:
        """Return the cache key of this call (without namespace or tenant prefix)."""
        ...

    def __get__(
        self, instance: object, owner: type[Any] | None = None, /
    ) -> AsyncCachedFunction[P, T_co]: ...


class AsyncCachedDecorator(Protocol):
    """What ``cache.cached(...)`` returns: apply it to a function, method or classmethod.

    The value type ``T`` comes from the function's return type (awaited, for an ``async``
    function; ``Entry[T]`` gives ``T``).
    """

    # A first parameter that is a class (cls): bound to the class on access.
    # unasync: begin async-only
    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[Concatenate[type[C], P], Awaitable[Entry[T]]], /
    ) -> AsyncCachedClassMethod[C, P, T]: ...

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[Concatenate[type[C], P], Awaitable[T]], /
    ) -> AsyncCachedClassMethod[C, P, T]: ...

    # unasync: end async-only
    @overload
    def __call__(  # type: ignore[overload-overlap, unused-ignore]
        self, fn: Callable[Concatenate[type[C], P], Entry[T]], /
    ) -> AsyncCachedClassMethod[C, P, T]: ...

    @overload
    def __call__(  # type: ignore[overload-overlap, unused-ignore]
        self, fn: Callable[Concatenate[type[C], P], T], /
    ) -> AsyncCachedClassMethod[C, P, T]: ...

    # unasync: begin async-only
    @overload
    def __call__(self, fn: Callable[P, Awaitable[Entry[T]]], /) -> AsyncCachedFunction[P, T]: ...

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> AsyncCachedFunction[P, T]: ...

    # unasync: end async-only
    @overload
    def __call__(self, fn: Callable[P, Entry[T]], /) -> AsyncCachedFunction[P, T]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> AsyncCachedFunction[P, T]: ...


# -- the decorator ------------------------------------------------------------------------------


def cached_decorator(
    cache: AsyncDataFerry,
    ttl: float | timedelta | None,
    key: str | Callable[..., str] | None,
    tags: Iterable[str] | None,
    options: EntryOptions | None,
    include_self: bool,
    type: Any,
) -> AsyncCachedDecorator:
    """Validate the options of ``cache.cached(...)`` now; return the decorator."""
    if callable(ttl):
        raise ConfigurationError(
            "cached() takes its options, not the function: write @cache.cached() (with "
            "parentheses) or @cache.cached(ttl=60)"
        )
    core = cache._core
    resolved = core.resolve(ttl, options)  # a bad ttl or options raise here, not at a call
    tag_tuple = core.tags_of(tags) or None
    check_key_option(key)
    if not isinstance(include_self, bool):
        raise ConfigurationError(f"include_self must be a bool, got {include_self!r}")
    use_l1 = not resolved.skip_memory

    def decorate(fn: Any) -> Any:
        target = analyze(fn, include_self)
        _check_colour(target)
        make_key = key_builder(target, key)
        returns = ReturnType(target.fn, type, core.codec.check_type, target.label)
        # The hit path builds the storage key (prefix included) in one go.
        make_skey = key_builder(target, key, cache._prefix)
        call = _caller(cache, target.fn, make_skey, returns, ttl, tag_tuple, options, use_l1)
        if target.kind == "function":
            return _function(cache, target, call, make_key)
        return _CachedMethod(cache, target, call, make_key)

    return cast("AsyncCachedDecorator", decorate)


def _check_colour(target: Target) -> None:
    """The sync cache can't await: a coroutine function is refused when it is decorated."""
    # unasync: begin async-only
    return  # the async cache awaits coroutine functions and calls the others: both are fine
    # unasync: end async-only
    if _is_async_callable(target.fn):
        raise ConfigurationError(
            f"{target.label} is an async function, which this sync cache can't await: "
            f"decorate it with {_ASYNC_CACHE}.cached(...) instead"
        )


def _caller(
    cache: AsyncDataFerry,
    fn: Callable[..., Any],
    make_skey: KeyMaker,
    returns: ReturnType,
    ttl: float | timedelta | None,
    tags: tuple[str, ...] | None,
    options: EntryOptions | None,
    use_l1: bool,
) -> Callable[..., Awaitable[Any]]:
    """The call of a decorated function: its L1 hit path, else the cache's get_or_set."""
    start = len(cache._prefix)  # skey[start:] is the key
    get_or_set = cache._get_or_set
    partial = functools.partial
    tp = returns.tp
    check = returns.check
    pending = returns.pending

    async def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal tp, check, pending
        skey = make_skey(args, kwargs)  # bad arguments raise before anything is read or run
        if pending:
            returns.resolve()
            tp, check, pending = returns.tp, returns.check, False
        memory = cache._memory  # read each call: closing or event listeners swap it
        typed_hit = False
        if use_l1 and memory is not None:
            value = memory.get(skey, MISS)
            if value is not MISS:
                if check is None or isinstance(value, check):
                    return value
                typed_hit = True  # not of the declared type: let the cache convert it
        # The L1 miss was counted above: the cache doesn't look again (unless to convert).
        factory = partial(fn, *args, **kwargs)
        return await get_or_set(skey[start:], factory, ttl, tags, options, tp, typed_hit)

    return call


def _function(
    cache: AsyncDataFerry, target: Target, call: Callable[..., Awaitable[Any]], make_key: KeyMaker
) -> Any:
    """A decorated plain function: the call itself, with the wrapper's attributes."""
    remove = cache.remove

    async def invalidate(*args: Any, **kwargs: Any) -> None:
        await remove(make_key(args, kwargs))

    def key(*args: Any, **kwargs: Any) -> str:
        return make_key(args, kwargs)

    wrapper: Any = functools.update_wrapper(call, target.fn)
    wrapper.invalidate = invalidate
    wrapper.key = key
    wrapper.cache = cache
    return wrapper


class _CachedMethod:
    """A decorated function defined in a class (or a class/static method): binds as it did.

    On an instance, a method gives a :class:`_Bound` whose calls, ``invalidate`` and ``key``
    pass the instance first; a classmethod binds its class, a staticmethod nothing.
    """

    def __init__(
        self,
        cache: AsyncDataFerry,
        target: Target,
        call: Callable[..., Awaitable[Any]],
        make_key: KeyMaker,
    ) -> None:
        functools.update_wrapper(self, target.fn)
        self.cache = cache
        self._call = call
        self._make_key = make_key
        self._kind = target.kind

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return self._call(*args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> Awaitable[None]:
        """Remove the cached value of this call from L1 and L2 (``cache.remove(key)``)."""
        return self.cache.remove(self._make_key(args, kwargs))

    def key(self, *args: Any, **kwargs: Any) -> str:
        """Return the cache key of this call (without namespace or tenant prefix)."""
        return self._make_key(args, kwargs)

    def __get__(self, instance: object, owner: type[Any] | None = None) -> Any:
        kind = self._kind
        if kind == "classmethod":
            return _Bound(self, owner if owner is not None else type(instance))
        if kind == "method" and instance is not None:
            # (On Python < 3.13, @classmethod above @cached binds here with the class.)
            return _Bound(self, instance)
        return self

    def __repr__(self) -> str:
        return f"<cached {self.__qualname__} of {self.cache!r}>"  # type: ignore[attr-defined]


class _Bound:
    """A decorated method bound to its instance (or class): ``obj.method``."""

    __slots__ = ("__func__", "__self__")

    def __init__(self, method: _CachedMethod, obj: object) -> None:
        self.__func__ = method
        self.__self__ = obj

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return self.__func__._call(self.__self__, *args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> Awaitable[None]:
        """Remove the cached value of this call from L1 and L2 (``cache.remove(key)``)."""
        method = self.__func__
        return method.cache.remove(method._make_key((self.__self__, *args), kwargs))

    def key(self, *args: Any, **kwargs: Any) -> str:
        """Return the cache key of this call (without namespace or tenant prefix)."""
        return self.__func__._make_key((self.__self__, *args), kwargs)

    @property
    def cache(self) -> AsyncDataFerry:
        """The cache (or tenant view) the values are cached in."""
        return self.__func__.cache

    @property
    def __wrapped__(self) -> Any:
        return self.__func__.__wrapped__  # type: ignore[attr-defined]

    @property
    def __name__(self) -> str:
        return self.__func__.__name__  # type: ignore[attr-defined,no-any-return]

    def __repr__(self) -> str:
        return f"<bound {self.__func__!r} of {self.__self__!r}>"
