"""SQLiteCache repairs a corrupt file: moved aside, rebuilt empty, one ERROR logged.

A cache may lose its contents but must keep working: garbage written over the file, a
truncated file, a file that is not SQLite, corruption that appears under a live cache, and
several processes meeting the same corruption (only one moves it aside; all end up on the
same fresh file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import sqlite3
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dataferry import DistributedCacheError, SQLiteCache
from tests.redis_servers import wait_until

KEYS = [f"key-{i}" for i in range(2000)]
VALUE = b"v" * 200  # 2000 rows of 200 bytes: a table over a hundred pages


def fill(path: Path) -> None:
    """A healthy cache file with KEYS in it, closed (its WAL checkpointed into the file)."""
    cache = SQLiteCache(path)
    cache.set_many([(k, VALUE, 600.0) for k in KEYS])
    assert cache.get(KEYS[-1]) == VALUE
    cache.close()
    assert not Path(f"{path}-wal").exists()


def garbage_over_everything(path: Path) -> None:
    size = path.stat().st_size
    path.write_bytes(bytes((i * 7 + 3) % 256 for i in range(size)))


def garbage_over_the_header(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(b"\xde\xad\xbe\xef" * 25)


def truncated(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 3)


def not_sqlite(path: Path) -> None:
    path.write_text("name,value\n" + "alice,1\n" * 500)


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "garbage": garbage_over_everything,
    "header": garbage_over_the_header,
    "truncated": truncated,
    "not-sqlite": not_sqlite,
}


def asides(path: Path) -> list[Path]:
    """The files a repair moved aside (not their -wal/-shm companions)."""
    return sorted(
        p
        for p in path.parent.iterdir()
        if p.name.startswith(f"{path.name}.corrupt-") and not p.name.endswith(("-wal", "-shm"))
    )


def repair_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "dataferry" and r.levelno >= logging.ERROR and "corrupt" in r.getMessage()
    ]


def journal_mode(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


# -- a corrupt file found when the cache opens it -------------------------------------------------


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS))
@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_a_corrupt_file_is_moved_aside_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, corrupt: str, is_async: bool
) -> None:
    path = tmp_path / "l2.sqlite"
    fill(path)
    path.chmod(0o660)  # a file shared by a group of users keeps its permissions
    CORRUPTIONS[corrupt](path)
    damaged = path.read_bytes()
    cache = SQLiteCache(path)
    caplog.set_level(logging.DEBUG, logger="dataferry")
    try:
        # The first call meets the damage (every key: a truncated table fails on some page),
        # repairs, and answers from the fresh, empty file: a miss, not an error.
        if is_async:
            assert await cache.aget_many(KEYS) == [None] * len(KEYS)
            await cache.aset("k", b"new", 60)
            assert await cache.aget("k") == b"new"
        else:
            assert cache.get_many(KEYS) == [None] * len(KEYS)
            cache.set("k", b"new", 60)
            assert cache.get("k") == b"new"
    finally:
        await cache.aclose()
    [aside] = asides(path)
    assert aside.read_bytes() == damaged  # kept as it was, for a post-mortem
    assert journal_mode(path) == "wal"
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    [log] = repair_logs(caplog)
    assert log.levelno == logging.ERROR
    assert str(path) in log.getMessage()
    assert str(aside) in log.getMessage()
    # Reopened later (another process, a restart): the file is healthy and keeps its data.
    again = SQLiteCache(path)
    assert again.get("k") == b"new"
    again.close()
    assert len(asides(path)) == 1
    assert len(repair_logs(caplog)) == 1


OPERATIONS: list[tuple[str, tuple[Any, ...], Any]] = [
    ("get", ("k",), None),
    ("get_many", (["k", "other"],), [None, None]),
    ("set", ("k", b"v", 60.0), None),
    ("set_many", ([("k", b"v", 60.0)],), None),
    ("compare_and_set", ("k", b"v", b"w"), False),
    ("ttl", ("k",), None),
    ("delete", ("k",), False),
    ("delete_many", (["k", "other"],), 0),
]


@pytest.mark.parametrize(("name", "args", "expected"), OPERATIONS, ids=[o[0] for o in OPERATIONS])
@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_every_operation_repairs_and_succeeds(
    tmp_path: Path, name: str, args: tuple[Any, ...], expected: Any, is_async: bool
) -> None:
    path = tmp_path / "l2.sqlite"
    fill(path)
    garbage_over_everything(path)
    cache = SQLiteCache(path)
    try:
        if is_async:
            result = await getattr(cache, "a" + name)(*args)
        else:
            result = getattr(cache, name)(*args)
        assert result == expected
    finally:
        cache.close()
    assert len(asides(path)) == 1


# -- corruption under a live cache ----------------------------------------------------------------


async def test_corruption_under_a_live_cache_is_repaired_for_every_thread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "l2.sqlite"
    cache = SQLiteCache(path, inline_reads=False)
    caplog.set_level(logging.DEBUG, logger="dataferry")
    try:
        # Connections open in this thread and in worker threads.
        cache.set_many([(k, VALUE, 600.0) for k in KEYS])
        assert await cache.aget("key-1") == VALUE
        assert cache.get("key-2") == VALUE
        with contextlib.closing(sqlite3.connect(path)) as raw:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        garbage_over_everything(path)  # overwritten in place, under the open connections

        # A thread that opens a connection now meets the damage and repairs the file...
        seen: list[bytes | None] = []
        thread = threading.Thread(target=lambda: seen.append(cache.get("key-3")))
        thread.start()
        thread.join()
        assert seen == [None]
        # ...and every other thread moves to the fresh file on its next call.
        assert cache.get("key-2") is None
        assert await cache.aget("key-1") is None
        await cache.aset("after", b"1", 60)
        assert cache.get("after") == b"1"
    finally:
        await cache.aclose()
    assert len(asides(path)) == 1
    assert len(repair_logs(caplog)) == 1


def test_a_healthy_file_is_never_moved_aside(tmp_path: Path) -> None:
    # A corruption error met by a connection whose file is healthy again (another process
    # already repaired it) must not move the fresh file aside.
    path = tmp_path / "l2.sqlite"
    first, second = SQLiteCache(path), SQLiteCache(path)
    try:
        first.set("a", b"1", 60)
        second.set("b", b"2", 60)
        with contextlib.closing(sqlite3.connect(path)) as raw:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        garbage_over_everything(path)
        third = SQLiteCache(path)
        assert third.get("a") is None  # repairs
        third.set("c", b"3", 60)
        third.close()
        # The others, whose connections still point at the moved file, switch to the fresh
        # one (at the latest when they check the file's identity, once a second).
        wait_until(lambda: first.get("c") == b"3", timeout=10, what="first to switch")
        wait_until(lambda: second.get("c") == b"3", timeout=10, what="second to switch")
        assert len(asides(path)) == 1
    finally:
        first.close()
        second.close()


# -- several processes ----------------------------------------------------------------------------


def _process_meeting_corruption(path: str, n: int, start: Any, written: Any, results: Any) -> None:
    """Child process: meet the corrupt file with the others, write, then read every write."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logging.getLogger("dataferry").addHandler(Collect())
    logging.getLogger("dataferry").setLevel(logging.DEBUG)
    cache = SQLiteCache(path, busy_timeout=10)
    try:
        start.wait(30)
        assert cache.get("anything") is None  # all at once: every process meets the damage
        cache.set(f"p{n}", f"from {n}".encode(), 60)
        written.wait(30)
        seen = cache.get_many([f"p{i}" for i in range(3)])
        repaired = any(r.levelno >= logging.ERROR for r in records)
        results.put((n, repaired, seen))
    finally:
        cache.close()


