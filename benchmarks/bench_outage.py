"""Outage benchmark: steady mixed load while Redis freezes, dies and comes back.

    .venv/bin/python benchmarks/bench_outage.py [--seconds 20] [--quick]
        [--only dataferry,redis-py,cashews] [--tasks 8] [--threads 4] [--strict] [--verbose]

Schedule, scaled to ``--seconds`` (20 s by default, 6 s with ``--quick``)::

    0-5 s steady | 5-10 s frozen (SIGSTOP, then SIGCONT) | 10-12 s steady 2
                 | 12-15 s down (SIGKILL, then restart) | 15-20 s recovered

Load: ``--tasks`` asyncio tasks and ``--threads`` threads, each in a loop of one call then a
short pause (``--think-ms``): 90% ``get_or_set`` over ``--keys`` keys (uniform, ttl 3 s) whose
factory takes ~1 ms (``asyncio.sleep`` / ``time.sleep``), 6% ``set`` of one of those keys, 4%
``remove`` of a "victim" key written before the run and never touched otherwise.

Contenders, run one after another (not interleaved: a fault hits every client of a server at
once), each against a fresh ``redis-server`` of its own with the same schedule and seeds:

- ``dataferry``: ``AsyncDataFerry`` for the tasks and ``DataFerry`` for the threads, both with
  default settings over ``RedisCache.from_url(url)`` (defaults too), so each carries an L1.
- ``redis-py``: ``redis.asyncio.Redis.from_url(url)`` / ``redis.Redis.from_url(url)`` with the
  client's defaults; ``get_or_set`` is ``GET``, then on a miss factory + ``SET PX``. An
  exception ends the call (counted as an error): there is no fallback.
- ``cashews``: ``Cache().setup(url)``, its default Redis setup (errors suppressed: a failed
  ``get`` is a miss). It has no sync API: the threads run its coroutines on the main loop
  (``run_coroutine_threadsafe``), as a sync caller of an async-only library would.

The servers use AOF with ``appendfsync always``, so the restarted server has its data back, as
a production Redis would: a remove that a client failed to deliver stays visible.

Per phase: calls started in it, errors (exceptions out of a call), wrong values (a value of
another key), p50/p99/max latency, the time to recover (from SIGCONT, and from the restarted
server's first PONG, to the first L2 hit), and lost removes (victims removed in that phase that a
fresh reader, a new client with no L1, still finds once the load stopped and the library's
clients were closed; how many it saw before the close is printed too). Targets (DataFerry):
0 errors, 0 wrong values, 0 lost removes; ``--strict`` exits 1 when one is missed.

``--quick`` phases (1.5 s of freeze, 0.9 s down) are shorter than DataFerry's default circuit
breaker cooldown (5 s): its recovery figures then show the cooldown, not the server.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
import redis.asyncio as aredis
from _redis import RedisServer
from cashews import Cache as CashewsCache

import dataferry as df

PHASES = ("steady", "frozen", "steady 2", "down", "recovered")
# (fraction of the run, action): the phase index goes up by one after each action.
SCHEDULE = ((0.25, "freeze"), (0.50, "resume"), (0.60, "kill"), (0.75, "restart"))
# Recovery is measured after these actions, in the phase that follows them.
RECOVERY_AFTER = {"resume": 2, "restart": 4}
VICTIM_TTL = 3600
AOF = ["appendonly yes", "appendfsync always"]


@dataclass
class Settings:
    seconds: float
    tasks: int
    threads: int
    keys: int
    think: float
    ttl: float
    factory_seconds: float
    seed: int

    @property
    def victims(self) -> int:
        # ~4% of at most 1 call per think time per worker, with room to spare.
        rate = (self.tasks + self.threads) / max(self.think, 0.0005)
        return int(self.seconds * rate * 0.04 * 1.5) + 100


def value_of(key: str, version: int) -> dict[str, Any]:
    return {"k": key, "v": version}


# -- contenders ---------------------------------------------------------------------------------


class Contender:
    """One library under test: async and sync halves of get_or_set / set / remove."""

    name = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hits = 0  # L2 hits seen by the harness (redis-py, cashews)

    async def open(self, url: str) -> None:
        raise NotImplementedError

    async def prepare(self, victims: dict[str, Any]) -> None:
        raise NotImplementedError

    async def aget_or_set(self, key: str, factory: Callable[[], Awaitable[Any]]) -> Any:
        raise NotImplementedError

    async def aset(self, key: str, value: Any) -> None:
        raise NotImplementedError

    async def aremove(self, key: str) -> None:
        raise NotImplementedError

    def get_or_set(self, key: str, factory: Callable[[], Any], afactory: Any) -> Any:
        raise NotImplementedError

    def set(self, key: str, value: Any) -> None:
        raise NotImplementedError

    def remove(self, key: str) -> None:
        raise NotImplementedError

    def l2_hits(self) -> int:
        return self.hits

    async def present(self, url: str, keys: list[str]) -> set[str]:
        """The keys a fresh reader (a new client, no L1) still finds."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class DataFerryContender(Contender):
    name = "dataferry"

    async def open(self, url: str) -> None:
        self.acache = df.AsyncDataFerry(distributed=df.RedisCache.from_url(url))
        self.scache = df.DataFerry(distributed=df.RedisCache.from_url(url))

    async def prepare(self, victims: dict[str, Any]) -> None:
        items = list(victims.items())
        for i in range(0, len(items), 500):
            await self.acache.set_many(dict(items[i : i + 500]), ttl=VICTIM_TTL)

    async def aget_or_set(self, key: str, factory: Callable[[], Awaitable[Any]]) -> Any:
        return await self.acache.get_or_set(key, factory, ttl=self.settings.ttl)

    async def aset(self, key: str, value: Any) -> None:
        await self.acache.set(key, value, ttl=self.settings.ttl)

    async def aremove(self, key: str) -> None:
        await self.acache.remove(key)

    def get_or_set(self, key: str, factory: Callable[[], Any], afactory: Any) -> Any:
        return self.scache.get_or_set(key, factory, ttl=self.settings.ttl)

    def set(self, key: str, value: Any) -> None:
        self.scache.set(key, value, ttl=self.settings.ttl)

    def remove(self, key: str) -> None:
        self.scache.remove(key)

    def l2_hits(self) -> int:
        return self.acache.stats().distributed_hits + self.scache.stats().distributed_hits

    async def present(self, url: str, keys: list[str]) -> set[str]:
        async with df.AsyncDataFerry(memory=None, distributed=df.RedisCache.from_url(url)) as c:
            found: set[str] = set()
            for i in range(0, len(keys), 500):
                found |= set(await c.get_many(keys[i : i + 500]))
            return found

    async def close(self) -> None:
        await self.acache.aclose()
        await asyncio.to_thread(self.scache.close)


