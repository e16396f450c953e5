# GENERATED from tests/_async/test_loader.py by scripts/unasync.py: do not edit.
"""The batched loader (DataLoader style), and fail-safe in get_or_set_many's batch path.

The sync twin (tests/_sync/test_loader.py) is generated from this file: "concurrent" callers
are the tasks of one ``asyncio.gather`` here (:class:`Crowd`) and threads released at once
there (:class:`Crowd`). Exact batch counts are asserted where the coalescing is deterministic
(a gather, a full batch, one ``load_many`` call); for threads, counts are bounds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

import dataferry as df
from tests.chaos import Latch, Reading, EntryCalls, sync_wait, count_events


class Boom(Exception):
    pass


NS = "ld"
SAFE = df.EntryOptions(ttl=60, fail_safe=True)


def node(backend: Any, **kwargs: Any) -> df.DataFerry:
    kwargs.setdefault("namespace", NS)
    return df.DataFerry(distributed=backend, **kwargs)


class Source:
    """The data source: records the keys of each ``load_many`` call; fails on demand."""

    def __init__(self, missing: Sequence[str] = ()) -> None:
        self.calls: list[list[str]] = []
        self.missing = set(missing)
        self.error: Exception | None = None
        self.reply: Any = None  # returned instead of the mapping (a broken source)

    def fetch(self, keys: list[str]) -> Any:
        self.calls.append(list(keys))
        if self.error is not None:
            raise self.error
        if self.reply is not None:
            return self.reply
        return {k: k.upper() for k in keys if k not in self.missing}

    @property
    def loaded(self) -> list[str]:
        """Every key asked for, in every call."""
        return [k for call in self.calls for k in call]




class Crowd:
    """Sync twin of Crowd: each call in a thread of its own, all released at once."""

    @staticmethod
    def run(calls: list[Callable[[], Any]]) -> list[Any]:
        barrier = threading.Barrier(len(calls))

        def one(call: Callable[[], Any]) -> Any:
            barrier.wait(10)
            try:
                return call()
            except Exception as exc:
                return exc

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = [pool.submit(one, call) for call in calls]
            return [f.result(30) for f in futures]


def outcome(call: Callable[[], Any]) -> Any:
    """``call()``'s result, or the exception it raised."""
    try:
        return call()
    except Exception as exc:
        return exc


# -- coalescing ---------------------------------------------------------------------------------


def test_concurrent_loads_make_one_l2_read_and_one_load_many(l2_factory: Any) -> None:
    keys = [f"u{i}" for i in range(100)]
    in_l2 = keys[::3]  # written by another node: L2 hits here, L1 misses
    reads = EntryCalls()
    with node(l2_factory()) as other:
        other.set_many({k: f"stored {k}" for k in in_l2})
    source = Source()
    with node(l2_factory(), distributed_layers=[reads]) as cache:
        # A full batch goes at once: the long window only keeps late threads (sync) in it.
        loader = cache.loader(source.fetch, max_batch_size=100, window=10)
        got = Crowd.run([lambda k=k: loader.load(k) for k in keys])
        assert got == [f"stored {k}" if k in in_l2 else k.upper() for k in keys]
        missing = [k for k in keys if k not in in_l2]
        assert len(source.calls) == 1
        assert sorted(source.calls[0]) == sorted(missing)
        assert len(reads.reads) == 1
        operation, read = reads.reads[0]
        assert operation == "get_many"
        assert sorted(read) == sorted(f"{NS}:k:{k}" for k in keys)
        stats = cache.stats()
        assert stats.factory_calls == 1
        assert stats.distributed_hits == len(in_l2)
    # The loaded values landed in L2: a node with an empty L1 reads them all from there.
    with node(l2_factory()) as reader:
        assert reader.get_many(missing) == {k: k.upper() for k in missing}


def test_l1_hits_do_not_call_load_many(backend: Any) -> None:
    source = Source()
    with node(backend) as cache:
        cache.set_many({"a": "cached a", "b": "cached b"})
        loader = cache.loader(source.fetch)
        assert loader.load("a") == "cached a"
        assert loader.load_many(["a", "b"]) == {"a": "cached a", "b": "cached b"}
        assert source.calls == []
        got = Crowd.run([lambda k=k: loader.load(k) for k in ["a", "c", "b"]])
        assert got == ["cached a", "C", "cached b"]
        assert source.loaded == ["c"]
        # With options or a type too (get_or_set's L1 lookup rather than its fast path).
        for other in (
            cache.loader(source.fetch, options=SAFE),
            cache.loader(source.fetch, type=str),
        ):
            assert other.load("a") == "cached a"
            assert other.load_many(["b", "c"]) == {"b": "cached b", "c": "C"}
        assert source.loaded == ["c"]


