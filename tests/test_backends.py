"""The L2 contract, checked on every backend and both halves; then each backend's own promises."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from dataferry import (
    ConfigurationError,
    DistributedCache,
    DistributedCacheError,
    GlideCache,
    RedisCache,
    SQLiteCache,
)
from dataferry._async._redis_ops import CAS_SHA
from tests.redis_servers import RedisCluster, RedisSentinel

ALL_BYTES = bytes(range(256))
MEGABYTE = ALL_BYTES * 4096


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll an async predicate until it holds (fails the test after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


class Half:
    """One half of a backend behind async methods, so one test body checks both halves."""

    def __init__(self, cache: Any, is_async: bool) -> None:
        self.cache = cache
        self.is_async = is_async

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if self.is_async:
            method: Callable[..., Awaitable[Any]] = getattr(self.cache, "a" + name)
            return method
        sync_method = getattr(self.cache, name)

        async def call(*args: Any) -> Any:
            return sync_method(*args)

        return call

    async def gone(self, key: str) -> bool:
        return await self.get(key) is None


# -- building each backend ---------------------------------------------------------------------

KINDS = [
    "redis",
    "redis-clients",
    "cluster",
    "sentinel",
    "sqlite",
    "sqlite-threaded-reads",
    "sqlite-memory",
    "glide",
    "glide-cluster",
]


async def make_backend(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[Any, Callable[[], Awaitable[None]]]:
    """Return ``(backend, cleanup)`` for a kind of backend."""
    cache: Any
    if kind == "redis":
        cache = RedisCache.from_url(request.getfixturevalue("redis_url"))
    elif kind == "redis-clients":
        url = request.getfixturevalue("redis_url")
        aclient = redis.asyncio.Redis.from_url(url)
        sclient = redis.Redis.from_url(url)
        cache = RedisCache(async_client=aclient, sync_client=sclient)

        async def cleanup_clients() -> None:
            await aclient.aclose()
            sclient.close()

        return cache, cleanup_clients
    elif kind == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        cache = RedisCache.from_url(cluster.url, cluster=True)
    elif kind == "sentinel":
        setup: RedisSentinel = request.getfixturevalue("redis_sentinel")
        cache = RedisCache.from_sentinel(setup.sentinels, setup.service_name)
    elif kind == "glide":
        cache = GlideCache.from_url(request.getfixturevalue("redis_url"))
    elif kind == "glide-cluster":
        glide_cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        cache = GlideCache.from_url(glide_cluster.url, cluster=True)
    elif kind == "sqlite":
        cache = SQLiteCache(tmp_path / "l2.sqlite")
    elif kind == "sqlite-threaded-reads":
        cache = SQLiteCache(tmp_path / "l2.sqlite", inline_reads=False)
    else:
        assert kind == "sqlite-memory"
        cache = SQLiteCache(":memory:")

    async def cleanup() -> None:
        await cache.aclose()
        cache.close()

    return cache, cleanup


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["async", "sync"])
async def l2(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> AsyncIterator[Half]:
    cache, cleanup = await make_backend(kind, request, tmp_path)
    try:
        yield Half(cache, request.param == "async")
    finally:
        await cleanup()


# -- the contract ------------------------------------------------------------------------------


async def test_backend_meets_the_protocol(l2: Half) -> None:
    assert isinstance(l2.cache, DistributedCache)


async def test_missing_key_is_none(l2: Half) -> None:
    assert await l2.get("missing") is None


async def test_set_then_get_returns_the_bytes(l2: Half) -> None:
    await l2.set("k", b"value", 60)
    value = await l2.get("k")
    assert value == b"value"
    assert type(value) is bytes


async def test_set_overwrites_value(l2: Half) -> None:
    await l2.set("k", b"one", 60)
    await l2.set("k", b"two", 60)
    assert await l2.get("k") == b"two"


async def test_entries_expire_after_their_ttl(l2: Half) -> None:
    await l2.set("long", b"stays", 60)
    await l2.set("short", b"goes", 0.05)
    await l2.set("tiny", b"goes", 0.0001)  # under a millisecond still expires
    await wait_until(lambda: l2.gone("short"))
    await wait_until(lambda: l2.gone("tiny"))
    assert await l2.get("long") == b"stays"


async def test_set_with_a_new_ttl_replaces_the_old_one(l2: Half) -> None:
    await l2.set("k", b"v", 60)
    await l2.set("k", b"v", 0.05)
    await wait_until(lambda: l2.gone("k"))


# Keys spread over many cluster slots (and so over every master of the test cluster).
SPREAD = [f"key-{i}" for i in range(40)]


def test_spread_keys_cover_several_slots() -> None:
    assert len({key_slot(k.encode()) for k in SPREAD}) == len(SPREAD)


async def test_get_many_keeps_order_and_marks_misses(l2: Half) -> None:
    present = SPREAD[::2]
    for key in present:
        await l2.set(key, key.encode(), 60)
    wanted = [*SPREAD, SPREAD[0], "absent"]
    expected = [k.encode() if k in present else None for k in wanted]
    assert await l2.get_many(wanted) == expected


async def test_set_many_stores_each_item_with_its_ttl(l2: Half) -> None:
    items = [(k, k.encode() * 3, 60.0) for k in SPREAD]
    items.append(("short-lived", b"x", 0.05))
    await l2.set_many(items)
    assert await l2.get_many(SPREAD) == [k.encode() * 3 for k in SPREAD]
    await wait_until(lambda: l2.gone("short-lived"))
    assert await l2.get(SPREAD[-1]) == SPREAD[-1].encode() * 3


async def test_empty_batches_do_nothing(l2: Half) -> None:
    assert await l2.get_many([]) == []
    await l2.set_many([])
    assert await l2.delete_many([]) == 0


async def test_delete_reports_whether_the_key_existed(l2: Half) -> None:
    await l2.set("k", b"v", 60)
    assert await l2.delete("k") is True
    assert await l2.get("k") is None
    assert await l2.delete("k") is False


async def test_delete_many_counts_existing_keys(l2: Half) -> None:
    present = SPREAD[:10]
    await l2.set_many([(k, b"v", 60.0) for k in present])
    assert await l2.delete_many([*SPREAD, "absent", SPREAD[0]]) == len(present)
    assert await l2.get_many(present) == [None] * len(present)


async def test_expired_entries_count_as_absent(l2: Half) -> None:
    await l2.set("k", b"v", 0.01)
    await wait_until(lambda: l2.gone("k"))
    assert await l2.compare_and_set("k", b"v", b"new") is False
    assert await l2.delete("k") is False
    assert await l2.get("k") is None


async def test_compare_and_set_replaces_only_the_expected_bytes(l2: Half) -> None:
    assert await l2.compare_and_set("k", b"old", b"new") is False
    assert await l2.get("k") is None  # a missing key is not created
    await l2.set("k", b"old", 60)
    assert await l2.compare_and_set("k", b"other", b"new") is False
    assert await l2.get("k") == b"old"
    assert await l2.compare_and_set("k", b"old", b"new") is True
    assert await l2.get("k") == b"new"
    assert await l2.compare_and_set("k", b"old", b"newer") is False  # old is gone
    assert await l2.get("k") == b"new"


async def test_compare_and_set_compares_whole_binary_values(l2: Half) -> None:
    value = ALL_BYTES * 3
    await l2.set("k", value, 60)
    assert await l2.compare_and_set("k", value[:-1], b"x") is False  # a prefix is not equal
    assert await l2.compare_and_set("k", value + b"\x00", b"x") is False
    assert await l2.compare_and_set("k", value, MEGABYTE) is True
    assert await l2.get("k") == MEGABYTE
    await l2.set("empty", b"", 60)
    assert await l2.compare_and_set("empty", b"", b"filled") is True
    assert await l2.get("empty") == b"filled"


async def test_compare_and_set_loses_to_a_newer_write(l2: Half) -> None:
    # The expire() race: a reader fetched `stale`, another node then wrote `newer`; the
    # reader's compare-and-set must fail and leave the newer value in place.
    await l2.set("k", b"stale", 60)
    seen = await l2.get("k")
    await l2.set("k", b"newer", 60)  # lands between the read and the CAS
    assert seen is not None
    assert await l2.compare_and_set("k", seen, b"stale-marked-expired") is False
    assert await l2.get("k") == b"newer"


async def test_compare_and_set_keeps_the_remaining_ttl(l2: Half) -> None:
    # Without KEEPTTL the replaced key would never expire. A slow machine may let the first
    # short TTL run out before the CAS: then try a longer one.
    for ttl in (0.2, 1.0, 5.0):
        await l2.set("k", b"old", ttl)
        if await l2.compare_and_set("k", b"old", b"new"):
            break
    else:
        pytest.fail("compare_and_set() never found the key")
    assert await l2.get("k") in (b"new", None)
    await wait_until(lambda: l2.gone("k"))


async def test_ttl_reports_the_time_left(l2: Half) -> None:
    assert await l2.ttl("k") is None
    await l2.set("k", b"v", 60)
    left = await l2.ttl("k")
    assert left is not None
    assert 0 < left <= 60
    assert await l2.compare_and_set("k", b"v", b"w")
    left_after = await l2.ttl("k")
    assert left_after is not None
    assert 50 < left_after <= left


async def test_every_byte_value_round_trips(l2: Half) -> None:
    values = {"all": ALL_BYTES * 3, "empty": b"", "nul": b"\x00" * 7, "high": b"\xff\xfe\x80"}
    for key, value in values.items():
        await l2.set(key, value, 60)
    assert await l2.get_many(list(values)) == list(values.values())
    for key, value in values.items():
        assert await l2.get(key) == value


async def test_large_values_round_trip(l2: Half) -> None:
    await l2.set("big", MEGABYTE, 60)
    assert await l2.get("big") == MEGABYTE
    await l2.set_many([("big-1", MEGABYTE, 60.0), ("big-2", MEGABYTE[::-1], 60.0)])
    assert await l2.get_many(["big-1", "big-2"]) == [MEGABYTE, MEGABYTE[::-1]]


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    key=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
    value=st.binary(max_size=600),
)
async def test_any_key_and_value_round_trip(l2: Half, key: str, value: bytes) -> None:
    await l2.set(key, value, 60)
    assert await l2.get(key) == value
    assert await l2.get_many([key]) == [value]
    assert await l2.delete(key) is True


# -- RedisCache --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("get", ("k",)),
        ("get_many", (["k"],)),
        ("set", ("k", b"v", 60.0)),
        ("set_many", ([("k", b"v", 60.0)],)),
        ("compare_and_set", ("k", b"v", b"w")),
        ("ttl", ("k",)),
        ("delete", ("k",)),
        ("delete_many", (["k"],)),
    ],
)
@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_from_url_connects_on_any_first_call(
    redis_url: str, name: str, args: tuple[Any, ...], is_async: bool
) -> None:
    cache = RedisCache.from_url(redis_url)
    try:
        await getattr(Half(cache, is_async), name)(*args)
    finally:
        await cache.aclose()
        cache.close()


async def test_a_client_that_cannot_be_built_raises_distributed_cache_error() -> None:
    # The sync cluster client connects while it is built; nothing listens on port 1.
    cache = RedisCache.from_url("redis://127.0.0.1:1", cluster=True)
    with pytest.raises(DistributedCacheError, match="connect") as info:
        cache.get("k")
    assert isinstance(info.value.__cause__, (redis.RedisError, RedisClusterException))
    # The asyncio cluster client is built without connecting: it fails on the command.
    with pytest.raises(DistributedCacheError) as info:
        await cache.aget("k")
    assert isinstance(info.value.__cause__, (redis.RedisError, RedisClusterException))
    await cache.aclose()


async def test_ttl_is_sent_in_milliseconds(redis_url: str) -> None:
    cache = RedisCache.from_url(redis_url)
    with redis.Redis.from_url(redis_url) as raw:
        try:
            await cache.aset("a", b"v", 2.2)
            cache.set("s", b"v", 2.2)
            await cache.aset_many([("m", b"v", 2.2)])
            for key in ("a", "s", "m"):
                assert 1500 < raw.pttl(key) <= 2200
            cache.set("ms", b"v", 30.0004)
            assert 29_000 < raw.pttl("ms") <= 30_000
        finally:
            await cache.aclose()
            cache.close()


async def test_compare_and_set_keeps_ttl_exactly(redis_url: str) -> None:
    cache = RedisCache.from_url(redis_url)
    with redis.Redis.from_url(redis_url) as raw:
        try:
            await cache.aset("k", b"v", 100)
            assert await cache.acompare_and_set("k", b"v", b"w")
            assert 90_000 < raw.pttl("k") <= 100_000
            raw.set("forever", b"v")
            assert cache.compare_and_set("forever", b"v", b"w")
            assert raw.pttl("forever") == -1
            assert raw.get("forever") == b"w"
        finally:
            await cache.aclose()
            cache.close()


@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_compare_and_set_reloads_its_script_after_a_flush(
    redis_url: str, is_async: bool
) -> None:
    # EVALSHA runs the cached script; a server that lost it (restart, failover, SCRIPT FLUSH)
    # answers NOSCRIPT, and the script is loaded again.
    half = Half(RedisCache.from_url(redis_url), is_async)
    with redis.Redis.from_url(redis_url) as raw:
        try:
            await half.set("k", b"a", 60)
            assert await half.compare_and_set("k", b"a", b"b")
            raw.script_flush()
            assert raw.script_exists(CAS_SHA) == [False]
            assert await half.compare_and_set("k", b"b", b"c")
            assert raw.script_exists(CAS_SHA) == [True]
            assert raw.get("k") == b"c"
        finally:
            await half.close()


@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_compare_and_set_on_every_cluster_master(
    redis_cluster: RedisCluster, is_async: bool
) -> None:
    cache = RedisCache.from_url(redis_cluster.url, cluster=True)
    half = Half(cache, is_async)
    with redis.RedisCluster.from_url(redis_cluster.url) as raw:
        ports = {raw.get_node_from_key(k).port for k in SPREAD}
        assert len(ports) == 3  # the keys live on every master
        for master in redis_cluster.masters:  # no script cached anywhere: NOSCRIPT first
            master.execute("SCRIPT", "FLUSH")
        try:
            await half.set_many([(k, k.encode(), 60.0) for k in SPREAD])
            for key in SPREAD:
                assert await half.compare_and_set(key, b"wrong", b"x") is False
                assert await half.compare_and_set(key, key.encode(), b"new-" + key.encode())
                raw.set(key, b"newer", px=60_000)  # another node's write, between read and CAS
                assert await half.compare_and_set(key, b"new-" + key.encode(), b"x") is False
            assert [raw.get(k) for k in SPREAD] == [b"newer"] * len(SPREAD)
            assert all(raw.pttl(k) > 0 for k in SPREAD)
        finally:
            await cache.aclose()
            cache.close()


async def test_one_client_serves_its_half_only(redis_url: str) -> None:
    async with redis.asyncio.Redis.from_url(redis_url) as aclient:
        cache = RedisCache(aclient)
        await cache.aset("k", b"v", 60)
        assert await cache.aget("k") == b"v"
        with pytest.raises(ConfigurationError, match="no sync client"):
            cache.get("k")
    with redis.Redis.from_url(redis_url) as sclient:
        cache = RedisCache(sclient)
        assert cache.get("k") == b"v"
        with pytest.raises(ConfigurationError, match="no asyncio client"):
            await cache.aget("k")


async def test_aclose_leaves_a_client_passed_in_open(redis_url: str) -> None:
    async with redis.asyncio.Redis.from_url(redis_url) as aclient:
        with redis.Redis.from_url(redis_url) as sclient:
            cache = RedisCache(async_client=aclient, sync_client=sclient)
            await cache.aset("k", b"v", 60)
            await cache.aclose()
            cache.close()
            assert await aclient.get("k") == b"v"
            assert sclient.get("k") == b"v"
            assert await cache.aget("k") == b"v"


async def test_from_url_builds_new_clients_after_close(redis_url: str) -> None:
    cache = RedisCache.from_url(redis_url)
    await cache.aset("k", b"v", 60)
    await cache.aclose()
    assert await cache.aget("k") == b"v"
    await cache.aclose()
    assert cache.get("k") == b"v"
    cache.close()
    assert cache.get("k") == b"v"
    cache.close()


def test_from_url_serves_one_event_loop_after_another(redis_url: str) -> None:
    cache = RedisCache.from_url(redis_url)

    async def use(value: bytes) -> bytes | None:
        try:
            await cache.aset("k", value, 60)
            return await cache.aget("k")
        finally:
            await cache.aclose()

    assert asyncio.run(use(b"first")) == b"first"
    assert asyncio.run(use(b"second")) == b"second"


def test_sync_half_builds_one_client_for_many_threads(redis_url: str) -> None:
    cache = RedisCache.from_url(redis_url)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                cache.set(f"t{n}-{i}", b"v", 60)
                assert cache.get(f"t{n}-{i}") == b"v"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert len(cache._sync_owned) == 1
    finally:
        cache.close()


async def test_clients_that_decode_responses_are_refused(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as decoding:
        with pytest.raises(ConfigurationError, match="decode_responses"):
            RedisCache(decoding)
        with pytest.raises(ConfigurationError, match="decode_responses"):
            RedisCache(sync_client=decoding)
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisCache.from_url(redis_url, decode_responses=True)


async def test_constructor_rejects_what_is_not_a_client(redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="needs a redis-py client"):
        RedisCache()
    with pytest.raises(ConfigurationError, match="not dict"):
        RedisCache({})  # type: ignore[arg-type]
    async with redis.asyncio.Redis.from_url(redis_url) as aclient:
        with redis.Redis.from_url(redis_url) as sclient:
            with pytest.raises(ConfigurationError, match="two asyncio"):
                RedisCache(aclient, async_client=aclient)
            with pytest.raises(ConfigurationError, match="two sync"):
                RedisCache(sclient, sync_client=sclient)
            with pytest.raises(ConfigurationError, match="async_client must be"):
                RedisCache(async_client=sclient)
            with pytest.raises(ConfigurationError, match="sync_client must be"):
                RedisCache(sync_client=aclient)  # type: ignore[arg-type]


def test_from_url_checks_the_scheme_and_hides_passwords() -> None:
    with pytest.raises(ConfigurationError, match="redis://"):
        RedisCache.from_url("http://user:secret@localhost")
    cache = RedisCache.from_url("redis://user:secret@localhost:1/0")
    assert "secret" not in repr(cache)
    assert "user:***@localhost:1/0" in repr(cache)
    assert "secret" not in repr(RedisCache.from_url("redis://:secret@localhost:1"))
    assert repr(RedisCache.from_url("redis://localhost:1", cluster=True)) == (
        "RedisCache(cluster='redis://localhost:1')"
    )
    with pytest.raises(ConfigurationError, match="at least one"):
        RedisCache.from_sentinel([], "svc")


@pytest.mark.parametrize(
    ("url", "cluster", "match"),
    [
        ("redis://localhost:notaport/0", False, "Port"),
        ("redis://localhost:notaport/0", True, "Port"),
        ("redis://localhost:99999/0", False, "Port"),
        ("redis://localhost:6379/notadb", False, "database must be a number"),
        ("redis://localhost:6379/-1", False, "database must be a number"),
        ("redis://localhost:6379/?db=x", False, "db"),
        ("redis://localhost:6379/3", True, "only database 0"),
        ("redis://localhost:6379/0?db=2", True, "only database 0"),
        ("redis://localhost:6379/0?socket_timeout=soon", False, "socket_timeout"),
        ("redis://localhost:6379/0?no_such_option=1", False, "no_such_option"),
        ("redis://localhost:6379/0?no_such_option=1", True, "no_such_option"),
        ("unix:///tmp/redis.sock?db=2", True, "db"),
        ("redis://user:secret@localhost:notaport/0", False, "Port"),
    ],
)
def test_from_url_refuses_a_malformed_url_at_construction(
    url: str, cluster: bool, match: str
) -> None:
    # Nothing listens on these addresses: the error comes from the URL, before any connection.
    with pytest.raises(ConfigurationError, match=match) as info:
        RedisCache.from_url(url, cluster=cluster)
    assert "secret" not in str(info.value)


def test_from_url_and_from_sentinel_refuse_bad_options_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="no_such_option"):
        RedisCache.from_url("redis://localhost:1/0", no_such_option=1)
    with pytest.raises(ConfigurationError, match="no_such_option"):
        RedisCache.from_sentinel([("localhost", 1)], "svc", no_such_option=1)
    with pytest.raises(ConfigurationError, match="host, port"):
        RedisCache.from_sentinel([("localhost", "notaport")], "svc")  # type: ignore[list-item]


async def test_cluster_clients_passed_in(redis_cluster: RedisCluster) -> None:
    async with redis.asyncio.RedisCluster.from_url(redis_cluster.url) as aclient:
        with redis.RedisCluster.from_url(redis_cluster.url) as sclient:
            cache = RedisCache(async_client=aclient, sync_client=sclient)
            await cache.aset_many([(k, k.encode(), 60.0) for k in SPREAD])
            assert cache.get_many(SPREAD) == [k.encode() for k in SPREAD]
            assert await cache.aget_many(SPREAD) == [k.encode() for k in SPREAD]
            assert cache.delete_many(SPREAD[:20]) == 20
            assert await cache.adelete_many(SPREAD) == 20


async def test_sentinel_master_clients_passed_in(redis_sentinel: RedisSentinel) -> None:
    asentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        redis_sentinel.sentinels, socket_timeout=1.0
    )
    ssentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        redis_sentinel.sentinels, socket_timeout=1.0
    )
    aclient = asentinel.master_for(redis_sentinel.service_name, socket_timeout=1.0)
    sclient = ssentinel.master_for(  # type: ignore[no-untyped-call]
        redis_sentinel.service_name, socket_timeout=1.0
    )
    try:
        cache = RedisCache(async_client=aclient, sync_client=sclient)
        await cache.aset("k", b"v", 60)
        assert cache.get("k") == b"v"
        assert redis_sentinel.master.execute("GET", "k") == "v"
    finally:
        await aclient.aclose()
        sclient.close()
        for a in asentinel.sentinels:
            await a.aclose()
        for s in ssentinel.sentinels:
            s.close()


# -- SQLiteCache -------------------------------------------------------------------------------


def _rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM dataferry_cache").fetchone()
    return int(count)


def test_sqlite_uses_wal_mode(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "l2.sqlite")
    cache.set("k", b"v", 60)
    cache.close()
    conn = sqlite3.connect(tmp_path / "l2.sqlite")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


async def test_sqlite_purges_expired_rows_every_n_writes(tmp_path: Path) -> None:
    path = tmp_path / "l2.sqlite"
    cache = SQLiteCache(path, purge_every=10)
    try:
        cache.set_many([(f"old{i}", b"v", 0.01) for i in range(5)])
        await wait_until(lambda: _gone(cache, "old4"))
        for i in range(4):
            cache.set(f"new{i}", b"v", 60)
        assert _rows(path) == 9  # expired rows stay until the purge
        cache.set("new4", b"v", 60)  # the 10th write purges
        assert _rows(path) == 5
    finally:
        cache.close()


async def _gone(cache: SQLiteCache, key: str) -> bool:
    return await cache.aget(key) is None


async def test_sqlite_purges_expired_rows_every_interval(tmp_path: Path) -> None:
    path = tmp_path / "l2.sqlite"
    cache = SQLiteCache(path, purge_interval=0)
    try:
        await cache.aset("old", b"v", 0.01)
        await wait_until(lambda: _gone(cache, "old"))
        await cache.aset("new", b"v", 60)
        assert _rows(path) == 1
    finally:
        await cache.aclose()


async def test_sqlite_batches_beyond_the_variable_limit(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "l2.sqlite")
    keys = [f"k{i}" for i in range(1234)]
    try:
        await cache.aset_many([(k, k.encode(), 60.0) for k in keys])
        assert await cache.aget_many(keys) == [k.encode() for k in keys]
        assert await cache.adelete_many([*keys, *keys]) == len(keys)
        assert await cache.aget_many(keys) == [None] * len(keys)
    finally:
        await cache.aclose()


def test_sqlite_is_safe_for_many_threads(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "l2.sqlite")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(100):
                cache.set(f"t{n}-{i}", f"{n}-{i}".encode(), 60)
                assert cache.get(f"t{n}-{i}") == f"{n}-{i}".encode()
            assert cache.delete_many([f"t{n}-{i}" for i in range(50)]) == 50
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert cache.get_many(["t0-49", "t0-50", "t5-99"]) == [None, b"0-50", b"5-99"]
    finally:
        cache.close()


def _sqlite_worker(path: str, worker: int, count: int) -> None:
    """Runs in a child process: write its own keys, then read every worker's keys."""
    cache = SQLiteCache(path)
    try:
        for i in range(count):
            cache.set(f"w{worker}-{i}", f"{worker}:{i}".encode(), 60)
        cache.set_many([(f"b{worker}-{i}", b"batch", 60.0) for i in range(count)])
        for i in range(count):
            value = cache.get(f"w{worker}-{i}")
            assert value == f"{worker}:{i}".encode(), value
    finally:
        cache.close()


