"""What a user's type checker sees: the public API under ``mypy --strict`` and pyright (strict).

Not a test module (pytest collects ``test_*.py`` only): ``scripts/dev.py check`` runs both
checkers on this folder, and every ``assert_type`` below is a promise of the docs. The code is
also a real program: ``python tests/typing/usage.py`` runs it on L1-only caches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from typing_extensions import assert_type

from dataferry import (
    AsyncDataFerry,
    DataFerry,
    Entry,
    EntryOptions,
    MemoryCache,
    Stats,
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


# -- a program -------------------------------------------------------------------------------


async def main() -> None:
    async with await build_async() as cache:
        await use_async(cache)
        user = await cache.get_or_set("user:1", aload)
        print(f"async: {user.name}")
    with build_sync() as sync_cache:
        use_sync(sync_cache)
        print(f"sync: {sync_cache.get_or_set('user:1', load).name}")


if __name__ == "__main__":
    asyncio.run(main())
