"""dataferry.contrib.django: the DataFerryCache backend, beyond what Django's own suite checks.

Django's ``BaseCacheTests`` run in tests/django_suite/. Here: configuration, the async methods
(Django's suite is sync only), coherence of the sync and async caches and with plain DataFerry
caches, atomicity across processes, serialization safety, tags and ``invalidate_on_commit``
with a real database.
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.django_suite._setup import configure_django

configure_django()

from asgiref.sync import async_to_sync  # noqa: E402
from django.core.cache import caches  # noqa: E402
from django.db import transaction  # noqa: E402
from django.test import override_settings  # noqa: E402

import dataferry as df  # noqa: E402
from dataferry.contrib.django import (  # noqa: E402
    DataFerryCache,
    ashutdown_caches,
    invalidate_on_commit,
    shutdown_caches,
)

BACKEND = "dataferry.contrib.django.DataFerryCache"


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    # Every test gets caches of its own (backends with one configuration share them).
    shutdown_caches()
    yield
    shutdown_caches()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://?namespace=dj"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/dj.sqlite?namespace=dj"
    url: str = request.getfixturevalue("redis_url")
    return f"{url}?namespace=dj"


@pytest.fixture(params=["sqlite", "redis"])
def shared_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An L2 that several processes (here: several engines) share."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/dj.sqlite?namespace=dj"
    url: str = request.getfixturevalue("redis_url")
    return f"{url}?namespace=dj"


def make(location: str, **options: Any) -> DataFerryCache:
    params: dict[str, Any] = {"OPTIONS": options}
    for name in ("TIMEOUT", "KEY_PREFIX", "VERSION", "KEY_FUNCTION"):
        if name.lower() in options:
            params[name] = options.pop(name.lower())
    return DataFerryCache(location, params)


def raw_l2(location: str) -> df.DistributedCache:
    """A client of the same L2, to look at what is stored (as an operator would)."""
    if location.startswith("sqlite:///"):
        return df.SQLiteCache(location.removeprefix("sqlite://").split("?")[0])
    return df.RedisCache.from_url(location.split("?")[0])


# -- import and configuration -----------------------------------------------------------------


def test_import_without_django_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "dataferry.contrib.django")
    monkeypatch.setitem(sys.modules, "django.conf", None)
    with pytest.raises(ImportError, match=r"pip install 'dataferry\[django\]'"):
        importlib.import_module("dataferry.contrib.django")


@pytest.mark.parametrize(
    ("location", "options", "message"),
    [
        ("", {}, "needs a LOCATION"),
        ("ftp://host", {}, "a cache URL starts with"),
        ("memory://", {"cull_frequency": 3}, "unknown option 'cull_frequency'"),
        ("memory://", {"serializer": "yaml"}, "serializer must be one of"),
        ("memory://", {"compressor": "brotli"}, "compressor must be one of"),
        ("memory://", {"max_entries": -1}, "max_entries must be an int"),
        ("memory://", {"max_bytes": 0}, "max_bytes must be an int"),
        ("memory://", {"keys": "no-colon"}, "keys must look like"),
        ("memory://", {"backplane": "yes"}, "backplane must be True, False or a Backplane"),
        ("memory://", {"backplane": True}, "backplane=true needs a Redis URL"),
        ("memory://", {"namespace": "has space"}, "namespace must match"),
        ("memory://", {"max_payload_bytes": 0}, "max_payload_bytes must be a positive int"),
    ],
)
def test_bad_configuration_raises_a_clear_error(
    location: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(df.ConfigurationError, match=message):
        make(location, **options)


def test_a_backplane_is_given_once() -> None:
    backplane = df.RedisBackplane.from_url("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(df.ConfigurationError, match="both in LOCATION and in OPTIONS"):
            make("redis://127.0.0.1:1/0?backplane=true", backplane=backplane)
    finally:
        backplane.close()


def test_options_are_case_insensitive_and_shape_the_l1() -> None:
    cache = make("memory://", MAX_ENTRIES=2, Serializer="json")
    cache.set_many({"a": 1, "b": 2, "c": 3})
    # At most two entries in the (only) store: the L1 of max_entries=2.
    assert len(cache.get_many(["a", "b", "c"])) <= 2
    assert repr(cache) == "DataFerryCache('memory://')"
    small = make("memory://?max_entries=2", max_bytes=10_000_000)
    small.set_many({"a": 1, "b": 2, "c": 3})
    assert len(small.get_many(["a", "b", "c"])) <= 2  # the URL's max_entries, with max_bytes


def test_pickle_without_a_secret_key_is_refused_with_the_fixes_named() -> None:
    with override_settings(SECRET_KEY=""), pytest.raises(df.ConfigurationError, match="json"):
        make("memory://")
    with override_settings(SECRET_KEY=""):
        assert make("memory://", serializer="json") is not None  # JSON needs no key


# -- the API, sync and async ------------------------------------------------------------------


async def test_every_method_in_both_colours(location: str) -> None:
    cache = make(location, timeout=60)
    cache.set("a", {"x": 1})
    assert await cache.aget("a") == {"x": 1}
    await cache.aset("b", [1, 2])
    assert cache.get("b") == [1, 2]
    assert await cache.aget("missing", "default") == "default"

    assert await cache.aadd("b", "other") is False
    assert await cache.aadd("c", 3) is True
    assert cache.add("c", 4) is False
    assert cache.get("c") == 3

    assert await cache.aset_many({"d": 4, "e": None}) == []
    assert cache.get_many(["d", "e", "zz"]) == {"d": 4, "e": None}
    assert await cache.aget_many(iter(["d", "e", "zz"])) == {"d": 4, "e": None}
    assert await cache.ahas_key("e") is True
    assert cache.has_key("zz") is False

    assert await cache.aincr("c", 10) == 13
    assert await cache.adecr("c") == 12
    assert cache.incr("c") == 13
    with pytest.raises(ValueError, match="not found"):
        await cache.aincr("zz")
    with pytest.raises(TypeError):
        await cache.aincr("e")  # None + 1

    assert await cache.atouch("c", 120) is True
    assert await cache.atouch("zz") is False
    assert await cache.atouch("c", 0) is True
    assert cache.get("c") is None

    assert await cache.adelete("d") is True
    assert await cache.adelete("d") is False
    await cache.adelete_many(["a", "b"])
    assert cache.get_many(["a", "b"]) == {}

    async def compute() -> str:
        return "computed"

    assert await cache.aget_or_set("f", compute) == "computed"
    assert cache.get("f") == "computed"
    assert await cache.aget_or_set("f", "ignored") == "computed"
    assert await cache.aget_or_set("g", lambda: "not kept", timeout=0) == "not kept"
    assert cache.get("g") is None

    assert await cache.aincr_version("f") == 2
    assert await cache.aget("f", version=2) == "computed"
    await cache.aclear()
    assert cache.get("f", version=2) is None
    assert await cache.aget("e", "gone") == "gone"
    await cache.aclose()  # nothing to do: the caches are shared and stay open
    assert await cache.aset("h", 1) is None
    assert cache.get("h") == 1


@pytest.mark.parametrize("l1", [True, False])
async def test_a_write_in_one_colour_is_read_in_the_other_at_once(
    shared_location: str, l1: bool
) -> None:
    cache = make(shared_location, **({} if l1 else {"max_entries": 0}))
    cache.set("k", "old")
    assert await cache.aget("k") == "old"  # now in the async L1 too
    cache.set("k", "new")
    assert await cache.aget("k") == "new"
    await cache.aset("k", "newer")
    assert cache.get("k") == "newer"
    cache.delete("k")
    assert await cache.aget("k") is None

    await cache.aset("t", 1, tags=["group"])
    assert cache.get("t") == 1
    cache.remove_by_tag("group")
    assert await cache.aget("t") is None

    cache.set("c", 1)
    assert await cache.aget("c") == 1
    cache.clear()
    assert await cache.aget("c") is None


def test_async_methods_work_from_one_event_loop_after_another(location: str) -> None:
    cache = make(location)
    for i in range(3):
        # asgiref runs each call in a new event loop, as Django does in sync views.
        async_to_sync(cache.aset)("k", i)
        assert async_to_sync(cache.aget)("k") == i
        assert asyncio.run(cache.aget("k")) == i
        assert cache.get("k") == i


def test_backends_with_one_configuration_share_their_caches(location: str) -> None:
    first = make(location, key_prefix="one")
    second = make(location, key_prefix="two")
    with ThreadPoolExecutor(1) as pool:  # Django builds a backend per thread
        third = pool.submit(make, location, key_prefix="one").result()
    assert first.dataferry is second.dataferry is third.dataferry
    assert first.async_dataferry is second.async_dataferry
    first.set("k", 1)
    assert second.get("k") is None  # KEY_PREFIX keeps them apart...
    assert third.get("k") == 1
    second.clear()  # ...but clear() empties the whole namespace, as Django's Redis backend
    assert first.get("k") is None
    other = make(location, key_prefix="one", max_entries=7)  # another configuration
    assert other.dataferry is not first.dataferry


def test_close_keeps_the_caches_open_and_shutdown_reopens_them(shared_location: str) -> None:
    cache = make(shared_location)
    cache.set("k", "v")
    cache.close()  # Django calls it after every request
    assert cache.get("k") == "v"
    before = cache.dataferry
    shutdown_caches()
    assert before.closed
    assert cache.get("k") == "v"  # the same backend opens new caches on the same L2
    assert cache.dataferry is not before


async def test_ashutdown_closes_the_async_cache_in_the_running_loop(shared_location: str) -> None:
    cache = make(shared_location)
    await cache.aset("k", "v")
    before = cache.async_dataferry
    await ashutdown_caches()
    assert before.closed
    assert await cache.aget("k") == "v"


# -- keys and timeouts ------------------------------------------------------------------------


def test_django_key_functions_apply(location: str) -> None:
    def key_function(key: str, prefix: str, version: int) -> str:
        return f"custom|{prefix}|{version}|{key}"

    plain = make(location)
    prefixed = make(location, key_prefix="p", version=3)
    custom = make(location, key_prefix="p", key_function=key_function)
    plain.set("k", "plain")
    prefixed.set("k", "prefixed")
    custom.set("k", "custom")
    assert (plain.get("k"), prefixed.get("k"), custom.get("k")) == ("plain", "prefixed", "custom")
    assert plain.get("k", version=3) is None
    assert plain.dataferry.get(":1:k") == pickle.dumps("plain", 5)  # Django's key, as stored
    assert custom.dataferry.exists("custom|p|1|k")


@pytest.mark.filterwarnings("ignore::django.core.cache.CacheKeyWarning")  # memcached's limit
def test_keys_too_long_for_dataferry_are_hashed_apart(location: str) -> None:
    cache = make(location)
    first, second = "x" * 3000 + "1", "x" * 3000 + "2"
    cache.set(first, 1)
    cache.set(second, 2)
    assert (cache.get(first), cache.get(second)) == (1, 2)
    assert cache.delete(first) is True
    assert cache.get(first) is None


def test_timeouts_none_zero_negative_and_float(shared_location: str) -> None:
    cache = make(shared_location, max_entries=0)  # every answer from L2
    store = raw_l2(shared_location)
    prefix = "dj:k:"
    cache.set("forever", 1, None)
    remaining = store.ttl(prefix + ":1:forever")
    assert remaining is not None
    assert remaining > 90 * 365 * 86400
    cache.set("float", 1, 100.5)
    remaining = store.ttl(prefix + ":1:float")
    assert remaining is not None
    assert 99 < remaining <= 100.5
    cache.set("gone", 1)
    cache.set("gone", 2, 0)
    assert cache.has_key("gone") is False
    cache.set("gone", 1)
    cache.set_many({"gone": 2}, -5)
    assert cache.get("gone") is None
    assert cache.add("absent", 1, 0) is True  # absent: "added", but nothing is stored
    assert cache.has_key("absent") is False
    cache.set("present", 1)
    assert cache.add("present", 2, 0) is False
    assert cache.touch("present", None) is True
    remaining = store.ttl(prefix + ":1:present")
    assert remaining is not None
    assert remaining > 90 * 365 * 86400
    store.close()


def test_incr_keeps_the_expiry_and_the_tags(shared_location: str) -> None:
    cache = make(shared_location, max_entries=0)
    store = raw_l2(shared_location)
    cache.set("n", 1, 30, tags=["counters"])
    assert cache.incr("n", 5) == 6
    remaining = store.ttl("dj:k::1:n")
    assert remaining is not None
    assert remaining <= 30  # not reset to the default timeout (300)
    cache.remove_by_tag("counters")  # the tag survived the rewrite
    assert cache.get("n") is None
    store.close()


def test_touch_keeps_the_tags(location: str) -> None:
    cache = make(location)
    cache.set("k", "v", tags=["t"])
    assert cache.touch("k", 60) is True
    cache.remove_by_tag("t")
    assert cache.has_key("k") is False


# -- atomicity --------------------------------------------------------------------------------


def test_add_is_atomic_across_processes_sharing_the_l2(shared_location: str) -> None:
    # Two configurations: two engines, as two processes have (L1s of their own).
    nodes = [make(shared_location), make(shared_location, max_entries=5000)]
    assert nodes[0].dataferry is not nodes[1].dataferry
    barrier = threading.Barrier(8)

    def contend(i: int) -> list[bool]:
        barrier.wait()
        return [nodes[i % 2].add(f"lock-{n}", i, 30) for n in range(5)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(contend, range(8)))
    for n in range(5):
        assert sum(r[n] for r in results) == 1, f"lock-{n} was added more than once"


async def test_aadd_is_atomic_between_tasks_and_threads(location: str) -> None:
    cache = make(location)
    started = threading.Barrier(4)

    def in_thread() -> bool:
        started.wait()
        return cache.add("k", "thread")

    async def in_task() -> bool:
        return await cache.aadd("k", "task")

    with ThreadPoolExecutor(4) as pool:
        threads = [asyncio.wrap_future(pool.submit(in_thread)) for _ in range(4)]
        results = await asyncio.gather(*threads, *(in_task() for _ in range(4)))
    assert sum(results) == 1
    assert cache.get("k") in ("thread", "task")


def test_incr_is_atomic_across_processes_sharing_the_l2(shared_location: str) -> None:
    nodes = [make(shared_location), make(shared_location, max_entries=5000)]
    nodes[0].set("n", 0)
    barrier = threading.Barrier(6)

    def count(i: int) -> None:
        barrier.wait()
        for _ in range(10):
            nodes[i % 2].incr("n")

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(count, range(6)))
    # Read by a node without L1 (without a backplane, the L1s of the two nodes may each
    # hold a value the other replaced since).
    assert make(shared_location, max_entries=0).get("n") == 60


def test_get_or_set_calls_default_once_for_concurrent_callers(location: str) -> None:
    cache = make(location)
    joined = threading.Semaphore(0)
    unsubscribe = cache.dataferry.subscribe(
        lambda name, _: joined.release() if name == "stampede_joins" else None
    )
    release = threading.Event()
    calls = []

    def slow() -> str:
        calls.append(1)
        assert release.wait(10)
        return "value"

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(cache.get_or_set, "k", slow) for _ in range(4)]
        for _ in range(3):  # the three others joined the first caller's computation
            assert joined.acquire(timeout=10)
        release.set()
        assert [f.result() for f in futures] == ["value"] * 4
    unsubscribe()
    assert len(calls) == 1


# -- values: copies, serializers, authentication ----------------------------------------------


def test_each_read_gets_its_own_copy(location: str) -> None:
    cache = make(location)
    cache.set("k", {"items": [1]})
    mutated = cache.get("k")
    mutated["items"].append(2)
    assert cache.get("k") == {"items": [1]}


class Unpicklable:
    def __reduce__(self) -> Any:
        raise pickle.PicklingError("not today")


def test_unpicklable_values_raise_pickles_own_error_and_store_nothing(location: str) -> None:
    cache = make(location)
    cache.set("k", "before")
    with pytest.raises(pickle.PicklingError, match="not today"):
        cache.set("k", Unpicklable())
    with pytest.raises(pickle.PicklingError):
        cache.set_many({"k": 1, "j": Unpicklable()})
    with pytest.raises(TypeError, match="cannot pickle"):  # what pickle raises for a lock
        cache.add("j", threading.Lock())
    assert cache.get_many(["k", "j"]) == {"k": "before"}


def test_json_entries_are_plain_dataferry_entries(shared_location: str) -> None:
    cache = make(shared_location, serializer="json", namespace="shared")
    plain = df.DataFerry.from_url(shared_location, namespace="shared")
    try:
        cache.set("k", {"a": [1, 2]})
        assert plain.get(":1:k") == {"a": [1, 2]}  # another service reads it
        plain.set(":1:other", ["from", "dataferry"])
        assert cache.get("other") == ["from", "dataferry"]
        with pytest.raises(df.SerializationError):
            cache.set("bad", object())
        assert cache.has_key("bad") is False
    finally:
        plain.close()


def test_pickled_entries_are_only_read_when_signed_with_our_key(shared_location: str) -> None:
    cache = make(shared_location, max_entries=0)
    # Someone who can write to the L2 but doesn't know SECRET_KEY plants a pickle.
    intruder = df.DataFerry.from_url(
        shared_location,
        memory=None,
        codec=df.Codec(serializer=df.PickleSerializer(), signing_key=bytes(32)),
    )
    try:
        intruder.set(":1:k", pickle.dumps("planted"))
        assert cache.get("k") is None  # a miss, never unpickled
    finally:
        intruder.close()


def test_secret_key_rotation_keeps_entries_readable(shared_location: str) -> None:
    with override_settings(SECRET_KEY="old-secret-" + "x" * 40):
        make(shared_location, max_entries=0).set("k", "kept")
    shutdown_caches()
    rotated = {
        "SECRET_KEY": "new-secret-" + "y" * 40,
        "SECRET_KEY_FALLBACKS": ["old-secret-" + "x" * 40],
    }
    with override_settings(**rotated):
        assert make(shared_location, max_entries=0).get("k") == "kept"
    shutdown_caches()
    with override_settings(SECRET_KEY="unrelated-" + "z" * 40):
        assert make(shared_location, max_entries=0).get("k") is None


def test_keys_option_encrypts_entries(shared_location: str) -> None:
    key = df.Keyring.generate_key()
    cache = make(shared_location, keys=f"2026:{key}", compressor="gzip", max_entries=0)
    cache.set("k", "secret value " * 100)
    store = raw_l2(shared_location)
    data = store.get("dj:k::1:k")
    assert data is not None
    assert df.Codec.read_header(data).encrypted
    assert b"secret value" not in data
    assert cache.get("k") == "secret value " * 100
    store.close()


# -- the Redis backplane ----------------------------------------------------------------------


def test_backplane_option_keeps_other_nodes_l1_coherent(redis_url: str) -> None:
    location = f"{redis_url}?namespace=dj"
    node_a = make(location, backplane=True)
    node_b = make(location, backplane=True, max_entries=5000)  # another process's caches
    heard: dict[str, list[str]] = {"a": [], "b": []}
    arrived = threading.Condition()

    def listener(node: str) -> Any:
        def hear(name: str, attributes: dict[str, Any]) -> None:
            if name == "backplane_messages":
                with arrived:
                    heard[node].append(attributes["key"])
                    arrived.notify_all()

        return hear

    node_a.async_dataferry.subscribe(listener("a"))
    node_b.dataferry.subscribe(listener("b"))
    node_a.set("k", "one")
    with arrived:  # (wait for it: arriving late, it would pass for the second one below)
        assert arrived.wait_for(lambda: "dj:k::1:k" in heard["b"], timeout=10)
    assert node_b.get("k") == "one"  # now in node B's L1
    node_a.set("k", "two")
    with arrived:
        assert arrived.wait_for(lambda: heard["b"].count("dj:k::1:k") == 2, timeout=10)
    assert node_b.get("k") == "two"
    # Node A's async cache heard of its sync cache's write once, in process; the echo of its
    # publish through Redis is skipped. Node B's later write arrives after any such echo.
    node_b.set("later", 1)
    with arrived:
        assert arrived.wait_for(lambda: "dj:k::1:later" in heard["a"], timeout=10)
    assert heard["a"].count("dj:k::1:k") == 2  # the two sets of "k", each heard once


# -- invalidate_on_commit ---------------------------------------------------------------------


@pytest.fixture
def default_cache(tmp_path: Path) -> Iterator[DataFerryCache]:
    setting = {"default": {"BACKEND": BACKEND, "LOCATION": f"sqlite:///{tmp_path}/c.sqlite"}}
    with override_settings(CACHES=setting):
        cache = caches["default"]
        assert isinstance(cache, DataFerryCache)
        yield cache


def test_invalidation_waits_for_the_commit(default_cache: DataFerryCache) -> None:
    default_cache.set_many({"a": 1, "b": 2})
    with transaction.atomic():
        invalidate_on_commit("a", "b")
        assert default_cache.get_many(["a", "b"]) == {"a": 1, "b": 2}  # not committed yet
    assert default_cache.get_many(["a", "b"]) == {}


def test_a_rollback_invalidates_nothing(default_cache: DataFerryCache) -> None:
    default_cache.set("a", 1, tags=["t"])

    def change_then_fail() -> None:
        with transaction.atomic():
            invalidate_on_commit("a", tags=["t"])
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert default_cache.get("a") == 1


def test_outside_a_transaction_invalidation_is_immediate(default_cache: DataFerryCache) -> None:
    default_cache.set("a", 1, version=2)
    default_cache.set("tagged", 1, tags=["t"])
    invalidate_on_commit("a", version=2, tags="t")
    assert default_cache.get("a", version=2) is None
    assert default_cache.get("tagged") is None


def test_tags_need_a_dataferry_cache() -> None:
    with pytest.raises(df.ConfigurationError, match="only a DataFerryCache removes tags"):
        invalidate_on_commit("a", tags=["t"])  # CACHES' default is a LocMemCache here
    with pytest.raises(df.ConfigurationError, match="tags must be non-empty str"):
        invalidate_on_commit(tags=[""])