class RedisPyContender(Contender):
    name = "redis-py"

    async def open(self, url: str) -> None:
        self.a = aredis.Redis.from_url(url)
        self.s = redis.Redis.from_url(url)
        self.px = int(self.settings.ttl * 1000)

    async def prepare(self, victims: dict[str, Any]) -> None:
        async with self.a.pipeline(transaction=False) as pipe:
            for key, value in victims.items():
                pipe.set(key, orjson.dumps(value), ex=VICTIM_TTL)
            await pipe.execute()

    async def aget_or_set(self, key: str, factory: Callable[[], Awaitable[Any]]) -> Any:
        data = await self.a.get(key)
        if data is not None:
            self.hits += 1
            return orjson.loads(data)
        value = await factory()
        await self.a.set(key, orjson.dumps(value), px=self.px)
        return value

    async def aset(self, key: str, value: Any) -> None:
        await self.a.set(key, orjson.dumps(value), px=self.px)

    async def aremove(self, key: str) -> None:
        await self.a.delete(key)

    def get_or_set(self, key: str, factory: Callable[[], Any], afactory: Any) -> Any:
        data = self.s.get(key)
        if data is not None:
            self.hits += 1  # a lost increment under threads is fine: only growth is read
            return orjson.loads(data)  # type: ignore[arg-type]
        value = factory()
        self.s.set(key, orjson.dumps(value), px=self.px)
        return value

    def set(self, key: str, value: Any) -> None:
        self.s.set(key, orjson.dumps(value), px=self.px)

    def remove(self, key: str) -> None:
        self.s.delete(key)

    async def present(self, url: str, keys: list[str]) -> set[str]:
        async with aredis.Redis.from_url(url) as client:
            found: set[str] = set()
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                values = await client.mget(chunk)
                found |= {k for k, v in zip(chunk, values, strict=True) if v is not None}
            return found

    async def close(self) -> None:
        await self.a.aclose()
        self.s.close()


