"""``@cache.cached(...)``: keys, methods, typed values from L2, invalidation, bad input.

Written once: the sync twin (tests/_sync/test_decorator.py) is generated from this file and
runs the same tests with sync functions and threads.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

import dataferry as df
from tests.chaos import count_events, wait_event

IS_ASYNC = inspect.iscoroutinefunction(df.AsyncDataFerry.aclose)
NS = "deco"


@dataclass(frozen=True)
class User:
    id: int
    name: str


class Opaque:
    """A class no codec can decode into, and no default key can encode."""


class Account:
    """An object that tells default keys what identifies it."""

    def __init__(self, number: str) -> None:
        self.number = number

    def __dataferry_key__(self) -> str:
        return self.number


async def wait_for(event: threading.Event) -> None:
    """Wait for a threading.Event without blocking the event loop (a plain wait in the twin)."""
    if IS_ASYNC:
        await wait_event(event)
    else:
        assert event.wait(10), "timed out waiting for the event"


async def concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call at once: asyncio tasks here, threads in the sync twin."""
    if IS_ASYNC:
        return list(await asyncio.gather(*(call() for call in calls)))
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


class Clock:
    """An L1 clock the test moves (MemoryCache(clock=...)), for L1-only expiry."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Calls:
    """Counts the calls of the functions under test."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


# -- hits and keys ----------------------------------------------------------------------------


async def test_a_hit_returns_the_cached_value_without_running_the_function() -> None:
    calls = Calls()
    async with df.AsyncDataFerry(namespace=NS) as cache:

        @cache.cached(ttl=60)
        async def get_user(uid: int) -> User:
            calls()
            return User(uid, "Ada")

        first = await get_user(1)
        second = await get_user(1)
        assert first == User(1, "Ada")
        assert second is first  # the same object, as L1 hands out
        assert calls.n == 1
        stats = cache.stats()
        # One L1 miss for the cold call (the decorator's lookup, not counted twice), one hit.
        assert (stats.memory_misses, stats.memory_hits, stats.factory_calls) == (1, 1, 1)
        key = get_user.key(1)
        assert key == f"{__name__}.{get_user.__qualname__}:1"
        assert await cache.get(key) is first


async def test_default_keys_are_typed_bound_and_canonical() -> None:
    async with df.AsyncDataFerry(namespace=NS) as cache:

        @cache.cached()
        async def echo(x: Any, scale: int = 1, **extra: Any) -> Any:
            return [x, scale, extra]

        keys = {echo.key(v) for v in (1, "1", 1.0, True, None, b"1", (1,), [1])}
        assert len(keys) == 8  # 1, "1", 1.0, True... are distinct keys
        # Bound as the function binds: defaults applied, keyword order irrelevant.
        assert echo.key(1) == echo.key(x=1) == echo.key(1, 1) == echo.key(1, scale=1)
        assert echo.key(1, a=1, b=2) == echo.key(1, b=2, a=1) == echo.key(b=2, x=1, a=1)
        assert echo.key({"b": 1, "a": 2}) == echo.key({"a": 2, "b": 1})
        assert echo.key({3, 1, 2}) == echo.key({2, 3, 1})
        assert echo.key(1) != echo.key(1, 2)
        # Different keys, different entries: the function sees the argument's own type.
        assert await echo(1) == [1, 1, {}]
        assert await echo("1") == ["1", 1, {}]
        assert await echo(True, scale=2) == [True, 2, {}]
        # A long argument keeps the key short, and stable.
        long_key = echo.key("x" * 5000)
        assert len(long_key) < 128
        assert long_key == echo.key("x" * 5000) != echo.key("x" * 4999)
        with pytest.raises(TypeError):
            echo.key()  # missing x: the error the function itself would raise