def test_a_key_being_computed_elsewhere_is_waited_for_not_reloaded(backend: Any) -> None:
    latch = Latch()

    def slow() -> str:
        latch.wait()
        return "computed"

    source = Source()
    with node(backend) as cache:
        factory_started = count_events(cache, "factory_calls")
        joined = count_events(cache, "stampede_joins")
        computing = Reading(lambda: cache.get_or_set("k", slow))
        sync_wait(factory_started(1))
        loader = cache.loader(source.fetch)
        batch = Reading(lambda: loader.load_many(["k", "other"]))
        sync_wait(joined(1))  # the batch waits for get_or_set's computation of "k"
        latch.open()
        assert batch.result() == {"k": "computed", "other": "OTHER"}
        assert computing.result() == "computed"
        assert source.calls == [["other"]]


def test_a_key_asked_for_many_times_is_loaded_once(backend: Any) -> None:
    source = Source()
    keys = [f"d{i % 10}" for i in range(60)]
    with node(backend) as cache:
        loader = cache.loader(source.fetch)
        got = Crowd.run([lambda k=k: loader.load(k) for k in keys])
        assert got == [k.upper() for k in keys]
        # Each key reaches load_many once, whichever batches the callers joined.
        assert sorted(source.loaded) == sorted(set(keys))
        assert loader.load_many(["x", "y", "x", "y"]) == {"x": "X", "y": "Y"}
        assert source.calls[-1] == ["x", "y"]


def test_max_batch_size_splits_batches(backend: Any) -> None:
    source = Source()
    keys = [f"m{i}" for i in range(25)]
    with node(backend) as cache:
        loader = cache.loader(source.fetch, max_batch_size=10)
        assert loader.load_many(keys) == {k: k.upper() for k in keys}
        assert sorted(len(call) for call in source.calls) == [5, 10, 10]
        more = [f"n{i}" for i in range(25)]
        got = Crowd.run([lambda k=k: loader.load(k) for k in more])
        assert got == [k.upper() for k in more]
        assert all(len(call) <= 10 for call in source.calls)
        assert sorted(source.loaded) == sorted(keys + more)


def test_concurrent_callers_coalesce_into_few_batches(backend: Any) -> None:
    source = Source()
    callers = 16
    with node(backend) as cache:
        # A generous window: threads that a loaded machine starts late still make it.
        loader = cache.loader(source.fetch, window=0.5, max_batch_size=callers)
        got = Crowd.run([lambda i=i: loader.load(f"c{i}") for i in range(callers)])
        assert got == [f"C{i}" for i in range(callers)]
        assert len(source.calls) <= 2
        # The default window: every value right, each key loaded once, whatever the timing.
        plain = cache.loader(source.fetch)
        got = Crowd.run([lambda i=i: plain.load(f"p{i}") for i in range(callers)])
        assert got == [f"P{i}" for i in range(callers)]
        assert sorted(k for k in source.loaded if k.startswith("p")) == sorted(
            f"p{i}" for i in range(callers)
        )


# -- what load_many returns or raises --------------------------------------------------------


def test_keys_that_load_many_leaves_out_raise_key_error(backend: Any) -> None:
    source = Source(missing=["ghost"])
    with node(backend) as cache:
        loader = cache.loader(source.fetch)
        got = Crowd.run([lambda: loader.load("ghost"), lambda: loader.load("real")])
        assert isinstance(got[0], KeyError)
        assert got[0].args == ("ghost",)
        assert got[1] == "REAL"
        assert loader.load_many(["ghost", "real"]) == {"real": "REAL"}
        assert not (cache.try_get("ghost"))[0]  # nothing cached for it
        with pytest.raises(KeyError):
            loader.load("ghost")
        assert source.loaded.count("ghost") == 3  # asked again each time


def test_a_failing_load_many_reaches_every_waiter_and_caches_nothing(backend: Any) -> None:
    source = Source()
    source.error = Boom("database down")
    with node(backend) as cache:
        loader = cache.loader(source.fetch)
        got = Crowd.run([lambda i=i: loader.load(f"f{i}") for i in range(8)])
        assert all(isinstance(r, Boom) and str(r) == "database down" for r in got)
        assert cache.get_many([f"f{i}" for i in range(8)]) == {}
        with pytest.raises(Boom):
            loader.load_many(["f0", "f1"])
        source.error = None  # the database is back: the next load asks again
        assert loader.load("f0") == "F0"
        stats = cache.stats()
        assert stats.factory_errors == len(source.calls) - 1
        assert stats.failsafe_activations == 0


