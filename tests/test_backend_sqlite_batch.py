"""SQLiteCache's async writes are committed in groups, one transaction and one thread hop each.

The writes that the tasks of one event loop make while a batch is in flight go in the next
batch. Each caller gets its own result or error; a write that fails does not fail the others
(whether SQLite undoes its statement alone or the whole transaction); a cancelled caller
loses only its own write; each loop has its own batches; a corrupt file is repaired under a
batch. Real SQLite files throughout: the failures come from triggers and constraints of the
database itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataferry import DistributedCacheError, SQLiteCache
from dataferry._backends import _sqlite


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "l2.sqlite"


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """The size of every batch committed, counted around the real commit."""
    sizes: Counter[int] = Counter()
    commit = SQLiteCache._commit

    def counting(self: SQLiteCache, writes: list[Any]) -> None:
        sizes[len(writes)] += 1
        commit(self, writes)

    monkeypatch.setattr(SQLiteCache, "_commit", counting)
    return sizes


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    with contextlib.closing(
        sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    ) as conn:
        yield conn


def stored(path: Path) -> dict[str, bytes]:
    with raw(path) as conn:
        return {k: bytes(v) for k, v in conn.execute("SELECT key, value FROM dataferry_cache")}


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def in_flight(cache: SQLiteCache) -> bool:
    """Whether a worker took this loop's waiting writes and is committing them."""
    batch = cache._loop_writes.get(asyncio.get_running_loop())
    return batch is not None and batch.draining and not batch.pending


def idle(cache: SQLiteCache) -> bool:
    """Whether no worker is committing this loop's writes, nor about to."""
    batch = cache._loop_writes.get(asyncio.get_running_loop())
    return batch is None or not batch.draining


async def hold_in_flight(cache: SQLiteCache, writes: list[Any]) -> list[asyncio.Future[Any]]:
    """Start ``writes`` (coroutines) as tasks and wait until one batch has taken them all.

    The batch before must have ended first: a worker still finishing it (on a loaded machine,
    a while after its callers woke up) would otherwise take the new writes one by one, or
    look in flight before they are even queued.
    """
    await until(lambda: idle(cache))
    tasks = [asyncio.ensure_future(write) for write in writes]
    await asyncio.sleep(0)  # each queued its write; the first one started a batch
    await until(lambda: in_flight(cache))
    return tasks


# -- many writers -------------------------------------------------------------------------------


async def test_many_concurrent_writers_store_every_value_in_few_batches(
    path: Path, batches: Counter[int]
) -> None:
    cache = SQLiteCache(path)
    tasks, per_task = 64, 25

    async def writer(t: int) -> None:
        for i in range(per_task):
            await cache.aset(f"t{t}-{i}", f"{t}:{i}".encode(), 60)

    try:
        await asyncio.gather(*(writer(t) for t in range(tasks)))
        keys = [f"t{t}-{i}" for t in range(tasks) for i in range(per_task)]
        assert await cache.aget_many(keys) == [k[1:].replace("-", ":").encode() for k in keys]
    finally:
        await cache.aclose()
    assert sum(n * count for n, count in batches.items()) == tasks * per_task
    # Grouped: far fewer transactions than writes (most batches hold every task's write).
    assert sum(batches.values()) <= tasks * per_task // 8, batches
    assert len(stored(path)) == tasks * per_task


async def test_every_kind_of_write_joins_a_batch_with_its_own_result(
    path: Path, batches: Counter[int]
) -> None:
    cache = SQLiteCache(path)
    try:
        await cache.aset_many([("d1", b"x", 60.0), ("d2", b"x", 60.0)])
        batches.clear()
        results = await asyncio.gather(
            cache.aset("k", b"a", 60),
            cache.acompare_and_set("k", b"a", b"b"),  # sees the write before it
            cache.acompare_and_set("k", b"a", b"c"),  # no longer "a"
            cache.adelete("gone"),
            cache.aset("gone", b"1", 60),
            cache.adelete("gone"),
            cache.adelete_many(["d1", "d2", "d3"]),
            cache.aset_many([("m1", b"1", 60.0), ("m2", b"2", 60.0)]),
            cache.aset_many([]),
            cache.adelete_many([]),
        )
        assert results == [None, True, False, False, None, True, 2, None, None, 0]
        assert dict(batches) == {8: 1}  # the empty ones never queue
        assert await cache.aget_many(["k", "gone", "d1", "m1", "m2"]) == [
            b"b",
            None,
            None,
            b"1",
            b"2",
        ]
    finally:
        await cache.aclose()


