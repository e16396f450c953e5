"""The distributed lock of the L2 backends: mutual exclusion, token-checked release and extend,
expiry of a crashed holder's lock, on Redis (standalone and Cluster) and SQLite (across
processes), from both halves."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import secrets
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis

from dataferry import ConfigurationError, DistributedCacheError, RedisCache, SQLiteCache
from dataferry._async._redis_ops import EXTEND_SHA, RELEASE_SHA
from tests.redis_servers import RedisCluster
from tests.test_backends import Half, make_backend, wait_until


def token() -> bytes:
    return secrets.token_bytes(16)


@pytest.fixture(params=["redis", "cluster", "sqlite", "sqlite-memory"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["async", "sync"])
async def l2(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> AsyncIterator[Half]:
    cache, cleanup = await make_backend(kind, request, tmp_path)
    try:
        yield Half(cache, request.param == "async")
    finally:
        await cleanup()


# -- the contract, on every backend and both halves ------------------------------------------


async def test_a_held_lock_is_not_taken_again(l2: Half) -> None:
    mine, theirs = token(), token()
    assert await l2.acquire_lock("{k}:lock", mine, 30) is True
    assert await l2.acquire_lock("{k}:lock", theirs, 30) is False
    assert await l2.acquire_lock("{k}:lock", mine, 30) is False  # not re-entrant either
    assert await l2.acquire_lock("{other}:lock", theirs, 30) is True  # locks are per name


async def test_only_the_holders_token_releases_the_lock(l2: Half) -> None:
    mine, theirs = token(), token()
    assert await l2.release_lock("{k}:lock", mine) is False  # nothing to release
    assert await l2.acquire_lock("{k}:lock", mine, 30)
    assert await l2.release_lock("{k}:lock", theirs) is False
    assert await l2.acquire_lock("{k}:lock", theirs, 30) is False  # still held by mine
    assert await l2.release_lock("{k}:lock", mine) is True
    assert await l2.release_lock("{k}:lock", mine) is False  # released once only
    assert await l2.acquire_lock("{k}:lock", theirs, 30) is True  # free again


async def test_a_crashed_holders_lock_expires(l2: Half) -> None:
    crashed, waiter = token(), token()
    assert await l2.acquire_lock("{k}:lock", crashed, 0.2)
    # The holder never releases: another caller gets the lock once its ttl ran out.
    assert await l2.acquire_lock("{k}:lock", waiter, 30) is False
    await wait_until(lambda: l2.acquire_lock("{k}:lock", waiter, 30))
    # The late holder can neither release nor extend the lock that is now someone else's.
    assert await l2.release_lock("{k}:lock", crashed) is False
    assert await l2.extend_lock("{k}:lock", crashed, 30) is False
    assert await l2.acquire_lock("{k}:lock", token(), 30) is False
    assert await l2.release_lock("{k}:lock", waiter) is True


async def test_extend_keeps_only_the_holders_lock(l2: Half) -> None:
    mine, theirs = token(), token()
    assert await l2.extend_lock("{k}:lock", mine, 30) is False  # not held: nothing to extend
    assert await l2.acquire_lock("{k}:lock", mine, 0.2)
    assert await l2.acquire_lock("{short}:lock", mine, 0.2)  # the same ttl, not extended
    assert await l2.extend_lock("{k}:lock", theirs, 30) is False
    assert await l2.extend_lock("{k}:lock", mine, 30) is True
    # Once the unextended lock has expired, the extended one (taken at the same time) is held.
    await wait_until(lambda: l2.acquire_lock("{short}:lock", theirs, 30))
    assert await l2.acquire_lock("{k}:lock", theirs, 30) is False
    assert await l2.release_lock("{k}:lock", mine) is True


async def test_locks_and_entries_do_not_mix(l2: Half) -> None:
    # The cache's entries and its locks share nothing but the store: an entry stays intact
    # while a lock of another name comes and goes.
    await l2.set("{k}", b"value", 30)
    assert await l2.acquire_lock("{k}:lock", b"t" * 16, 30)
    assert await l2.get("{k}") == b"value"
    assert await l2.release_lock("{k}:lock", b"t" * 16)
    assert await l2.get("{k}") == b"value"


async def test_one_of_many_concurrent_acquirers_wins(l2: Half) -> None:
    tokens = [token() for _ in range(20)]
    if l2.is_async:
        # redis-py 8.1's asyncio RedisCluster fails some of a burst of first commands on a
        # client not yet initialized (with or without DataFerry; reported to the lead): warm
        # it, so that this test is about the lock.
        await l2.get("{k}")
        # One event loop's writes: on SQLite they share one group-commit transaction.
        won = await asyncio.gather(*(l2.acquire_lock("{k}:lock", t, 30) for t in tokens))
    else:
        won = [False] * len(tokens)
        start = threading.Barrier(len(tokens))

        def take(i: int) -> None:
            start.wait()
            won[i] = l2.cache.acquire_lock("{k}:lock", tokens[i], 30)

        threads = [threading.Thread(target=take, args=(i,)) for i in range(len(tokens))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert won.count(True) == 1
    winner = tokens[won.index(True)]
    assert await l2.release_lock("{k}:lock", winner) is True


BAD_ARGUMENTS = [
    pytest.param("{k}:lock", b"", 30, id="empty-token"),
    pytest.param("{k}:lock", "token-as-str", 30, id="str-token"),
    pytest.param("{k}:lock", bytearray(b"t" * 16), 30, id="bytearray-token"),
    pytest.param("{k}:lock", None, 30, id="no-token"),
    pytest.param("{k}:lock", b"t" * 16, 0, id="zero-ttl"),
    pytest.param("{k}:lock", b"t" * 16, -1.0, id="negative-ttl"),
    pytest.param("{k}:lock", b"t" * 16, float("nan"), id="nan-ttl"),
    pytest.param("{k}:lock", b"t" * 16, float("inf"), id="infinite-ttl"),
    pytest.param("{k}:lock", b"t" * 16, True, id="bool-ttl"),
    pytest.param("{k}:lock", b"t" * 16, "30", id="str-ttl"),
    pytest.param("", b"t" * 16, 30, id="empty-name"),
    pytest.param(b"{k}:lock", b"t" * 16, 30, id="bytes-name"),
]


@pytest.mark.parametrize(("name", "tok", "ttl"), BAD_ARGUMENTS)
@pytest.mark.parametrize("backend", ["redis", "sqlite"])
@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_bad_lock_arguments_raise_configuration_error(
    tmp_path: Path, backend: str, is_async: bool, name: Any, tok: Any, ttl: Any
) -> None:
    # Refused before any I/O: nothing listens on port 1 (a DistributedCacheError otherwise),
    # and the SQLite file is never created.
    cache: Any = (
        RedisCache.from_url("redis://127.0.0.1:1")
        if backend == "redis"
        else SQLiteCache(tmp_path / "l2.sqlite")
    )
    half = Half(cache, is_async)
    try:
        with pytest.raises(ConfigurationError, match="lock"):
            await half.acquire_lock(name, tok, ttl)
        with pytest.raises(ConfigurationError, match="lock"):
            await half.extend_lock(name, tok, ttl)
        if ttl == 30:  # release takes no ttl
            with pytest.raises(ConfigurationError, match="lock"):
                await half.release_lock(name, tok)
        assert not (tmp_path / "l2.sqlite").exists()
    finally:
        await cache.aclose()
        cache.close()


def test_a_bad_token_is_not_shown_in_the_error() -> None:
    # A str token is a caller's bug, but it may be the real secret: the message names its type.
    cache = SQLiteCache(":memory:")
    with pytest.raises(ConfigurationError) as info:
        cache.acquire_lock("{k}:lock", "s3cret-token", 30)  # type: ignore[arg-type]
    assert "s3cret" not in str(info.value)
    assert "str" in str(info.value)
    cache.close()


# -- RedisCache ------------------------------------------------------------------------------


@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_redis_lock_errors_are_distributed_cache_errors(is_async: bool) -> None:
    half = Half(RedisCache.from_url("redis://127.0.0.1:1"), is_async)  # nothing listens
    try:
        for call in (
            half.acquire_lock("{k}:lock", token(), 30),
            half.release_lock("{k}:lock", token()),
            half.extend_lock("{k}:lock", token(), 30),
        ):
            with pytest.raises(DistributedCacheError, match="lock") as info:
                await call
            assert isinstance(info.value.__cause__, (redis.RedisError, OSError))
    finally:
        await half.close()


async def test_redis_lock_is_a_plain_key_with_a_millisecond_ttl(redis_url: str) -> None:
    cache = RedisCache.from_url(redis_url)
    mine = token()
    with redis.Redis.from_url(redis_url) as raw:
        try:
            assert await cache.aacquire_lock("{k}:lock", mine, 2.2)
            assert raw.get("{k}:lock") == mine
            assert 1500 < raw.pttl("{k}:lock") <= 2200
            assert cache.extend_lock("{k}:lock", mine, 30.0004)
            assert 29_000 < raw.pttl("{k}:lock") <= 30_000
            assert cache.acquire_lock("{t}:lock", mine, 0.0001)  # rounds up to 1 ms, not 0
            assert await cache.arelease_lock("{k}:lock", mine)
            assert raw.exists("{k}:lock") == 0
        finally:
            await cache.aclose()
            cache.close()


@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_redis_lock_scripts_reload_after_a_flush(redis_url: str, is_async: bool) -> None:
    half = Half(RedisCache.from_url(redis_url), is_async)
    mine = token()
    with redis.Redis.from_url(redis_url) as raw:
        try:
            assert await half.acquire_lock("{k}:lock", mine, 30)
            raw.script_flush()  # a restarted or failed-over server has no scripts cached
            assert await half.extend_lock("{k}:lock", mine, 60)
            assert await half.release_lock("{k}:lock", mine)
            assert raw.script_exists(RELEASE_SHA, EXTEND_SHA) == [True, True]
        finally:
            await half.close()


@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_cluster_locks_work_on_every_master(
    redis_cluster: RedisCluster, is_async: bool
) -> None:
    cache = RedisCache.from_url(redis_cluster.url, cluster=True)
    half = Half(cache, is_async)
    # Hash-tagged as the facade does: each lock sits in the slot of the key it guards.
    names = [f"{{key-{i}}}:lock" for i in range(40)]
    mine, theirs = token(), token()
    with redis.RedisCluster.from_url(redis_cluster.url) as raw:
        assert len({raw.get_node_from_key(n).port for n in names}) == 3
        for master in redis_cluster.masters:  # no script cached anywhere: NOSCRIPT first
            master.execute("SCRIPT", "FLUSH")
        try:
            for name in names:
                assert await half.acquire_lock(name, mine, 30)
                assert await half.acquire_lock(name, theirs, 30) is False
                assert await half.release_lock(name, theirs) is False
                assert await half.extend_lock(name, mine, 60)
            assert all(raw.get(n) == mine for n in names)
            assert all(30_000 < raw.pttl(n) <= 60_000 for n in names)
            for name in names:
                assert await half.release_lock(name, mine)
            assert [raw.exists(n) for n in names] == [0] * len(names)
        finally:
            await cache.aclose()
            cache.close()


# -- SQLiteCache -----------------------------------------------------------------------------

# Exit codes of the lock children: the outcome crosses the process boundary without a queue
# (whose feeder thread os._exit would cut short).
TOOK, MISSED = 10, 11


def _contend(path: str, index: int, start: Any) -> None:
    """In a child process: race the others for one lock, then die without releasing it."""
    cache = SQLiteCache(path)
    if index == 0:
        # A holder that crashes: its short lock must free itself.
        assert cache.acquire_lock("crashed", b"child-0-token-16", 0.3)
    start.wait(30)
    mine = f"child-{index}-token".encode().ljust(16, b".")
    if index % 2:
        took = asyncio.run(cache.aacquire_lock("contended", mine, 60))
    else:
        took = cache.acquire_lock("contended", mine, 60)
    os._exit(TOOK if took else MISSED)  # a crash: no release, no close


async def test_sqlite_lock_excludes_other_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "l2.sqlite")
    SQLiteCache(path).close()  # nothing opened: the children race for the file too
    context = multiprocessing.get_context("spawn")
    count = 4
    start = context.Barrier(count)
    children = [context.Process(target=_contend, args=(path, i, start)) for i in range(count)]
    for child in children:
        child.start()
    for child in children:
        await asyncio.to_thread(child.join, 60)
    codes = [child.exitcode for child in children]
    assert (codes.count(TOOK), codes.count(MISSED)) == (1, count - 1), codes
    cache = SQLiteCache(path)
    try:
        # The winner died holding the lock: held until its ttl, by no token of ours.
        assert await cache.aacquire_lock("contended", token(), 60) is False
        assert cache.release_lock("contended", token()) is False
        # The crashed holder's short lock is free once its ttl ran out.
        await wait_until(lambda: cache.aacquire_lock("crashed", b"parent-token-16b", 30))
        assert cache.acquire_lock("crashed", token(), 30) is False
    finally:
        await cache.aclose()


async def test_sqlite_locks_outlive_connections_and_crashed_ones_are_purged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "l2.sqlite"
    # purge_every=1: every write purges the expired entries, and the locks of crashed holders
    # (rows in the dataferry_locks table the class docstring describes).
    cache = SQLiteCache(path, purge_every=1)
    mine = token()
    try:
        assert cache.acquire_lock("held", mine, 60)
        assert await cache.aacquire_lock("crashed", token(), 0.05)
        cache.close()  # what another process sees: a new connection
        assert await cache.aacquire_lock("held", token(), 60) is False

        async def crashed_lock_purged() -> bool:
            await cache.aset("k", b"v", 60)  # a write: the purge runs
            with contextlib.closing(sqlite3.connect(path)) as raw:
                names = {name for (name,) in raw.execute("SELECT name FROM dataferry_locks")}
            return names == {"held"}

        await wait_until(crashed_lock_purged)
        assert cache.release_lock("held", mine)
    finally:
        await cache.aclose()
