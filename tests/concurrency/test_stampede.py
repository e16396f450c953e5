"""Single-flight stampede protection: asyncio tasks (async facade) and threads (sync facade).

Every handshake waits for an event the cache emits (a caller joined a flight) or a chaos layer
sets (a read is in flight); nothing relies on the scheduler's order, and the async tests run on
asyncio and uvloop.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import dataferry as df
from tests.chaos import Gate, count_events, wait_event

# == asyncio ==================================================================================


async def test_concurrent_callers_share_one_factory_call() -> None:
    cache = df.AsyncDataFerry()
    joined = count_events(cache, "stampede_joins")
    release = asyncio.Event()
    calls = 0

    async def load() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await release.wait()
        return {"n": calls}

    tasks = [asyncio.ensure_future(cache.get_or_set("hot", load)) for _ in range(100)]
    await wait_event(joined(99))
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert all(r is results[0] for r in results)  # the very same object
    assert cache.stats().stampede_joins == 99
    assert cache.stats().factory_calls == 1


async def test_exception_reaches_every_waiter_as_its_own_copy_and_is_not_cached() -> None:
    cache = df.AsyncDataFerry()
    joined = count_events(cache, "stampede_joins")
    release = asyncio.Event()
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        raise ConnectionError("db down")

    tasks = [asyncio.ensure_future(cache.get_or_set("k", load)) for _ in range(64)]
    await wait_event(joined(63))
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, ConnectionError) and str(r) == "db down" for r in results)
    depths = {len(traceback.extract_tb(r.__traceback__)) for r in results}
    assert max(depths) < 20  # a traceback doesn't grow with the number of waiters
    assert cache.stats().factory_errors == 1
    assert await cache.get_or_set("k", lambda: "recovered") == "recovered"


async def test_cancelled_waiter_does_not_cancel_the_factory_for_others() -> None:
    cache = df.AsyncDataFerry()
    joined = count_events(cache, "stampede_joins")
    started = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "done"

    first = asyncio.ensure_future(cache.get_or_set("k", load))  # the one that starts it
    await started.wait()
    second = asyncio.ensure_future(cache.get_or_set("k", load))
    await wait_event(joined(1))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    assert await second == "done"
    assert calls == 1
    assert await cache.get("k") == "done"  # and the result was cached


async def test_a_factory_whose_only_caller_left_is_owned_by_the_cache() -> None:
    # Nothing but the cache refers to the background work once its caller is cancelled: the
    # garbage collector must not destroy it, and its value must still be cached.
    cache = df.AsyncDataFerry()
    started = asyncio.Event()
    release = asyncio.Event()

    async def load() -> str:
        started.set()
        await release.wait()
        return "kept"

    caller = asyncio.ensure_future(cache.get_or_set("k", load))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    del caller
    gc.collect()
    release.set()
    assert await cache.get_or_set("k", lambda: "recomputed") == "kept"


async def test_timeout_of_one_caller_leaves_the_work_running() -> None:
    cache = df.AsyncDataFerry()
    release = asyncio.Event()
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 1

    with pytest.raises(asyncio.TimeoutError):  # builtin TimeoutError from 3.11 on
        await asyncio.wait_for(cache.get_or_set("k", load), timeout=0.01)
    release.set()
    assert await cache.get_or_set("k", load) == 1
    assert calls == 1


async def test_different_keys_do_not_wait_for_each_other() -> None:
    cache = df.AsyncDataFerry()
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "slow"

    blocked = asyncio.ensure_future(cache.get_or_set("a", slow))
    assert await cache.get_or_set("b", lambda: "fast") == "fast"
    release.set()
    assert await blocked == "slow"


async def test_a_joiner_stops_waiting_after_join_timeout_and_computes_itself() -> None:
    cache = df.AsyncDataFerry(join_timeout=0.05)
    joined = count_events(cache, "stampede_joins")
    release = asyncio.Event()

    async def stuck() -> str:
        await release.wait()
        return "first"

    first = asyncio.ensure_future(cache.get_or_set("k", stuck))
    second = asyncio.ensure_future(cache.get_or_set("k", lambda: "second"))
    await wait_event(joined(1))
    assert await second == "second"  # did not wait for the stuck factory
    assert not first.done()
    release.set()
    assert await first == "first"


async def test_closing_the_cache_never_hands_waiters_a_cancelled_error() -> None:
    cache = df.AsyncDataFerry(close_timeout=0)
    joined = count_events(cache, "stampede_joins")

    async def forever() -> str:
        await asyncio.Event().wait()
        return "never"

    tasks = [asyncio.ensure_future(cache.get_or_set("k", forever)) for _ in range(3)]
    await wait_event(joined(2))
    await cache.aclose()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, df.CacheClosedError) for r in results), results


async def test_cancelling_the_first_caller_during_the_l2_read_hands_the_flight_over(
    tmp_path: Path,
) -> None:
    gate = Gate("get")
    cache = df.AsyncDataFerry(
        distributed=df.SQLiteCache(str(tmp_path / "l2.sqlite")), distributed_layers=[gate]
    )
    joined = count_events(cache, "stampede_joins")
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        return "value"

    first = asyncio.ensure_future(cache.get_or_set("k", load))
    await gate.reached.wait()  # the first caller is inside the L2 read
    second = asyncio.ensure_future(cache.get_or_set("k", load))
    await wait_event(joined(1))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.open()
    assert await second == "value"
    assert calls == 1
    assert cache.stats().stampede_joins == 1


async def test_l2_hit_is_shared_by_concurrent_callers(tmp_path: Path) -> None:
    inner = df.SQLiteCache(str(tmp_path / "l2.sqlite"))
    writer = df.AsyncDataFerry(distributed=inner, namespace="n")
    await writer.set("k", {"from": "l2"})
    gate = Gate("get")
    cache = df.AsyncDataFerry(distributed=inner, namespace="n", distributed_layers=[gate])
    joined = count_events(cache, "stampede_joins")
    tasks = [asyncio.ensure_future(cache.get_or_set("k", lambda: "factory")) for _ in range(20)]
    await wait_event(joined(19))
    gate.open()
    results = await asyncio.gather(*tasks)
    assert results == [{"from": "l2"}] * 20
    assert gate.calls["get"] == 1  # one L2 round trip for twenty callers
    assert cache.stats().factory_calls == 0


async def test_batches_are_single_flight_per_key() -> None:
    cache = df.AsyncDataFerry()
    joined = count_events(cache, "stampede_joins")
    release = asyncio.Event()
    loaded: list[str] = []

    async def load_many(keys: list[str]) -> dict[str, str]:
        loaded.extend(keys)
        await release.wait()
        return {k: k.upper() for k in keys if k != "missing"}

    first = asyncio.ensure_future(cache.get_or_set_many(["a", "b", "c"], load_many))
    # b and c are being loaded by the first batch: the second batch joins them, loads d.
    second = asyncio.ensure_future(cache.get_or_set_many(["b", "c", "d", "missing"], load_many))
    single = asyncio.ensure_future(cache.get_or_set("a", lambda: "own"))
    await wait_event(joined(3))
    release.set()
    assert await first == {"a": "A", "b": "B", "c": "C"}
    assert await second == {"b": "B", "c": "C", "d": "D"}
    assert await single == "A"
    assert sorted(loaded) == ["a", "b", "c", "d", "missing"]  # each key loaded once
    assert cache.stats().factory_calls == 2


async def test_a_batch_joiner_stops_waiting_after_join_timeout() -> None:
    cache = df.AsyncDataFerry(join_timeout=0.05)
    joined = count_events(cache, "stampede_joins")
    release = asyncio.Event()

    async def stuck(keys: list[str]) -> dict[str, str]:
        await release.wait()
        return {k: "first" for k in keys}

    first = asyncio.ensure_future(cache.get_or_set_many(["a", "b"], stuck))
    second = asyncio.ensure_future(
        cache.get_or_set_many(["b", "c"], lambda keys: {k: "second" for k in keys})
    )
    await wait_event(joined(1))
    assert await second == {"b": "second", "c": "second"}
    assert not first.done()
    release.set()
    assert await first == {"a": "first", "b": "first"}


async def test_a_batch_failure_reaches_every_caller_that_joined_it() -> None:
    cache = df.AsyncDataFerry()
    joined = count_events(cache, "stampede_joins")
    release = asyncio.Event()

    async def failing(keys: list[str]) -> dict[str, str]:
        await release.wait()
        raise ConnectionError("db down")

    batch = asyncio.ensure_future(cache.get_or_set_many(["a", "b"], failing))
    other = asyncio.ensure_future(cache.get_or_set_many(["b"], lambda keys: {"b": "x"}))
    single = asyncio.ensure_future(cache.get_or_set("a", lambda: "y"))
    await wait_event(joined(2))
    release.set()
    results = await asyncio.gather(batch, other, single, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results), results
    assert cache.stats().factory_calls == 1
    assert cache.stats().factory_errors == 1
    assert await cache.get_many(["a", "b"]) == {}  # nothing was cached


async def test_a_key_a_batch_did_not_find_is_computed_by_its_joiner() -> None:
    cache = df.AsyncDataFerry()
    joined = count_events(cache, "stampede_joins")
    release = asyncio.Event()

    async def partial(keys: list[str]) -> dict[str, str]:
        await release.wait()
        return {"a": "A"}  # "b" is not in the source

    batch = asyncio.ensure_future(cache.get_or_set_many(["a", "b"], partial))
    single = asyncio.ensure_future(cache.get_or_set("b", lambda: "own b"))
    await wait_event(joined(1))
    release.set()
    assert await batch == {"a": "A"}
    assert await single == "own b"


async def test_cancelling_a_batch_during_its_l2_read_hands_it_over(tmp_path: Path) -> None:
    gate = Gate("get_many")
    cache = df.AsyncDataFerry(
        distributed=df.SQLiteCache(str(tmp_path / "l2.sqlite")), distributed_layers=[gate]
    )
    joined = count_events(cache, "stampede_joins")
    loads: list[list[str]] = []

    async def load_many(keys: list[str]) -> dict[str, str]:
        loads.append(keys)
        return {k: k.upper() for k in keys}

    first = asyncio.ensure_future(cache.get_or_set_many(["a", "b"], load_many))
    await gate.reached.wait()
    second = asyncio.ensure_future(cache.get_or_set_many(["a", "b"], load_many))
    await wait_event(joined(2))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.open()
    assert await second == {"a": "A", "b": "B"}
    assert loads == [["a", "b"]]


async def test_closing_the_cache_during_a_batch_raises_cache_closed() -> None:
    cache = df.AsyncDataFerry(close_timeout=0)
    joined = count_events(cache, "stampede_joins")

    async def forever(keys: list[str]) -> dict[str, str]:
        await asyncio.Event().wait()
        return {}

    batch = asyncio.ensure_future(cache.get_or_set_many(["a", "b"], forever))
    joiner = asyncio.ensure_future(cache.get_or_set_many(["b"], forever))
    await wait_event(joined(1))
    await cache.aclose()
    results = await asyncio.gather(batch, joiner, return_exceptions=True)
    assert all(isinstance(r, df.CacheClosedError) for r in results), results


# == threads ==================================================================================


def _stampede(
    cache: df.DataFerry, n: int, call: Any, release: threading.Event, *, keys: int = 1
) -> list[Any]:
    """Run ``call()`` in ``n`` threads; open ``release`` once the other n-1 joined the flights
    of the ``keys`` keys each call computes."""
    joined = count_events(cache, "stampede_joins")
    barrier = threading.Barrier(n)

    def worker() -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(worker) for _ in range(n)]
        assert joined((n - 1) * keys).wait(10), "the threads never joined the flight"
        release.set()
        return [f.result() for f in futures]


def test_threads_share_one_factory_call() -> None:
    cache = df.DataFerry()
    release = threading.Event()
    calls = 0

    def load() -> list[int]:
        nonlocal calls
        calls += 1
        assert release.wait(10)
        return [1, 2, 3]

    results = _stampede(cache, 16, lambda: cache.get_or_set("hot", load), release)
    assert calls == 1
    assert all(r is results[0] for r in results)
    assert cache.stats().stampede_joins == 15


def test_thread_exception_reaches_every_waiter_as_its_own_copy() -> None:
    cache = df.DataFerry()
    release = threading.Event()
    calls = 0

    def load() -> str:
        nonlocal calls
        calls += 1
        assert release.wait(10)
        raise ValueError("bad row")

    results = _stampede(cache, 64, lambda: cache.get_or_set("hot", load), release)
    assert calls == 1
    assert all(isinstance(r, ValueError) and str(r) == "bad row" for r in results)
    assert len({id(r) for r in results}) == 64  # no shared object whose traceback grows
    depths = [len(traceback.extract_tb(r.__traceback__)) for r in results]
    assert max(depths) < 20, depths
    assert cache.try_get("hot") == (False, None)


def test_a_thread_stops_waiting_after_join_timeout_and_computes_itself() -> None:
    cache = df.DataFerry(join_timeout=0.05)
    joined = count_events(cache, "stampede_joins")
    started = threading.Event()
    release = threading.Event()

    def stuck() -> str:
        started.set()
        assert release.wait(10)
        return "first"

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(cache.get_or_set, "k", stuck)
        assert started.wait(10)
        assert cache.get_or_set("k", lambda: "second") == "second"
        assert joined(1).is_set()
        assert not first.done()
        release.set()
        assert first.result() == "first"


def test_thread_batches_are_single_flight_per_key() -> None:
    cache = df.DataFerry()
    release = threading.Event()
    loaded: list[str] = []
    lock = threading.Lock()

    def load_many(keys: list[str]) -> dict[str, str]:
        with lock:
            loaded.extend(keys)
        assert release.wait(10)
        return {k: k.upper() for k in keys}

    results = _stampede(
        cache, 4, lambda: cache.get_or_set_many(["a", "b", "c"], load_many), release, keys=3
    )
    assert all(r == {"a": "A", "b": "B", "c": "C"} for r in results)
    assert sorted(loaded) == ["a", "b", "c"]
    assert cache.stats().factory_calls == 1


def test_sync_cache_refuses_async_factory() -> None:
    cache = df.DataFerry()

    async def load() -> int:
        return 1

    with pytest.raises(df.ConfigurationError, match="async factory"):
        cache.get_or_set("k", load)
    assert cache.try_get("k") == (False, None)
