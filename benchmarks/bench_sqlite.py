"""Embedded L2 writes: SQLiteCache against diskcache, in one run.

    .venv/bin/python benchmarks/bench_sqlite.py [--rounds 9] [--writes 2000] [--tasks 1,32]
                                                [--strict]

Writes of 1 KB values with a TTL, each library in its own file of a temporary directory on
the same disk, contenders interleaved round by round (rotating who goes first); the table
shows each side's median microseconds per write and the median of the per-round ratios
(DataFerry / diskcache: below 1 is faster), with their range over the rounds:

- async: ``SQLiteCache.aset`` (group commit: the writes that tasks of a loop make while the
  previous batch is in flight share one transaction and one worker-thread hop) from 1 and
  from 32 concurrent asyncio tasks, against ``diskcache.Cache.set`` called through
  ``asyncio.to_thread`` from the same numbers of tasks (the loop's default executor);
- sync: sequential ``SQLiteCache.set`` against sequential ``diskcache.Cache.set``, in the
  caller's thread (one autocommit transaction per write on both sides).

For information, a row shows what ``aset`` did before the group commit (``SQLiteCache.set``
through ``asyncio.to_thread`` for every write) against the same diskcache runs.

Target: the async writes are not slower than diskcache called from a thread (ratio <= 1.0 at
every task count). The keys cycle over 10,000 names, so both tables stay the same size.
Exit status is 0 unless ``--strict`` is given and a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import diskcache  # type: ignore[import-untyped]

from dataferry import SQLiteCache

TTL = 3600.0
KEYSPACE = 10_000
VALUE = os.urandom(1024)


@dataclass
class Contender:
    name: str
    measure: Callable[[], Awaitable[float]]  # one round: µs per write
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Row:
    what: str
    ours: Contender
    theirs: Contender
    target: float | None  # the highest ratio that meets the target; None: for information

    def ratios(self) -> list[float]:
        pairs = zip(self.ours.samples, self.theirs.samples, strict=True)
        return [a / b for a, b in pairs]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios())

    @property
    def met(self) -> bool:
        return self.target is None or self.ratio <= self.target


class Keys:
    """Key names cycling over KEYSPACE, made beforehand (not timed)."""

    def __init__(self) -> None:
        self.names = [f"bench:{i}" for i in range(KEYSPACE)]
        self.next = 0

    def take(self, n: int) -> list[str]:
        out = [self.names[(self.next + i) % KEYSPACE] for i in range(n)]
        self.next = (self.next + n) % KEYSPACE
        return out


# -- one round of each contender -------------------------------------------------------------


def async_writes(
    write: Callable[[str], Awaitable[object]], keys: Keys, writes: int, tasks: int
) -> Callable[[], Awaitable[float]]:
    """``writes`` awaited writes shared by ``tasks`` concurrent tasks, each writing in a loop."""

    async def measure() -> float:
        names = keys.take(writes)
        share = [names[t::tasks] for t in range(tasks)]

        async def worker(mine: list[str]) -> None:
            for key in mine:
                await write(key)

        gc.disable()
        try:
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(mine) for mine in share))
            return (time.perf_counter() - t0) / writes * 1e6
        finally:
            gc.enable()

    return measure


def sync_writes(
    write: Callable[[str], object], keys: Keys, writes: int
) -> Callable[[], Awaitable[float]]:
    async def measure() -> float:
        names = keys.take(writes)
        gc.disable()
        try:
            t0 = time.perf_counter()
            for key in names:
                write(key)
            return (time.perf_counter() - t0) / writes * 1e6
        finally:
            gc.enable()

    return measure


async def run_rounds(contenders: list[Contender], rounds: int) -> None:
    """Interleave contenders round by round (rotating who goes first) to share the noise."""
    for c in contenders:  # warm-up: files, connections, worker threads
        await c.measure()
    for r in range(rounds):
        k = r % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            c.samples.append(await c.measure())


async def main_async(args: argparse.Namespace, directory: str) -> list[Row]:
    ours = SQLiteCache(os.path.join(directory, "dataferry.sqlite"))
    theirs = diskcache.Cache(os.path.join(directory, "diskcache"))
    keys = Keys()
    try:

        async def df_aset(key: str) -> None:
            await ours.aset(key, VALUE, TTL)

        async def df_to_thread(key: str) -> None:  # aset before the group commit
            await asyncio.to_thread(ours.set, key, VALUE, TTL)

        async def dc_to_thread(key: str) -> None:
            await asyncio.to_thread(theirs.set, key, VALUE, expire=TTL)

        def df_set(key: str) -> None:
            ours.set(key, VALUE, TTL)

        def dc_set(key: str) -> None:
            theirs.set(key, VALUE, expire=TTL)

        rows: list[Row] = []
        contenders: list[Contender] = []
        n = args.writes
        for tasks in args.tasks:
            label = f"{tasks} task{'s' if tasks > 1 else ''}"
            df = Contender(f"aset, {label}", async_writes(df_aset, keys, n, tasks))
            dc = Contender(f"to_thread(set), {label}", async_writes(dc_to_thread, keys, n, tasks))
            old = Contender(
                f"to_thread(SQLiteCache.set), {label}",
                async_writes(df_to_thread, keys, n, tasks),
            )
            rows.append(Row(f"async `aset`, {label} vs `to_thread(diskcache.set)`", df, dc, 1.0))
            rows.append(Row(f"(before: `to_thread(SQLiteCache.set)`, {label})", old, dc, None))
            contenders += [df, dc, old]
        df_sync = Contender("set", sync_writes(df_set, keys, n))
        dc_sync = Contender("diskcache set", sync_writes(dc_set, keys, n))
        rows.append(Row("sync sequential `set` vs `diskcache.set`", df_sync, dc_sync, None))
        contenders += [df_sync, dc_sync]
        await run_rounds(contenders, args.rounds)
        return rows
    finally:
        await ours.aclose()
        theirs.close()


def table(rows: list[Row]) -> str:
    lines = [
        "| writes of 1 KB | DataFerry µs/write | diskcache µs/write "
        "| ratio (median, range) | target | met |",
        "| --- | ---: | ---: | --- | --- | --- |",
    ]
    for row in rows:
        ratios = row.ratios()
        target = "info" if row.target is None else f"<= {row.target:.1f}x"
        met = "" if row.target is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.what} | {row.ours.median:.1f} | {row.theirs.median:.1f} "
            f"| {row.ratio:.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | {target} | {met} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--writes", type=int, default=2000, help="writes per contender per round")
    parser.add_argument(
        "--tasks",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 32],
        help="numbers of concurrent tasks, comma-separated",
    )
    parser.add_argument("--dir", help="where the database files go (default: a temporary dir)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    print(
        f"Python {sys.version.split()[0]}, diskcache {diskcache.__version__}, "
        f"{os.cpu_count()} CPUs; {args.rounds} rounds of {args.writes} writes per contender"
    )
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-sqlite-") as directory:
        rows = asyncio.run(main_async(args, directory))
    print()
    print(table(rows))
    missed = [row for row in rows if not row.met]
    if missed:
        print(f"\n{len(missed)} target(s) missed")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
