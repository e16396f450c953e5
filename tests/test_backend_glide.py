"""GlideCache, the L2 on Valkey GLIDE: what it promises beyond the L2 contract.

The contract itself (both halves, standalone and Cluster) runs in tests/test_backends.py; the
lock contract is run here on GLIDE by importing its tests from tests/test_backend_locks.py.
Here: URLs, clients passed in, closed clients, faults on real servers, event loops, and both
halves on one object.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import glide
import glide_sync
import pytest
import redis
from glide_shared.exceptions import ClosingError, GlideError
from glide_shared.exceptions import TimeoutError as GlideTimeoutError

from dataferry import (
    AsyncDataFerry,
    ConfigurationError,
    DataFerry,
    DistributedCache,
    DistributedCacheError,
    GlideCache,
)
from dataferry._async._redis_ops import CAS_SHA, EXTEND_SHA, RELEASE_SHA
from tests.redis_servers import RedisCluster, RedisServer
from tests.redis_servers import wait_until as wait_until_sync
from tests.test_backend_faults import OPERATIONS, assert_translated, recovers
from tests.test_backend_locks import (  # the lock contract, run here on GlideCache too
    test_a_crashed_holders_lock_expires,
    test_a_held_lock_is_not_taken_again,
    test_extend_keeps_only_the_holders_lock,
    test_locks_and_entries_do_not_mix,
    test_one_of_many_concurrent_acquirers_wins,
    test_only_the_holders_token_releases_the_lock,
)
from tests.test_backend_loops import no_leak_warnings, roundtrip
from tests.test_backends import SPREAD, Half, make_backend, wait_until

# The imported lock tests are collected in this module too, with its `kind` and `l2` fixtures.
__all__ = [
    "test_a_crashed_holders_lock_expires",
    "test_a_held_lock_is_not_taken_again",
    "test_extend_keeps_only_the_holders_lock",
    "test_locks_and_entries_do_not_mix",
    "test_one_of_many_concurrent_acquirers_wins",
    "test_only_the_holders_token_releases_the_lock",
]

NAME = "df-glide"  # CLIENT SETNAME of the cache's connections, to count them on the server
FAST = 0.1  # request timeout of the fault tests: a dead server costs each call this long


def token() -> bytes:
    return secrets.token_bytes(16)


def our_connections(server: RedisServer) -> int:
    """How many connections the caches under test (client name NAME) have open on ``server``."""
    listing = server.execute("CLIENT", "LIST")
    return sum(f" name={NAME} " in f" {line} " for line in listing.splitlines())


def closes_all(server: RedisServer) -> None:
    wait_until_sync(lambda: our_connections(server) == 0, timeout=10, what="connections closed")


@pytest.fixture(params=["glide", "glide-cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["async", "sync"])
async def l2(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> AsyncIterator[Half]:
    cache, cleanup = await make_backend(kind, request, tmp_path)
    try:
        yield Half(cache, request.param == "async")
    finally:
        await cleanup()


@pytest.fixture(params=["async", "sync"])
def is_async(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "async")


# -- from_url ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["redis", "valkey"])
async def test_from_url_uses_the_database_of_the_url(
    redis_shared: RedisServer, redis_url: str, scheme: str, is_async: bool
) -> None:
    url = f"{scheme}://127.0.0.1:{redis_shared.port}/3"
    half = Half(GlideCache.from_url(url), is_async)
    try:
        await half.set("k", b"in-3", 60)
        with redis_shared.client(db=3) as raw3, redis_shared.client(db=0) as raw0:
            assert raw3.get("k") == b"in-3"
            assert raw0.get("k") is None
        assert await half.get("k") == b"in-3"
    finally:
        await half.close()
    # No database in the URL: database 0.
    half = Half(GlideCache.from_url(f"{scheme}://127.0.0.1:{redis_shared.port}"), is_async)
    try:
        await half.set("k", b"in-0", 60)
        with redis_shared.client(db=0) as raw0:
            assert raw0.get("k") == b"in-0"
    finally:
        await half.close()


async def test_from_url_authenticates_with_the_password_of_the_url(
    redis_server: RedisServer, is_async: bool
) -> None:
    server = redis_server  # a server of this test's own: it gets a password
    server.execute("CONFIG", "SET", "requirepass", "s3cret")
    for userinfo in (":s3cret", "default:s3cret"):
        url = f"redis://{userinfo}@127.0.0.1:{server.port}/0"
        cache = GlideCache.from_url(url)
        assert "s3cret" not in repr(cache)
        half = Half(cache, is_async)
        try:
            await half.set("k", b"v", 60)
            assert await half.get("k") == b"v"
        finally:
            await half.close()
    wrong = Half(GlideCache.from_url(f"redis://:wrong@127.0.0.1:{server.port}/0"), is_async)
    try:
        with pytest.raises(DistributedCacheError) as info:
            await wrong.get("k")
        assert isinstance(info.value.__cause__, GlideError)
        assert "wrong" not in str(info.value)
    finally:
        await wrong.close()


async def test_a_tls_url_speaks_tls(redis_shared: RedisServer, redis_url: str) -> None:
    # The harness's servers speak plain TCP: a TLS handshake with them fails, where the same
    # address without TLS works.
    for scheme in ("rediss", "valkeys"):
        cache = GlideCache.from_url(f"{scheme}://127.0.0.1:{redis_shared.port}/0")
        try:
            with pytest.raises(DistributedCacheError):
                await cache.aget("k")
        finally:
            await cache.aclose()
    plain = GlideCache.from_url(f"redis://127.0.0.1:{redis_shared.port}/0")
    assert await plain.aget("k") is None
    await plain.aclose()


def test_from_url_options_go_to_glide(redis_shared: RedisServer, redis_url: str) -> None:
    cache = GlideCache.from_url(redis_url, client_name=NAME)
    try:
        cache.set("k", b"v", 60)
        assert our_connections(redis_shared) == 1
    finally:
        cache.close()
    closes_all(redis_shared)


@pytest.mark.parametrize(
    ("url", "kwargs", "match"),
    [
        ("http://localhost:6379", {}, "redis://, rediss://, valkey://"),
        ("unix:///tmp/redis.sock", {}, "redis://, rediss://, valkey://"),
        ("redis://localhost:notaport/0", {}, "Port"),
        ("redis://localhost:99999/0", {}, "Port"),
        ("redis://:6379/0", {}, "no host"),
        ("redis://localhost:6379/x", {}, "database must be a number"),
        ("redis://localhost:6379/-1", {}, "database must be a number"),
        ("redis://localhost:6379/0?db=2", {}, "no query options"),
        ("redis://localhost:6379/0", {"database_id": 2}, "sets database_id itself"),
        ("redis://localhost:6379/0", {"addresses": []}, "sets addresses itself"),
        ("redis://localhost:6379/0", {"lazy_connect": False}, "sets lazy_connect itself"),
        ("redis://localhost:6379/0", {"no_such_option": 1}, "no_such_option"),
        ("redis://localhost:6379/0", {"client_info_tag": "a b"}, "client_info_tag"),
        ("redis://:s3cret@localhost:6379/0", {"credentials": object()}, "given twice"),
        ("redis://:s3cret@localhost:x/0", {}, "Port"),
    ],
)
def test_from_url_refuses_a_bad_url_or_option_at_construction(
    url: str, kwargs: dict[str, Any], match: str
) -> None:
    # Nothing listens on these addresses: the error comes before any connection.
    with pytest.raises(ConfigurationError, match=match) as info:
        GlideCache.from_url(url, **kwargs)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("name", ["request_timeout", "connect_timeout"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_from_url_refuses_bad_timeouts(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=name):
        GlideCache.from_url("redis://localhost:6379/0", **{name: value})


def test_repr_names_the_target_without_the_password() -> None:
    assert repr(GlideCache.from_url("redis://user:secret@localhost:1/0")) == (
        "GlideCache(url='redis://user:***@localhost:1/0')"
    )
    assert repr(GlideCache.from_url("valkey://localhost:1", cluster=True)) == (
        "GlideCache(cluster='valkey://localhost:1')"
    )


def run_python(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_without_the_glide_extra_import_works_and_glide_cache_says_what_to_install() -> None:
    # A fresh interpreter where the GLIDE packages can't be imported (as if not installed).
    out = run_python(
        """
