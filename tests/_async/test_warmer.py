"""CacheWarmer: seeders of pairs and of keys, skipping, progress, failures, concurrency.

Written once: the generated sync twin (tests/_sync/test_warmer.py) runs the same tests on a
DataFerry with ``run_sync()`` (worker threads) and sync seeders and loaders.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

import dataferry as df
from tests.chaos import AsyncLatch, AsyncReading, async_until

IS_ASYNC = inspect.iscoroutinefunction(df.AsyncDataFerry.aclose)
NS = "warm"


async def warm(warmer: df.CacheWarmer) -> df.WarmReport:
    """``await warmer.run()`` here; ``warmer.run_sync()`` in the sync twin."""
    if IS_ASYNC:
        return await warmer.run()
    return warmer.run_sync()


def node(l2: Any = None, **kwargs: Any) -> df.AsyncDataFerry:
    kwargs.setdefault("namespace", NS)
    return df.AsyncDataFerry(distributed=l2, **kwargs)


async def pairs(n: int, prefix: str = "g") -> AsyncIterator[tuple[str, int]]:
    """An async generator of pairs (a plain generator in the sync twin)."""
    for i in range(n):
        yield f"{prefix}{i}", i


# -- seeders -------------------------------------------------------------------------------------


async def test_pairs_from_lists_dicts_and_async_iterables_are_written() -> None:
    async with node() as cache:
        report = await warm(
            df.CacheWarmer(
                cache,
                seeders=[[("a", 1), ["b", 2]], {"c": 3, "d": None}, pairs(3)],
                ttl=60,
                tags=["warm"],
            )
        )
        assert (report.loaded, report.skipped, report.failed) == (7, 0, 0)
        assert report.ok
        assert report.errors == ()
        assert await cache.get_many(["a", "b", "c", "g0", "g1", "g2"]) == {
            "a": 1,
            "b": 2,
            "c": 3,
            "g0": 0,
            "g1": 1,
            "g2": 2,
        }
        assert await cache.try_get("d") == (True, None)  # None is a value
        await cache.remove_by_tag("warm")  # the warmer's tags
        assert await cache.try_get("a") == (False, None)


async def test_an_entry_value_brings_its_own_ttl_and_tags() -> None:
    async with node() as cache:
        for overwrite in (False, True):
            report = await warm(
                df.CacheWarmer(
                    cache,
                    seeders=[[("e", df.Entry("v", tags=["mine"])), ("p", "plain")]],
                    tags=["warm"],
                    overwrite=overwrite,
                )
            )
            assert report.loaded == 2
            assert await cache.get("e") == "v"
            await cache.remove_by_tag("mine")
            assert await cache.try_get("e") == (False, None)
            assert await cache.get("p") == "plain"
            await cache.remove("p")


async def test_a_key_seeder_loads_each_key() -> None:
    loaded: list[str] = []

    async def load(key: str) -> str:
        loaded.append(key)
        return key.upper()

    async with node() as cache:
        await cache.set("k1", "cached")
        report = await warm(
            df.CacheWarmer(cache, seeders=[df.KeySeeder(["k0", "k1", "k2"], load=load)])
        )
        assert (report.loaded, report.skipped, report.failed) == (2, 1, 0)
        assert sorted(loaded) == ["k0", "k2"]  # k1 was fresh: never loaded
        assert await cache.get_many(["k0", "k1", "k2"]) == {
            "k0": "K0",
            "k1": "cached",
            "k2": "K2",
        }


async def test_a_key_seeder_with_load_many_loads_in_batches() -> None:
    batches: list[list[str]] = []
    lock = threading.Lock()

    async def load_many(keys: list[str]) -> dict[str, int]:
        with lock:
            batches.append(keys)
        return {k: int(k[1:]) for k in keys if k != "k5"}

    async def keys() -> AsyncIterator[str]:
        for i in range(8):
            yield f"k{i}"

    async with node() as cache:
        await cache.set("k0", -1)
        seeder = df.KeySeeder(keys(), load_many=load_many, batch_size=3)
        report = await warm(df.CacheWarmer(cache, seeders=[seeder], concurrency=2))
        # Batches of 3 keys as read; k0 was fresh, so its batch asked for 2.
        assert sorted(sorted(b) for b in batches) == [
            ["k1", "k2"],
            ["k3", "k4", "k5"],
            ["k6", "k7"],
        ]
        assert (report.loaded, report.skipped, report.failed) == (6, 1, 1)
        (failure,) = report.errors
        assert failure.item == "k5"
        assert isinstance(failure.error, KeyError)
        assert "k5" in str(failure.error)
        assert await cache.get("k0") == -1
        assert await cache.get("k7") == 7
        assert await cache.try_get("k5") == (False, None)


async def test_a_key_seeder_overwrites_when_asked(l2_factory: Any) -> None:
    async with node(l2_factory()) as first, node(l2_factory()) as second:
        await first.set("a", "old")
        await first.set("b", "old")

        def load_many(keys: list[str]) -> dict[str, str]:
            return dict.fromkeys(keys, "new")

        seeder = df.KeySeeder(["a", "b", "c"], load_many=load_many)
        # second's L1 is empty: it finds a and b fresh in L2 and skips them.
        report = await warm(df.CacheWarmer(second, seeders=[seeder]))
        assert (report.loaded, report.skipped) == (1, 2)
        assert await second.get_many(["a", "b", "c"]) == {"a": "old", "b": "old", "c": "new"}
        report = await warm(df.CacheWarmer(second, seeders=[seeder], overwrite=True))
        assert (report.loaded, report.skipped) == (3, 0)
        assert await second.get_many(["a", "b", "c"]) == dict.fromkeys("abc", "new")


async def test_pairs_for_fresh_keys_are_skipped_unless_overwrite(l2_factory: Any) -> None:
    async with node(l2_factory()) as first, node(l2_factory()) as second:
        await first.set("a", "old")
        seeders: list[Any] = [[("a", "new"), ("b", "new")]]
        report = await warm(df.CacheWarmer(second, seeders=seeders))
        assert (report.loaded, report.skipped) == (1, 1)
        assert await second.get("a") == "old"
        assert await first.get("b") == "new"  # written to L2 too
        report = await warm(df.CacheWarmer(second, seeders=seeders, overwrite=True))
        assert (report.loaded, report.skipped) == (2, 0)
        assert await second.get("a") == "new"


async def test_a_tenant_view_is_warmed_in_its_own_keys() -> None:
    async with node() as cache:
        report = await warm(df.CacheWarmer(cache.tenant("acme"), seeders=[[("k", 1)]]))
        assert report.loaded == 1
        assert await cache.tenant("acme").get("k") == 1
        assert await cache.get("k") is None


# -- progress and the report ---------------------------------------------------------------------


async def test_progress_is_reported_every_n_items_and_at_the_end() -> None:
    seen: list[df.WarmProgress] = []
    async with node() as cache:
        report = await warm(
            df.CacheWarmer(
                cache,
                seeders=[[("a", 1), ("b", 2), 42, ("c", 3), ("d", 4)]],
                progress=seen.append,
                progress_every=2,
                concurrency=1,
            )
        )
    assert [p.processed for p in seen] == [2, 4, 5]
    assert [p.finished for p in seen] == [False, False, True]
    last = seen[-1]
    assert (last.loaded, last.skipped, last.failed) == (report.loaded, 0, 1) == (4, 0, 1)
    assert 0 <= seen[0].elapsed <= last.elapsed <= report.duration


async def test_a_raising_progress_callback_does_not_stop_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    def broken(progress: df.WarmProgress) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("progress bar broke")

    async with node() as cache:
        with caplog.at_level(logging.WARNING, logger="dataferry"):
            report = await warm(
                df.CacheWarmer(
                    cache,
                    seeders=[[(f"k{i}", i) for i in range(10)]],
                    progress=broken,
                    progress_every=1,
                )
            )
        assert report.loaded == 10
        assert report.ok  # the callback's failures are not the warm-up's
        assert calls == 11
        assert await cache.get("k9") == 9
    logged = [r for r in caplog.records if "progress callback raised" in r.getMessage()]
    assert len(logged) == 1  # once, not once per call
    assert logged[0].exc_info is not None


async def test_the_report_keeps_the_first_100_errors_and_reads_well() -> None:
    async with node() as cache:
        report = await warm(
            df.CacheWarmer(cache, seeders=[[("ok", 1), *[(i, "bad key") for i in range(150)]]])
        )
    assert (report.loaded, report.skipped, report.failed) == (1, 0, 150)
    assert report.processed == 151
    assert not report.ok
    assert len(report.errors) == 100
    assert report.errors_omitted == 50
    assert report.duration > 0
    text = str(report)
    assert text.startswith("warmed 1 entries, skipped 0, failed 150 in ")
    assert "(0, 'bad key')" in text
    assert "and 145 more" in text
    with pytest.raises(AttributeError):
        report.loaded = 2  # type: ignore[misc]


# -- failures never stop the run -----------------------------------------------------------------


async def test_garbage_items_are_failures_that_name_the_item() -> None:
    async with node() as cache:
        report = await warm(
            df.CacheWarmer(
                cache,
                seeders=[[("good", 1), 42, ("a", "b", "c"), (7, "v"), ("", 1), ("fine", 2)]],
            )
        )
        assert (report.loaded, report.failed) == (2, 4)
        errors = {f.item: f.error for f in report.errors}
        assert set(errors) == {"42", "('a', 'b', 'c')", "(7, 'v')", "('', 1)"}
        assert isinstance(errors["42"], df.ConfigurationError)
        assert "42" in str(errors["42"])
        assert "not a (key, value) pair" in str(errors["('a', 'b', 'c')"])
        assert isinstance(errors["(7, 'v')"], df.InvalidKeyError)
        assert "(7, 'v')" in str(errors["(7, 'v')"])
        assert isinstance(errors["('', 1)"], df.InvalidKeyError)
        assert all(isinstance(e, df.DataFerryError) for e in errors.values())
        assert await cache.get_many(["good", "fine"]) == {"good": 1, "fine": 2}
        assert cache.stats().memory_entries == 2  # nothing else was written

        bad_keys = df.KeySeeder(["k", 3, None], load=str.upper)
        report = await warm(df.CacheWarmer(cache, seeders=[bad_keys]))
        assert (report.loaded, report.failed) == (1, 2)
        assert all(isinstance(f.error, df.InvalidKeyError) for f in report.errors)
        assert [f.item for f in report.errors] == ["3", "None"]


async def test_a_seeder_that_raises_stops_only_itself() -> None:
    async def breaks_after_two() -> AsyncIterator[tuple[str, int]]:
        yield "a", 1
        yield "b", 2
        raise ConnectionError("cursor lost")

    async def keys_then_break() -> AsyncIterator[str]:
        yield "k1"
        yield "k2"
        raise ConnectionError("stream lost")

    def load_many(keys: list[str]) -> dict[str, str]:
        return dict.fromkeys(keys, "v")

    async with node() as cache:
        report = await warm(
            df.CacheWarmer(
                cache,
                seeders=[
                    breaks_after_two(),
                    df.KeySeeder(keys_then_break(), load_many=load_many),
                    [("c", 3)],
                ],
            )
        )
        assert (report.loaded, report.failed) == (5, 2)
        assert [f.item for f in report.errors] == ["seeders[0]", "seeders[1]"]
        assert [str(f.error) for f in report.errors] == ["cursor lost", "stream lost"]
        # What the seeders gave before they broke is warmed, and the next seeder ran.
        assert await cache.get_many(["a", "b", "c", "k1", "k2"]) == {
            "a": 1,
            "b": 2,
            "c": 3,
            "k1": "v",
            "k2": "v",
        }


async def test_a_raising_loader_fails_its_key_or_batch_only() -> None:
    async def load(key: str) -> str:
        if key == "bad":
            raise LookupError("no such row")
        return "v"

    def load_many(keys: list[str]) -> dict[str, str]:
        if "poison" in keys:
            raise TimeoutError("database timeout")
        return dict.fromkeys(keys, "v")

    async with node() as cache:
        report = await warm(
            df.CacheWarmer(
                cache,
                seeders=[
                    df.KeySeeder(["ok1", "bad", "ok2"], load=load),
                    df.KeySeeder(["x1", "poison", "x2", "y1"], load_many=load_many, batch_size=3),
                ],
            )
        )
        assert (report.loaded, report.failed) == (3, 4)
        by_item = {f.item: f.error for f in report.errors}
        assert isinstance(by_item["bad"], LookupError)
        assert isinstance(by_item["3 keys from 'x1'"], TimeoutError)
        assert await cache.try_get("bad") == (False, None)
        assert await cache.try_get("x1") == (False, None)
        assert await cache.get_many(["ok1", "ok2", "y1"]) == dict.fromkeys(
            ["ok1", "ok2", "y1"], "v"
        )


async def test_a_failing_write_is_a_failure_of_its_key(l2_backend: Any) -> None:
    async with node(l2_backend) as cache:
        report = await warm(df.CacheWarmer(cache, seeders=[[("a", {1, 2}), ("b", [1, 2])]]))
        assert (report.loaded, report.failed) == (1, 1)
        assert report.errors[0].item == "a"
        assert isinstance(report.errors[0].error, df.SerializationError)
        assert await cache.try_get("a") == (False, None)


# -- concurrency ---------------------------------------------------------------------------------


async def test_at_most_concurrency_loads_are_in_flight() -> None:
    latch = AsyncLatch()
    lock = threading.Lock()
    state = {"in_flight": 0, "peak": 0, "read": 0}

    def keys() -> Any:
        for i in range(20):
            state["read"] += 1
            yield f"k{i}"

    async def load(key: str) -> str:
        with lock:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
        await latch.wait()
        with lock:
            state["in_flight"] -= 1
        return key

    async def four_in_flight() -> bool:
        return state["in_flight"] == 4

    async with node() as cache:
        warmer = df.CacheWarmer(cache, seeders=[df.KeySeeder(keys(), load=load)], concurrency=4)
        running = AsyncReading(lambda: warm(warmer))
        await async_until(four_in_flight)
        # The seeder is read no further ahead than the key waiting for a free slot.
        assert state["read"] <= 5
        latch.open()
        report = await running.result()
        assert report.loaded == 20
        assert state["peak"] == 4
        assert await cache.get("k19") == "k19"


# -- bad arguments -------------------------------------------------------------------------------


async def test_bad_arguments_are_refused_at_construction() -> None:
    def gen() -> Any:
        yield ("k", 1)

    async with node() as cache:
        bad: list[tuple[dict[str, Any], str]] = [
            ({"seeders": gen()}, "a single seeder goes in a list"),
            ({"seeders": [("k", 1)]}, r"seeders\[0\].*holds str"),
            ({"seeders": [["k1", "k2"]]}, "KeySeeder"),
            ({"seeders": ["abc"]}, r"seeders\[0\] is not a seeder"),
            ({"seeders": [42]}, r"seeders\[0\] is not a seeder"),
            ({"seeders": [], "concurrency": 0}, "concurrency"),
            ({"seeders": [], "concurrency": True}, "concurrency"),
            ({"seeders": [], "ttl": -1}, "ttl"),
            ({"seeders": [], "tags": "t"}, "tags"),
            ({"seeders": [], "overwrite": "yes"}, "overwrite"),
            ({"seeders": [], "progress": 3}, "progress"),
            ({"seeders": [], "progress_every": 0}, "progress_every"),
        ]
        for kwargs, message in bad:
            with pytest.raises(df.ConfigurationError, match=message):
                df.CacheWarmer(cache, **kwargs)
        with pytest.raises(df.ConfigurationError, match="AsyncDataFerry or a DataFerry"):
            df.CacheWarmer({}, seeders=[])  # type: ignore[arg-type]
        with pytest.raises(df.ConfigurationError, match="exactly one"):
            df.KeySeeder(["k"])
        with pytest.raises(df.ConfigurationError, match="exactly one"):
            df.KeySeeder(["k"], load=str, load_many=dict)
        with pytest.raises(df.ConfigurationError, match="iterable"):
            df.KeySeeder("k", load=str)
        with pytest.raises(df.ConfigurationError, match="batch_size"):
            df.KeySeeder(["k"], load_many=dict, batch_size=0)
        assert cache.stats().memory_entries == 0


async def test_the_warmer_runs_in_the_colour_of_its_cache() -> None:
    async with node() as cache:
        warmer = df.CacheWarmer(cache, seeders=[[("k", 1)]])
        if IS_ASYNC:
            with pytest.raises(df.ConfigurationError, match=r"await warmer.run\(\)"):
                warmer.run_sync()
        else:
            with pytest.raises(df.ConfigurationError, match=r"run_sync\(\)"):
                asyncio.run(warmer.run())  # unasync: keep
        assert await cache.try_get("k") == (False, None)
        assert (await warm(warmer)).loaded == 1


async def pairs_async() -> Any:  # unasync: keep (an async generator in both files)
    yield "k", 1


async def load_async(key: str) -> str:  # unasync: keep
    return key


async def test_only_the_async_cache_takes_async_seeders_and_loaders() -> None:
    async with node() as cache:
        seeders: list[Any] = [[("first", 1)], pairs_async(), df.KeySeeder(["k2"], load=load_async)]
        warmer = df.CacheWarmer(cache, seeders=seeders)
        if IS_ASYNC:
            assert (await warm(warmer)).loaded == 3
        else:
            with pytest.raises(df.ConfigurationError, match=r"seeders\[1\] is an async iterable"):
                warm(warmer)
            with pytest.raises(df.ConfigurationError, match="async"):
                warm(df.CacheWarmer(cache, seeders=[seeders[2]]))
            assert await cache.try_get("first") == (False, None)  # nothing written
            seeders[
                1
            ].aclose().close()  # never iterated: no "never awaited" warning  # unasync: keep


async def test_a_closed_cache_is_refused() -> None:
    cache = node()
    await cache.aclose()
    with pytest.raises(df.CacheClosedError):
        await warm(df.CacheWarmer(cache, seeders=[[("k", 1)]]))