def test_sqlite_is_shared_by_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "l2.sqlite")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_sqlite_worker, args=(path, n, 200)) for n in range(3)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    cache = SQLiteCache(path)
    try:
        for n in range(3):
            keys = [f"w{n}-{i}" for i in range(200)]
            assert cache.get_many(keys) == [f"{n}:{i}".encode() for i in range(200)]
            assert cache.get_many([f"b{n}-{i}" for i in range(200)]) == [b"batch"] * 200
    finally:
        cache.close()


def test_sqlite_memory_is_one_database_for_all_threads() -> None:
    cache = SQLiteCache(":memory:")
    cache.set("k", b"v", 60)
    seen: list[bytes | None] = []
    thread = threading.Thread(target=lambda: seen.append(cache.get("k")))
    thread.start()
    thread.join()
    assert seen == [b"v"]
    cache.close()
    assert cache.get("k") is None  # closing an in-memory database discards it
    cache.close()


async def test_sqlite_batches_are_atomic(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "l2.sqlite")
    try:
        with pytest.raises(DistributedCacheError):
            await cache.aset_many([("a", b"1", 60.0), ("b", object(), 60.0)])  # type: ignore[list-item]
        assert await cache.aget("a") is None
    finally:
        await cache.aclose()


def test_sqlite_waits_for_a_writer_holding_the_file(tmp_path: Path) -> None:
    path = tmp_path / "l2.sqlite"
    # Another process created the file (not in WAL mode yet) and holds the write lock: the
    # cache's first call waits for it instead of failing.
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    release.start()
    cache = SQLiteCache(path, busy_timeout=10)
    try:
        cache.set("k", b"v", 60)
        assert cache.get("k") == b"v"
    finally:
        release.join()
        holder.close()
        cache.close()