async def test_a_later_write_of_a_key_wins(path: Path) -> None:
    cache = SQLiteCache(path)
    try:
        for _ in range(5):
            await asyncio.gather(*(cache.aset("same", b"%d" % i, 60) for i in range(50)))
            assert await cache.aget("same") == b"49"
            await asyncio.gather(cache.aset("x", b"1", 60), cache.adelete("x"))
            assert await cache.aget("x") is None
            await asyncio.gather(cache.adelete("x"), cache.aset("x", b"2", 60))
            assert await cache.aget("x") == b"2"
    finally:
        await cache.aclose()


async def test_writes_beyond_the_batch_limit_go_in_several_batches(
    path: Path, batches: Counter[int]
) -> None:
    cache = SQLiteCache(path)
    n = _sqlite._MAX_BATCH * 2 + 10
    try:
        await asyncio.gather(*(cache.aset(f"k{i}", b"v", 60) for i in range(n)))
    finally:
        await cache.aclose()
    assert max(batches) == _sqlite._MAX_BATCH
    assert sum(s * c for s, c in batches.items()) == n
    assert len(stored(path)) == n


async def test_writes_that_arrive_during_a_batch_make_the_next_one(
    path: Path, batches: Counter[int]
) -> None:
    cache = SQLiteCache(path, busy_timeout=10)
    try:
        await cache.aset("warm", b"v", 60)
        batches.clear()
        with raw(path) as holder:
            holder.execute("BEGIN IMMEDIATE")  # the first batch waits for this lock
            first = asyncio.ensure_future(cache.aset("first", b"1", 60))
            # Its batch is committing (counted as it starts, then blocked on the lock): the
            # warm-up's batch may still look in flight before "first" is even queued.
            await until(lambda: batches[1] == 1 and in_flight(cache))
            later = [asyncio.ensure_future(cache.aset(f"k{i}", b"2", 60)) for i in range(20)]
            await asyncio.sleep(0.05)
            assert not first.done()
            holder.execute("COMMIT")
            await asyncio.gather(first, *later)
        assert dict(batches) == {1: 1, 20: 1}
        assert len(stored(path)) == 22
    finally:
        await cache.aclose()


async def test_memory_cache_batches_too(batches: Counter[int]) -> None:
    cache = SQLiteCache(":memory:")
    try:
        await asyncio.gather(*(cache.aset(f"k{i}", b"v", 60) for i in range(100)))
        assert await cache.adelete_many([f"k{i}" for i in range(100)]) == 100
    finally:
        await cache.aclose()
    assert sum(batches.values()) <= 3


# -- a failing write fails alone ------------------------------------------------------------------


async def test_a_write_the_database_refuses_fails_alone(path: Path) -> None:
    cache = SQLiteCache(path)
    try:
        results = await asyncio.gather(
            cache.aset("a", b"1", 60),
            cache.aset("null", None, 60),  # type: ignore[arg-type]  # NOT NULL constraint
            cache.aset("b", b"2", 60),
            cache.aset("object", object(), 60),  # type: ignore[arg-type]  # cannot bind
            cache.aset("no-ttl", b"x", None),  # type: ignore[arg-type]
            cache.aset_many([("m1", b"1", 60.0), ("m2", None, 60.0)]),  # type: ignore[list-item]
            cache.aset_many([("n1", b"1", 60.0), ("n2", b"2", 60.0)]),
            cache.acompare_and_set("a", b"1", b"3"),
            return_exceptions=True,
        )
        assert results[0] is None
        assert results[2] is None
        assert results[6] is None
        assert results[7] is True
        errors = [results[i] for i in (1, 3, 4, 5)]
        assert all(isinstance(e, DistributedCacheError) for e in errors), errors
        causes = [type(e.__cause__) for e in errors]  # type: ignore[union-attr]
        assert causes == [
            sqlite3.IntegrityError,
            sqlite3.ProgrammingError,
            TypeError,
            sqlite3.IntegrityError,
        ]
        assert "NOT NULL" in str(errors[0])
        # Committed: every write but the failed ones; a failed set_many left none of its rows.
        assert stored(path) == {"a": b"3", "b": b"2", "n1": b"1", "n2": b"2"}
    finally:
        await cache.aclose()