async def test_key_templates_and_key_callables() -> None:
    calls = Calls()
    async with df.AsyncDataFerry(namespace=NS) as cache:

        @cache.cached(key="user:{uid}")
        async def by_template(uid: int, verbose: bool = False) -> User:
            calls()
            return User(uid, "Ada")

        @cache.cached(key=lambda uid, **_: f"u-{uid}")
        async def by_callable(uid: int, verbose: bool = False) -> User:
            calls()
            return User(uid, "Bob")

        assert by_template.key(7) == by_template.key(uid=7, verbose=True) == "user:7"
        assert by_callable.key(7) == "u-7"
        assert await by_template(7) == User(7, "Ada")
        assert await by_callable(7) == User(7, "Bob")
        # The template's key is the key other code uses: one entry for both.
        assert await cache.get("user:7") == User(7, "Ada")
        await cache.set("user:8", User(8, "Set by hand"))
        assert await by_template(8) == User(8, "Set by hand")
        assert calls.n == 2


async def test_self_is_left_out_of_keys_unless_include_self() -> None:
    calls = Calls()
    async with df.AsyncDataFerry(namespace=NS) as cache:

        class Repo:
            def __init__(self, name: str) -> None:
                self.name = name

            @cache.cached()
            async def find(self, uid: int) -> str:
                calls()
                return f"{self.name}:{uid}"

        class Ledger:
            @cache.cached(include_self=True)
            async def balance(self: Account, day: int) -> str:
                calls()
                return f"{self.number}@{day}"

        a, b = Repo("a"), Repo("b")
        assert await a.find(1) == "a:1"
        assert await b.find(1) == "a:1"  # shared by every instance
        assert a.find.key(1) == b.find.key(1) == Repo.find.key(a, 1)
        assert a.find.key(1).endswith("Repo.find:1")
        assert calls.n == 1

        # include_self: the instance is part of the key (here through __dataferry_key__).
        ledger = Ledger.balance
        assert await ledger(Account("A-1"), 3) == "A-1@3"
        assert await ledger(Account("B-2"), 3) == "B-2@3"
        assert await ledger(Account("A-1"), 3) == "A-1@3"
        assert calls.n == 3
        assert "A-1" in ledger.key(Account("A-1"), 3)
        with pytest.raises(df.InvalidKeyError, match="'self'"):
            await ledger(Opaque(), 3)  # type: ignore[arg-type]
        assert calls.n == 3


async def test_classmethods_and_staticmethods_in_either_order() -> None:
    calls = Calls()
    async with df.AsyncDataFerry(namespace=NS) as cache:

        class Catalog:
            prefix = "item"

            @cache.cached()
            @classmethod
            async def outer(cls, n: int) -> str:  # @cached above @classmethod (preferred)
                calls()
                return f"{cls.prefix}-{n}"

            @classmethod
            @cache.cached()
            async def inner(cls, n: int) -> str:  # @classmethod above @cached
                calls()
                return f"{cls.prefix}+{n}"

            @cache.cached()
            @staticmethod
            async def static_outer(n: int) -> int:
                calls()
                return n * 2

            @staticmethod
            @cache.cached()
            async def static_inner(n: int) -> int:
                calls()
                return n * 3

        item = Catalog()
        assert await Catalog.outer(1) == await item.outer(1) == "item-1"
        assert await Catalog.inner(1) == await item.inner(1) == "item+1"
        assert await Catalog.static_outer(2) == await item.static_outer(2) == 4
        assert await Catalog.static_inner(2) == await item.static_inner(2) == 6
        assert calls.n == 4
        # cls is left out of the keys; the keys are the calls' own.
        assert Catalog.outer.key(1) == item.outer.key(1)
        assert Catalog.outer.key(1).endswith("Catalog.outer:1")
        assert Catalog.static_inner.key(2).endswith("Catalog.static_inner:2")
        await Catalog.outer.invalidate(1)
        await item.static_outer.invalidate(2)
        assert await Catalog.outer(1) == "item-1"
        assert await Catalog.static_outer(2) == 4
        assert calls.n == 6
        if sys.version_info < (3, 13):  # then @classmethod binds the descriptor it wraps
            await Catalog.inner.invalidate(1)
            assert await Catalog.inner(1) == "item+1"
            assert calls.n == 7