def test_a_failed_key_fails_its_joiners_without_asking_the_source_again(
    backend: Any,
) -> None:
    # Under an outage, callers that joined a failing key get its error, as get_or_set's
    # joiners do: the source is asked once, not once per waiting call.
    latch = Latch()
    source = Source()
    source.error = Boom("database down")

    def slow(keys: list[str]) -> Any:
        latch.wait()
        return source.fetch(keys)

    with node(backend) as cache:
        factory_started = count_events(cache, "factory_calls")
        joined = count_events(cache, "stampede_joins")
        leading = Reading(lambda: outcome(lambda: cache.get_or_set_many(["j", "own"], slow)))
        sync_wait(factory_started(1))
        joining = Reading(lambda: outcome(lambda: cache.get_or_set_many(["j"], slow)))
        sync_wait(joined(1))
        latch.open()
        assert isinstance(leading.result(), Boom)
        assert isinstance(joining.result(), Boom)
        assert source.calls == [["j", "own"]]


def test_a_load_many_returning_no_mapping_is_a_configuration_error(backend: Any) -> None:
    source = Source()
    source.reply = ["not", "a", "mapping"]
    with node(backend) as cache:
        loader = cache.loader(source.fetch)
        got = Crowd.run([lambda i=i: loader.load(f"r{i}") for i in range(5)])
        for result in got:
            assert isinstance(result, df.ConfigurationError)
            assert "load_many must return a mapping, got list" in str(result)
        assert cache.get_many([f"r{i}" for i in range(5)]) == {}


def test_a_bad_key_raises_at_its_load_and_the_batch_goes_on(backend: Any) -> None:
    source = Source()
    with node(backend) as cache:
        loader = cache.loader(source.fetch)
        got = Crowd.run(
            [
                lambda: loader.load("a"),
                lambda: loader.load(42),  # type: ignore[arg-type]
                lambda: loader.load(""),
                lambda: loader.load("b"),
            ]
        )
        assert [got[0], got[3]] == ["A", "B"]
        assert isinstance(got[1], df.InvalidKeyError)
        assert "not int" in str(got[1])
        assert isinstance(got[2], df.InvalidKeyError)
        assert sorted(source.loaded) == ["a", "b"]
        with pytest.raises(df.InvalidKeyError):
            loader.load_many(["c", None])  # type: ignore[list-item]
        assert "c" not in source.loaded  # checked before anything is loaded


def test_bad_loader_arguments_raise_at_loader() -> None:
    with node(None) as cache:
        with pytest.raises(df.ConfigurationError, match="load_many must be callable"):
            cache.loader(None)  # type: ignore[arg-type]
        for size in (0, -1, True, 2.5, "10"):
            with pytest.raises(df.ConfigurationError, match="max_batch_size"):
                cache.loader(Source().fetch, max_batch_size=size)  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError, match="window"):
            cache.loader(Source().fetch, window=-1)
        with pytest.raises(df.ConfigurationError):
            cache.loader(Source().fetch, ttl=-5)
        with pytest.raises(df.ConfigurationError):
            cache.loader(Source().fetch, tags="one-str")
    with pytest.raises(df.CacheClosedError):
        cache.loader(Source().fetch)


def test_a_closed_cache_refuses_loads() -> None:
    source = Source()
    with node(None) as cache:
        loader = cache.loader(source.fetch)
        assert loader.load("a") == "A"
    with pytest.raises(df.CacheClosedError):
        loader.load("a")
    with pytest.raises(df.CacheClosedError):
        loader.load_many(["b"])
    assert source.loaded == ["a"]


# -- options, prime, clear, tenants -------------------------------------------------------------


@dataclass
class Point:
    x: int
    y: int


def test_options_and_type_apply_to_every_loaded_key(shared_backend: Any) -> None:
    def points(keys: list[str]) -> dict[str, dict[str, int]]:
        return {k: {"x": int(k[1:]), "y": -int(k[1:])} for k in keys}

    with node(shared_backend) as cache:
        loader = cache.loader(points, ttl=60, tags=["points"], type=Point)
        got = Crowd.run([lambda: loader.load("p0"), lambda: loader.load("p1")])
        assert all(isinstance(p, Point) for p in got)
        assert {(p.x, p.y) for p in got} == {(0, 0), (1, -1)}
        cache.remove_by_tag("points")
        assert cache.get_many(["p0", "p1"]) == {}
    with node(shared_backend) as other:
        assert other.get_many(["p0", "p1"]) == {}  # tagged in L2 too


