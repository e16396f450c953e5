"""What a user's type checker sees: the public API under ``mypy --strict`` and pyright (strict).

Not a test module (pytest collects ``test_*.py`` only): ``scripts/dev.py check`` runs both
checkers on this folder, and every ``assert_type`` below is a promise of the docs. The code is
also a real program: ``python tests/typing/usage.py`` runs it on L1-only caches.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from typing_extensions import assert_type

from dataferry import (
    AsyncCachedSource,
    AsyncDataFerry,
    AsyncLoader,
    CachedSource,
    CacheWarmer,
    DataFerry,
    Entry,
    EntryOptions,
    KeySeeder,
    Loader,
    MemoryCache,
    Stats,
    WarmFailure,
    WarmProgress,
    WarmReport,
)
from dataferry.events import FactoryError


@dataclass(frozen=True)
class User:
    id: int
    name: str


ADA = User(1, "Ada")
KEYS = ["user:1", "user:2"]


# -- factories as users write them -------------------------------------------------------------


async def aload() -> User:
    await asyncio.sleep(0)
    return ADA


def load() -> User:
    return ADA


async def aload_entry() -> Entry[User]:
    await asyncio.sleep(0)
    return Entry(ADA, ttl=5)


def load_entry() -> Entry[User]:
    return Entry(ADA, ttl=5, tags=["users"])


async def aload_many(keys: list[str]) -> dict[str, User]:
    await asyncio.sleep(0)
    return {k: User(i, k) for i, k in enumerate(keys)}


def load_many(keys: list[str]) -> Mapping[str, User]:
    return {k: User(i, k) for i, k in enumerate(keys)}


# -- AsyncDataFerry ----------------------------------------------------------------------------


async def use_async(cache: AsyncDataFerry) -> None:
    # get_or_set returns what the factory produces, whatever its colour or wrapping.
    assert_type(await cache.get_or_set("user:1", aload), User)
    assert_type(await cache.get_or_set("user:1", load), User)
    assert_type(await cache.get_or_set("user:1", aload_entry), User)
    assert_type(await cache.get_or_set("user:1", load_entry), User)
    assert_type(await cache.get_or_set("answer", lambda: 42), int)
    assert_type(await cache.get_or_set("user:1", aload, ttl=60, tags=["users"]), User)
    assert_type(
        await cache.get_or_set("user:1", aload, options=EntryOptions(ttl=60, skip_memory=True)),
        User,
    )
    assert_type(await cache.get_or_set("user:1", aload, type=User), User)
    resilient = EntryOptions(
        ttl=timedelta(minutes=1),
        fail_safe=True,
        fail_safe_max=timedelta(hours=1),
        fail_safe_throttle=30,
        factory_soft_timeout=0.1,
        factory_hard_timeout=None,
        eager_refresh=0.8,
        early_expiration=1.0,
        jitter=2.5,
        raise_distributed_errors=False,
        background_distributed_writes=True,
    )
    assert_type(await cache.get_or_set("user:1", aload, options=resilient), User)

    # get: Any without type=; with type=, the type (or None, or the default's type).
    assert_type(await cache.get("user:1"), Any)
    assert_type(await cache.get("user:1", "fallback"), Any)
    assert_type(await cache.get("user:1", type=User), User | None)
    assert_type(await cache.get("user:1", default=ADA, type=User), User)
    assert_type(await cache.get("user:1", ADA, type=User), User)

    assert_type(await cache.try_get("user:1"), tuple[bool, Any])
    assert_type(await cache.try_get("user:1", type=User), tuple[bool, User | None])
    found, user = await cache.try_get("user:1", type=User)
    if found and user is not None:
        assert_type(user.name, str)

    assert_type(await cache.get_many(KEYS), dict[str, Any])
    assert_type(await cache.get_many(KEYS, type=User), dict[str, User])
    assert_type(await cache.get_or_set_many(KEYS, aload_many), dict[str, User])
    assert_type(await cache.get_or_set_many(KEYS, load_many), dict[str, User])
    assert_type(await cache.get_or_set_many(KEYS, aload_many, type=User), dict[str, User])

    assert_type(await cache.exists("user:1"), bool)
    assert_type(await cache.set("user:1", ADA, ttl=60, tags=["users"]), None)
    assert_type(await cache.set_many({"user:1": ADA}, ttl=60), None)
    assert_type(await cache.remove("user:1"), None)
    assert_type(await cache.remove_many(KEYS), None)
    assert_type(await cache.expire("user:1"), None)

    assert_type(cache.tenant("acme"), AsyncDataFerry)
    assert_type(await cache.tenant("acme").get_or_set("user:1", aload), User)
    assert_type(cache.stats(), Stats)

    def on_error(event: FactoryError) -> None:
        assert_type(event.error, str)

    assert_type(cache.on(FactoryError, on_error), Callable[[], None])


async def build_async() -> AsyncDataFerry:
    cache = AsyncDataFerry.builder().with_memory(max_entries=1_000).with_namespace("app").build()
    assert_type(cache, AsyncDataFerry)
    assert_type(AsyncDataFerry.builder().build(), AsyncDataFerry)
    assert_type(AsyncDataFerry.from_url("memory://?namespace=app"), AsyncDataFerry)
    assert_type(AsyncDataFerry.from_env({}), AsyncDataFerry)
    async with AsyncDataFerry(memory=MemoryCache(max_entries=10)) as entered:
        assert_type(entered, AsyncDataFerry)
    return cache


# -- DataFerry (sync) --------------------------------------------------------------------------


def use_sync(cache: DataFerry) -> None:
    assert_type(cache.get_or_set("user:1", load), User)
    assert_type(cache.get_or_set("user:1", load_entry), User)
    assert_type(cache.get_or_set("answer", lambda: 42), int)
    assert_type(cache.get_or_set("user:1", load, ttl=60, tags=["users"]), User)
    assert_type(cache.get_or_set("user:1", load, type=User), User)

    assert_type(cache.get("user:1"), Any)
    assert_type(cache.get("user:1", type=User), User | None)
    assert_type(cache.get("user:1", default=ADA, type=User), User)

    assert_type(cache.try_get("user:1"), tuple[bool, Any])
    assert_type(cache.try_get("user:1", type=User), tuple[bool, User | None])

    assert_type(cache.get_many(KEYS), dict[str, Any])
    assert_type(cache.get_many(KEYS, type=User), dict[str, User])
    assert_type(cache.get_or_set_many(KEYS, load_many), dict[str, User])

    assert_type(cache.exists("user:1"), bool)
    assert_type(cache.set("user:1", ADA), None)
    assert_type(cache.remove("user:1"), None)

    assert_type(cache.tenant("acme"), DataFerry)
    assert_type(cache.tenant("acme").get_or_set("user:1", load), User)


def build_sync() -> DataFerry:
    cache = DataFerry.builder().with_memory(max_entries=1_000).with_namespace("app").build()
    assert_type(cache, DataFerry)
    assert_type(DataFerry.builder().build(), DataFerry)
    with DataFerry(memory=MemoryCache(max_entries=10)) as entered:
        assert_type(entered, DataFerry)
    return cache


# -- mistakes the checkers must catch (an unneeded ignore is itself an error in both) ----------
# (get_or_set is overloaded, so a bad argument is mypy's call-overload rather than arg-type.)


async def mistakes(cache: AsyncDataFerry, sync_cache: DataFerry) -> None:
    """Checked, never run."""
    await cache.get_or_set(1, aload)  # type: ignore[call-overload]
    await cache.set("user:1", ADA, ttl="60")  # type: ignore[arg-type]
    sync_cache.get_or_set(1, load)  # type: ignore[call-overload]


# -- data sources (cache.through) and CacheWarmer ---------------------------------------------


class AsyncUserSource:
    """A data source with async methods, as a repository class would be (any parameter names)."""

    def __init__(self) -> None:
        self.rows: dict[int, User] = {ADA.id: ADA}

    async def load(self, user_id: int) -> User | None:
        return self.rows.get(user_id)

    async def load_many(self, ids: list[int]) -> dict[int, User]:
        return {i: self.rows[i] for i in ids if i in self.rows}

    async def save(self, user_id: int, user: User) -> None:
        self.rows[user_id] = user

    async def delete(self, user_id: int) -> None:
        self.rows.pop(user_id, None)


class UserSource:
    """The same with sync methods (for DataFerry; AsyncDataFerry takes it too)."""

    def __init__(self) -> None:
        self.rows: dict[int, User] = {ADA.id: ADA}

    def load(self, user_id: int) -> User | None:
        return self.rows.get(user_id)

    def load_many(self, ids: list[int]) -> dict[int, User]:
        return {i: self.rows[i] for i in ids if i in self.rows}

    def save(self, user_id: int, user: User) -> bool:  # a return value is ignored
        self.rows[user_id] = user
        return True

    def delete(self, user_id: int) -> None:
        self.rows.pop(user_id, None)


def load_by_key(key: str) -> User:
    return User(len(key), key)


async def use_sources(cache: AsyncDataFerry, sync_cache: DataFerry) -> None:
    users = cache.through(AsyncUserSource(), prefix="user", ttl=60, tags=["users"])
    assert_type(users, AsyncCachedSource[int, User])
    assert_type(await users.get(1), User | None)
    assert_type(await users.get_many([1, 2]), dict[int, User])
    assert_type(await users.save(1, ADA), None)
    assert_type(await users.delete(1), None)
    assert_type(users.key(1), str)
    typed = cache.through(UserSource(), prefix="user", type=User, not_found_ttl=5)
    assert_type(typed, AsyncCachedSource[int, User])
    assert_type(
        cache.tenant("acme").through(UserSource(), prefix="u"), AsyncCachedSource[int, User]
    )

    sync_users = sync_cache.through(UserSource(), prefix="user")
    assert_type(sync_users, CachedSource[int, User])
    assert_type(sync_users.get(1), User | None)
    assert_type(sync_users.get_many([1]), dict[int, User])
    assert_type(sync_users.save(1, ADA), None)

    seen: list[int] = []

    def on_progress(progress: WarmProgress) -> None:
        seen.append(progress.processed)

    async def pairs() -> AsyncIterator[tuple[str, User]]:
        yield "user:1", ADA

    report = await CacheWarmer(
        cache,
        seeders=[
            [("user:1", ADA)],
            pairs(),
            {"user:2": ADA},
            KeySeeder(KEYS, load=load_by_key),
            KeySeeder(KEYS, load_many=aload_many, batch_size=50),
        ],
        concurrency=4,
        ttl=60,
        progress=on_progress,
    ).run()
    assert_type(report, WarmReport)
    assert_type(report.loaded, int)
    assert_type(report.errors, tuple[WarmFailure, ...])
    for item, error in report.errors:
        assert_type(item, str)
        assert_type(error, Exception)
    sync_report = CacheWarmer(sync_cache, seeders=[KeySeeder(KEYS, load_many=load_many)]).run_sync()
    assert_type(sync_report, WarmReport)


def source_mistakes(cache: AsyncDataFerry, sync_cache: DataFerry) -> None:
    """Checked, never run."""
    sync_cache.through(AsyncUserSource(), prefix="user")  # type: ignore[arg-type]
    users = cache.through(UserSource(), prefix="user")
    users.key("1")  # type: ignore[arg-type]
    CacheWarmer(cache, seeders=[[("user:1", ADA)]], concurrency="4")  # type: ignore[arg-type]


# -- batched loader (cache.loader) ------------------------------------------------------------


async def use_loaders(cache: AsyncDataFerry, sync_cache: DataFerry) -> None:
    users = cache.loader(aload_many, ttl=60, tags=["users"], max_batch_size=100)
    assert_type(users, AsyncLoader[User])
    assert_type(await users.load("user:1"), User)
    assert_type(await asyncio.gather(*(users.load(k) for k in KEYS)), list[User])
    assert_type(await users.load_many(KEYS), dict[str, User])
    assert_type(await users.prime("user:3", ADA), None)
    assert_type(await users.clear("user:3"), None)
    assert_type(cache.loader(load_many, window=0.002), AsyncLoader[User])
    assert_type(cache.tenant("acme").loader(aload_many, type=User), AsyncLoader[User])

    sync_users = sync_cache.loader(load_many, options=EntryOptions(fail_safe=True))
    assert_type(sync_users, Loader[User])
    assert_type(sync_users.load("user:1"), User)
    assert_type(sync_users.load_many(KEYS), dict[str, User])
    assert_type(sync_cache.loader(load_many, window=timedelta(milliseconds=2)), Loader[User])


async def loader_mistakes(cache: AsyncDataFerry, sync_cache: DataFerry) -> None:
    """Checked, never run."""
    sync_cache.loader(aload_many)  # type: ignore[arg-type]
    cache.loader(load)  # type: ignore[arg-type]
    await cache.loader(aload_many).prime("user:1", "not a user")  # type: ignore[arg-type]


# -- @cache.cached ---------------------------------------------------------------------------
# The wrapper keeps the function's parameters; its value type is the (awaited) return type.
# Methods bind as methods, classmethods as classmethods. (Static methods: call them on the
# class; mypy binds them wrongly when called on an instance.)


async def use_cached(cache: AsyncDataFerry, sync_cache: DataFerry) -> None:
    @cache.cached(ttl=60, tags=["users"])
    async def get_user(uid: int, *, fresh: bool = False) -> User:
        return User(uid, "Ada")

    @cache.cached(key="user:{uid}")
    def load_user(uid: int) -> User:  # a sync function: the async cache's wrapper is awaited
        return User(uid, "Ada")

    @cache.cached(options=EntryOptions(fail_safe=True))
    async def adaptive(uid: int) -> Entry[User]:
        return Entry(User(uid, "Ada"), ttl=5)

    class Repo:
        @cache.cached(ttl=60)
        async def find(self, uid: int) -> User:
            return User(uid, "Ada")

        @cache.cached()
        @classmethod
        async def count(cls, kind: str) -> int:
            return len(kind)

        @staticmethod
        @cache.cached()
        async def version() -> str:
            return "1"

    user: User = await get_user(1)
    assert_type(await get_user(1, fresh=True), User)
    assert_type(await load_user(uid=1), User)
    assert_type(await adaptive(1), User)
    assert_type(get_user.key(1), str)
    assert_type(await get_user.invalidate(1), None)
    assert_type(get_user.cache, AsyncDataFerry)
    repo = Repo()
    assert_type(await repo.find(1), User)
    assert_type(repo.find.key(1), str)
    assert_type(await repo.find.invalidate(1), None)
    assert_type(await Repo.find(repo, 1), User)
    assert_type(await Repo.count("users"), int)
    assert_type(Repo.count.key("users"), str)
    assert_type(await Repo.version(), str)
    task = asyncio.create_task(get_user(user.id))  # a coroutine, as tasks want
    assert_type(await task, User)

    @sync_cache.cached(ttl=60)
    def sync_user(uid: int) -> User:
        return User(uid, "Ada")

    class SyncRepo:
        @sync_cache.cached()
        def find(self, uid: int) -> User:
            return User(uid, "Ada")

    assert_type(sync_user(1), User)
    assert_type(sync_user.key(1), str)
    assert_type(sync_user.invalidate(1), None)
    assert_type(SyncRepo().find(1), User)
    assert_type(sync_cache.tenant("acme").cached()(load)(), User)


async def cached_mistakes(cache: AsyncDataFerry, sync_cache: DataFerry) -> None:
    """Checked, never run."""

    @cache.cached()
    async def get_user(uid: int) -> User:
        return User(uid, "Ada")

    class Repo:
        @cache.cached()
        async def find(self, uid: int) -> User:
            return User(uid, "Ada")

    await get_user("1")  # type: ignore[arg-type]
    get_user.key(uid="1")  # type: ignore[arg-type]
    await get_user.invalidate()  # type: ignore[call-arg]
    await Repo().find("1")  # type: ignore[arg-type]
    cache.cached(ttl="60")  # type: ignore[arg-type]
    sync_user = sync_cache.cached()(load)
    sync_user(1)  # type: ignore[call-arg]


# -- a program -------------------------------------------------------------------------------


async def main() -> None:
    async with await build_async() as cache:
        await use_async(cache)
        user = await cache.get_or_set("user:1", aload)
        print(f"async: {user.name}")
    with build_sync() as sync_cache:
        use_sync(sync_cache)
        print(f"sync: {sync_cache.get_or_set('user:1', load).name}")
    with DataFerry() as sync_cache:
        async with AsyncDataFerry() as cache:
            await use_sources(cache, sync_cache)
            print(f"sources: {await cache.through(UserSource(), prefix='user').get(1)}")
            await use_loaders(cache, sync_cache)
            print(f"loader: {(await cache.loader(aload_many).load('user:7')).name}")
            await use_cached(cache, sync_cache)
            print(f"cached: {cache.stats().factory_calls} factory calls")


if __name__ == "__main__":
    asyncio.run(main())