def test_processes_meeting_the_same_corruption_repair_it_once(tmp_path: Path) -> None:
    path = tmp_path / "l2.sqlite"
    fill(path)
    garbage_over_everything(path)
    context = multiprocessing.get_context("spawn")
    start, written = context.Barrier(3), context.Barrier(3)
    results = context.Queue()
    workers = [
        context.Process(
            target=_process_meeting_corruption, args=(str(path), n, start, written, results)
        )
        for n in range(3)
    ]
    for p in workers:
        p.start()
    outcomes = sorted(results.get(timeout=60) for _ in workers)
    for p in workers:
        p.join(30)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    # Exactly one process moved the file aside; the others found the fresh file in place.
    assert [repaired for _, repaired, _ in outcomes].count(True) == 1
    assert len(asides(path)) == 1
    # All three wrote to the same fresh file.
    expected = [b"from 0", b"from 1", b"from 2"]
    assert [seen for _, _, seen in outcomes] == [expected] * 3
    cache = SQLiteCache(path)
    assert cache.get_many(["p0", "p1", "p2"]) == expected
    cache.close()


def _process_repairing(path: str) -> None:
    """Child process: open the (corrupt) file, which repairs it, and write one key."""
    cache = SQLiteCache(path)
    try:
        assert cache.get("old") is None
        cache.set("from-child", b"hello", 60)
    finally:
        cache.close()