async def test_the_wrapper_looks_like_the_function() -> None:
    async with df.AsyncDataFerry(namespace=NS) as cache:

        async def lookup(uid: int, *, full: bool = False) -> User:
            """Find a user."""
            return User(uid, "Ada")

        wrapper = cache.cached()(lookup)
        assert wrapper.__name__ == "lookup"
        assert wrapper.__doc__ == "Find a user."
        assert wrapper.__wrapped__ is lookup
        assert wrapper.cache is cache
        assert inspect.signature(wrapper) == inspect.signature(lookup)
        assert inspect.iscoroutinefunction(wrapper) is IS_ASYNC


# -- typed values -------------------------------------------------------------------------------


def user_loader(cache: df.AsyncDataFerry, calls: Calls) -> Any:
    """The same decorated function on any node (one qualified name, so one key)."""

    @cache.cached(ttl=60)
    async def get_user(uid: int) -> User:
        calls()
        return User(uid, "Ada")

    return get_user


def team_loader(cache: df.AsyncDataFerry, calls: Calls) -> Any:
    @cache.cached(ttl=60)
    async def get_team(size: int) -> list[User] | None:
        calls()
        return [User(i, f"u{i}") for i in range(size)]

    return get_team


async def test_the_return_annotation_decodes_values_read_from_l2(l2_factory: Any) -> None:
    calls = Calls()
    async with (
        df.AsyncDataFerry(distributed=l2_factory(), namespace=NS) as writer,
        df.AsyncDataFerry(distributed=l2_factory(), namespace=NS) as reader,
    ):
        assert await user_loader(writer, calls)(1) == User(1, "Ada")
        assert await team_loader(writer, calls)(2) == [User(0, "u0"), User(1, "u1")]
        # Another node (its own, empty L1) reads L2: JSON there, dataclasses here.
        user = await user_loader(reader, calls)(1)
        team = await team_loader(reader, calls)(2)
        assert calls.n == 2
        assert type(user) is User
        assert user == User(1, "Ada")
        assert team == [User(0, "u0"), User(1, "u1")]
        assert all(type(member) is User for member in team)
        # And from the reader's L1 afterwards, the same typed values.
        assert await user_loader(reader, calls)(1) is user


async def test_an_l1_value_of_another_type_is_converted_to_the_annotation() -> None:
    calls = Calls()
    async with df.AsyncDataFerry(namespace=NS) as cache:
        get_user = user_loader(cache, calls)
        await cache.set(get_user.key(5), {"id": 5, "name": "Set as a dict"})
        user = await get_user(5)
        assert user == User(5, "Set as a dict")
        assert type(user) is User
        assert calls.n == 0


async def test_type_none_turns_typed_decoding_off(l2_factory: Any) -> None:
    async with (
        df.AsyncDataFerry(distributed=l2_factory(), namespace=NS) as writer,
        df.AsyncDataFerry(distributed=l2_factory(), namespace=NS) as reader,
    ):

        def loader(cache: df.AsyncDataFerry) -> Any:
            @cache.cached(type=None)
            async def get_user(uid: int) -> User:
                return User(uid, "Ada")

            return get_user

        await loader(writer)(1)
        assert await loader(reader)(1) == {"id": 1, "name": "Ada"}


# -- invalidation, tags, tenants, fail-safe, concurrency --------------------------------------


async def test_invalidate_removes_the_entry_everywhere(l2_factory: Any) -> None:
    calls = Calls()
    async with (
        df.AsyncDataFerry(distributed=l2_factory(), namespace=NS) as cache,
        df.AsyncDataFerry(distributed=l2_factory(), namespace=NS, memory=None) as l2_view,
    ):
        get_user = user_loader(cache, calls)
        await get_user(1)
        await get_user(2)
        assert await l2_view.exists(get_user.key(1))
        await get_user.invalidate(uid=1)
        assert not await cache.exists(get_user.key(1))
        assert not await l2_view.exists(get_user.key(1))
        assert await l2_view.exists(get_user.key(2))
        await get_user(1)
        await get_user(2)
        assert calls.n == 3


