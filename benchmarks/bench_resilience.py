"""Cost of the resilience policy (timeout, retry, circuit breaker) on the L2 hot path.

    .venv/bin/python benchmarks/bench_resilience.py [--rounds 15] [--ops 20000] [--libraries]

The L2 accessor with ``Resilience()`` (the default) against the same accessor with
``resilience=None``, interleaved round by round (A B A B), on:

- a trivial in-process backend (a dict behind ``async def``), which isolates the overhead;
- a real ``redis-server`` started by the script (``RedisCache.from_url``), async and sync.

Each row prints the median added nanoseconds per call (and range) and the median ratio.
Target: at most about 2 µs added per L2 call.

``--libraries`` also times the libraries that were evaluated for this path, when they are
importable (they are not dependencies: ``pip install tenacity stamina purgatory pybreaker
circuitbreaker aiobreaker`` into a scratch directory and put it on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _redis import redis_server

import dataferry as df
from dataferry._async._l2 import AsyncDistributedAccessor
from dataferry._events import CacheEvents
from dataferry._sync._l2 import DistributedAccessor

TARGET_NS = 2000.0


class DictBackend:
    """The least an L2 can cost: a dict, through the async and sync protocol methods."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def aget(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def aset(self, key: str, value: bytes, ttl: float) -> None:
        self.data[key] = value

    async def aclose(self) -> None:
        pass

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes, ttl: float) -> None:
        self.data[key] = value

    def close(self) -> None:
        pass


def accessors(backend: Any, sync: bool) -> tuple[Any, Any]:
    cls = DistributedAccessor if sync else AsyncDistributedAccessor
    return (
        cls(backend, (), CacheEvents(), df.Resilience()),
        cls(backend, (), CacheEvents(), None),
    )


async def time_async(call: Callable[[], Awaitable[Any]], ops: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(ops):
        await call()
    return (time.perf_counter_ns() - started) / ops


def time_sync(call: Callable[[], Any], ops: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(ops):
        call()
    return (time.perf_counter_ns() - started) / ops


async def pair(
    what: str,
    ours: Callable[[int], Awaitable[float]],
    base: Callable[[int], Awaitable[float]],
    rounds: int,
    ops: int,
) -> None:
    await ours(ops // 10)
    await base(ops // 10)
    added: list[float] = []
    ratios: list[float] = []
    for r in range(rounds):
        if r % 2:
            b = await base(ops)
            o = await ours(ops)
        else:
            o = await ours(ops)
            b = await base(ops)
        added.append(o - b)
        ratios.append(o / b)
    med = statistics.median(added)
    met = "yes" if med <= TARGET_NS else "**NO**"
    print(
        f"| {what} | {statistics.median(ratios):.3f}x | {med:+,.0f} ns "
        f"({min(added):+,.0f} .. {max(added):+,.0f}) | <= {TARGET_NS:,.0f} ns | {met} |"
    )


def wrap(fn: Callable[[int], float]) -> Callable[[int], Awaitable[float]]:
    async def run(ops: int) -> float:
        return fn(ops)

    return run


async def main(rounds: int, ops: int, libraries: bool) -> None:
    print("| L2 call | ratio (median) | added per call (median, range) | target | met |")
    print("|---|---|---|---|---|")
    backend = DictBackend()
    backend.data["k"] = b"v" * 100
    with_res, without = accessors(backend, sync=False)
    await pair(
        "async get, dict backend",
        lambda n: time_async(lambda: with_res.get("k"), n),
        lambda n: time_async(lambda: without.get("k"), n),
        rounds,
        ops,
    )
    await pair(
        "async set, dict backend",
        lambda n: time_async(lambda: with_res.set("k", b"v", 60.0), n),
        lambda n: time_async(lambda: without.set("k", b"v", 60.0), n),
        rounds,
        ops,
    )
    s_with, s_without = accessors(backend, sync=True)
    await pair(
        "sync get, dict backend",
        wrap(lambda n: time_sync(lambda: s_with.get("k"), n)),
        wrap(lambda n: time_sync(lambda: s_without.get("k"), n)),
        rounds,
        ops,
    )
    with redis_server() as url:
        redis_backend = df.RedisCache.from_url(url)
        await redis_backend.aset("k", b"v" * 100, 600)
        a_with, a_without = accessors(redis_backend, sync=False)
        small = max(1, ops // 10)
        await pair(
            "async get, redis-server",
            lambda n: time_async(lambda: a_with.get("k"), n),
            lambda n: time_async(lambda: a_without.get("k"), n),
            rounds,
            small,
        )
        r_with, r_without = accessors(redis_backend, sync=True)
        await pair(
            "sync get, redis-server",
            wrap(lambda n: time_sync(lambda: r_with.get("k"), n)),
            wrap(lambda n: time_sync(lambda: r_without.get("k"), n)),
            rounds,
            small,
        )
        await redis_backend.aclose()
        redis_backend.close()
    if libraries:
        await evaluated_libraries(ops)


async def evaluated_libraries(ops: int) -> None:
    """Per-call cost of the libraries evaluated for this path, around a trivial coroutine."""

    async def f() -> int:
        return 1

    def g() -> int:
        return 1

    print("\n| library (evaluated, not used) | per call |")
    print("|---|---|")
    base = min([await time_async(f, ops) for _ in range(3)])
    print(f"| bare coroutine | {base:,.0f} ns |")

    async def with_timeout() -> int:
        async with asyncio.timeout(0.25):
            return await f()

    print(f"| asyncio.timeout | {await time_async(with_timeout, ops):,.0f} ns |")
    try:
        import tenacity

        retrying = tenacity.AsyncRetrying(stop=tenacity.stop_after_attempt(2), reraise=True)
        print(f"| tenacity AsyncRetrying | {await time_async(lambda: retrying(f), ops):,.0f} ns |")
        sretrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(2), reraise=True)
        print(f"| tenacity Retrying (sync) | {time_sync(lambda: sretrying(g), ops):,.0f} ns |")
    except ImportError:
        print("| tenacity | not installed |")
    try:
        import stamina

        st = stamina.retry(on=ConnectionError, attempts=2, timeout=0.25)(f)
        print(f"| stamina.retry | {await time_async(st, ops):,.0f} ns |")
    except ImportError:
        print("| stamina | not installed |")
    try:
        import purgatory

        factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=5)

        async def purg() -> int:
            async with await factory.get_breaker("l2"):
                return await f()

        print(f"| purgatory (async breaker) | {await time_async(purg, ops):,.0f} ns |")
    except ImportError:
        print("| purgatory | not installed |")
    try:
        import pybreaker

        breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=5)
        print(f"| pybreaker (sync breaker) | {time_sync(lambda: breaker.call(g), ops):,.0f} ns |")
    except ImportError:
        print("| pybreaker | not installed |")
    try:
        import circuitbreaker

        cb = circuitbreaker.circuit(failure_threshold=5, recovery_timeout=5)(f)
        print(f"| circuitbreaker (async) | {await time_async(cb, ops):,.0f} ns |")
    except ImportError:
        print("| circuitbreaker | not installed |")
    try:
        import aiobreaker

        ab = aiobreaker.CircuitBreaker(fail_max=5)
        print(f"| aiobreaker | {await time_async(lambda: ab.call_async(f), ops):,.0f} ns |")
    except ImportError:
        print("| aiobreaker | not installed |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--libraries", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.ops, args.libraries))