async def test_a_live_process_follows_another_process_repair(tmp_path: Path) -> None:
    path = tmp_path / "l2.sqlite"
    cache = SQLiteCache(path)
    try:
        await cache.aset("old", b"1", 60)
        assert cache.get("old") == b"1"
        with contextlib.closing(sqlite3.connect(path)) as raw:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        garbage_over_everything(path)
        child = multiprocessing.get_context("spawn").Process(
            target=_process_repairing, args=(str(path),)
        )
        child.start()
        await asyncio.to_thread(child.join, 60)
        assert child.exitcode == 0
        # This process's connection still points at the moved file; within a second it sees
        # that the path names another file, and reopens.

        async def sees_child_write() -> bool:
            return await cache.aget("from-child") == b"hello"

        deadline = asyncio.get_running_loop().time() + 10
        while not await sees_child_write():
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        assert await cache.aget("old") is None
        await cache.aset("again", b"2", 60)
    finally:
        await cache.aclose()
    assert len(asides(path)) == 1
    fresh = SQLiteCache(path)
    assert fresh.get_many(["from-child", "again"]) == [b"hello", b"2"]
    fresh.close()


# -- what is not corruption ---------------------------------------------------------------------


def test_a_busy_file_is_not_mistaken_for_a_corrupt_one(tmp_path: Path) -> None:
    path = tmp_path / "l2.sqlite"
    cache = SQLiteCache(path, busy_timeout=0.05)
    cache.set("k", b"v", 60)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(DistributedCacheError, match="locked"):
            cache.set("k", b"w", 60)
        holder.execute("ROLLBACK")
    assert cache.get("k") == b"v"
    cache.close()
    assert asides(path) == []


def test_memory_cache_is_unaffected(tmp_path: Path) -> None:
    cache = SQLiteCache(":memory:")
    cache.set("k", b"v", 60)
    assert cache.compare_and_set("k", b"v", b"w")
    assert cache.get("k") == b"w"
    cache.close()
    assert list(tmp_path.iterdir()) == []


def _process_holding_the_old_file(path: str, opened: Any, close: Any) -> None:
    """Child process: keep a connection open on the file until told to close it."""
    cache = SQLiteCache(path)
    cache.set("child", b"1", 60)
    opened.set()
    close.wait(60)
    cache.close()  # its connection points at the file that was moved aside


def _process_reading(path: str, keys: list[str], results: Any) -> None:
    cache = SQLiteCache(path)
    try:
        results.put(cache.get_many(keys))
    finally:
        cache.close()


def test_a_process_closing_the_moved_file_leaves_the_fresh_file_intact(tmp_path: Path) -> None:
    # SQLite deletes a WAL database's -wal and -shm *by name* when its last connection closes.
    # The last connection to the moved-aside file must not delete the fresh file's: the
    # repairing process's writes (still in the fresh -wal) would vanish for everyone else.
    path = tmp_path / "l2.sqlite"
    context = multiprocessing.get_context("spawn")
    opened, close = context.Event(), context.Event()
    holder = context.Process(target=_process_holding_the_old_file, args=(str(path), opened, close))
    holder.start()
    cache = SQLiteCache(path)
    try:
        assert opened.wait(60)
        with contextlib.closing(sqlite3.connect(path)) as raw:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        garbage_over_everything(path)
        keys = [f"k{i}" for i in range(50)]
        cache.set_many([(k, b"fresh", 60.0) for k in keys])  # repairs, then writes
        assert len(asides(path)) == 1
        close.set()
        holder.join(60)
        assert holder.exitcode == 0
        assert Path(f"{path}-wal").exists()
        results = context.Queue()
        reader = context.Process(target=_process_reading, args=(str(path), keys, results))
        reader.start()
        assert results.get(timeout=60) == [b"fresh"] * len(keys)
        reader.join(60)
        assert reader.exitcode == 0
    finally:
        close.set()
        holder.join(60)
        cache.close()