async def test_remove_by_tag_drops_decorated_entries() -> None:
    calls = Calls()
    async with df.AsyncDataFerry(namespace=NS) as cache:

        @cache.cached(tags=["users"])
        async def get_user(uid: int) -> User:
            calls()
            return User(uid, "Ada")

        @cache.cached(tags=["teams"])
        async def get_team(tid: int) -> str:
            calls()
            return f"team {tid}"

        await get_user(1)
        await get_team(1)
        await cache.remove_by_tag("users")
        await get_user(1)
        await get_team(1)
        assert calls.n == 3  # get_user ran again, get_team didn't


async def test_tenants_cache_apart() -> None:
    calls = Calls()
    async with df.AsyncDataFerry(namespace=NS) as cache:
        acme, umbrella = cache.tenant("acme"), cache.tenant("umbrella")

        def loader(view: df.AsyncDataFerry) -> Any:
            @view.cached(tags=["plans"])
            async def plan(name: str) -> str:
                return f"{view.tenant_id}:{name}:{calls()}"

            return plan

        acme_plan, umbrella_plan = loader(acme), loader(umbrella)
        assert acme_plan.cache is acme
        assert await acme_plan("pro") == "acme:pro:1"
        assert await umbrella_plan("pro") == "umbrella:pro:2"
        assert await acme_plan("pro") == "acme:pro:1"
        assert await acme.get(acme_plan.key("pro")) == "acme:pro:1"
        assert await cache.get(acme_plan.key("pro")) is None  # not the root's entry
        await umbrella.remove_by_tag("plans")
        assert await acme_plan("pro") == "acme:pro:1"
        assert await umbrella_plan("pro") == "umbrella:pro:3"


async def test_fail_safe_serves_the_last_value_when_the_function_fails() -> None:
    failing = [False]
    clock = Clock()
    async with df.AsyncDataFerry(namespace=NS, memory=df.MemoryCache(clock=clock)) as cache:

        @cache.cached(ttl=5, options=df.EntryOptions(fail_safe=True))
        async def price(sku: str) -> int:
            if failing[0]:
                raise ConnectionError("the price service is down")
            return 42

        assert await price("a") == 42
        clock.now += 10  # expired in L1, kept there for fail-safe
        failing[0] = True
        assert await price("a") == 42
        assert cache.stats().failsafe_activations == 1
        with pytest.raises(ConnectionError):
            await price("b")  # nothing to fall back on


async def test_concurrent_cold_calls_run_the_function_once() -> None:
    calls = Calls()
    async with df.AsyncDataFerry(namespace=NS) as cache:
        joined = count_events(cache, "stampede_joins")

        @cache.cached(ttl=60)
        async def slow(uid: int) -> User:
            calls()
            await wait_for(joined(19))  # every other caller is waiting for this run
            return User(uid, "Ada")

        results = await concurrently([lambda: slow(3)] * 20)
        assert results == [User(3, "Ada")] * 20
        assert calls.n == 1


# -- the colour of functions ------------------------------------------------------------------


async def coroutine_function(uid: int) -> int:  # unasync: keep
    return uid  # unasync: keep


def sync_function(uid: int) -> int:
    return uid * 10


async def test_functions_of_the_other_colour() -> None:
    async with df.AsyncDataFerry(namespace=NS) as cache:
        if IS_ASYNC:
            # A sync function on the async cache: it runs as the factory, calls are awaited.
            wrapped = cache.cached()(sync_function)
            assert inspect.iscoroutinefunction(wrapped)
            assert await wrapped(2) == 20
        else:
            with pytest.raises(df.ConfigurationError, match="AsyncDataFerry"):
                cache.cached()(coroutine_function)


