"""Interleaved rounds for the benchmarks that compare a path against a baseline in one run.

Each :class:`Side` is a function that runs ``ops`` operations and returns nanoseconds per
operation; :func:`interleave` runs every side once per round, rotating the order each round
(A B, B A...), so a noisy moment of the machine hits both sides alike. A :class:`Pair` is a
side and its baseline; benchmarks subclass it to print their own table rows.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CLOCK",
    "Pair",
    "Side",
    "bench_parser",
    "fresh_keys",
    "interleave",
    "parse_args",
    "timed_async",
    "timed_sync",
]


@dataclass
class Side:
    """One thing measured: ``run(ops)`` returns ns per operation; samples, one per round."""

    name: str
    run: Callable[[int], Awaitable[float]]
    samples: list[float] = field(default_factory=list)


@dataclass
class Pair:
    """A side (``ours``) and its baseline (``base``), sampled in the same rounds."""

    what: str
    ours: Side
    base: Side

    def ratios(self) -> list[float]:
        """``ours / base`` per round."""
        return [o / b for o, b in zip(self.ours.samples, self.base.samples, strict=True)]


async def interleave(pairs: Sequence[Pair], rounds: int, ops: int) -> None:
    """Warm every side up (``ops // 10``), then sample each once per round, order rotated."""
    sides: list[Side] = []
    for pair in pairs:
        for side in (pair.ours, pair.base):
            if side not in sides:
                sides.append(side)
    for side in sides:
        await side.run(max(1, ops // 10))
    for r in range(rounds):
        k = r % len(sides)
        for side in sides[k:] + sides[:k]:
            gc.collect()
            side.samples.append(await side.run(ops))


#: The clock of the samples. ``--clock wall`` (default): elapsed time, what a caller waits.
#: ``--clock cpu``: this process's CPU time, which leaves out the redis-server's work and the
#: time other processes hold the CPU: steadier on a busy shared machine, and a stricter ratio.
CLOCK: list[Callable[[], int]] = [time.perf_counter_ns]


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser with the options every interleaved benchmark takes: --rounds, --strict, --clock.

    A benchmark adds its own options, then calls :func:`parse_args`.
    """
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed time (default); cpu: this process's CPU time (steadier when shared)",
    )
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``--clock cpu`` makes :data:`CLOCK` this process's CPU time."""
    args = parser.parse_args(argv)
    if args.clock == "cpu":
        CLOCK[0] = time.process_time_ns
    return args


def timed_sync(fn: Callable[[int], None]) -> Callable[[int], Awaitable[float]]:
    """A side's ``run`` for a sync loop ``fn(ops)`` (the collector off while it runs)."""

    async def run(ops: int) -> float:
        gc.disable()
        try:
            t0 = CLOCK[0]()
            fn(ops)
            return (CLOCK[0]() - t0) / ops
        finally:
            gc.enable()

    return run


def timed_async(fn: Callable[[int], Awaitable[None]]) -> Callable[[int], Awaitable[float]]:
    """A side's ``run`` for an async loop ``fn(ops)`` (the collector off while it runs)."""

    async def run(ops: int) -> float:
        gc.disable()
        try:
            t0 = CLOCK[0]()
            await fn(ops)
            return (CLOCK[0]() - t0) / ops
        finally:
            gc.enable()

    return run


_fresh = itertools.count()


def fresh_keys(ops: int) -> list[str]:
    """``ops`` keys never used before in this process (for cold-path rounds)."""
    base = next(_fresh)
    return [f"cold:{base}:{i}" for i in range(ops)]