import sys
for name in ("glide", "glide_sync", "glide_shared"):
    sys.modules[name] = None  # import raises ImportError
import dataferry
try:
    dataferry.GlideCache.from_url("redis://localhost:6379/0")
except dataferry.ConfigurationError as exc:
    print(exc)
"""
    )
    assert "GlideCache needs the 'glide' extra: pip install 'dataferry[glide]'" in out


def test_with_one_glide_package_only_the_other_half_says_what_to_install() -> None:
    out = run_python(
        """
import sys
sys.modules["glide_sync"] = None  # valkey-glide installed, valkey-glide-sync not
import dataferry
cache = dataferry.GlideCache.from_url("redis://localhost:1/0")  # nothing listens: no I/O
try:
    cache.get("k")
except dataferry.ConfigurationError as exc:
    print(exc)
"""
    )
    assert "pip install 'dataferry[glide]' (valkey-glide-sync: not installed)" in out


def test_import_dataferry_does_not_import_glide() -> None:
    # import glide takes 250 ms (glide_sync 150, glide_shared 60): only GlideCache pays it.
    script = (
        "import sys, dataferry; "
        "print([m for m in sys.modules if m.split('.')[0] in ('glide', 'glide_sync', "
        "'glide_shared')])"
    )
    assert run_python(script).strip() == "[]"


# -- what GLIDE sends --------------------------------------------------------------------------


async def test_ttls_are_sent_in_milliseconds(redis_url: str) -> None:
    cache = GlideCache.from_url(redis_url)
    with redis.Redis.from_url(redis_url) as raw:
        try:
            await cache.aset("a", b"v", 2.2)
            cache.set("s", b"v", 2.2)
            await cache.aset_many([("m", b"v", 2.2)])
            assert await cache.aacquire_lock("{l}:lock", token(), 2.2)
            for key in ("a", "s", "m", "{l}:lock"):
                assert 1500 < raw.pttl(key) <= 2200
            cache.set("ms", b"v", 30.0004)
            assert 29_000 < raw.pttl("ms") <= 30_000
            assert cache.acquire_lock("{t}:lock", token(), 0.0001)  # 1 ms, not 0 (an error)
        finally:
            await cache.aclose()
            cache.close()


async def test_scripts_are_loaded_again_after_a_flush(redis_url: str, is_async: bool) -> None:
    half = Half(GlideCache.from_url(redis_url), is_async)
    mine = token()
    with redis.Redis.from_url(redis_url) as raw:
        try:
            await half.set("k", b"a", 60)
            assert await half.compare_and_set("k", b"a", b"b")
            assert await half.acquire_lock("{k}:lock", mine, 30)
            raw.script_flush()  # a restarted or failed-over server has no scripts cached
            assert await half.compare_and_set("k", b"b", b"c")
            assert await half.extend_lock("{k}:lock", mine, 60)
            assert await half.release_lock("{k}:lock", mine)
            # RedisCache's scripts (the same SHA-1s), loaded again by GLIDE on NOSCRIPT.
            assert raw.script_exists(CAS_SHA, RELEASE_SHA, EXTEND_SHA) == [True, True, True]
            assert raw.get("k") == b"c"
        finally:
            await half.close()


async def test_cluster_scripts_and_batches_reach_every_master(
    redis_cluster: RedisCluster, is_async: bool
) -> None:
    cache = GlideCache.from_url(redis_cluster.url, cluster=True)
    half = Half(cache, is_async)
    names = [f"{{{key}}}:lock" for key in SPREAD]
    mine = token()
    with redis.RedisCluster.from_url(redis_cluster.url) as raw:
        assert len({raw.get_node_from_key(k).port for k in SPREAD}) == 3
        for master in redis_cluster.masters:  # no script cached anywhere: NOSCRIPT first
            master.execute("SCRIPT", "FLUSH")
        try:
            await half.set_many([(k, k.encode(), 60.0) for k in SPREAD])
            assert [raw.get(k) for k in SPREAD] == [k.encode() for k in SPREAD]
            for key, name in zip(SPREAD, names, strict=True):
                assert await half.compare_and_set(key, key.encode(), b"new")
                assert await half.acquire_lock(name, mine, 30)
                assert await half.extend_lock(name, mine, 60)
                assert await half.release_lock(name, mine)
            assert await half.get_many(SPREAD) == [b"new"] * len(SPREAD)
            assert await half.delete_many(SPREAD) == len(SPREAD)
        finally:
            await cache.aclose()
            cache.close()


async def test_a_burst_of_first_calls_on_a_new_cluster_client(redis_cluster: RedisCluster) -> None:
    # redis-py's asyncio cluster client needed a fix for this (see _AsyncCluster); GLIDE learns
    # the slots before routing.
    cache = GlideCache.from_url(redis_cluster.url, cluster=True)
    try:
        await cache.aset_many([(k, k.encode(), 60.0) for k in SPREAD])
        await cache.aclose()  # the next calls meet a brand-new client
        got = await asyncio.gather(*(cache.aget(k) for k in SPREAD))
        assert got == [k.encode() for k in SPREAD]
    finally:
        await cache.aclose()


# -- clients passed in -------------------------------------------------------------------------


def glide_config(server: RedisServer, **kwargs: Any) -> Any:
    return glide.GlideClientConfiguration([glide.NodeAddress(server.host, server.port)], **kwargs)


async def test_clients_passed_in_serve_both_halves_and_stay_open(
    redis_shared: RedisServer, redis_url: str
) -> None:
    aclient = await glide.GlideClient.create(glide_config(redis_shared))
    sclient = glide_sync.GlideClient.create(glide_config(redis_shared))
    try:
        cache = GlideCache(client=aclient, sync_client=sclient)
        assert isinstance(cache, DistributedCache)
        assert repr(cache) == "GlideCache(client)"
        await cache.aset("k", b"from-async", 60)
        assert cache.get("k") == b"from-async"
        assert await cache.acompare_and_set("k", b"from-async", b"cas")
        await cache.aclose()
        cache.close()
        # Still the owner's: open, and still usable through the cache.
        assert await aclient.get("k") == b"cas"
        assert sclient.get("k") == b"cas"
        assert await cache.aget("k") == b"cas"
        assert cache.get("k") == b"cas"
    finally:
        await aclient.close()
        sclient.close()


async def test_one_client_serves_its_half_only(redis_shared: RedisServer, redis_url: str) -> None:
    aclient = await glide.GlideClient.create(glide_config(redis_shared))
    try:
        cache = GlideCache(aclient)
        await cache.aset("k", b"v", 60)
        with pytest.raises(ConfigurationError, match=r"no sync client.*sync_client="):
            cache.get("k")
    finally:
        await aclient.close()
    sclient = glide_sync.GlideClient.create(glide_config(redis_shared))
    try:
        cache = GlideCache(sync_client=sclient)
        assert cache.get("k") == b"v"
        with pytest.raises(ConfigurationError, match=r"no asyncio client.*async_client="):
            await cache.aget("k")
    finally:
        sclient.close()


async def test_cluster_clients_passed_in(redis_cluster: RedisCluster) -> None:
    config = glide.GlideClusterClientConfiguration(
        [glide.NodeAddress(host, port) for host, port in redis_cluster.startup_nodes]
    )
    aclient = await glide.GlideClusterClient.create(config)
    sclient = glide_sync.GlideClusterClient.create(config)
    try:
        cache = GlideCache(async_client=aclient, sync_client=sclient)
        await cache.aset_many([(k, k.encode(), 60.0) for k in SPREAD])
        assert cache.get_many(SPREAD) == [k.encode() for k in SPREAD]
        assert await cache.aget_many(SPREAD) == [k.encode() for k in SPREAD]
        assert cache.delete_many(SPREAD[:20]) == 20
        assert await cache.adelete_many(SPREAD) == 20
    finally:
        await aclient.close()
        sclient.close()


async def test_a_closed_client_raises_distributed_cache_error(
    redis_shared: RedisServer, redis_url: str
) -> None:
    aclient = await glide.GlideClient.create(glide_config(redis_shared))
    sclient = glide_sync.GlideClient.create(glide_config(redis_shared))
    cache = GlideCache(client=aclient, sync_client=sclient)
    await aclient.close()
    sclient.close()
    for name, args in OPERATIONS:
        for half in (Half(cache, True), Half(cache, False)):
            with pytest.raises(DistributedCacheError) as info:
                await getattr(half, name)(*args)
            assert_translated(info.value, ClosingError)


async def test_the_constructor_refuses_what_is_not_a_glide_client(
    redis_shared: RedisServer, redis_url: str
) -> None:
    with pytest.raises(ConfigurationError, match="needs a Valkey GLIDE client"):
        GlideCache()
    with pytest.raises(ConfigurationError, match=r"not builtins\.dict"):
        GlideCache({})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"not redis\.client\.Redis"):
        GlideCache(redis.Redis.from_url(redis_url))  # type: ignore[arg-type]
    aclient = await glide.GlideClient.create(glide_config(redis_shared))
    sclient = glide_sync.GlideClient.create(glide_config(redis_shared))
    try:
        with pytest.raises(ConfigurationError, match="two asyncio"):
            GlideCache(aclient, async_client=aclient)
        with pytest.raises(ConfigurationError, match="two sync"):
            GlideCache(sclient, sync_client=sclient)
        with pytest.raises(ConfigurationError, match="async_client must be"):
            GlideCache(async_client=sclient)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="sync_client must be"):
            GlideCache(sync_client=aclient)  # type: ignore[arg-type]
    finally:
        await aclient.close()
        sclient.close()


def test_a_client_passed_in_is_refused_in_another_loop(
    redis_shared: RedisServer, redis_url: str
) -> None:
    async def create() -> Any:
        return await glide.GlideClient.create(glide_config(redis_shared))

    loop = asyncio.new_event_loop()
    aclient = loop.run_until_complete(create())
    cache = GlideCache(aclient)
    try:
        assert loop.run_until_complete(roundtrip(cache, "k", b"v")) == b"v!"

        async def elsewhere() -> None:
            with pytest.raises(DistributedCacheError, match="another event loop"):
                await cache.aget("k")

        asyncio.run(elsewhere())
        assert loop.run_until_complete(cache.aget("k")) == b"v!"  # still fine in its own loop
    finally:
        loop.run_until_complete(aclient.close())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# -- faults on a real server -------------------------------------------------------------------


@pytest.fixture
async def half(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Half]:
    cache = GlideCache.from_url(redis_server.url, request_timeout=FAST, connect_timeout=FAST)
    try:
        yield Half(cache, request.param)
    finally:
        redis_server.ensure_running()
        await cache.aclose()
        cache.close()


LOCK_OPERATIONS: list[tuple[str, tuple[Any, ...]]] = [
    ("acquire_lock", ("{k}:lock", b"t" * 16, 30.0)),
    ("release_lock", ("{k}:lock", b"t" * 16)),
    ("extend_lock", ("{k}:lock", b"t" * 16, 30.0)),
]


@pytest.mark.parametrize("half", [True, False], ids=["async", "sync"], indirect=True)
async def test_a_killed_server_raises_distributed_cache_error_then_recovers(
    half: Half, redis_server: RedisServer
) -> None:
    await half.set("k", b"v", 60)
    redis_server.kill()
    for name, args in [*OPERATIONS, *LOCK_OPERATIONS]:
        with pytest.raises(DistributedCacheError, match="failed") as info:
            await getattr(half, name)(*args)
        assert_translated(info.value, GlideError)
    redis_server.restart()
    # The same cache, the same client: GLIDE reconnects on its own.
    await wait_until(recovers(lambda: half.get("k")))
    assert await half.get("k") is None  # the test servers keep nothing across restarts
    await half.set("k", b"again", 60)
    assert await half.get("k") == b"again"


@pytest.mark.parametrize("half", [True, False], ids=["async", "sync"], indirect=True)
async def test_a_frozen_server_times_out_as_distributed_cache_error(
    half: Half, redis_server: RedisServer
) -> None:
    await half.set("k", b"v", 60)
    redis_server.freeze()
    try:
        with pytest.raises(DistributedCacheError, match="GLIDE GET failed: TimeoutError") as info:
            await half.get("k")
        assert_translated(info.value, GlideTimeoutError)
        with pytest.raises(DistributedCacheError, match="pipeline") as info:
            await half.set_many([("a", b"1", 60.0)])
        assert_translated(info.value, GlideTimeoutError)
    finally:
        redis_server.resume()
    await wait_until(recovers(lambda: half.get("k")))
    assert await half.get("k") == b"v"


async def test_cancellation_passes_through(redis_server: RedisServer) -> None:
    cache = GlideCache.from_url(redis_server.url, request_timeout=30)
    await cache.aset("k", b"v", 60)
    redis_server.freeze()
    try:
        # Had the backend turned the CancelledError into a DistributedCacheError, wait_for
        # would raise that instead of TimeoutError.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(cache.aget("k"), 0.2)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(cache.aset_many([("a", b"1", 60.0)]), 0.2)
    finally:
        redis_server.resume()
    assert await cache.aget("k") == b"v"  # the late replies of cancelled calls are dropped
    assert await cache.aget("a") == b"1"  # the batch was sent: cancelling stops the wait
    await cache.aclose()


# -- event loops -------------------------------------------------------------------------------


def make_cache(redis_url: str) -> GlideCache:
    return GlideCache.from_url(redis_url, client_name=NAME)


@pytest.mark.parametrize("uv", [False, True], ids=["asyncio", "uvloop"])
def test_a_module_level_cache_serves_successive_runs(
    redis_shared: RedisServer, redis_url: str, uv: bool
) -> None:
    import uvloop

    run: Callable[[Any], Any] = uvloop.run if uv else asyncio.run
    with no_leak_warnings():
        cache = make_cache(redis_url)  # built outside any loop, as at import time
        for i in range(3):
            assert run(roundtrip(cache, "k", b"%d" % i)) == b"%d!" % i
            # The loop's client was closed when the run ended it.
            closes_all(redis_shared)
        assert cache.get("k") == b"2!"
        cache.close()
        closes_all(redis_shared)
        del cache


def test_loops_in_threads_keep_working_when_the_first_loop_ends(
    redis_shared: RedisServer, redis_url: str
) -> None:
    # GLIDE reads every asyncio reply of the process in the loop of the first client; when
    # that loop ends, GlideCache hands the reading over to another loop it has clients in.
    cache = make_cache(redis_url)
    first_ready, second_ready, first_done = threading.Event(), threading.Event(), threading.Event()
    results: list[bytes | None] = []
    errors: list[BaseException] = []

    async def first() -> None:
        results.append(await roundtrip(cache, "first", b"1"))
        first_ready.set()
        await asyncio.to_thread(second_ready.wait, 10)

    async def second() -> None:
        await asyncio.to_thread(first_ready.wait, 10)
        results.append(await roundtrip(cache, "second", b"2"))
        second_ready.set()
        await asyncio.to_thread(first_done.wait, 10)  # the first loop is closed now
        for i in range(20):
            got = await asyncio.wait_for(roundtrip(cache, f"second-{i}", b"%d" % i), 5)
            results.append(got)

    def thread(main: Callable[[], Any], done: threading.Event | None = None) -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            if done is not None:
                done.set()

    with no_leak_warnings():
        workers = [
            threading.Thread(target=thread, args=(first, first_done), daemon=True),
            threading.Thread(target=thread, args=(second,), daemon=True),
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert errors == []
        assert results == [b"1!", b"2!"] + [b"%d!" % i for i in range(20)]
        closes_all(redis_shared)


def test_loops_in_threads_at_the_same_time(redis_shared: RedisServer, redis_url: str) -> None:
    cache = make_cache(redis_url)
    threads = 4
    all_connected = threading.Barrier(threads, timeout=20)
    results: dict[int, list[bytes | None]] = {}
    errors: list[BaseException] = []

    async def work(n: int) -> None:
        got = [await asyncio.wait_for(roundtrip(cache, f"t{n}", b"first-%d" % n), 5)]
        # Every loop holds its client while the others use theirs. Wait in a worker thread:
        # blocking the loop that reads GLIDE's replies would stall every loop's calls.
        await asyncio.to_thread(all_connected.wait)
        for i in range(20):
            got.append(await asyncio.wait_for(roundtrip(cache, f"t{n}-{i}", b"%d-%d" % (n, i)), 5))
        results[n] = got

    def thread(n: int) -> None:
        try:
            asyncio.run(work(n))
        except BaseException as exc:  # reported below
            errors.append(exc)

    with no_leak_warnings():
        workers = [threading.Thread(target=thread, args=(n,), daemon=True) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert errors == []
        for n in range(threads):
            assert results[n] == [b"first-%d!" % n] + [b"%d-%d!" % (n, i) for i in range(20)]
        closes_all(redis_shared)


def test_a_loop_closed_by_hand_is_swept_by_the_next_use_or_close(
    redis_shared: RedisServer, redis_url: str
) -> None:
    # loop.close() without loop.shutdown_asyncgens(): the cache never heard that the loop
    # ended; its client is closed the next time the cache builds a client, or closes.
    with no_leak_warnings():
        cache = make_cache(redis_url)
        for sweep in ("next-loop", "close"):
            loop = asyncio.new_event_loop()
            try:
                assert loop.run_until_complete(roundtrip(cache, "k", b"a")) == b"a!"
            finally:
                loop.close()
            assert our_connections(redis_shared) == 1  # nothing closed it yet
            if sweep == "next-loop":
                assert asyncio.run(roundtrip(cache, "k", b"b")) == b"b!"
            else:
                cache.close()
            closes_all(redis_shared)
        del cache, loop


async def test_aclose_closes_the_clients_of_every_loop(
    redis_shared: RedisServer, redis_url: str
) -> None:
    cache = make_cache(redis_url)
    ready, release = threading.Event(), threading.Event()
    seen: list[bytes | None] = []

    async def other_loop() -> None:
        seen.append(await roundtrip(cache, "thread", b"t"))
        ready.set()
        await asyncio.to_thread(release.wait, 10)
        seen.append(await roundtrip(cache, "thread", b"again"))  # a fresh client

    thread = threading.Thread(target=asyncio.run, args=(other_loop(),), daemon=True)
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 10)
        assert await roundtrip(cache, "main", b"m") == b"m!"
        assert our_connections(redis_shared) == 2
        await cache.aclose()  # this loop's client now, the other one in its own loop
        await asyncio.to_thread(closes_all, redis_shared)
    finally:
        release.set()
        await asyncio.to_thread(thread.join)
    assert seen == [b"t!", b"again!"]
    assert await roundtrip(cache, "main", b"after") == b"after!"  # usable again
    await cache.aclose()
    await asyncio.to_thread(closes_all, redis_shared)


# -- both halves on one object -----------------------------------------------------------------


async def test_sync_and_async_share_one_cache_at_the_same_time(redis_url: str) -> None:
    cache = GlideCache.from_url(redis_url)
    stop = threading.Event()
    errors: list[BaseException] = []

    def sync_side() -> None:
        i = 0
        try:
            while not stop.is_set():
                i += 1
                cache.set("sync", b"%d" % i, 60)
                assert cache.get("sync") == b"%d" % i
                cache.get("async")  # written by the loop meanwhile
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=sync_side, daemon=True)
    thread.start()
    try:
        for i in range(200):
            await cache.aset("async", b"%d" % i, 60)
            assert await cache.aget("async") == b"%d" % i
        assert cache.get("async") == b"199"
        assert await cache.aget("sync") is not None
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
        await cache.aclose()
        cache.close()
    assert errors == []


async def test_both_facades_on_one_glide_cache(redis_url: str) -> None:
    cache = GlideCache.from_url(redis_url)
    try:
        async with AsyncDataFerry(memory=None, distributed=cache, namespace="g") as afront:
            await afront.set("user:1", {"name": "Ada"}, ttl=60)
            with DataFerry(memory=None, distributed=cache, namespace="g") as front:
                assert front.get("user:1") == {"name": "Ada"}
                front.set("user:2", [1, 2, 3], ttl=60)
            assert await afront.get("user:2") == [1, 2, 3]
            assert await afront.get_many(["user:1", "user:2", "user:3"]) == {
                "user:1": {"name": "Ada"},
                "user:2": [1, 2, 3],
            }
    finally:
        await cache.aclose()
        cache.close()


def test_glide_prints_nothing_of_its_own_on_a_failed_connection() -> None:
    # GLIDE's core logs a WARN line on stderr per failed connection or timeout unless its
    # logger is configured; GlideCache turns it off (DataFerry reports those failures itself).
    from tests.redis_servers import free_port

    code = (
        "import asyncio, dataferry as df\n"
        "async def main():\n"
        f"    cache = df.GlideCache.from_url('redis://127.0.0.1:{free_port()}/0')\n"
        "    try:\n"
        "        await cache.aget('k')\n"
        "    except df.DistributedCacheError:\n"
        "        print('translated')\n"
        "    await cache.aclose()\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "translated\n"
    assert proc.stderr == ""
