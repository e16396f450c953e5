"""cache.through(source): read-through, write-through, delete-through, coherence across nodes.

Written once: the generated sync twin (tests/_sync/test_datasource.py) runs the same tests
with threads and a source with sync methods.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

import dataferry as df
from tests.chaos import AsyncReading, async_wait, count_events, wait_event

IS_ASYNC = inspect.iscoroutinefunction(df.AsyncDataFerry.aclose)
NS = "ds"


async def concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call at once: asyncio tasks here, threads in the sync twin."""
    if IS_ASYNC:
        return list(await asyncio.gather(*(call() for call in calls)))
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


async def wait_for(event: Any) -> None:
    """Wait for a threading.Event without blocking the event loop (a plain wait in the twin)."""
    if IS_ASYNC:
        await wait_event(event)
    else:
        assert event.wait(10), "timed out waiting for the event"


@dataclass(frozen=True)
class User:
    id: int
    name: str


ADA = {"id": 1, "name": "Ada"}
BOB = {"id": 2, "name": "Bob"}


class Refused(Exception):
    """The source's own error (a constraint it enforces, a failed validation...)."""


class Table:
    """A data source over a dict, as a database table would be; counts its calls."""

    def __init__(self, rows: dict[Any, Any] | None = None) -> None:
        self.rows: dict[Any, Any] = dict(rows or {})
        self.calls: Counter[str] = Counter()
        self.batches: list[list[Any]] = []
        self.refuse: Exception | None = None
        #: Awaited inside load / save before they act (tests look at the cache meanwhile).
        self.before_load: Callable[[], Awaitable[None]] | None = None
        self.before_save: Callable[[], Awaitable[None]] | None = None

    async def load(self, id: Any) -> Any:
        self.calls["load"] += 1
        if self.refuse is not None:
            raise self.refuse
        if self.before_load is not None:
            await self.before_load()
        return self.rows.get(id)

    async def load_many(self, ids: list[Any]) -> dict[Any, Any]:
        self.calls["load_many"] += 1
        self.batches.append(list(ids))
        return {i: self.rows[i] for i in ids if i in self.rows}

    async def save(self, id: Any, value: Any) -> None:
        self.calls["save"] += 1
        if self.before_save is not None:
            await self.before_save()
        if self.refuse is not None:
            raise self.refuse
        self.rows[id] = value

    async def delete(self, id: Any) -> None:
        self.calls["delete"] += 1
        if self.refuse is not None:
            raise self.refuse
        self.rows.pop(id, None)


def node(l2: Any = None, **kwargs: Any) -> df.AsyncDataFerry:
    """A cache node: its own L1 in front of the L2 (None: L1 only)."""
    kwargs.setdefault("namespace", NS)
    return df.AsyncDataFerry(distributed=l2, **kwargs)


def coherent_node(url: str) -> df.AsyncDataFerry:
    """A node on a real Redis with a backplane: as one of several processes would be."""
    return node(df.RedisCache.from_url(url), backplane=df.RedisBackplane.from_url(url))


# -- reads ---------------------------------------------------------------------------------------


async def test_concurrent_gets_of_a_missing_id_load_it_once() -> None:
    table = Table({7: ADA})
    async with node() as cache:
        users = cache.through(table, prefix="user")
        joined = count_events(cache, "stampede_joins")

        async def every_caller_joined() -> None:
            await wait_for(joined(19))

        table.before_load = every_caller_joined
        results = await concurrently([lambda: users.get(7)] * 20)
        assert results == [ADA] * 20
        assert table.calls["load"] == 1
        table.before_load = None
        assert await users.get(7) == ADA  # now a hit
        assert await cache.get("user:7") == ADA  # under the documented key
        assert table.calls["load"] == 1


async def test_not_found_is_cached_as_none_unless_not_found_ttl_is_zero() -> None:
    table = Table()
    async with node() as cache:
        users = cache.through(table, prefix="user")
        assert await users.get(404) is None
        assert await users.get(404) is None
        assert table.calls["load"] == 1
        assert await cache.try_get("user:404") == (True, None)

        uncached = cache.through(table, prefix="other", not_found_ttl=0)
        assert await uncached.get(404) is None
        assert await uncached.get(404) is None
        assert table.calls["load"] == 3
        assert await cache.try_get("other:404") == (False, None)