class CashewsContender(Contender):
    name = "cashews"

    async def open(self, url: str) -> None:
        self.cache = CashewsCache()
        self.cache.setup(url)
        self.loop = asyncio.get_running_loop()

    async def prepare(self, victims: dict[str, Any]) -> None:
        pairs = list(victims.items())
        for i in range(0, len(pairs), 500):
            await self.cache.set_many(dict(pairs[i : i + 500]), expire=VICTIM_TTL)

    async def aget_or_set(self, key: str, factory: Callable[[], Awaitable[Any]]) -> Any:
        value = await self.cache.get(key)
        if value is not None:
            self.hits += 1
            return value
        value = await factory()
        await self.cache.set(key, value, expire=self.settings.ttl)
        return value

    async def aset(self, key: str, value: Any) -> None:
        await self.cache.set(key, value, expire=self.settings.ttl)

    async def aremove(self, key: str) -> None:
        await self.cache.delete(key)

    def _on_loop(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def get_or_set(self, key: str, factory: Callable[[], Any], afactory: Any) -> Any:
        return self._on_loop(self.aget_or_set(key, afactory))

    def set(self, key: str, value: Any) -> None:
        self._on_loop(self.aset(key, value))

    def remove(self, key: str) -> None:
        self._on_loop(self.aremove(key))

    async def present(self, url: str, keys: list[str]) -> set[str]:
        reader = CashewsCache()
        reader.setup(url, suppress=False)
        try:
            found: set[str] = set()
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                values = await reader.get_many(*chunk)
                found |= {k for k, v in zip(chunk, values, strict=True) if v is not None}
            return found
        finally:
            await reader.close()

    async def close(self) -> None:
        await self.cache.close()


CONTENDERS: dict[str, type[Contender]] = {
    c.name: c for c in (DataFerryContender, RedisPyContender, CashewsContender)
}


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Recorder:
    """What one worker saw, per phase (merged at the end: no lock on the hot path)."""

    latencies: list[list[float]] = field(default_factory=lambda: [[] for _ in PHASES])
    errors: list[int] = field(default_factory=lambda: [0] * len(PHASES))
    wrong: list[int] = field(default_factory=lambda: [0] * len(PHASES))
    kinds: Counter[str] = field(default_factory=Counter)


@dataclass
class Run:
    contender: Contender
    settings: Settings
    victims: list[str]
    phase: int = 0
    stop: bool = False
    events: dict[str, float] = field(default_factory=dict)
    recover: dict[int, float | None] = field(default_factory=dict)
    removed: list[tuple[str, int]] = field(default_factory=list)
    _next_victim: Any = field(default_factory=itertools.count)
    _versions: Any = field(default_factory=itertools.count)

    def next_victim(self) -> str | None:
        i = next(self._next_victim)  # itertools.count: atomic under the GIL
        return self.victims[i] if i < len(self.victims) else None

    def version(self) -> int:
        return next(self._versions)


def pick(rng: random.Random, keys: int) -> tuple[str, str]:
    r = rng.random()
    op = "get_or_set" if r < 0.90 else "set" if r < 0.96 else "remove"
    return op, f"k:{rng.randrange(keys)}"


async def async_worker(run: Run, index: int, rec: Recorder) -> None:
    s = run.settings
    c = run.contender
    rng = random.Random(s.seed * 1000 + index)
    perf = time.perf_counter

    while not run.stop:
        phase = run.phase
        op, key = pick(rng, s.keys)
        victim = run.next_victim() if op == "remove" else None
        if op == "remove" and victim is None:
            op = "set"  # out of victims: keep the load's shape

        async def factory(key: str = key) -> Any:
            await asyncio.sleep(s.factory_seconds)
            return value_of(key, run.version())

        t0 = perf()
        try:
            if op == "get_or_set":
                value = await c.aget_or_set(key, factory)
                if not (isinstance(value, dict) and value.get("k") == key):
                    rec.wrong[phase] += 1
            elif op == "set":
                await c.aset(key, value_of(key, run.version()))
            else:
                assert victim is not None
                run.removed.append((victim, phase))  # a failed remove counts: the data stays
                await c.aremove(victim)
        except Exception as exc:
            rec.errors[phase] += 1
            rec.kinds[type(exc).__name__] += 1
        rec.latencies[phase].append(perf() - t0)
        await asyncio.sleep(s.think)


def sync_worker(run: Run, index: int, rec: Recorder) -> None:
    s = run.settings
    c = run.contender
    rng = random.Random(s.seed * 1000 + 500 + index)
    perf = time.perf_counter

    while not run.stop:
        phase = run.phase
        op, key = pick(rng, s.keys)
        victim = run.next_victim() if op == "remove" else None
        if op == "remove" and victim is None:
            op = "set"

        def factory(key: str = key) -> Any:
            time.sleep(s.factory_seconds)
            return value_of(key, run.version())

        async def afactory(key: str = key) -> Any:
            await asyncio.sleep(s.factory_seconds)
            return value_of(key, run.version())

        t0 = perf()
        try:
            if op == "get_or_set":
                value = c.get_or_set(key, factory, afactory)
                if not (isinstance(value, dict) and value.get("k") == key):
                    rec.wrong[phase] += 1
            elif op == "set":
                c.set(key, value_of(key, run.version()))
            else:
                assert victim is not None
                run.removed.append((victim, phase))
                c.remove(victim)
        except Exception as exc:
            rec.errors[phase] += 1
            rec.kinds[type(exc).__name__] += 1
        rec.latencies[phase].append(perf() - t0)
        time.sleep(s.think)


def controller(run: Run, server: RedisServer, started: float, release: threading.Event) -> None:
    """Apply the schedule; after SIGCONT and the restart, time the first L2 hit.

    The thread lives until ``release``: the server it restarts dies with it (PR_SET_PDEATHSIG
    is per thread), so it must outlive the final check of the run.
    """
    s = run.settings
    waiting: tuple[int, float, int] | None = None  # (phase, since, hits then)

    def sleep_until(deadline: float) -> None:
        nonlocal waiting
        while True:
            now = time.perf_counter()
            if waiting is not None and run.contender.l2_hits() > waiting[2]:
                run.recover[waiting[0]] = now - waiting[1]
                waiting = None
            if now >= deadline:
                return
            time.sleep(min(0.002 if waiting is not None else 0.05, deadline - now))

    try:
        for fraction, action in SCHEDULE:
            sleep_until(started + fraction * s.seconds)
            if action == "freeze":
                server.freeze()
            elif action == "resume":
                server.resume()
            elif action == "kill":
                server.kill()
            else:
                server.restart()  # returns once the server answers PING
            now = time.perf_counter()
            run.events[action] = now - started
            run.phase += 1
            if action in RECOVERY_AFTER:
                phase = RECOVERY_AFTER[action]
                run.recover[phase] = None
                waiting = (phase, now, run.contender.l2_hits())
        sleep_until(started + s.seconds)
    finally:
        run.stop = True  # also when a step failed: the workers must not run forever
    release.wait()


async def run_one(name: str, settings: Settings) -> dict[str, Any]:
    contender = CONTENDERS[name](settings)
    with RedisServer(name=f"outage-{name}", config=AOF) as server:
        url = server.url
        await contender.open(url)
        victims = {f"victim:{i}": value_of(f"victim:{i}", -1) for i in range(settings.victims)}
        await contender.prepare(victims)
        run = Run(contender, settings, list(victims))
        recorders = [Recorder() for _ in range(settings.tasks + settings.threads)]

        started = time.perf_counter()
        tasks = [
            asyncio.create_task(async_worker(run, i, recorders[i])) for i in range(settings.tasks)
        ]
        threads = [
            threading.Thread(
                target=sync_worker, args=(run, i, recorders[settings.tasks + i]), daemon=True
            )
            for i in range(settings.threads)
        ]
        release = threading.Event()
        control = threading.Thread(
            target=controller, args=(run, server, started, release), daemon=True
        )
        for t in [*threads, control]:
            t.start()
        try:
            await asyncio.gather(*tasks)  # the workers stop with the schedule
            for t in threads:  # cashews' threads need the loop running to finish their call
                await asyncio.to_thread(t.join)
            elapsed = time.perf_counter() - started

            # The fresh reader of DataFerry turns errors into misses: make sure it can read.
            assert server.execute("PING") is True, "the server is not back"
            removed = run.removed
            victims = [k for k, _ in removed]
            # Seen right as the load stops (a remove queued for replay may still be pending),
            # then after close, which drains what a library queued: only the latter is lost.
            pending = await contender.present(url, victims)
            await contender.close()
            still = await contender.present(url, victims)
        finally:
            release.set()
            await asyncio.to_thread(control.join)

    lost = [0] * len(PHASES)
    removes = [0] * len(PHASES)
    for key, phase in removed:
        removes[phase] += 1
        lost[phase] += key in still
    merged = Recorder()
    for rec in recorders:
        for p in range(len(PHASES)):
            merged.latencies[p] += rec.latencies[p]
            merged.errors[p] += rec.errors[p]
            merged.wrong[p] += rec.wrong[p]
        merged.kinds += rec.kinds

    def slowest(recs: list[Recorder]) -> tuple[float, str]:
        worst = [(max(rec.latencies[p], default=0.0), PHASES[p]) for rec in recs for p in range(5)]
        return max(worst, default=(0.0, "-"))

    return {
        "name": name,
        "rec": merged,
        "pending": len(pending),
        "slowest": {
            "async": slowest(recorders[: settings.tasks]),
            "sync": slowest(recorders[settings.tasks :]),
        },
        "lost": lost,
        "removes": removes,
        "recover": run.recover,
        "events": run.events,
        "elapsed": elapsed,
    }


# -- report -------------------------------------------------------------------------------------


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * (len(sorted_values) - 1) + 0.5))]