async def test_a_write_that_rolls_the_transaction_back_fails_alone(path: Path) -> None:
    cache = SQLiteCache(path)
    await cache.aset("k", b"0", 60)
    with raw(path) as conn:  # the database itself rolls back any transaction writing "poison"
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON dataferry_cache WHEN NEW.key = 'poison' "
            "BEGIN SELECT RAISE(ROLLBACK, 'poisoned'); END"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON dataferry_cache WHEN NEW.key = 'refused' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    try:
        for _ in range(3):  # and the cache goes on working afterwards
            await cache.aset("k", b"0", 60)
            results = await asyncio.gather(
                cache.aset("a", b"1", 60),
                cache.acompare_and_set("k", b"0", b"1"),  # undone by the rollback, redone
                cache.aset("refused", b"x", 60),  # fails on its own statement
                cache.aset("poison", b"x", 60),  # takes the whole transaction down
                cache.acompare_and_set("k", b"1", b"2"),
                cache.aset_many([("m", b"1", 60.0), ("poison", b"y", 60.0)]),
                cache.adelete("a"),
                cache.aset("b", b"2", 60),
                return_exceptions=True,
            )
            assert results[0] is None
            assert results[1] is True
            assert results[4] is True
            assert results[6] is True
            assert results[7] is None
            for i, message in ((2, "refused"), (3, "poisoned"), (5, "poisoned")):
                assert isinstance(results[i], DistributedCacheError), results[i]
                assert message in str(results[i])
                assert isinstance(results[i].__cause__, sqlite3.IntegrityError)  # type: ignore[union-attr]
            assert stored(path) == {"k": b"2", "b": b"2"}
            assert await cache.adelete("b")
    finally:
        await cache.aclose()


async def test_a_batch_that_cannot_start_fails_every_caller(path: Path) -> None:
    cache = SQLiteCache(path, busy_timeout=0.05)
    await cache.aset("k", b"v", 60)
    with raw(path) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        results = await asyncio.gather(
            *(cache.aset(f"k{i}", b"v", 60) for i in range(10)), return_exceptions=True
        )
        holder.execute("ROLLBACK")
    assert all(isinstance(e, DistributedCacheError) for e in results), results
    assert all(isinstance(e.__cause__, sqlite3.OperationalError) for e in results)  # type: ignore[union-attr]
    assert len({id(e) for e in results}) == 10  # one exception object per caller
    try:
        await asyncio.gather(*(cache.aset(f"k{i}", b"v", 60) for i in range(10)))
        assert len(stored(path)) == 11
    finally:
        await cache.aclose()


async def test_a_failed_purge_does_not_fail_the_writes(path: Path) -> None:
    cache = SQLiteCache(path, purge_every=1)
    try:
        await cache.aset("stuck", b"v", 0.01)
        with raw(path) as conn:  # the database refuses to delete that row
            conn.execute(
                "CREATE TRIGGER stuck BEFORE DELETE ON dataferry_cache WHEN OLD.key = 'stuck' "
                "BEGIN SELECT RAISE(ABORT, 'stuck'); END"
            )
        await asyncio.sleep(0.05)  # expired
        await asyncio.gather(cache.aset("a", b"1", 60), cache.aset("b", b"2", 60))
        assert stored(path) == {"stuck": b"v", "a": b"1", "b": b"2"}
    finally:
        await cache.aclose()


# -- corruption -----------------------------------------------------------------------------------


def garbage_over_everything(path: Path) -> None:
    size = path.stat().st_size
    path.write_bytes(bytes((i * 7 + 3) % 256 for i in range(size)))