async def test_get_many_loads_only_the_misses_with_one_load_many() -> None:
    table = Table({1: ADA, 2: BOB, 3: {"id": 3}})
    async with node() as cache:
        users = cache.through(table, prefix="user")
        assert await users.get(1) == ADA
        found = await users.get_many([1, 2, 3, 404, 2])
        assert found == {1: ADA, 2: BOB, 3: {"id": 3}}  # 404 is not found: left out
        assert table.batches == [[2, 3, 404]]
        assert await users.get_many([3, 2, 404]) == {2: BOB, 3: {"id": 3}}
        assert await users.get(404) is None
        assert table.calls["load_many"] == 1  # 404 was cached as not found
        assert table.calls["load"] == 1


async def test_get_many_with_a_not_found_ttl_of_zero_asks_again() -> None:
    table = Table({1: ADA})
    async with node() as cache:
        users = cache.through(table, prefix="user", not_found_ttl=0)
        assert await users.get_many([1, 404]) == {1: ADA}
        assert await users.get_many([1, 404]) == {1: ADA}
        assert table.batches == [[1, 404], [404]]


async def test_a_typed_source_decodes_values_read_from_l2(l2_factory: Any) -> None:
    table = Table()
    async with node(l2_factory()) as writer, node(l2_factory()) as reader:
        mine = writer.through(table, prefix="user", type=User)
        await mine.save(1, User(1, "Ada"))
        theirs = reader.through(table, prefix="user", type=User)
        got = await theirs.get(1)  # reader's L1 is empty: decoded from L2
        assert got == User(1, "Ada")
        assert isinstance(got, User)
        assert await theirs.get_many([1, 404]) == {1: User(1, "Ada")}
        assert await theirs.get(404) is None  # not found, cached (a typed None)
        assert table.calls["load"] == 0
        assert table.calls["load_many"] == 1


async def test_options_are_those_of_through_fail_safe_serves_the_last_value(
    l2_backend: Any,
) -> None:
    table = Table({1: ADA})
    safe = df.EntryOptions(fail_safe=True)
    async with node(l2_backend) as cache:
        users = cache.through(table, prefix="user", options=safe, tags=["users"])
        assert await users.get(1) == ADA
        await cache.expire("user:1")  # stale, kept for fail-safe
        table.refuse = Refused("database down")
        assert await users.get(1) == ADA
        assert cache.stats().failsafe_activations == 1
        await cache.remove_by_tag("users")  # through()'s tags are the entries' tags
        with pytest.raises(Refused):
            await users.get(1)


# -- writes --------------------------------------------------------------------------------------


async def test_save_writes_the_source_first_then_the_cache() -> None:
    table = Table({1: ADA})
    seen_by_the_source: list[Any] = []
    async with node() as cache:
        users = cache.through(table, prefix="user")
        assert await users.get(1) == ADA

        async def look_at_the_cache() -> None:
            seen_by_the_source.append(await cache.get("user:1"))

        table.before_save = look_at_the_cache
        await users.save(1, BOB)
        assert seen_by_the_source == [ADA]  # the cache still had the old value
        assert table.rows[1] == BOB
        assert await users.get(1) == BOB
        assert table.calls["load"] == 1  # served by the cache


async def test_a_load_that_began_before_a_save_does_not_store_what_it_read(
    l2_factory: Any,
) -> None:
    entered, release = threading.Event(), threading.Event()

    class SlowTable(Table):
        async def load(self, id: Any) -> Any:
            value = self.rows.get(id)  # read before the save...
            entered.set()
            await wait_for(release)  # ...returned after it
            return value

    table = SlowTable({1: ADA})
    async with node(l2_factory()) as cache:
        users = cache.through(table, prefix="user")
        reading = AsyncReading(lambda: users.get(1))
        await wait_for(entered)
        await users.save(1, BOB)
        release.set()
        assert await reading.result() == ADA  # its callers get what it read...
        assert await users.get(1) == BOB  # ...but the saved value stays (L1, then L2)
        assert await cache.get(users.key(1), options=df.EntryOptions(skip_memory=True)) == BOB


