"""Backends and event loops: module-level caches, successive asyncio.run() calls, loops in threads.

A redis-py asyncio client belongs to the loop that opened its connections. ``RedisCache``
built by ``from_url`` / ``from_sentinel`` keeps one client per loop and closes it with its loop;
a client passed in is never rebuilt and says so with DistributedCacheError. Every test checks
what a user sees: the values, the errors, the server's connection list, and the absence of
``ResourceWarning`` / "Event loop is closed" noise once everything is collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel
import uvloop
from redis.credentials import CredentialProvider

from dataferry import DistributedCacheError, RedisCache, SQLiteCache
from tests.redis_servers import RedisCluster, RedisSentinel, RedisServer, wait_until

NAME = "df-loops"  # CLIENT SETNAME of the cache's connections, to count them on the server


# -- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def no_leak_warnings() -> Iterator[None]:
    """Fail if collecting garbage at the end warns (unclosed transports, connections...)."""
    seen: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(f"{u.exc_type.__name__}: {u.exc_value}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
            gc.collect()
            gc.collect()
    finally:
        sys.unraisablehook = previous
    seen += [f"{w.category.__name__}: {w.message}" for w in caught]
    assert seen == []


def our_connections(*servers: RedisServer) -> int:
    """How many connections the cache under test has open, over ``servers``."""
    total = 0
    for server in servers:
        if server.is_running():
            listing = server.execute("CLIENT", "LIST")
            total += sum(f" name={NAME} " in f" {line} " for line in listing.splitlines())
    return total


def closes_all(*servers: RedisServer) -> None:
    wait_until(lambda: our_connections(*servers) == 0, timeout=10, what="connections closed")


def run_in_new_loop(coro: Coroutine[Any, Any, Any], *, uv: bool = False) -> Any:
    return uvloop.run(coro) if uv else asyncio.run(coro)


async def call(cache: Any, name: str, args: tuple[Any, ...], *, is_async: bool) -> Any:
    """Call the async method ``name`` (``aget``...) or its sync twin."""
    if is_async:
        return await getattr(cache, name)(*args)
    return getattr(cache, name[1:])(*args)


async def roundtrip(cache: Any, key: str, value: bytes) -> bytes | None:
    await cache.aset(key, value, 60)
    assert await cache.acompare_and_set(key, value, value + b"!")
    assert await cache.aget_many([key]) == [value + b"!"]
    got: bytes | None = await cache.aget(key)
    return got


@pytest.fixture(params=["standalone", "cluster", "sentinel"])
def topology(request: pytest.FixtureRequest) -> tuple[Callable[[], RedisCache], list[RedisServer]]:
    """A way to build a from_url/from_sentinel cache, and the servers its data lives on."""
    if request.param == "standalone":
        server: RedisServer = request.getfixturevalue("redis_shared")
        url = request.getfixturevalue("redis_url")
        return (lambda: RedisCache.from_url(url, client_name=NAME)), [server]
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return (
            lambda: RedisCache.from_url(cluster.url, cluster=True, client_name=NAME)
        ), cluster.masters
    setup: RedisSentinel = request.getfixturevalue("redis_sentinel")
    return (
        lambda: RedisCache.from_sentinel(setup.sentinels, setup.service_name, client_name=NAME)
    ), [setup.master]


# -- one client per loop -----------------------------------------------------------------------


@pytest.mark.parametrize("uv", [False, True], ids=["asyncio", "uvloop"])
def test_a_module_level_cache_serves_successive_asyncio_runs(
    topology: tuple[Callable[[], RedisCache], list[RedisServer]], uv: bool
) -> None:
    make, servers = topology
    with no_leak_warnings():
        cache = make()  # built outside any loop, as at import time
        for i in range(3):
            value = f"run-{i}".encode()
            assert run_in_new_loop(roundtrip(cache, "k", value), uv=uv) == value + b"!"
            # The loop's client was closed when asyncio.run() ended it: nothing left open.
            closes_all(*servers)
        # Sync calls are unaffected.
        assert cache.get("k") == b"run-2!"
        cache.close()
        del cache


def test_asyncio_and_uvloop_runs_alternate(redis_url: str, redis_shared: RedisServer) -> None:
    with no_leak_warnings():
        cache = RedisCache.from_url(redis_url, client_name=NAME)
        for i, uv in enumerate([True, False, True, False]):
            assert run_in_new_loop(roundtrip(cache, "k", b"%d" % i), uv=uv) == b"%d!" % i
        closes_all(redis_shared)
        del cache


def test_loops_in_threads_at_the_same_time(
    topology: tuple[Callable[[], RedisCache], list[RedisServer]],
) -> None:
    make, servers = topology
    cache = make()
    threads = 4
    # Every loop holds its client while the others use theirs.
    all_connected = threading.Barrier(threads, timeout=20)
    results: dict[int, list[bytes | None]] = {}
    errors: list[BaseException] = []

    async def work(n: int) -> None:
        got = [await roundtrip(cache, f"t{n}", b"first-%d" % n)]
        all_connected.wait()  # blocks this loop: the others run in their own threads
        for i in range(20):
            got.append(await roundtrip(cache, f"t{n}-{i}", b"%d-%d" % (n, i)))
        results[n] = got

    def thread(n: int) -> None:
        try:
            asyncio.run(work(n))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with no_leak_warnings():
        workers = [threading.Thread(target=thread, args=(n,)) for n in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert errors == []
        for n in range(threads):
            assert results[n] == [b"first-%d!" % n] + [b"%d-%d!" % (n, i) for i in range(20)]
        closes_all(*servers)


def test_a_loop_closed_by_hand_leaves_no_open_socket_and_no_warning(
    redis_url: str, redis_shared: RedisServer
) -> None:
    # loop.close() without loop.shutdown_asyncgens(): the cache never heard that the loop
    # ended. Its client is dropped (sockets closed directly) the next time the cache is used.
    with no_leak_warnings():
        cache = RedisCache.from_url(redis_url, client_name=NAME)
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(roundtrip(cache, "k", b"a")) == b"a!"
        finally:
            loop.close()
        assert our_connections(redis_shared) == 1  # still open: nothing closed it yet
        assert asyncio.run(roundtrip(cache, "k", b"b")) == b"b!"
        closes_all(redis_shared)
        del cache, loop


def test_close_drops_the_clients_of_loops_closed_by_hand(
    redis_url: str, redis_shared: RedisServer
) -> None:
    with no_leak_warnings():
        cache = RedisCache.from_url(redis_url, client_name=NAME)
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(roundtrip(cache, "k", b"a")) == b"a!"
        finally:
            loop.close()
        cache.close()  # the sync close also sweeps closed loops
        closes_all(redis_shared)
        del cache, loop


async def test_aclose_closes_every_loops_clients(redis_url: str, redis_shared: RedisServer) -> None:
    cache = RedisCache.from_url(redis_url, client_name=NAME)
    ready = threading.Event()
    release = threading.Event()
    seen: list[bytes | None] = []

    async def other_loop() -> None:
        seen.append(await roundtrip(cache, "thread", b"t"))
        ready.set()
        await asyncio.to_thread(release.wait)  # the loop keeps running meanwhile
        seen.append(await roundtrip(cache, "thread", b"again"))  # a fresh client

    thread = threading.Thread(target=asyncio.run, args=(other_loop(),))
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 10)
        assert await roundtrip(cache, "main", b"m") == b"m!"
        assert our_connections(redis_shared) == 2
        await cache.aclose()
        # This loop's client closed at once; the other loop's is closed in that loop.
        await asyncio.to_thread(closes_all, redis_shared)
    finally:
        release.set()
        await asyncio.to_thread(thread.join)
    assert seen == [b"t!", b"again!"]
    await asyncio.to_thread(closes_all, redis_shared)
    assert await roundtrip(cache, "main", b"after") == b"after!"  # usable again
    await cache.aclose()


# -- a client passed in ------------------------------------------------------------------------


OPERATIONS: list[tuple[str, tuple[Any, ...]]] = [
    ("aget", ("k",)),
    ("aget_many", (["k"],)),
    ("aset", ("k", b"v", 60.0)),
    ("aset_many", ([("k", b"v", 60.0)],)),
    ("acompare_and_set", ("k", b"v", b"w")),
    ("attl", ("k",)),
    ("adelete", ("k",)),
    ("adelete_many", (["k"],)),
]


@pytest.fixture(params=["standalone", "cluster", "sentinel"])
def make_user_client(request: pytest.FixtureRequest) -> Callable[[], Any]:
    """Builds an asyncio client as a user would, of each kind (the test owns it)."""
    if request.param == "standalone":
        url = request.getfixturevalue("redis_url")
        return lambda: redis.asyncio.Redis.from_url(url)
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return lambda: redis.asyncio.RedisCluster.from_url(cluster.url)
    setup: RedisSentinel = request.getfixturevalue("redis_sentinel")

    def build() -> Any:
        sentinel = redis.asyncio.sentinel.Sentinel(setup.sentinels)  # type: ignore[no-untyped-call]
        return sentinel.master_for(setup.service_name)

    return build


def test_a_client_passed_in_is_refused_in_another_loop(
    make_user_client: Callable[[], Any],
) -> None:
    holder = [RedisCache(make_user_client())]
    assert asyncio.run(roundtrip(holder[0], "k", b"v")) == b"v!"

    async def every_operation_fails(cache: RedisCache) -> None:
        for name, args in OPERATIONS:
            with pytest.raises(DistributedCacheError, match="another event loop") as info:
                await getattr(cache, name)(*args)
            assert "closed" in str(info.value)

    asyncio.run(every_operation_fails(holder[0]))
    # The cache never touched the client: its connections are still those of the first loop,
    # which its owner forgot to close (the warnings that earns are the owner's, not ours).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        holder.clear()
        gc.collect()


def test_a_client_closed_by_its_owner_moves_to_the_next_loop(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    cache = RedisCache(client)

    async def use_then_close(value: bytes) -> bytes | None:
        try:
            return await roundtrip(cache, "k", value)
        finally:
            await client.aclose()  # the owner closes it before its loop ends

    with no_leak_warnings():
        assert asyncio.run(use_then_close(b"a")) == b"a!"
        assert asyncio.run(use_then_close(b"b")) == b"b!"


def test_a_client_passed_in_is_refused_while_its_loop_runs_elsewhere(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    cache = RedisCache(client)
    ready = threading.Event()
    done = threading.Event()

    async def owner() -> None:
        await roundtrip(cache, "k", b"owner")
        ready.set()
        await asyncio.to_thread(done.wait)  # the loop keeps running meanwhile
        assert await cache.aget("k") == b"owner!"  # still fine in its own loop
        await client.aclose()

    thread = threading.Thread(target=asyncio.run, args=(owner(),))
    thread.start()
    try:
        assert ready.wait(10)

        async def intruder() -> None:
            with pytest.raises(DistributedCacheError, match="still running"):
                await cache.aget("k")

        asyncio.run(intruder())
    finally:
        done.set()
        thread.join()


# -- SQLite ------------------------------------------------------------------------------------


def _open_fds(path: Path) -> int:
    """How many descriptors this process has open on the database file (one per connection)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                count += 1
    return count