def test_prime_stores_and_clear_removes(backend: Any) -> None:
    source = Source()
    with node(backend) as cache:
        loader = cache.loader(source.fetch, ttl=60)
        loader.prime("k", "primed")
        assert loader.load("k") == "primed"
        assert source.calls == []
        loader.clear("k")
        assert not (cache.try_get("k"))[0]
        assert loader.load("k") == "K"
        assert source.calls == [["k"]]


def test_a_tenant_view_loads_into_its_own_keys(backend: Any) -> None:
    source = Source()
    with node(backend) as cache:
        acme = cache.tenant("acme")
        assert acme.loader(source.fetch).load("k") == "K"
        assert acme.get("k") == "K"
        assert cache.get("k") is None
        assert source.calls == [["k"]]  # load_many gets the caller's keys, not storage keys


# -- fail-safe ----------------------------------------------------------------------------------


def test_get_or_set_many_serves_stale_l2_values_when_load_many_raises(
    shared_backend: Any,
) -> None:
    source = Source()
    with node(shared_backend) as writer:
        writer.get_or_set_many(["a", "b"], source.fetch, options=SAFE)
        writer.expire("a")
        writer.expire("b")
    source.error = Boom("database down")
    reader = node(shared_backend)  # its L1 is empty: the stale values come from L2
    seen: list[dict[str, Any]] = []
    reader.subscribe(lambda e, a: seen.append(a) if e == "failsafe_activations" else None)
    with reader:
        assert reader.get_or_set_many(["a", "b"], source.fetch, options=SAFE) == {
            "a": "A",
            "b": "B",
        }
        assert reader.stats().failsafe_activations == 2
        assert sorted(a["key"] for a in seen) == [f"{NS}:k:a", f"{NS}:k:b"]
        assert {a["reason"] for a in seen} == {"factory_error"}
        # Throttled: served as fresh for a while, the broken source isn't asked again.
        calls = len(source.calls)
        assert reader.get_or_set_many(["a", "b"], source.fetch, options=SAFE) == {
            "a": "A",
            "b": "B",
        }
        assert len(source.calls) == calls
        # A key without a stale value: the error is raised (and nothing is cached).
        with pytest.raises(Boom):
            reader.get_or_set_many(["a", "new"], source.fetch, options=SAFE)
        assert not (reader.try_get("new"))[0]
    # Without fail-safe, the stale values are not served.
    with node(shared_backend) as plain:
        with pytest.raises(Boom):
            plain.get_or_set_many(["a", "b"], source.fetch, ttl=60)


def test_get_or_set_many_serves_stale_l1_values_when_load_many_raises() -> None:
    now = [1000.0]
    opts = df.EntryOptions(ttl=5, fail_safe=True)
    source = Source()
    with node(None, memory=df.MemoryCache(clock=lambda: now[0])) as cache:
        cache.get_or_set_many(["a", "b"], source.fetch, options=opts)
        now[0] += 10  # expired in L1, kept for fail-safe
        source.error = Boom("database down")
        assert cache.get_or_set_many(["a", "b"], source.fetch, options=opts) == {
            "a": "A",
            "b": "B",
        }
        assert cache.stats().failsafe_activations == 2
        now[0] += 200_000  # past fail_safe_max (a day): nothing to serve any more
        with pytest.raises(Boom):
            cache.get_or_set_many(["a"], source.fetch, options=opts)


def test_a_loader_serves_stale_per_key_when_load_many_raises(shared_backend: Any) -> None:
    source = Source()
    with node(shared_backend) as writer:
        writer.set_many({"a": "old a", "b": "old b", "fresh": "still fresh"}, options=SAFE)
        writer.expire("a")
        writer.expire("b")
    source.error = Boom("database down")
    with node(shared_backend) as cache:
        loader = cache.loader(source.fetch, options=SAFE)
        got = Crowd.run(
            [lambda k=k: loader.load(k) for k in ["a", "b", "fresh", "none"]]
        )
        assert got[:3] == ["old a", "old b", "still fresh"]
        assert isinstance(got[3], Boom)
        assert cache.stats().failsafe_activations == 2
        assert set(source.loaded) == {"a", "b", "none"}  # "fresh" was an L2 hit
        with pytest.raises(Boom):
            loader.load_many(["a", "none"])


# -- async only: cancellation and event loops ---------------------------------------------------

