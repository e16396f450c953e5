# GENERATED from tests/_async/test_lifecycle.py by scripts/unasync.py: do not edit.
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
from tests.chaos import Faults, sync_until


@dataclasses.dataclass
class User:
    id: int
    name: str


def node(backend: Any, **kwargs: Any) -> df.DataFerry:
    kwargs.setdefault("namespace", "test")
    return df.DataFerry(distributed=backend, **kwargs)


# -- lifecycle ----------------------------------------------------------------------------------


def test_every_call_after_close_raises_cache_closed(backend: Any) -> None:
    cache = node(backend)
    view = cache.tenant("acme")
    with cache:
        cache.set("k", 1)
        view.set("k", 2)
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
            call()
    with pytest.raises(df.CacheClosedError):
        cache.__enter__()
    cache.close()  # closing again does nothing
    assert "closed" in repr(cache)


def test_closing_a_tenant_view_leaves_the_cache_and_other_tenants_alone() -> None:
    cache = df.DataFerry(distributed=df.SQLiteCache(":memory:"), memory=None)
    globex = cache.tenant("globex")
    globex.set("k", "globex data")
    with cache.tenant("acme") as acme:
        acme.set("k", "acme data")
    acme.close()
    assert not cache.closed
    assert globex.get("k") == "globex data"  # the shared in-memory L2 is still there
    assert cache.tenant("acme").get("k") == "acme data"
    cache.close()


def test_views_created_after_close_are_closed_too() -> None:
    cache = df.DataFerry()
    cache.close()
    with pytest.raises(df.CacheClosedError):
        cache.tenant("late").get_or_set("k", lambda: 1)


# -- options ------------------------------------------------------------------------------------


def test_a_call_can_unset_an_inherited_option() -> None:
    now = [0.0]
    memory = df.MemoryCache(clock=lambda: now[0])
    cache = df.DataFerry(memory=memory, default_options=df.EntryOptions(l1_ttl=1))
    cache.set("short", "v", ttl=60)
    cache.set("long", "v", ttl=60, options=df.EntryOptions(l1_ttl=None))
    now[0] = 2.0
    assert cache.try_get("short") == (False, None)  # the default l1_ttl applied
    assert cache.try_get("long") == (True, "v")  # None unset it: the ttl applies


def test_ttl_accepts_timedelta_everywhere() -> None:
    now = [0.0]
    cache = df.DataFerry(
        memory=df.MemoryCache(clock=lambda: now[0]), default_ttl=timedelta(seconds=30)
    )
    cache.set("a", 1, ttl=timedelta(minutes=2))
    cache.set("b", 1)
    assert cache.get_or_set("c", lambda: df.Entry(1, ttl=timedelta(seconds=10))) == 1
    cache.set("d", 1, options=df.EntryOptions(ttl=timedelta(hours=1)))
    now[0] = 60.0
    assert cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "d": 1}


@pytest.mark.parametrize("ttl", [1e17, float("inf"), timedelta(days=365 * 200)])
def test_a_ttl_beyond_what_the_l2_can_store_is_refused_at_the_call(
    backend: Any, ttl: Any
) -> None:
    with node(backend) as cache:
        with pytest.raises(df.ConfigurationError):
            cache.set("k", 1, ttl=ttl)
        with pytest.raises(df.ConfigurationError):
            cache.get_or_set("k", lambda: 1, ttl=ttl)
        assert cache.try_get("k") == (False, None)
        assert cache.stats().distributed_errors == 0
    with pytest.raises(df.ConfigurationError):
        df.EntryOptions(ttl=ttl)


# -- errors from the tree, at the call ----------------------------------------------------------


def test_bad_arguments_raise_from_the_tree_and_write_nothing(backend: Any) -> None:
    with node(backend) as cache:
        with pytest.raises(df.InvalidKeyError):
            cache.get_many(None)  # type: ignore[arg-type]
        with pytest.raises(df.InvalidKeyError):
            cache.remove_many(5)  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError):
            cache.set("k", 1, tags=5)  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError):
            cache.get_or_set("k", lambda: df.Entry(1, tags=5))  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError):
            cache.get_or_set("k", "not callable")  # type: ignore[call-overload]
        with pytest.raises(df.InvalidTenantError):
            cache.tenant(None)  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError):
            cache.get_or_set_many(["k"], None)  # type: ignore[arg-type]
        assert cache.try_get("k") == (False, None)


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
def test_bad_configuration_is_a_configuration_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(df.ConfigurationError) as info:
        df.DataFerry(**kwargs)
    assert not isinstance(info.value, df.InvalidTenantError)