@pytest.mark.parametrize("inline_reads", [True, False])
def test_sqlite_serves_successive_asyncio_runs_without_leaking(
    tmp_path: Path, inline_reads: bool
) -> None:
    path = tmp_path / "l2.sqlite"
    # A connection per thread: this one, and at most the default executor's workers of the
    # latest run. Those of finished runs are closed, or the count would grow with every run.
    bound = 1 + min(32, (os.cpu_count() or 1) + 4)
    with no_leak_warnings():
        cache = SQLiteCache(path, inline_reads=inline_reads)
        counts = []
        for i in range(40):
            assert asyncio.run(roundtrip(cache, "k", b"%d" % i)) == b"%d!" % i
            counts.append(_open_fds(path))
        assert 1 <= max(counts) <= bound, counts
        assert cache.get("k") == b"39!"
        cache.close()
        assert _open_fds(path) == 0


def test_sqlite_serves_loops_in_threads_at_the_same_time(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "l2.sqlite")
    errors: list[BaseException] = []

    def thread(n: int) -> None:
        async def work() -> None:
            for i in range(30):
                assert await roundtrip(cache, f"t{n}-{i}", b"%d" % i) == b"%d!" % i

        try:
            asyncio.run(work())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=thread, args=(n,)) for n in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    cache.close()
    assert errors == []