async def test_a_batch_load_that_began_before_a_save_stores_only_the_unchanged_ids() -> None:
    entered, release = threading.Event(), threading.Event()

    class SlowTable(Table):
        async def load_many(self, ids: list[Any]) -> dict[Any, Any]:
            self.calls["load_many"] += 1
            rows = {i: self.rows[i] for i in ids if i in self.rows}
            entered.set()
            await wait_for(release)
            return rows

    table = SlowTable({1: ADA, 2: BOB})
    async with node() as cache:
        users = cache.through(table, prefix="user")
        reading = AsyncReading(lambda: users.get_many([1, 2]))
        await wait_for(entered)
        await users.save(1, {"id": 1, "name": "Ada L."})
        release.set()
        assert await reading.result() == {1: ADA, 2: BOB}
        assert await users.get_many([1, 2]) == {1: {"id": 1, "name": "Ada L."}, 2: BOB}
        assert table.calls["load_many"] == 1  # id 2 was stored by the batch


async def test_the_cache_never_holds_a_value_the_source_refused(l2_factory: Any) -> None:
    table = Table({1: ADA})
    async with node(l2_factory()) as cache, node(l2_factory()) as other:
        users = cache.through(table, prefix="user")
        assert await users.get(1) == ADA
        table.refuse = Refused("name taken")
        with pytest.raises(Refused):
            await users.save(1, BOB)
        with pytest.raises(Refused):
            await users.save(2, BOB)
        assert table.rows == {1: ADA}
        assert await cache.get("user:1") == ADA  # L1
        assert await other.get("user:1") == ADA  # L2
        assert await cache.try_get("user:2") == (False, None)
        assert await other.try_get("user:2") == (False, None)


async def test_a_value_the_cache_cannot_hold_drops_the_old_entry(l2_backend: Any) -> None:
    table = Table({1: ADA})
    async with node(l2_backend) as cache:
        users = cache.through(table, prefix="user")
        assert await users.get(1) == ADA
        with pytest.raises(df.SerializationError):
            await users.save(1, {"not json": {1, 2}})
        # The source took it: serving the old value from the cache would be wrong.
        assert table.rows[1] == {"not json": {1, 2}}
        assert await cache.try_get("user:1") == (False, None)


async def test_delete_removes_from_the_source_then_the_cache() -> None:
    table = Table({1: ADA, 2: BOB})
    async with node() as cache:
        users = cache.through(table, prefix="user")
        assert await users.get_many([1, 2]) == {1: ADA, 2: BOB}
        await users.delete(1)
        assert 1 not in table.rows
        assert await cache.try_get("user:1") == (False, None)
        assert await users.get(1) is None
        table.refuse = Refused("has orders")
        with pytest.raises(Refused):
            await users.delete(2)
        assert await cache.get("user:2") == BOB  # the source still has it


async def test_writes_through_one_node_reach_the_other_nodes_l1(redis_url: str) -> None:
    table = Table({1: ADA, 2: BOB})
    a, b = coherent_node(redis_url), coherent_node(redis_url)
    heard = count_events(b, "backplane_messages")
    async with a, b:
        on_a = a.through(table, prefix="user")
        on_b = b.through(table, prefix="user")
        assert await on_b.get_many([1, 2]) == {1: ADA, 2: BOB}  # in b's L1 now
        loads = table.calls["load_many"]
        await on_a.save(1, {"id": 1, "name": "Ada L."})
        await async_wait(heard(1))
        assert await on_b.get(1) == {"id": 1, "name": "Ada L."}
        assert table.calls["load_many"] == loads  # b read L2, not the source
        assert table.calls["load"] == 0
        await on_a.delete(2)
        await async_wait(heard(2))
        assert await b.try_get("user:2") == (False, None)
        assert await on_b.get(2) is None
        assert table.calls["load"] == 1  # b asked the source, which no longer has it


# -- views, keys, source kinds --------------------------------------------------------------------


async def test_tenants_read_and_write_their_own_entries() -> None:
    acme, globex = Table({1: "acme's"}), Table({1: "globex's"})
    async with node() as cache:
        on_acme = cache.tenant("acme").through(acme, prefix="user")
        on_globex = cache.tenant("globex").through(globex, prefix="user")
        assert await on_acme.get(1) == "acme's"
        assert await on_globex.get(1) == "globex's"
        await on_acme.save(1, "acme's new")
        assert await on_globex.get(1) == "globex's"
        assert await cache.tenant("acme").get("user:1") == "acme's new"
        assert await cache.get("user:1") is None  # the root cache has no such entry
        assert acme.calls["load"] == globex.calls["load"] == 1