@pytest.mark.parametrize("live", [False, True], ids=["at-open", "under-live-connections"])
async def test_a_batch_meeting_a_corrupt_file_repairs_it_and_commits_every_write(
    path: Path, caplog: pytest.LogCaptureFixture, live: bool
) -> None:
    cache = SQLiteCache(path)
    await cache.aset_many([(f"old{i}", b"v" * 200, 600.0) for i in range(2000)])
    if not live:
        cache.close()
    with raw(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    garbage_over_everything(path)
    caplog.set_level(logging.DEBUG, logger="dataferry")
    try:
        results = await asyncio.gather(
            *(cache.aset(f"new{i}", b"%d" % i, 60) for i in range(100)),
            cache.adelete("old1"),
            cache.acompare_and_set("old2", b"v" * 200, b"w"),
        )
        # On the fresh, empty file: every write committed, the old rows gone.
        assert results == [None] * 100 + [False, False]
        assert await cache.aget_many([f"new{i}" for i in range(100)]) == [
            b"%d" % i for i in range(100)
        ]
        assert await cache.aget("old3") is None
    finally:
        await cache.aclose()
    assert len([p for p in path.parent.iterdir() if p.name.startswith("l2.sqlite.corrupt-")]) >= 1
    repairs = [r for r in caplog.records if r.levelno >= logging.ERROR and "corrupt" in r.message]
    assert len(repairs) == 1
    assert len(stored(path)) == 100


def corrupt_table_leaves_but_the_first(path: Path) -> None:
    """Garbage over every leaf page of the table except the first (rowids 1, 2, ...)."""
    with raw(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        leaves = [
            pageno
            for (pageno,) in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'dataferry_cache' AND pagetype = 'leaf' "
                "ORDER BY pageno"
            )
        ]
    with path.open("r+b") as f:
        for pageno in leaves[1:]:
            f.seek((pageno - 1) * page_size)
            f.write(bytes((i * 7 + 3) % 256 for i in range(page_size)))


async def test_corruption_met_in_the_middle_of_a_batch_is_repaired(
    path: Path, caplog: pytest.LogCaptureFixture, batches: Counter[int]
) -> None:
    old = b"v" * 200
    cache = SQLiteCache(path)
    await cache.aset_many([(f"old{i:05d}", old, 600.0) for i in range(2000)])
    cache.close()
    with raw(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    corrupt_table_leaves_but_the_first(path)
    caplog.set_level(logging.DEBUG, logger="dataferry")
    with raw(path) as conn:  # the first statements of the batch find sound pages
        assert conn.execute("SELECT value FROM dataferry_cache WHERE rowid = 1").fetchone()
    batches.clear()
    try:
        results = await asyncio.gather(
            cache.aset("first", b"1", 60),
            cache.acompare_and_set("old00000", old, b"w"),  # a sound page
            cache.adelete("old01500"),  # a damaged one: the batch meets the corruption here
            cache.aset("last", b"2", 60),
        )
        # The whole batch ran again on the fresh file: no caller saw the corruption.
        assert list(results) == [None, False, False, None]
        assert dict(batches) == {4: 1}
    finally:
        await cache.aclose()
    repairs = [r for r in caplog.records if r.levelno >= logging.ERROR and "corrupt" in r.message]
    assert len(repairs) == 1
    assert stored(path) == {"first": b"1", "last": b"2"}


# -- cancellation ---------------------------------------------------------------------------------


async def test_a_cancelled_writer_loses_only_its_own_write(path: Path) -> None:
    cache = SQLiteCache(path, busy_timeout=10)
    try:
        await cache.aset("warm", b"v", 60)
        with raw(path) as holder:
            holder.execute("BEGIN IMMEDIATE")  # holds the first batch in flight
            flying = await hold_in_flight(cache, [cache.aset(f"f{i}", b"1", 60) for i in range(5)])
            waiting = [asyncio.ensure_future(cache.aset(f"w{i}", b"2", 60)) for i in range(5)]
            await asyncio.sleep(0)  # each queued its write
            flying[2].cancel()  # its write is in flight: it completes for the others' sake
            waiting[3].cancel()  # its write had not started: dropped
            await asyncio.sleep(0.05)
            holder.execute("COMMIT")
            results = await asyncio.gather(*flying, *waiting, return_exceptions=True)
        assert [isinstance(r, asyncio.CancelledError) for r in results] == [
            i in (2, 8) for i in range(10)
        ]
        keys = {f"f{i}" for i in range(5)} | {f"w{i}" for i in range(5) if i != 3}
        assert set(stored(path)) == keys | {"warm"}
        # A batch whose every caller was cancelled before it started writes nothing.
        with raw(path) as holder:
            holder.execute("BEGIN IMMEDIATE")
            flying = await hold_in_flight(cache, [cache.aset("f-again", b"1", 60)])
            waiting = [asyncio.ensure_future(cache.aset(f"x{i}", b"2", 60)) for i in range(3)]
            await asyncio.sleep(0)
            for task in waiting:
                task.cancel()
            holder.execute("COMMIT")
            await asyncio.gather(*flying, *waiting, return_exceptions=True)
        assert not {"x0", "x1", "x2"} & set(stored(path))
        # The cache goes on: later writes in this loop are not held up by the cancellations.
        await asyncio.wait_for(cache.aset("after", b"3", 60), 10)
        assert await cache.aget("after") == b"3"
    finally:
        await cache.aclose()


async def test_writers_cancelled_at_random_never_corrupt_the_others(path: Path) -> None:
    cache = SQLiteCache(path)
    kept: set[str] = set()

    async def writer(t: int) -> None:
        for i in range(30):
            key = f"t{t}-{i}"
            await cache.aset(key, key.encode(), 60)
            kept.add(key)

    try:
        for _ in range(10):
            tasks = [asyncio.ensure_future(writer(t)) for t in range(20)]
            await asyncio.sleep(0.002)
            for t in tasks[::3]:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        rows = stored(path)
        for key in kept:  # every write whose caller saw it complete is there, intact
            assert rows[key] == key.encode()
        for key, value in rows.items():  # and nothing else was garbled
            assert value == key.encode()
    finally:
        await cache.aclose()


# -- event loops ----------------------------------------------------------------------------------


def test_loops_in_threads_at_the_same_time_each_batch_their_own(
    path: Path, batches: Counter[int]
) -> None:
    cache = SQLiteCache(path)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def thread(n: int) -> None:
        async def work() -> None:
            async def writer(t: int) -> None:
                for i in range(20):
                    await cache.aset(f"l{n}-t{t}-{i}", f"{n}".encode(), 60)
                    await cache.aset(f"shared-{t}", f"{n}".encode(), 60)

            start.wait()
            await asyncio.gather(*(writer(t) for t in range(16)))

        try:
            asyncio.run(work())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    try:
        assert errors == []
        rows = stored(path)
        for n in range(4):
            for t in range(16):
                for i in range(20):
                    assert rows[f"l{n}-t{t}-{i}"] == f"{n}".encode()
        assert {rows[f"shared-{t}"] for t in range(16)} <= {b"0", b"1", b"2", b"3"}
        assert sum(s * c for s, c in batches.items()) == 4 * 16 * 20 * 2
        assert sum(batches.values()) < 4 * 16 * 20 * 2 // 4  # grouped within each loop
    finally:
        cache.close()


def test_successive_asyncio_runs_each_get_their_batches(path: Path) -> None:
    cache = SQLiteCache(path)

    async def work(i: int) -> int:
        await asyncio.gather(*(cache.aset(f"r{i}-{k}", b"v", 60) for k in range(20)))
        assert await cache.adelete(f"r{i}-0")
        return len(cache._loop_writes)

    try:
        # Closed loops are forgotten: only the running one is known.
        assert [asyncio.run(work(i)) for i in range(5)] == [1] * 5
        assert len(stored(path)) == 5 * 19
    finally:
        cache.close()


def test_a_loop_closed_with_a_batch_in_flight_is_forgotten(path: Path) -> None:
    cache = SQLiteCache(path, busy_timeout=10)
    with raw(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS warm (x)")
    loop = asyncio.new_event_loop()
    with raw(path) as holder:
        holder.execute("BEGIN IMMEDIATE")
        task = loop.create_task(cache.aset("k", b"v", 60))
        loop.run_until_complete(asyncio.sleep(0.05))
        assert not task.done()
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        loop.close()  # without waiting for its executor: the worker still holds the write
        holder.execute("COMMIT")

    async def later() -> int:
        await cache.aset("k2", b"v", 60)
        return len(cache._loop_writes)

    try:
        assert asyncio.run(later()) == 1
        assert wait_for_rows(path, {"k", "k2"})
    finally:
        cache.close()


def wait_for_rows(path: Path, keys: set[str]) -> bool:
    deadline = time.monotonic() + 10
    while not keys <= set(stored(path)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


async def test_writes_after_the_default_executor_shut_down_commit_in_the_loop(
    path: Path,
) -> None:
    cache = SQLiteCache(path)
    try:
        await cache.aset("before", b"1", 60)
        await asyncio.get_running_loop().shutdown_default_executor()
        results = await asyncio.gather(cache.aset("after", b"2", 60), cache.adelete("before"))
        assert list(results) == [None, True]
        assert stored(path) == {"after": b"2"}
    finally:
        await cache.aclose()


async def test_aclose_waits_for_the_writes_in_flight(path: Path) -> None:
    cache = SQLiteCache(path, busy_timeout=10)
    await cache.aset("warm", b"v", 60)
    with raw(path) as holder:
        holder.execute("BEGIN IMMEDIATE")
        tasks = await hold_in_flight(cache, [cache.aset(f"k{i}", b"v", 60) for i in range(10)])
        # And the writes queued behind that batch.
        tasks += [asyncio.ensure_future(cache.aset(f"n{i}", b"v", 60)) for i in range(10)]
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(cache.aclose())
        await asyncio.sleep(0.05)
        assert not closing.done()
        holder.execute("COMMIT")
        await closing
    assert all(t.done() for t in tasks)
    await asyncio.gather(*tasks)
    assert len(stored(path)) == 21
