"""Lifecycle, options, errors at the call, typed reads and the L2 pipeline, through the facade.

The sync twin (tests/_sync/test_lifecycle.py) is generated from this file.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Any

import pytest

import dataferry as df
from tests.chaos import Faults, async_until


@dataclasses.dataclass
class User:
    id: int
    name: str


def node(backend: Any, **kwargs: Any) -> df.AsyncDataFerry:
    kwargs.setdefault("namespace", "test")
    return df.AsyncDataFerry(distributed=backend, **kwargs)


# -- lifecycle ----------------------------------------------------------------------------------


async def test_every_call_after_close_raises_cache_closed(backend: Any) -> None:
    cache = node(backend)
    view = cache.tenant("acme")
    async with cache:
        await cache.set("k", 1)
        await view.set("k", 2)
    assert cache.closed
    assert view.closed
    calls = [
        lambda: cache.get_or_set("k", lambda: 0),  # an L1 hit before the close
        lambda: view.get_or_set("k", lambda: 0),
        lambda: cache.get_or_set("k", lambda: 0, ttl=5),
        lambda: cache.get("k"),
        lambda: cache.try_get("k"),
        lambda: cache.exists("k"),
        lambda: cache.set("k", 3),
        lambda: cache.remove("k"),
        lambda: cache.expire("k"),
        lambda: cache.get_many(["k"]),
        lambda: cache.set_many({"k": 3}),
        lambda: cache.remove_many(["k"]),
        lambda: cache.get_or_set_many(["k"], lambda keys: {}),
        lambda: cache.tenant("globex").get("k"),
    ]
    for call in calls:
        with pytest.raises(df.CacheClosedError):
            await call()
    with pytest.raises(df.CacheClosedError):
        await cache.__aenter__()
    await cache.aclose()  # closing again does nothing
    assert "closed" in repr(cache)


async def test_closing_a_tenant_view_leaves_the_cache_and_other_tenants_alone() -> None:
    cache = df.AsyncDataFerry(distributed=df.SQLiteCache(":memory:"), memory=None)
    globex = cache.tenant("globex")
    await globex.set("k", "globex data")
    async with cache.tenant("acme") as acme:
        await acme.set("k", "acme data")
    await acme.aclose()
    assert not cache.closed
    assert await globex.get("k") == "globex data"  # the shared in-memory L2 is still there
    assert await cache.tenant("acme").get("k") == "acme data"
    await cache.aclose()


async def test_views_created_after_close_are_closed_too() -> None:
    cache = df.AsyncDataFerry()
    await cache.aclose()
    with pytest.raises(df.CacheClosedError):
        await cache.tenant("late").get_or_set("k", lambda: 1)


# -- options ------------------------------------------------------------------------------------


async def test_a_call_can_unset_an_inherited_option() -> None:
    now = [0.0]
    memory = df.MemoryCache(clock=lambda: now[0])
    cache = df.AsyncDataFerry(memory=memory, default_options=df.EntryOptions(l1_ttl=1))
    await cache.set("short", "v", ttl=60)
    await cache.set("long", "v", ttl=60, options=df.EntryOptions(l1_ttl=None))
    now[0] = 2.0
    assert await cache.try_get("short") == (False, None)  # the default l1_ttl applied
    assert await cache.try_get("long") == (True, "v")  # None unset it: the ttl applies


async def test_ttl_accepts_timedelta_everywhere() -> None:
    now = [0.0]
    cache = df.AsyncDataFerry(
        memory=df.MemoryCache(clock=lambda: now[0]), default_ttl=timedelta(seconds=30)
    )
    await cache.set("a", 1, ttl=timedelta(minutes=2))
    await cache.set("b", 1)
    assert await cache.get_or_set("c", lambda: df.Entry(1, ttl=timedelta(seconds=10))) == 1
    await cache.set("d", 1, options=df.EntryOptions(ttl=timedelta(hours=1)))
    now[0] = 60.0
    assert await cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "d": 1}


@pytest.mark.parametrize("ttl", [1e17, float("inf"), timedelta(days=365 * 200)])
async def test_a_ttl_beyond_what_the_l2_can_store_is_refused_at_the_call(
    backend: Any, ttl: Any
) -> None:
    async with node(backend) as cache:
        with pytest.raises(df.ConfigurationError):
            await cache.set("k", 1, ttl=ttl)
        with pytest.raises(df.ConfigurationError):
            await cache.get_or_set("k", lambda: 1, ttl=ttl)
        assert await cache.try_get("k") == (False, None)
        assert cache.stats().distributed_errors == 0
    with pytest.raises(df.ConfigurationError):
        df.EntryOptions(ttl=ttl)


# -- errors from the tree, at the call ----------------------------------------------------------


async def test_bad_arguments_raise_from_the_tree_and_write_nothing(backend: Any) -> None:
    async with node(backend) as cache:
        with pytest.raises(df.InvalidKeyError):
            await cache.get_many(None)  # type: ignore[arg-type]
        with pytest.raises(df.InvalidKeyError):
            await cache.remove_many(5)  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError):
            await cache.set("k", 1, tags=5)  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError):
            await cache.get_or_set("k", lambda: df.Entry(1, tags=5))  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError):
            await cache.get_or_set("k", "not callable")  # type: ignore[call-overload]
        with pytest.raises(df.InvalidTenantError):
            cache.tenant(None)  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError):
            await cache.get_or_set_many(["k"], None)  # type: ignore[arg-type]
        assert await cache.try_get("k") == (False, None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"default_ttl": None},
        {"namespace": None},
        {"namespace": "bad:ns"},
        {"join_timeout": 0},
        {"close_timeout": -1},
        {"offload_sync_factories": "yes"},
        {"distributed_layers": [object()]},
        {"default_options": {"ttl": 1}},
    ],
)
async def test_bad_configuration_is_a_configuration_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(df.ConfigurationError) as info:
        df.AsyncDataFerry(**kwargs)
    assert not isinstance(info.value, df.InvalidTenantError)


# -- typed reads --------------------------------------------------------------------------------


async def test_type_is_honoured_whichever_level_answers(backend: Any) -> None:
    async with node(backend) as cache:
        await cache.set("u", {"id": 1, "name": "Ada"})
        # L1 holds the dict that was set; a typed read gets what L2 would give.
        assert await cache.get("u", type=User) == User(1, "Ada")
        assert await cache.get_or_set("u", lambda: None, type=User) == User(1, "Ada")
        assert await cache.get_many(["u"], type=User) == {"u": User(1, "Ada")}
        assert await cache.try_get("u", type=User) == (True, User(1, "Ada"))
        assert await cache.get("u") == {"id": 1, "name": "Ada"}  # untyped: the live value
        await cache.set("users", [{"id": 2, "name": "Bob"}])
        assert await cache.get("users", type=list[User]) == [User(2, "Bob")]
        await cache.set("bad", {"nope": True})
        assert await cache.try_get("bad", type=User) == (False, None)


async def test_a_typed_read_from_l2_is_served_typed_from_l1(shared_backend: Any) -> None:
    async with node(shared_backend) as writer, node(shared_backend) as reader:
        await writer.set("u", User(1, "Ada"))
        assert await reader.get("u", type=User) == User(1, "Ada")  # from L2
        assert await reader.get("u", type=User) == User(1, "Ada")  # from L1
        assert reader.stats().memory_hits == 1


# -- oversized values ---------------------------------------------------------------------------


async def test_an_oversized_factory_value_is_returned_and_stored_nowhere(
    l2_backend: Any,
) -> None:
    async with node(l2_backend, max_payload_bytes=100) as cache:
        calls = 0

        def big() -> str:
            nonlocal calls
            calls += 1
            return "x" * 1000

        assert await cache.get_or_set("big", big) == "x" * 1000
        assert await cache.get_or_set("big", big) == "x" * 1000
        assert calls == 2  # not in L1 either
        assert cache.stats().payload_too_large == 2
        with pytest.raises(df.PayloadTooLargeError):
            await cache.set("big", "x" * 1000)
        assert await cache.try_get("big") == (False, None)


# -- the L2 pipeline and events -----------------------------------------------------------------


async def errors(cache: df.AsyncDataFerry, n: int) -> bool:
    return cache.stats().distributed_errors == n


async def test_every_l2_failure_is_counted_once_and_answered(shared_backend: Any) -> None:
    faults = Faults(RuntimeError("Event loop is closed"))
    # resilience=None: no breaker to skip calls, no replay of the failed writes (see
    # tests/_async/test_resilience.py for those).
    async with node(
        shared_backend, distributed_layers=[faults], memory=None, resilience=None
    ) as cache:
        await cache.set("a", 1)  # 1: set
        assert await cache.get_or_set("a", lambda: 2) == 2  # 2: get, 3: set (in the background,
        await async_until(lambda: errors(cache, 3))  # as the read failed)
        assert await cache.get_many(["a", "b"]) == {}  # 4: get_many
        await cache.set_many({"c": 3})  # 5: set_many
        await cache.remove("c")  # 6: delete
        await cache.remove_many(["a", "c"])  # 7: delete_many
        await cache.expire("a")  # 8: get, 9: the delete it does instead
        assert cache.stats().distributed_errors == 9
        faults.failing = False
        await cache.set("a", 4)
        assert await cache.get("a") == 4
        assert cache.stats().distributed_errors == 9


async def test_a_raising_listener_never_breaks_a_call(
    l2_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with node(l2_backend) as cache:
        seen: list[str] = []

        def broken(event: str, attributes: dict[str, Any]) -> None:
            raise RuntimeError("listener bug")

        def recorder(event: str, attributes: dict[str, Any]) -> None:
            seen.append(event)
            stop()  # unsubscribing while an event is dispatched is fine

        cache.subscribe(broken)
        stop = cache.subscribe(recorder)
        await l2_backend.aset("test:k:bad", b"garbage", 60)
        with caplog.at_level(logging.DEBUG, logger="dataferry"):
            assert await cache.get_or_set("bad", lambda: "computed") == "computed"
            assert await cache.try_get("nope") == (False, None)
        assert seen == ["decode_errors"]
        assert cache.stats().decode_errors == 1
        assert sum("listener" in r.getMessage() for r in caplog.records) >= 1
        assert not any("garbage" in r.getMessage() for r in caplog.records)