# -- any driver exception is a DistributedCacheError ---------------------------------------------


class FailingCredentials(CredentialProvider):
    """A credential provider whose secret store fails: redis-py lets its error through."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        raise self.error

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [RuntimeError("vault sealed"), ValueError("bad secret"), TypeError("not a str")],
    ids=["RuntimeError", "ValueError", "TypeError"],
)
@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
@pytest.mark.parametrize(("name", "args"), OPERATIONS, ids=[name for name, _ in OPERATIONS])
async def test_any_driver_exception_becomes_distributed_cache_error(
    redis_url: str, error: Exception, is_async: bool, name: str, args: tuple[Any, ...]
) -> None:
    # A fresh cache per operation: its first connection meets the failing provider.
    cache = RedisCache.from_url(redis_url, credential_provider=FailingCredentials(error))
    try:
        with pytest.raises(DistributedCacheError) as info:
            await call(cache, name, args, is_async=is_async)
        assert info.value.__cause__ is error
        assert type(error).__name__ in str(info.value)
    finally:
        await cache.aclose()
        cache.close()


def test_keyboard_interrupt_passes_through(redis_url: str) -> None:
    cache = RedisCache.from_url(
        redis_url, credential_provider=FailingCredentials(KeyboardInterrupt())
    )
    try:
        with pytest.raises(KeyboardInterrupt):
            cache.get("k")
    finally:
        cache.close()


async def test_cancellation_passes_through(redis_server: RedisServer) -> None:
    cache = RedisCache.from_url(redis_server.url, socket_timeout=30)
    await cache.aset("k", b"v", 60)
    redis_server.freeze()
    try:
        # wait_for cancels the GET stuck on the frozen server. Had the backend turned the
        # CancelledError into a DistributedCacheError, wait_for would raise that instead.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(cache.aget("k"), 0.2)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(cache.aset_many([("a", b"1", 60.0)]), 0.2)
    finally:
        redis_server.resume()
    assert await cache.aget("k") == b"v"  # the cancelled connections were dropped, not reused
    await cache.aclose()
