# GENERATED from tests/_async/test_facade.py by scripts/unasync.py: do not edit.
"""DataFerry behaviour on every L2 kind (the sync twin's tests are generated from this)."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

import dataferry as df
from tests.chaos import sync_until


class Counter:
    """A factory that counts its calls."""

    def __init__(self, value: Any = "v") -> None:
        self.calls = 0
        self.value = value

    def __call__(self) -> Any:
        self.calls += 1
        return self.value


def node(backend: Any, **kwargs: Any) -> df.DataFerry:
    """A cache 'node': its own L1 in front of the shared L2."""
    kwargs.setdefault("namespace", "test")
    return df.DataFerry(distributed=backend, **kwargs)


def test_get_or_set_computes_once_then_hits(backend: Any) -> None:
    with node(backend) as cache:
        load = Counter({"id": 1, "name": "Ada"})
        assert cache.get_or_set("user:1", load) == {"id": 1, "name": "Ada"}
        assert cache.get_or_set("user:1", load) == {"id": 1, "name": "Ada"}
        assert load.calls == 1
        stats = cache.stats()
        assert stats.factory_calls == 1
        assert stats.memory_hits == 1


def test_sync_factory_is_accepted(backend: Any) -> None:
    with node(backend) as cache:
        assert cache.get_or_set("k", lambda: 42) == 42
        assert cache.get("k") == 42


def test_none_is_a_cached_value(backend: Any) -> None:
    with node(backend) as cache:
        load = Counter(None)
        assert cache.get_or_set("nothing", load) is None
        assert cache.get_or_set("nothing", load) is None
        assert load.calls == 1
        assert cache.try_get("nothing") == (True, None)
        assert cache.exists("nothing")


def test_try_get_and_get_on_a_miss(backend: Any) -> None:
    with node(backend) as cache:
        assert cache.try_get("absent") == (False, None)
        assert cache.get("absent") is None
        assert cache.get("absent", default="fallback") == "fallback"
        assert not cache.exists("absent")


def test_set_get_remove(backend: Any) -> None:
    with node(backend) as cache:
        cache.set("a", [1, 2, 3], ttl=60)
        assert cache.get("a") == [1, 2, 3]
        cache.remove("a")
        assert cache.try_get("a") == (False, None)
        cache.remove("a")  # removing a missing key is fine


def test_factory_exception_is_raised_and_not_cached(backend: Any) -> None:
    with node(backend) as cache:
        calls = 0

        def failing() -> str:
            nonlocal calls
            calls += 1
            raise LookupError("database says no")

        with pytest.raises(LookupError, match="database says no"):
            cache.get_or_set("k", failing)
        with pytest.raises(LookupError):
            cache.get_or_set("k", failing)
        assert calls == 2
        assert cache.stats().factory_errors == 2
        assert cache.get_or_set("k", Counter("ok")) == "ok"


def test_entry_adapts_ttl_and_zero_ttl_is_not_cached(backend: Any) -> None:
    with node(backend) as cache:
        load = Counter(df.Entry("not found", ttl=0))
        assert cache.get_or_set("missing-user", load) == "not found"
        assert cache.get_or_set("missing-user", load) == "not found"
        assert load.calls == 2

        cache.get_or_set("short", Counter(df.Entry("x", ttl=5)), ttl=3600)
        if backend is not None:
            raw = backend.get("test:k:short")
            decoded = df.Codec().decode(raw, key="test:k:short")
            assert math.isclose(decoded.logical_expiry - decoded.created_at, 5, abs_tol=0.01)


def test_second_node_reads_what_the_first_wrote(shared_backend: Any) -> None:
    backend = shared_backend
    with node(backend) as first, node(backend) as second:
        first.set("shared", {"n": 1})
        load = Counter("computed")
        assert second.get_or_set("shared", load) == {"n": 1}
        assert load.calls == 0
        assert second.stats().distributed_hits == 1
        # Now in the second node's L1 too.
        assert second.get("shared") == {"n": 1}
        assert second.stats().memory_hits == 1


def test_expire_makes_readers_miss_but_keeps_l2_entry(backend: Any) -> None:
    with node(backend) as cache:
        cache.set("k", "old", ttl=600)
        cache.expire("k")
        assert cache.try_get("k") == (False, None)
        assert cache.get_or_set("k", Counter("new")) == "new"
        if backend is not None:
            cache.expire("k")
            raw = backend.get("test:k:k")
            assert raw is not None  # kept (stale) for fail-safe
            assert df.Codec().decode(raw, key="test:k:k").value == "new"
        cache.expire("never-set")  # no error


def test_batch_operations(backend: Any) -> None:
    with node(backend) as cache:
        cache.set_many({"a": 1, "b": None, "c": {"x": [1]}}, ttl=60)
        got = cache.get_many(["a", "b", "c", "zz"])
        assert got == {"a": 1, "b": None, "c": {"x": [1]}}
        cache.remove_many(["a", "c"])
        assert cache.get_many(["a", "b", "c"]) == {"b": None}


def test_get_or_set_many_loads_only_missing(backend: Any) -> None:
    with node(backend) as cache:
        cache.set("u1", "one")
        asked: list[list[str]] = []

        def load_many(keys: list[str]) -> dict[str, str]:
            asked.append(list(keys))
            return {k: k.upper() for k in keys if k != "u9"}

        got = cache.get_or_set_many(["u1", "u2", "u3", "u9"], load_many)
        assert got == {"u1": "one", "u2": "U2", "u3": "U3"}
        assert asked == [["u2", "u3", "u9"]]
        again = cache.get_or_set_many(["u2", "u3"], load_many)
        assert again == {"u2": "U2", "u3": "U3"}
        assert len(asked) == 1


def test_batch_from_second_node_hits_l2(shared_backend: Any) -> None:
    backend = shared_backend
    with node(backend) as first, node(backend) as second:
        first.set_many({f"k{i}": i for i in range(50)})
        got = second.get_many([f"k{i}" for i in range(50)])
        assert got == {f"k{i}": i for i in range(50)}
        assert second.stats().distributed_hits == 50


def test_skip_memory_and_skip_distributed(backend: Any) -> None:
    with node(backend) as cache:
        cache.set("only-l2", 1, options=df.EntryOptions(skip_memory=True))
        assert cache.stats().memory_entries == 0
        cache.set("only-l1", 2, options=df.EntryOptions(skip_distributed=True))
        assert cache.stats().memory_entries == 1
        if backend is not None:
            assert backend.get("test:k:only-l1") is None
            assert backend.get("test:k:only-l2") is not None
            assert cache.get("only-l2") == 1


def test_l1_ttl_caps_memory_lifetime(backend: Any) -> None:
    with node(backend, memory=df.MemoryCache(max_entries=10)) as cache:
        cache.set("k", "v", ttl=60, options=df.EntryOptions(l1_ttl=0.0))
        # The L1 copy is already stale; an L2 (if any) still has it.
        expected = (False, None) if backend is None else (True, "v")
        assert cache.try_get("k") == expected


@pytest.mark.parametrize("bad", ["", 42, None, b"bytes", "x" * 1025, "é" * 513, ["k"]])
def test_invalid_keys_raise_invalid_key_error(backend: Any, bad: Any) -> None:
    with node(backend) as cache:
        with pytest.raises(df.InvalidKeyError):
            cache.get_or_set(bad, Counter())
        with pytest.raises(df.InvalidKeyError):
            cache.set(bad, 1)
        with pytest.raises(df.InvalidKeyError):
            cache.get(bad)
        with pytest.raises(df.InvalidKeyError):
            cache.get_many(["ok", bad])
        if not isinstance(bad, list):  # a list can't even be a dict key
            with pytest.raises(df.InvalidKeyError):
                cache.set_many({"ok": 1, bad: 1})
        assert cache.stats().memory_entries == 0


def test_longest_valid_key_is_accepted(backend: Any) -> None:
    with node(backend) as cache:
        key = "é" * 512  # 1024 UTF-8 bytes
        cache.set(key, 1)
        assert cache.get(key) == 1


@pytest.mark.parametrize("ttl", [-1, math.nan, math.inf, "60", True])
def test_bad_ttl_raises_configuration_error(backend: Any, ttl: Any) -> None:
    with node(backend) as cache:
        with pytest.raises(df.ConfigurationError):
            cache.set("k", 1, ttl=ttl)
        with pytest.raises(df.ConfigurationError):
            cache.get_or_set("k", Counter(), ttl=ttl)
        assert cache.try_get("k") == (False, None)


def test_unserializable_value_raises_and_writes_nothing(redis_l2: Any) -> None:
    with node(redis_l2) as cache:
        with pytest.raises(df.SerializationError):
            cache.set("k", object())
        assert cache.stats().memory_entries == 0
        assert redis_l2.get("test:k:k") is None
        with pytest.raises(df.SerializationError):
            cache.get_or_set("k2", Counter({1, 2}))
        assert cache.stats().memory_entries == 0
        with pytest.raises(df.SerializationError):
            cache.set_many({"a": 1, "b": object()})
        assert cache.try_get("a") == (False, None)


def test_payload_limit(redis_l2: Any) -> None:
    with node(redis_l2, max_payload_bytes=1000) as cache:
        big = "x" * 2000
        with pytest.raises(df.PayloadTooLargeError):
            cache.set("big", big)
        assert cache.try_get("big") == (False, None)
        # get_or_set still answers, keeps the value in L1 only, and counts the event.
        assert cache.get_or_set("big", Counter(big)) == big
        assert redis_l2.get("test:k:big") is None
        assert cache.stats().payload_too_large == 1


def test_corrupted_l2_entry_is_a_miss(redis_l2: Any) -> None:
    with node(redis_l2, memory=None) as cache:
        garbage_values = [b"", b"DF", b"\x00" * 40, b"DF\x01garbage", b"not an envelope"]
        for i, garbage in enumerate(garbage_values):
            redis_l2.set(f"test:k:bad{i}", garbage, 60)
            assert cache.try_get(f"bad{i}") == (False, None)
            assert cache.get_or_set(f"bad{i}", Counter("fresh")) == "fresh"
        assert cache.stats().decode_errors == 10  # each read of a bad entry counts: 2 per key


def test_an_entry_moved_to_another_key_or_tenant_is_a_miss(redis_l2: Any) -> None:
    # Unencrypted entries carry a checksum over their storage key (not a security boundary:
    # encryption or signing is): a copy under another key or tenant is a miss.
    with node(redis_l2, memory=None) as cache:
        cache.set("a", "value-a")
        raw = redis_l2.get("test:k:a")
        redis_l2.set("test:k:b", raw, 60)
        redis_l2.set("test:t:acme:a", raw, 60)
        assert cache.try_get("b") == (False, None)
        assert cache.tenant("acme").try_get("a") == (False, None)
        assert cache.get("a") == "value-a"
        assert cache.stats().decode_errors == 2


def test_tenants_are_isolated(backend: Any) -> None:
    with node(backend) as cache:
        acme, globex = cache.tenant("acme"), cache.tenant("globex")
        acme.set("config", "acme's")
        globex.set("config", "globex's")
        cache.set("config", "root's")
        assert acme.get("config") == "acme's"
        assert globex.get("config") == "globex's"
        assert cache.get("config") == "root's"
        assert acme.tenant_id == "acme"
        if backend is not None:
            assert backend.get("test:t:acme:config") is not None
        with pytest.raises(df.InvalidTenantError):
            cache.tenant("bad:tenant")
        with pytest.raises(df.InvalidTenantError):
            cache.tenant("")


def test_l2_failure_is_answered_from_factory(redis_server: Any, l2_client: Any) -> None:
    cache = node(l2_client(redis_server.url))
    with cache:
        cache.set("k", "stored")
        redis_server.kill()
        try:
            # L1 still answers; a new key is computed; nothing raises.
            assert cache.get("k") == "stored"
            assert cache.get_or_set("new", Counter("computed")) == "computed"
            cache.set("other", 1)
            cache.remove("k")
            assert cache.get_many(["a", "b"]) == {}
            # get_or_set's read; set; remove; get_many (k came from L1). get_or_set's write
            # went to the background after its read failed (one L2 timeout per caller, not
            # two): all three writes wait in the recovery queue.
            assert cache.stats().distributed_errors >= 4
            assert cache.stats().recovery_pending == 3
        finally:
            redis_server.restart()
        assert cache.get_or_set("after", Counter("back")) == "back"


def test_builder_builds_a_working_cache(sqlite_backend: Any) -> None:
    cache = (
        df.DataFerry.builder()
        .with_memory(max_entries=10)
        .with_distributed(sqlite_backend)
        .with_namespace("built")
        .with_default_ttl(30)
        .build()
    )
    with cache:
        assert cache.namespace == "built"
        assert cache.get_or_set("k", Counter(7)) == 7
        assert sqlite_backend.get("built:k:k") is not None


def test_options_on_a_hit_still_answer_from_l1(backend: Any) -> None:
    with node(backend) as cache:
        cache.set("k", "v")
        load = Counter("other")
        assert cache.get_or_set("k", load, options=df.EntryOptions(ttl=5)) == "v"
        assert cache.get("k", options=df.EntryOptions()) == "v"
        assert load.calls == 0


def test_zero_ttl_batch_writes_remove_old_values(backend: Any) -> None:
    with node(backend) as cache:
        cache.set_many({"a": 1, "b": 2})
        cache.set_many({"a": 10, "b": 20}, ttl=0)
        assert cache.get_many(["a", "b"]) == {}


def test_get_or_set_many_skips_storing_oversized_values(redis_l2: Any) -> None:
    with node(redis_l2, max_payload_bytes=200) as cache:

        def load_many(keys: list[str]) -> dict[str, str]:
            return {"small": "s", "big": "b" * 500}

        got = cache.get_or_set_many(["small", "big"], load_many)
        assert got == {"small": "s", "big": "b" * 500}
        assert redis_l2.get("test:k:small") is not None
        assert redis_l2.get("test:k:big") is None
        assert cache.stats().payload_too_large == 1


def test_expire_of_a_corrupted_or_already_stale_entry(redis_l2: Any) -> None:
    with node(redis_l2) as cache:
        redis_l2.set("test:k:bad", b"garbage", 60)
        cache.expire("bad")
        assert redis_l2.get("test:k:bad") is None  # undecodable: dropped
        cache.set("k", "v")
        cache.expire("k")
        stale = redis_l2.get("test:k:k")
        cache.expire("k")  # already stale: left as it is
        assert redis_l2.get("test:k:k") == stale


def test_every_operation_survives_a_dead_l2(redis_server: Any, l2_client: Any) -> None:
    cache = node(l2_client(redis_server.url))
    with cache:
        cache.set_many({"a": 1, "b": 2})
        redis_server.kill()
        try:
            cache.set_many({"c": 3})
            assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2, "c": 3}
            cache.expire("a")
            cache.remove_many(["b"])
            assert cache.get_many(["a", "b", "c"]) == {"c": 3}
            assert not cache.exists("zz")
            # set_many, expire (its read, then the delete it queues instead), remove_many,
            # get_many (a and b left L1), exists
            assert cache.stats().distributed_errors == 6
        finally:
            redis_server.restart()


def test_a_frozen_l2_costs_one_timeout_then_the_breaker_skips_it(
    redis_server: Any, l2_client: Any
) -> None:
    # SIGSTOP: the connections stay open and nothing answers (a hung server, not a dead one).
    # Both clients give up after 0.25 s (their from_url default, the Resilience timeout).
    policy = df.Resilience(failure_threshold=2, cooldown=0.3, recovery_interval=0.05)
    cache = node(l2_client(redis_server.url), resilience=policy)
    with cache:
        cache.set("k", "stale soon")
        redis_server.freeze()
        try:
            for call in (
                lambda: cache.remove("k"),  # times out: queued for a replay
                lambda: cache.get_or_set("new", Counter("computed")),  # the factory answers
            ):
                started = time.monotonic()
                call()
                assert time.monotonic() - started < 0.25 + 0.5  # one timeout, not a hang
            assert cache.stats().circuit_breaks == 1
            started = time.monotonic()
            for i in range(10):  # skipped by the open breaker: no timeout each
                assert cache.get_or_set(f"during:{i}", Counter(i)) == i
            assert time.monotonic() - started < 1.0
            assert cache.get("k") is None  # the cache reads its own queued remove
        finally:
            redis_server.resume()

        # The client answers again once the server does: the queued writes are replayed.
        def replayed() -> bool:
            return cache.stats().recovery_pending == 0

        sync_until(replayed)
        # The late replies to the requests that timed out were not taken for later ones.
        l2_only = df.EntryOptions(skip_memory=True)
        assert cache.get_many(["k", "new"], options=l2_only) == {"new": "computed"}
    with node(l2_client(redis_server.url)) as fresh:
        assert fresh.try_get("k") == (False, None)
        assert fresh.get_many(["new", "during:0", "during:9"]) == {
            "new": "computed",
            "during:0": 0,
            "during:9": 9,
        }


def test_tenant_batches_are_isolated(backend: Any) -> None:
    with node(backend) as cache:
        acme = cache.tenant("acme")
        acme.set_many({"a": "acme-a", "b": "acme-b"})
        cache.set_many({"a": "root-a"})
        assert acme.get_many(["a", "b"]) == {"a": "acme-a", "b": "acme-b"}
        assert cache.get_many(["a", "b"]) == {"a": "root-a"}
        acme.remove_many(["a", "b"])
        assert acme.get_many(["a", "b"]) == {}
        assert cache.get("a") == "root-a"