# -- typed reads --------------------------------------------------------------------------------


def test_type_is_honoured_whichever_level_answers(backend: Any) -> None:
    with node(backend) as cache:
        cache.set("u", {"id": 1, "name": "Ada"})
        # L1 holds the dict that was set; a typed read gets what L2 would give.
        assert cache.get("u", type=User) == User(1, "Ada")
        assert cache.get_or_set("u", lambda: None, type=User) == User(1, "Ada")
        assert cache.get_many(["u"], type=User) == {"u": User(1, "Ada")}
        assert cache.try_get("u", type=User) == (True, User(1, "Ada"))
        assert cache.get("u") == {"id": 1, "name": "Ada"}  # untyped: the live value
        cache.set("users", [{"id": 2, "name": "Bob"}])
        assert cache.get("users", type=list[User]) == [User(2, "Bob")]
        cache.set("bad", {"nope": True})
        assert cache.try_get("bad", type=User) == (False, None)


def test_a_typed_read_from_l2_is_served_typed_from_l1(shared_backend: Any) -> None:
    with node(shared_backend) as writer, node(shared_backend) as reader:
        writer.set("u", User(1, "Ada"))
        assert reader.get("u", type=User) == User(1, "Ada")  # from L2
        assert reader.get("u", type=User) == User(1, "Ada")  # from L1
        assert reader.stats().memory_hits == 1


# -- oversized values ---------------------------------------------------------------------------


def test_an_oversized_factory_value_is_returned_and_stored_nowhere(
    l2_backend: Any,
) -> None:
    with node(l2_backend, max_payload_bytes=100) as cache:
        calls = 0

        def big() -> str:
            nonlocal calls
            calls += 1
            return "x" * 1000

        assert cache.get_or_set("big", big) == "x" * 1000
        assert cache.get_or_set("big", big) == "x" * 1000
        assert calls == 2  # not in L1 either
        assert cache.stats().payload_too_large == 2
        with pytest.raises(df.PayloadTooLargeError):
            cache.set("big", "x" * 1000)
        assert cache.try_get("big") == (False, None)


# -- the L2 pipeline and events -----------------------------------------------------------------


def errors(cache: df.DataFerry, n: int) -> bool:
    return cache.stats().distributed_errors == n


def test_every_l2_failure_is_counted_once_and_answered(shared_backend: Any) -> None:
    faults = Faults(RuntimeError("Event loop is closed"))
    # resilience=None: no breaker to skip calls, no replay of the failed writes (see
    # tests/_sync/test_resilience.py for those).
    with node(
        shared_backend, distributed_layers=[faults], memory=None, resilience=None
    ) as cache:
        cache.set("a", 1)  # 1: set
        assert cache.get_or_set("a", lambda: 2) == 2  # 2: get, 3: set (in the background,
        sync_until(lambda: errors(cache, 3))  # as the read failed)
        assert cache.get_many(["a", "b"]) == {}  # 4: get_many
        cache.set_many({"c": 3})  # 5: set_many
        cache.remove("c")  # 6: delete
        cache.remove_many(["a", "c"])  # 7: delete_many
        cache.expire("a")  # 8: get, 9: the delete it does instead
        assert cache.stats().distributed_errors == 9
        faults.failing = False
        cache.set("a", 4)
        assert cache.get("a") == 4
        assert cache.stats().distributed_errors == 9


def test_a_raising_listener_never_breaks_a_call(
    l2_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with node(l2_backend) as cache:
        seen: list[str] = []

        def broken(event: str, attributes: dict[str, Any]) -> None:
            raise RuntimeError("listener bug")

        def recorder(event: str, attributes: dict[str, Any]) -> None:
            seen.append(event)
            stop()  # unsubscribing while an event is dispatched is fine

        cache.subscribe(broken)
        stop = cache.subscribe(recorder)
        l2_backend.set("test:k:bad", b"garbage", 60)
        with caplog.at_level(logging.DEBUG, logger="dataferry"):
            assert cache.get_or_set("bad", lambda: "computed") == "computed"
            assert cache.try_get("nope") == (False, None)
        assert seen == ["decode_errors"]
        assert cache.stats().decode_errors == 1
        assert sum("listener" in r.getMessage() for r in caplog.records) >= 1
        assert not any("garbage" in r.getMessage() for r in caplog.records)