def ms(x: float) -> str:
    return "-" if x != x else f"{x * 1000:,.1f}"


def report(results: list[dict[str, Any]], settings: Settings) -> bool:
    s = settings.seconds
    bounds = [0.0, *(f * s for f, _ in SCHEDULE), s]
    print(
        f"\n## Outage benchmark: {s:g} s, {settings.tasks} tasks + {settings.threads} threads, "
        f"{settings.keys} keys, think {settings.think * 1000:g} ms, factory "
        f"{settings.factory_seconds * 1000:g} ms\n"
    )
    print("Contenders ran one after another, each on a fresh redis-server (AOF, fsync always).\n")
    print(
        "| phase | library | calls | errors | wrong | p50 ms | p99 ms | max ms | recover s "
        "| lost removes |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    for p, phase in enumerate(PHASES):
        label = f"{phase} ({bounds[p]:g}-{bounds[p + 1]:g} s)"
        for r in results:
            rec: Recorder = r["rec"]
            lat = sorted(rec.latencies[p])
            recover = r["recover"].get(p, "")
            rec_text = "never" if recover is None else f"{recover:.3f}" if recover != "" else ""
            print(
                f"| {label} | {r['name']} | {len(lat):,} | {rec.errors[p]:,} | {rec.wrong[p]:,} "
                f"| {ms(pct(lat, 0.50))} | {ms(pct(lat, 0.99))} | {ms(lat[-1] if lat else 0.0)} "
                f"| {rec_text} | {r['lost'][p]}/{r['removes'][p]} |"
            )
            label = ""
            if r["name"] == "dataferry" and (rec.errors[p] or rec.wrong[p] or r["lost"][p]):
                ok = False
    print()
    print("recover: from SIGCONT (steady 2) / from the restarted server's first PONG (recovered)")
    print("to the first L2 hit; lost removes: removed in the phase / still seen by a fresh reader")
    print("after the load stopped and the library's clients were closed.\n")
    for r in results:
        kinds = ", ".join(f"{k} {n:,}" for k, n in r["rec"].kinds.most_common()) or "none"
        events = ", ".join(f"{k} {v:.2f}" for k, v in r["events"].items())
        total = sum(len(x) for x in r["rec"].latencies)
        slow = ", ".join(f"{half} {ms(t)} ms ({ph})" for half, (t, ph) in r["slowest"].items())
        print(f"- {r['name']}: {total:,} calls in {r['elapsed']:.1f} s; errors: {kinds}")
        print(f"  slowest call: {slow}")
        print(f"  removed victims still seen when the load stopped (before close): {r['pending']}")
        print(f"  events at (s): {events}")
    if any(r["name"] == "dataferry" for r in results):
        print(
            f"\nDataFerry targets (0 errors, 0 wrong values, 0 lost removes): "
            f"{'met' if ok else '**NOT met**'}"
        )
    return ok


async def main_async(names: list[str], settings: Settings) -> bool:
    results = []
    for name in names:
        print(f"running {name} ({settings.seconds:g} s)...", file=sys.stderr, flush=True)
        results.append(await run_one(name, settings))
    return report(results, settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--quick", action="store_true", help="6 s runs (smoke test)")
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated names")
    parser.add_argument("--tasks", type=int, default=8, help="asyncio tasks")
    parser.add_argument("--threads", type=int, default=4, help="sync threads")
    parser.add_argument("--keys", type=int, default=2000, help="get_or_set key space")
    parser.add_argument("--think-ms", type=float, default=2.0, help="pause between calls")
    parser.add_argument("--ttl", type=float, default=3.0, help="ttl of get_or_set entries")
    parser.add_argument("--factory-ms", type=float, default=1.0, help="factory duration")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--verbose", action="store_true", help="show the libraries' logs")
    args = parser.parse_args(argv)
    if not args.verbose:
        # Every library logs each failure of an outage (cashews with a traceback per call):
        # thousands of lines around the table. The errors are counted in the table instead.
        for name in ("dataferry", "cashews", "redis"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; choose from {list(CONTENDERS)}")
    settings = Settings(
        seconds=6.0 if args.quick else args.seconds,
        tasks=args.tasks,
        threads=args.threads,
        keys=args.keys,
        think=args.think_ms / 1000,
        ttl=args.ttl,
        factory_seconds=args.factory_ms / 1000,
        seed=args.seed,
    )
    ok = asyncio.run(main_async(names, settings))
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
