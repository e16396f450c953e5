"""Backends under real faults: killed, stopped, frozen and restarted servers, failovers, bad files.

Whatever happens to the store, a backend raises DistributedCacheError (never a driver
exception) and works again once the store is back, without being rebuilt. SQLite's self-repair
of corrupt files is tested in tests/test_backend_sqlite_repair.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import RedisClusterException

from dataferry import DistributedCacheError, RedisCache, SQLiteCache
from tests.redis_servers import RedisCluster, RedisSentinel, RedisServer
from tests.test_backends import Half, wait_until

SOCKET_TIMEOUT = 0.2


def assert_translated(exc: BaseException, *causes: type[BaseException]) -> None:
    """``exc`` is our error, not the driver's, and chains the driver's error."""
    assert type(exc) is DistributedCacheError
    assert not isinstance(exc, redis.RedisError)
    assert isinstance(exc.__cause__, causes), repr(exc.__cause__)


def recovers(operation: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[bool]]:
    """A predicate for wait_until: the operation succeeds (DistributedCacheError = not yet)."""

    async def attempt() -> bool:
        try:
            await operation()
        except DistributedCacheError:
            return False
        return True

    return attempt


@pytest.fixture(params=["async", "sync"])
async def half(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Half]:
    cache = RedisCache.from_url(
        redis_server.url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
    )
    try:
        yield Half(cache, request.param == "async")
    finally:
        redis_server.ensure_running()
        await cache.aclose()
        cache.close()


# Every method of the protocol, with arguments.
OPERATIONS: list[tuple[str, tuple[Any, ...]]] = [
    ("get", ("k",)),
    ("get_many", (["k", "other"],)),
    ("set", ("k", b"v", 60.0)),
    ("set_many", ([("k", b"v", 60.0), ("other", b"w", 60.0)],)),
    ("compare_and_set", ("k", b"v", b"w")),
    ("ttl", ("k",)),
    ("delete", ("k",)),
    ("delete_many", (["k", "other"],)),
]


@pytest.mark.parametrize("stop", ["kill", "stop"])
async def test_dead_server_raises_distributed_cache_error(
    half: Half, redis_server: RedisServer, stop: str
) -> None:
    await half.set("k", b"v", 60)
    getattr(redis_server, stop)()
    for name, args in OPERATIONS:
        with pytest.raises(DistributedCacheError) as info:
            await getattr(half, name)(*args)
        assert_translated(info.value, redis.ConnectionError)


async def test_frozen_server_times_out_as_distributed_cache_error(
    half: Half, redis_server: RedisServer
) -> None:
    await half.set("k", b"v", 60)
    redis_server.freeze()
    # The socket timeout fires (the cause is redis-py's TimeoutError), instead of a hang.
    with pytest.raises(DistributedCacheError) as info:
        await half.get("k")
    assert_translated(info.value, redis.TimeoutError)
    with pytest.raises(DistributedCacheError) as info:
        await half.set_many([("a", b"1", 60.0)])
    assert_translated(info.value, redis.TimeoutError)
    redis_server.resume()
    await wait_until(recovers(lambda: half.get("k")))
    assert await half.get("k") == b"v"


async def test_a_reply_that_came_too_late_is_never_read_by_a_later_command(
    half: Half, redis_server: RedisServer
) -> None:
    # RedisCache.from_url sends GET, MGET and SET on connections it keeps out of redis-py's
    # pool (dataferry._async._direct): one that timed out must never serve its late reply.
    await half.set_many([("one", b"1", 60.0), ("two", b"2", 60.0)])
    redis_server.freeze()
    with pytest.raises(DistributedCacheError):
        await half.get("one")  # sent; its reply comes once the server is resumed
    with pytest.raises(DistributedCacheError):
        await half.get_many(["one", "two"])
    with pytest.raises(DistributedCacheError):
        await half.set_many([("three", b"3", 60.0), ("one", b"1", 60.0)])
    redis_server.resume()
    await wait_until(recovers(lambda: half.get("two")))
    for _ in range(3):
        assert await half.get("two") == b"2"
        assert await half.get_many(["two", "one"]) == [b"2", b"1"]
        assert await half.get("one") == b"1"


async def test_an_error_reply_in_a_batch_leaves_no_reply_behind(
    half: Half, redis_server: RedisServer
) -> None:
    # set_many sends its SETs in one write and reads the replies in turn: the first error
    # reply raises, and the replies after it must never be read by a later command.
    await half.set("k", b"v", 60)
    redis_server.execute("CONFIG", "SET", "maxmemory", "1")  # every write is refused (OOM)
    try:
        with pytest.raises(DistributedCacheError) as info:
            await half.set_many([("a", b"1", 60.0), ("b", b"2", 60.0), ("c", b"3", 60.0)])
        assert "maxmemory" in str(info.value)
    finally:
        redis_server.execute("CONFIG", "SET", "maxmemory", "0")
    assert await half.get("k") == b"v"
    assert await half.get_many(["k", "a", "b"]) == [b"v", None, None]
    await half.set_many([("a", b"1", 60.0), ("b", b"2", 60.0)])
    assert await half.get_many(["a", "b", "k"]) == [b"1", b"2", b"v"]


async def test_a_cancelled_read_leaves_no_reply_behind(redis_server: RedisServer) -> None:
    cache = RedisCache.from_url(redis_server.url, socket_timeout=5.0)
    try:
        await cache.aset("one", b"1", 60)
        await cache.aset("two", b"2", 60)
        redis_server.freeze()
        with pytest.raises(asyncio.TimeoutError):
            # wait_for cancels the read in flight when its time is up.
            await asyncio.wait_for(cache.aget("one"), timeout=0.2)
        redis_server.resume()
        assert await cache.aget("two") == b"2"
        assert await cache.aget("one") == b"1"
    finally:
        redis_server.ensure_running()
        await cache.aclose()


async def test_every_value_redis_py_takes_is_stored_as_its_bytes(
    half: Half, redis_server: RedisServer
) -> None:
    # GET, MGET and SET are packed by hiredis on this path; it refuses a bytearray, which
    # redis-py's own packer takes. Non-ASCII keys go as UTF-8, as redis-py sends them.
    await half.set("clé:ключ", bytearray(b"\x00one"), 60)
    await half.set("view", memoryview(b"two\r\n"), 60)
    assert await half.get_many(["clé:ключ", "view", "none"]) == [b"\x00one", b"two\r\n", None]
    assert redis_server.execute("GET", "clé:ключ", decode=False) == b"\x00one"
    with pytest.raises(DistributedCacheError):
        await half.set("k", ["not", "bytes"], 60)  # type: ignore[arg-type]
    assert await half.get("k") is None


async def test_connections_the_server_dropped_while_idle_are_replaced_without_an_error(
    half: Half, redis_server: RedisServer
) -> None:
    await half.set("k", b"v", 60)
    assert await half.get("k") == b"v"  # the cache now holds an idle connection
    # A server restart or its idle timeout ends connections the cache is not using.
    redis_server.execute("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert await half.get("k") == b"v"
    redis_server.execute("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert await half.get_many(["k", "nothing"]) == [b"v", None]
    redis_server.execute("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    await half.set("k", b"w", 60)
    assert await half.get("k") == b"w"


async def test_many_reads_at_once_share_the_pool_with_the_other_commands(
    redis_server: RedisServer,
) -> None:
    # redis-py's pool: 100 connections. 60 open at once here: on a loaded machine one may
    # take longer than the default 0.25 s connect timeout, which is not what this tests.
    cache = RedisCache.from_url(redis_server.url, socket_timeout=5, socket_connect_timeout=5)
    try:
        await cache.aset("k", b"v", 60)
        values = await asyncio.gather(*(cache.aget("k") for _ in range(60)))
        assert values == [b"v"] * 60
        # A quarter of the pool (25) is kept for the next reads; the other connections went
        # back to the pool, where the client's other commands find them: nothing new opens.
        opened = int(redis_server.info("stats")["total_connections_received"])
        await asyncio.gather(*(cache.aset_many([("k", b"w", 60.0)]) for _ in range(30)))
        assert await asyncio.gather(*(cache.aget("k") for _ in range(25))) == [b"w"] * 25
        # (+1: info() reads the count on a connection of its own)
        assert int(redis_server.info("stats")["total_connections_received"]) == opened + 1
    finally:
        await cache.aclose()


async def test_restarted_server_works_again_with_the_same_cache(
    half: Half, redis_server: RedisServer
) -> None:
    await half.set("k", b"v", 60)
    redis_server.kill()
    with pytest.raises(DistributedCacheError):
        await half.get("k")
    redis_server.restart()
    await wait_until(recovers(lambda: half.get("k")))
    assert await half.get("k") is None  # the test servers keep nothing across restarts
    await half.set("k", b"again", 60)
    assert await half.get("k") == b"again"


async def holds(check: Callable[[], bool]) -> bool:
    """An async predicate for wait_until, from a plain one (yields to the workers)."""
    await asyncio.sleep(0)
    return check()


async def test_async_load_survives_a_kill_and_restart(redis_server: RedisServer) -> None:
    cache = RedisCache.from_url(redis_server.url, socket_timeout=SOCKET_TIMEOUT)
    failures: list[BaseException] = []
    successes = [0]  # successes since the last reset
    done = asyncio.Event()

    async def worker(n: int) -> None:
        i = 0
        while not done.is_set():
            i += 1
            try:
                await cache.aset(f"w{n}", str(i).encode(), 60)
                assert await cache.aget(f"w{n}") == str(i).encode()
            except Exception as exc:
                failures.append(exc)
            else:
                successes[0] += 1
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(worker(n)) for n in range(4)]
    try:
        await wait_until(lambda: holds(lambda: successes[0] >= 20))
        redis_server.kill()
        await wait_until(lambda: holds(lambda: len(failures) >= 4))
        redis_server.restart()
        successes[0] = 0
        await wait_until(lambda: holds(lambda: successes[0] >= 20))
    finally:
        done.set()
        await asyncio.gather(*tasks)
        await cache.aclose()
    assert all(type(exc) is DistributedCacheError for exc in failures), failures[:3]


def test_sync_load_from_threads_survives_a_stop(redis_server: RedisServer) -> None:
    cache = RedisCache.from_url(redis_server.url, socket_timeout=SOCKET_TIMEOUT)
    failures: list[BaseException] = []
    after_restart = threading.Event()
    recovered = threading.Event()
    done = threading.Event()

    def worker(n: int) -> None:
        while not done.is_set():
            try:
                cache.set(f"w{n}", b"v", 60)
                cache.get_many([f"w{n}", "other"])
            except BaseException as exc:
                failures.append(exc)
            else:
                if after_restart.is_set():
                    recovered.set()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        redis_server.stop()
        deadline = time.monotonic() + 10
        while not failures and time.monotonic() < deadline:
            time.sleep(0.01)
        redis_server.restart()
        after_restart.set()
        assert recovered.wait(10)
    finally:
        done.set()
        for t in threads:
            t.join()
        cache.close()
    assert failures
    assert all(type(exc) is DistributedCacheError for exc in failures)


async def test_sentinel_failover_is_followed_by_both_halves() -> None:
    with RedisSentinel() as setup:
        cache = RedisCache.from_sentinel(
            setup.sentinels, setup.service_name, socket_timeout=SOCKET_TIMEOUT
        )
        try:
            await cache.aset("k", b"before", 60)
            cache.set("s", b"before", 60)
            setup.failover()

            async def write_and_read(half: Half) -> None:
                await half.set("k2", b"after", 60)
                assert await half.get("k2") == b"after"

            for is_async in (True, False):
                half = Half(cache, is_async)
                await wait_until(recovers(functools.partial(write_and_read, half)))
            assert setup.master.execute("GET", "k2") == "after"
        finally:
            await cache.aclose()
            cache.close()


async def test_cluster_node_loss_and_return(redis_cluster: RedisCluster) -> None:
    cache = RedisCache.from_url(redis_cluster.url, cluster=True, socket_timeout=SOCKET_TIMEOUT)
    keys = [f"key-{i}" for i in range(30)]
    victim = redis_cluster.masters[1]
    with redis.RedisCluster.from_url(redis_cluster.url) as raw:
        on_victim = [k for k in keys if raw.get_node_from_key(k).port == victim.port]
    assert on_victim
    halves = [Half(cache, True), Half(cache, False)]
    try:
        for half in halves:
            await half.set_many([(k, b"v", 60.0) for k in keys])
        victim.kill()
        for half in halves:
            with pytest.raises(DistributedCacheError) as info:
                await half.get(on_victim[0])
            assert_translated(info.value, redis.RedisError, RedisClusterException)
        victim.restart()
        redis_cluster.wait_ok()
        items = [(k, b"w", 60.0) for k in keys]
        for half in halves:
            await wait_until(recovers(functools.partial(half.set_many, items)))
            assert await half.get_many(keys) == [b"w"] * len(keys)
    finally:
        await cache.aclose()
        cache.close()


# -- SQLite ------------------------------------------------------------------------------------


@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_sqlite_lock_held_too_long_raises_distributed_cache_error(
    tmp_path: Path, is_async: bool
) -> None:
    path = tmp_path / "l2.sqlite"
    cache = SQLiteCache(path, busy_timeout=0.05)
    cache.set("k", b"v", 60)
    half = Half(cache, is_async)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(DistributedCacheError) as info:
            await half.set_many([("a", b"1", 60.0)])
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        holder.execute("ROLLBACK")
    await half.set_many([("a", b"1", 60.0)])
    assert await half.get("a") == b"1"
    await half.close()