async def test_ids_are_str_int_or_uuid_and_keys_say_so() -> None:
    table = Table()
    uid = uuid.UUID(int=5)
    async with node() as cache:
        users = cache.through(table, prefix="user")
        assert users.key(7) == "user:7"
        assert users.key("ada") == "user:ada"
        assert users.key(uid) == f"user:{uid}"
        assert users.prefix == "user"
        assert users.source is table
        for bad in (1.5, True, None, b"7", "", (1, 2)):
            with pytest.raises(df.InvalidKeyError):
                await users.get(bad)
            with pytest.raises(df.InvalidKeyError):
                await users.save(bad, ADA)
            with pytest.raises(df.InvalidKeyError):
                await users.delete(bad)
        with pytest.raises(df.InvalidKeyError):
            await users.get_many([1, 1.5])
        with pytest.raises(df.ConfigurationError, match="iterable of ids"):
            await users.get_many("123")
        assert not table.calls  # nothing reached the source
        with pytest.raises(df.InvalidKeyError):
            await users.get("x" * 2000)  # the cache's own key limit


async def test_bad_arguments_to_through_are_refused_at_the_call() -> None:
    class NoSave:
        async def load(self, id: Any) -> Any: ...

        async def load_many(self, ids: list[Any]) -> Any: ...

        async def delete(self, id: Any) -> Any: ...

    async with node() as cache:
        for prefix in ("", 3, None):
            with pytest.raises(df.ConfigurationError, match="prefix"):
                cache.through(Table(), prefix=prefix)  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError, match="has no save"):
            cache.through(NoSave(), prefix="user")  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError):
            cache.through(Table(), prefix="user", ttl=-1)
        with pytest.raises(df.ConfigurationError):
            cache.through(Table(), prefix="user", tags="users")
        with pytest.raises(df.ConfigurationError, match="not_found_ttl"):
            cache.through(Table(), prefix="user", not_found_ttl=-1)


async def test_a_closed_cache_refuses_before_the_source_is_called() -> None:
    table = Table({1: ADA})
    cache = node()
    users = cache.through(table, prefix="user")
    await cache.aclose()
    with pytest.raises(df.CacheClosedError):
        await users.save(1, BOB)
    with pytest.raises(df.CacheClosedError):
        await users.delete(1)
    with pytest.raises(df.CacheClosedError):
        await users.get(1)
    assert not table.calls
    assert table.rows == {1: ADA}


async def test_a_load_many_that_returns_no_mapping_is_an_error() -> None:
    table = Table({1: ADA})

    async def not_a_mapping(ids: list[Any]) -> Any:
        return [ADA]

    table.load_many = not_a_mapping  # type: ignore[method-assign]
    async with node() as cache:
        users = cache.through(table, prefix="user")
        with pytest.raises(df.ConfigurationError, match="mapping"):
            await users.get_many([1])
        assert await cache.try_get("user:1") == (False, None)


class SyncTable:
    """A source with plain methods: DataFerry needs one; AsyncDataFerry takes one too."""

    def __init__(self) -> None:
        self.rows: dict[Any, Any] = {1: ADA}

    def load(self, id: Any) -> Any:
        return self.rows.get(id)

    def load_many(self, ids: list[Any]) -> dict[Any, Any]:
        return {i: self.rows[i] for i in ids if i in self.rows}

    def save(self, id: Any, value: Any) -> None:
        self.rows[id] = value

    def delete(self, id: Any) -> None:
        self.rows.pop(id, None)


class CoroutineTable:
    """A source with async methods, in both files: only AsyncDataFerry can use it."""

    async def load(self, id: Any) -> Any:  # unasync: keep
        return ADA

    async def load_many(self, ids: list[Any]) -> Any:  # unasync: keep
        return {}

    async def save(self, id: Any, value: Any) -> None:  # unasync: keep
        pass

    async def delete(self, id: Any) -> None:  # unasync: keep
        pass


async def test_either_cache_takes_a_source_with_sync_methods() -> None:
    table = SyncTable()
    async with node(offload_sync_factories=True) as cache:
        users = cache.through(table, prefix="user")
        assert await users.get(1) == ADA
        await users.save(2, BOB)
        assert table.rows[2] == BOB
        assert await users.get_many([1, 2]) == {1: ADA, 2: BOB}
        await users.delete(1)
        assert await users.get(1) is None


async def test_only_the_async_cache_takes_a_source_with_async_methods() -> None:
    async with node() as cache:
        if IS_ASYNC:
            assert await cache.through(CoroutineTable(), prefix="user").get(1) == ADA
        else:
            with pytest.raises(df.ConfigurationError, match="async methods"):
                cache.through(CoroutineTable(), prefix="user")  # type: ignore[arg-type]