def test_sqlite_close_then_reuse_reopens(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "l2.sqlite")
    cache.set("k", b"v", 60)
    cache.close()
    assert cache.get("k") == b"v"
    assert repr(cache) == f"SQLiteCache({str(tmp_path / 'l2.sqlite')!r})"
    cache.close()


@pytest.mark.parametrize(
    "kwargs", [{"busy_timeout": -1}, {"purge_every": 0}, {"purge_interval": -1.0}]
)
def test_sqlite_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SQLiteCache(":memory:", **kwargs)


def test_sqlite_errors_are_distributed_cache_errors(tmp_path: Path) -> None:
    path = tmp_path / "l2.sqlite"
    cache = SQLiteCache(path)
    path.mkdir()  # the file became a directory after the cache was built
    with pytest.raises(DistributedCacheError) as info:
        cache.get("k")
    assert isinstance(info.value.__cause__, sqlite3.Error)
    assert path.is_dir()  # not a corruption: nothing was moved aside
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []


def test_sqlite_in_a_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        SQLiteCache(tmp_path / "missing-dir" / "l2.sqlite")
    with pytest.raises(ConfigurationError, match="directory"):
        SQLiteCache(tmp_path)
    assert not (tmp_path / "missing-dir").exists()
    SQLiteCache(":memory:").close()
    relative = SQLiteCache("l2-relative.sqlite")  # the current directory exists: fine
    assert not Path("l2-relative.sqlite").exists()  # nothing is opened before the first call
    relative.close()