# -- bad input --------------------------------------------------------------------------------


async def test_bad_options_raise_when_cached_is_called() -> None:
    async with df.AsyncDataFerry(namespace=NS) as cache:
        with pytest.raises(df.ConfigurationError, match="ttl"):
            cache.cached(ttl=-1)
        with pytest.raises(df.ConfigurationError, match="parentheses"):
            cache.cached(sync_function)  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError, match="tags"):
            cache.cached(tags="users")
        with pytest.raises(df.ConfigurationError, match="options"):
            cache.cached(options={"ttl": 1})  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError, match="key"):
            cache.cached(key=42)  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError, match="malformed"):
            cache.cached(key="user:{uid")


async def test_bad_functions_raise_when_decorated() -> None:
    async with df.AsyncDataFerry(namespace=NS) as cache:

        def generator(n: int) -> Iterator[int]:
            yield n

        async def async_generator(n: int) -> Any:
            yield n

        with pytest.raises(df.ConfigurationError, match="generator"):
            cache.cached()(generator)
        with pytest.raises(df.ConfigurationError, match="generator"):
            cache.cached()(async_generator)
        with pytest.raises(df.ConfigurationError, match=r"\{user\}.*uid"):
            cache.cached(key="user:{user}")(sync_function)
        with pytest.raises(df.ConfigurationError, match="positional fields"):
            cache.cached(key="user:{}")(sync_function)
        with pytest.raises(df.ConfigurationError, match="include_self"):
            cache.cached(include_self=True)(sync_function)

        async def opaque(uid: int) -> Opaque:
            return Opaque()

        with pytest.raises(df.ConfigurationError, match=r"Opaque.*type=None"):
            cache.cached()(opaque)
        with pytest.raises(df.ConfigurationError, match="Opaque"):
            cache.cached(type=Opaque)(sync_function)
        assert await cache.cached(type=None)(opaque)(1) is not None  # untyped: fine


async def test_bad_calls_raise_and_run_and_write_nothing() -> None:
    calls = Calls()
    async with df.AsyncDataFerry(namespace=NS) as cache:

        @cache.cached()
        async def find(where: Any, limit: int = 10) -> str:
            calls()
            return "found"

        @cache.cached(key=lambda where, limit=10: where)
        async def by_callable(where: Any, limit: int = 10) -> str:
            calls()
            return "found"

        @cache.cached()
        async def forward(uid: int) -> Undefined:  # noqa: F821
            calls()
            return "never"

        with pytest.raises(df.InvalidKeyError, match=r"'where' \(a .*Opaque\)"):
            await find(Opaque())
        with pytest.raises(df.InvalidKeyError, match="Opaque"):
            await find([1, {"a": Opaque()}])
        with pytest.raises(df.InvalidKeyError, match="Opaque"):
            find.key(where=Opaque())
        with pytest.raises(df.InvalidKeyError, match="must return a str"):
            await by_callable(42)
        cyclic: list[Any] = []
        cyclic.append(cyclic)
        with pytest.raises(df.InvalidKeyError, match="nested"):
            await find(cyclic)
        with pytest.raises(df.InvalidKeyError):
            await by_callable("x" * 2000)  # a key over 1024 bytes
        # An annotation that can't be resolved is an error at the first call.
        with pytest.raises(df.ConfigurationError, match="Undefined"):
            await forward(1)
        assert calls.n == 0
        assert cache.stats().memory_entries == 0


async def test_a_closed_cache_refuses_calls() -> None:
    cache = df.AsyncDataFerry(namespace=NS)

    @cache.cached()
    async def get_user(uid: int) -> User:
        return User(uid, "Ada")

    await get_user(1)
    await cache.aclose()
    with pytest.raises(df.CacheClosedError):
        await get_user(1)
    with pytest.raises(df.CacheClosedError):
        cache.cached()
