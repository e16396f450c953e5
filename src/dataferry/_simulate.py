"""``dataferry simulate TRACE``: size an L1 cache and pick its policy from a recorded key trace.

The trace (see :mod:`dataferry._traces` for the formats) is replayed against a
:class:`~dataferry.MemoryCache` of every eviction policy (``tinylfu``, ``lru``, ``lfu``,
``ttl``) and against Bélády's optimum (OPT) at a range of sizes, the way an application uses
a cache: for every request, ``get``; on a miss, ``set`` (the cache is filled on every miss).
Hit ratio = hits / requests. A trace has no ttls, so ``ttl`` (soonest expiry first) evicts the
oldest insert first there: it is FIFO.

OPT is the best hit ratio any policy could reach at that size, knowing the future: on a miss
with the cache full, the entry whose next use is farthest away goes, the new key included (a
key used later than everything cached is not admitted, as W-TinyLFU may turn a key away too).
Next uses are precomputed in one backward pass and the cached keys kept in a max-heap of
their next use: O(n log size), exact.

Sizes: by default fractions of the trace's distinct keys (1%, 2%, 5%, 10%, 20%, 50%), or
absolute entry counts (``--sizes 100,1000``) or percentages (``--sizes 5%,20%``).

Recommendation, with its rule printed: an unbounded cache (every key fits) misses only the
first request of each key; its hit ratio is the ceiling. The recommended size is the smallest
size simulated at which some policy gets ``--target`` percent (default 90) of that ceiling,
and the recommended policy the one with the best hit ratio at that size (the first in
``--policies`` order on a tie). When no policy gets there, the best hit ratio simulated (at
the smallest size on a tie) is shown instead, with advice to simulate larger sizes.

Reproducibility: W-TinyLFU's frequency sketch hashes keys with ``hash()``, which Python salts
per process for ``str``, so ``tinylfu``'s figures move by a fraction of a point from run to run
(and between the worker processes of ``--jobs``) unless ``PYTHONHASHSEED`` is set. The other
policies and OPT are deterministic.

Speed: pure Python, and the MemoryCache calls dominate (about 1 to 4 µs per request,
``tinylfu`` the slowest), so runs go to worker processes (``--jobs``, by default one per CPU
for traces worth it) and a progress bar shows on stderr.
"""

from __future__ import annotations

import argparse
import heapq
import math
import multiprocessing
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from dataferry._cli import EXIT_OK, EXIT_USAGE, _fail, _HelpFormatter, _positive_int
from dataferry._errors import ConfigurationError
from dataferry._memory import MemoryCache
from dataferry._traces import FORMATS, load_trace

__all__ = [
    "DEFAULT_FRACTIONS",
    "OPT",
    "POLICIES",
    "add_simulate_command",
    "ceiling",
    "default_jobs",
    "next_uses",
    "opt_hits",
    "parse_sizes",
    "policy_hits",
    "recommend",
    "Recommendation",
    "resolve_sizes",
    "simulate",
    "Simulation",
]

#: The L1 policies replayed by default, in the columns' order (the default policy first).
POLICIES = ("tinylfu", "lru", "lfu", "ttl")
#: The column name of Bélády's optimum.
OPT = "OPT"
#: Default sizes, as fractions of the trace's distinct keys.
DEFAULT_FRACTIONS = (0.01, 0.02, 0.05, 0.10, 0.20, 0.50)

_MISS = object()
#: Exit status when a worker process dies (the ``_cli`` statuses have no better one).
EXIT_FAILED = 1
#: Requests replayed between two progress updates.
_CHUNK = 1 << 16
#: Below this many replayed requests (requests x runs), worker processes cost more than they
#: save (each starts an interpreter and receives the trace).
_PARALLEL_WORK = 5_000_000

#: A size as given: (number, relative); relative numbers are percentages of distinct keys.
SizeSpec = tuple[float, bool]
Progress = Callable[[int], None]


# -- OPT ------------------------------------------------------------------------------------------


def next_uses(keys: Sequence[object]) -> list[int]:
    """For every request ``i``, the index of the next request of the same key, or ``len(keys)``."""
    n = len(keys)
    out = [n] * n
    last: dict[object, int] = {}
    for i in range(n - 1, -1, -1):
        key = keys[i]
        out[i] = last.get(key, n)
        last[key] = i
    return out


def opt_hits(keys: Sequence[object], capacity: int, next_use: Sequence[int] | None = None) -> int:
    """Hits of Bélády's optimum replaying ``keys`` in a cache of ``capacity`` entries.

    On a miss with the cache full, whichever of the cached keys and the new one is used
    farthest in the future is left out. A key never used again is dropped at once (it is
    always the best one to leave out). ``next_use`` is :func:`next_uses` of ``keys``, passed
    when one trace is replayed at several sizes.
    """
    if capacity < 1:
        raise ConfigurationError(f"capacity must be >= 1, got {capacity!r}")
    n = len(keys)
    nexts = next_uses(keys) if next_use is None else next_use
    # key -> the index of its next use; the heap holds -index (a max-heap of next uses).
    # Next uses are unique indexes, so a heap item is current iff cached[keys[j]] == j.
    cached: dict[object, int] = {}
    heap: list[int] = []
    push, pop, replace = heapq.heappush, heapq.heappop, heapq.heapreplace
    # Past this, the stale items (left by hits) are dropped: the heap stays O(capacity).
    compact_at = 2 * capacity + 64
    hits = 0
    for i, key in enumerate(keys):
        nxt = nexts[i]
        if key in cached:
            hits += 1
            if nxt == n:
                del cached[key]
                continue
        elif nxt == n:
            continue  # never used again: not worth a slot
        elif len(cached) >= capacity:
            while True:
                far = -heap[0]
                victim = keys[far]
                if cached.get(victim) == far:
                    break
                pop(heap)
            if far < nxt:
                continue  # everything cached is needed sooner than this key: leave it out
            del cached[victim]
            cached[key] = nxt
            replace(heap, -nxt)
            continue
        cached[key] = nxt
        push(heap, -nxt)
        if len(heap) > compact_at:
            heap = [-j for j in cached.values()]
            heapq.heapify(heap)
    return hits


# -- the policies ---------------------------------------------------------------------------------


def policy_hits(
    keys: Sequence[str], capacity: int, policy: str, progress: Progress | None = None
) -> int:
    """Hits of ``MemoryCache(max_entries=capacity, policy=policy)`` replaying ``keys``.

    Every request is a ``get``, and a miss is followed by a ``set`` of the key. ``progress``,
    if given, is called with the number of requests replayed so far, every few thousand.
    """
    cache = MemoryCache(max_entries=capacity, policy=policy)
    get, put = cache.get, cache.set
    hits = 0
    n = len(keys)
    for start in range(0, n, _CHUNK):
        for key in keys[start : start + _CHUNK]:
            if get(key, _MISS) is _MISS:
                put(key, key)
            else:
                hits += 1
        if progress is not None:
            progress(min(start + _CHUNK, n))
    return hits


# Worker processes (``--jobs``): the trace arrives once per worker, through the initializer.
_worker_keys: list[str] = []
_worker_next_use: list[int] | None = None


def _init_worker(keys: list[str]) -> None:
    global _worker_keys, _worker_next_use
    # Ctrl-C reaches the whole process group: the parent alone handles it (and ends the pool).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_keys, _worker_next_use = keys, None


def _run_in_worker(task: tuple[str, int]) -> tuple[str, int, int]:
    global _worker_next_use
    column, size = task
    if column == OPT:
        if _worker_next_use is None:
            _worker_next_use = next_uses(_worker_keys)
        return column, size, opt_hits(_worker_keys, size, _worker_next_use)
    return column, size, policy_hits(_worker_keys, size, column)


# -- sizes ----------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[SizeSpec]:
    """Parse ``--sizes``: comma-separated entry counts (``1000``) or percentages (``5%``).

    Raises:
        ConfigurationError: An item that is neither an integer >= 1 nor a percentage in
            (0, 100].

    """
    specs: list[SizeSpec] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        if item.endswith("%"):
            try:
                percent = float(item[:-1])
            except ValueError:
                percent = math.nan
            if not 0 < percent <= 100:
                raise ConfigurationError(f"{item!r} is not a percentage in (0, 100]")
            specs.append((percent, True))
        else:
            try:
                count = int(item)
            except ValueError:
                raise ConfigurationError(
                    f"{item!r} is neither an entry count (1000) nor a percentage (5%)"
                ) from None
            if count < 1:
                raise ConfigurationError(f"a size must be >= 1 entry, got {item!r}")
            specs.append((count, False))
    if not specs:
        raise ConfigurationError("no sizes given")
    return specs


def resolve_sizes(specs: Iterable[SizeSpec] | None, distinct: int) -> list[int]:
    """Entry counts of ``specs`` (default: :data:`DEFAULT_FRACTIONS`), sorted, without repeats.

    A percentage is of the ``distinct`` keys, rounded, and at least 1 entry.
    """
    if specs is None:
        specs = [(100 * fraction, True) for fraction in DEFAULT_FRACTIONS]
    sizes = {max(1, round(n * distinct / 100)) if relative else int(n) for n, relative in specs}
    return sorted(sizes)


# -- the simulation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Simulation:
    """Hits of every policy and of OPT at every size.

    Attributes:
        requests: Requests replayed.
        distinct: Distinct keys among them.
        sizes: The cache sizes (entries), ascending.
        columns: The policies, then :data:`OPT`.
        hits: Column -> hits at each of ``sizes``.

    """

    requests: int
    distinct: int
    sizes: tuple[int, ...]
    columns: tuple[str, ...]
    hits: Mapping[str, tuple[int, ...]]

    @property
    def policies(self) -> tuple[str, ...]:
        """The policy columns (every column but OPT)."""
        return tuple(c for c in self.columns if c != OPT)

    def ratio(self, column: str, index: int) -> float:
        """Hit ratio in percent of ``column`` at ``sizes[index]``."""
        return 100.0 * self.hits[column][index] / self.requests if self.requests else 0.0

    def ratios(self, column: str) -> list[float]:
        """Hit ratios in percent of ``column``, one per size."""
        return [self.ratio(column, i) for i in range(len(self.sizes))]


def default_jobs(requests: int, runs: int) -> int:
    """Worker processes worth starting: one per CPU (at most one per run) for a long replay."""
    if requests * runs < _PARALLEL_WORK:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, runs))


def _offset(report: Callable[[int, str], None], base: int, status: str) -> Progress:
    """A run's progress callback: its requests replayed, counted after ``base``."""
    return lambda replayed: report(base + replayed, status)


def simulate(
    keys: Sequence[str],
    sizes: Sequence[int],
    policies: Sequence[str] = POLICIES,
    *,
    jobs: int = 1,
    progress: Callable[[int, str], None] | None = None,
) -> Simulation:
    """Replay ``keys`` against every policy and OPT at every size.

    Args:
        keys: The requests.
        sizes: Cache sizes in entries (each >= 1).
        policies: MemoryCache policy names.
        jobs: Worker processes; 1 replays in this process. Workers are spawned (a fresh
            interpreter each, which re-imports the main module): a script that calls this
            with ``jobs > 1`` needs the ``if __name__ == "__main__":`` guard.
        progress: Called with (requests replayed over all runs so far, what runs now); the
            total is ``len(keys) * len(sizes) * (len(policies) + 1)``.

    Raises:
        ConfigurationError: An unknown policy or a size < 1.

    """
    for policy in policies:
        if policy not in POLICIES:
            raise ConfigurationError(
                f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}"
            )
    ordered = sorted(set(sizes))
    if not ordered or ordered[0] < 1:
        raise ConfigurationError(f"sizes must be entry counts >= 1, got {list(sizes)!r}")
    columns = (*dict.fromkeys(policies), OPT)
    found: dict[tuple[str, int], int] = {}
    report = progress if progress is not None else (lambda done, status: None)
    n = len(keys)
    done = 0

    def run_opt() -> None:
        nonlocal done
        next_use = next_uses(keys)
        for size in ordered:
            report(done, f"OPT, {size:,} entries")
            found[OPT, size] = opt_hits(keys, size, next_use)
            done += n
        report(done, "")

    tasks = [(policy, size) for policy in columns[:-1] for size in ordered]
    if jobs > 1 and tasks:
        # spawn, not fork: the parent may run threads (a progress bar's), and a forked child
        # of a threaded process can inherit a lock held forever.
        pool = ProcessPoolExecutor(
            min(jobs, len(tasks)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(list(keys),),
        )
        try:
            # In order: tinylfu's runs (the slowest) start first, none is left for last.
            futures = [pool.submit(_run_in_worker, task) for task in tasks]
            run_opt()  # meanwhile, here: OPT is fast
            for future in as_completed(futures):
                column, size, hits = future.result()
                found[column, size] = hits
                done += n
                report(done, f"{column}, {size:,} entries done")
        except BaseException:
            # Ctrl-C (the workers ignore it) or a dead worker: don't wait for the other runs.
            workers = list((pool._processes or {}).values())
            for process in workers:
                process.terminate()
            for process in workers:
                process.join(1.0)  # reap them: no zombies left behind
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    else:
        run_opt()
        for policy, size in tasks:
            base, status = done, f"{policy}, {size:,} entries"
            report(done, status)
            found[policy, size] = policy_hits(keys, size, policy, _offset(report, base, status))
            done += n
        report(done, "")
    return Simulation(
        requests=n,
        distinct=len(set(keys)),
        sizes=tuple(ordered),
        columns=columns,
        hits={c: tuple(found[c, size] for size in ordered) for c in columns},
    )


# -- the recommendation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    """A policy and a size for a trace (the rule is in the module docstring).

    Attributes:
        policy: The policy recommended.
        size: The size recommended (entries).
        hit_ratio: The policy's hit ratio at ``size`` (percent).
        opt_hit_ratio: OPT's at ``size`` (percent), the most any policy could get there.
        ceiling: The hit ratio of an unbounded cache (percent): only first requests miss.
        target: The fraction of ``ceiling`` aimed at (percent of it).
        reached: Whether ``hit_ratio`` reaches the target; if not, this is the best hit ratio
            simulated, and larger sizes should be simulated.

    """

    policy: str
    size: int
    hit_ratio: float
    opt_hit_ratio: float
    ceiling: float
    target: float
    reached: bool

    def lines(self) -> list[str]:
        """The recommendation as printed by ``dataferry simulate``."""
        aim = self.target * self.ceiling / 100
        out = [
            f'Recommendation: MemoryCache(max_entries={self.size}, policy="{self.policy}")',
            f"  {self.hit_ratio:.2f}% hits at {self.size:,} entries (OPT, the best possible "
            f"there: {self.opt_hit_ratio:.2f}%)",
        ]
        if not self.reached:
            out.append(
                f"  no policy reaches the target ({aim:.2f}%) at the sizes simulated: "
                "try larger --sizes"
            )
        rule = (
            f"rule: the smallest size simulated at which a policy gets {self.target:g}% of "
            f"the hit ratio of an unbounded cache ({self.target:g}% of {self.ceiling:.2f}% = "
            f"{aim:.2f}%), with the policy that does best there"
        )
        out += textwrap.wrap(rule, 78, initial_indent="  ", subsequent_indent="  ")
        return out


def ceiling(requests: int, distinct: int) -> float:
    """The hit ratio of an unbounded cache, in percent: every key's first request misses."""
    return 100.0 * (requests - distinct) / requests if requests else 0.0


def recommend(simulation: Simulation, target: float = 90.0) -> Recommendation | None:
    """Recommend a policy and a size (see the module docstring); None if nothing can hit.

    ``target`` is the share of the unbounded cache's hit ratio aimed at, in percent.
    """
    best_possible = ceiling(simulation.requests, simulation.distinct)
    if best_possible <= 0:
        return None
    aim = target * best_possible / 100 - 1e-9  # a ratio equal to the aim reaches it
    policies = simulation.policies
    last = len(simulation.sizes) - 1
    for index in range(len(simulation.sizes)):
        # The policy with the best hit ratio at this size (the first listed on a tie).
        policy = max(policies, key=lambda p: simulation.ratio(p, index))
        if simulation.ratio(policy, index) >= aim:
            reached = True
            break
    else:
        # Short of the target everywhere: the best cell (the smallest size on a tie), which
        # needn't be at the largest size (FIFO's anomaly, an adaptive policy's misstep).
        reached = False
        index, policy = max(
            ((i, p) for i in range(last + 1) for p in policies),
            key=lambda cell: (simulation.ratio(cell[1], cell[0]), -cell[0]),
        )
    return Recommendation(
        policy=policy,
        size=simulation.sizes[index],
        hit_ratio=simulation.ratio(policy, index),
        opt_hit_ratio=simulation.ratio(OPT, index),
        ceiling=best_possible,
        target=target,
        reached=reached,
    )


# -- the plot -------------------------------------------------------------------------------------


def plot(
    simulation: Simulation, path: Path, title: str, recommendation: Recommendation | None
) -> None:
    """Draw hit ratio against size (log x), one curve per policy and OPT, into a PNG at path.

    Uses matplotlib's object API with the Agg canvas: no GUI, no pyplot global state.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    sizes = list(simulation.sizes)
    for column in simulation.columns:
        if column == OPT:
            axes.plot(sizes, simulation.ratios(column), "k--", marker=".", label="OPT (Bélády)")
        else:
            axes.plot(sizes, simulation.ratios(column), marker="o", markersize=4, label=column)
    best_possible = ceiling(simulation.requests, simulation.distinct)
    axes.axhline(best_possible, color="grey", linewidth=0.8, label="unbounded cache")
    if recommendation is not None:
        axes.axvline(recommendation.size, color="grey", linestyle=":", linewidth=1)
        axes.annotate(
            f"{recommendation.policy}, {recommendation.size:,}",
            (recommendation.size, recommendation.hit_ratio),
            textcoords="offset points",
            xytext=(-6, 8),
            horizontalalignment="right",
            fontsize=8,
            color="grey",
        )
    axes.set_xscale("log")
    axes.set_xlabel("cache size (entries)")
    axes.set_ylabel("hit ratio (%)")
    axes.set_ylim(bottom=0)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, format="png")


# -- the command ----------------------------------------------------------------------------------


_EPILOG = """\
sizes:
  default: 1%, 2%, 5%, 10%, 20% and 50% of the trace's distinct keys
  --sizes 100,1000,10000   entry counts
  --sizes 5%,20%           percentages of the distinct keys

formats (auto-detected; gzip, xz and bzip2 compression too):
  plain    text, one key per line
  lirs     text, one integer key per line, '*' lines skipped
  cache2k  binary, big-endian unsigned 32-bit keys

tinylfu hashes keys with hash(): set PYTHONHASHSEED for the same figures
on every run. ttl is FIFO here (a trace has no ttls).

exit status: 0 success, 1 a worker process died, 2 a bad argument or an
unreadable trace, 130 interrupted (Ctrl-C)
"""


def _sizes_arg(text: str) -> list[SizeSpec]:
    try:
        return parse_sizes(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _policies_arg(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    for name in names:
        if name not in POLICIES:
            raise argparse.ArgumentTypeError(
                f"unknown policy {name!r}; expected some of {','.join(POLICIES)} "
                "(OPT is always included)"
            )
    if not names:
        raise argparse.ArgumentTypeError("no policies given")
    return list(dict.fromkeys(names))


def _target_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentage in (0, 100], got {text!r}")
    return value


def add_simulate_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``dataferry simulate`` and its arguments (the ``_cli`` subcommand protocol)."""
    p = subparsers.add_parser(
        "simulate",
        help="replay a key trace against every L1 policy and OPT; recommend a size",
        description=(
            "Replay a key trace (one get per request, a set on every miss) against a "
            "MemoryCache of each eviction policy and against Bélády's optimum (OPT, the best "
            "any policy could do) at a range of sizes; print the hit ratios, recommend a "
            "policy and a size, and optionally plot hit ratio against size."
        ),
        epilog=_EPILOG,
        formatter_class=_HelpFormatter,
    )
    p.add_argument("trace", metavar="TRACE", help="the trace file")
    p.add_argument(
        "--format",
        choices=("auto", *FORMATS),
        default="auto",
        help="the trace's format (default: auto, from its name and content)",
    )
    p.add_argument(
        "--sizes",
        type=_sizes_arg,
        default=None,
        metavar="LIST",
        help="cache sizes: entry counts and/or percentages of the distinct keys (see below)",
    )
    p.add_argument(
        "--policies",
        type=_policies_arg,
        default=list(POLICIES),
        metavar="LIST",
        help=f"comma-separated policies (default: {','.join(POLICIES)}); OPT is always added",
    )
    p.add_argument(
        "--limit", type=_positive_int, default=None, metavar="N", help="replay the first N requests"
    )
    p.add_argument(
        "--target",
        type=_target_arg,
        default=90.0,
        metavar="PERCENT",
        help="recommend the smallest size reaching PERCENT of an unbounded cache's hit ratio "
        "(default: 90)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PNG",
        help="draw hit ratio against size into a PNG (needs dataferry[plot])",
    )
    p.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="worker processes (default: one per CPU for long traces, else 1)",
    )
    p.add_argument("--no-progress", action="store_true", help="don't draw the progress bar")
    p.set_defaults(handler=run_simulate)


def _plot_problem(path: Path) -> str | None:
    """What stops ``--plot path`` from working, checked before any replay; or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "--plot needs matplotlib: pip install 'dataferry[plot]'"
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return f"--plot: no such directory: {parent}"
    if path.is_dir():
        return f"--plot: {path} is a directory"
    return None


def _percent_of(size: int, distinct: int) -> str:
    percent = 100 * size / distinct
    return f"{percent:.0f}%" if percent >= 9.95 else f"{percent:.2g}%"


def run_simulate(args: argparse.Namespace) -> int:
    """Run ``dataferry simulate`` with parsed arguments; return the exit status."""
    from dataferry._console import format_duration, print_table, progress

    stream = sys.stdout
    if args.plot is not None:
        problem = _plot_problem(args.plot)
        if problem is not None:
            return _fail("simulate", problem, EXIT_USAGE)
    started = time.perf_counter()
    try:
        trace = load_trace(args.trace, args.format, limit=args.limit)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return _fail("simulate", f"can't read {args.trace}: {reason}", EXIT_USAGE)
    except ConfigurationError as exc:
        return _fail("simulate", str(exc), EXIT_USAGE)
    if not trace.keys:
        return _fail("simulate", f"{args.trace}: no requests in the trace", EXIT_USAGE)

    sizes = resolve_sizes(args.sizes, trace.distinct)
    policies: list[str] = args.policies
    runs = len(sizes) * (len(policies) + 1)
    jobs = args.jobs if args.jobs is not None else default_jobs(len(trace.keys), runs)
    jobs = min(jobs, len(sizes) * len(policies)) or 1
    print(
        f"Replaying {trace.name} ({trace.format}: {len(trace.keys):,} requests, "
        f"{trace.distinct:,} distinct keys) against {', '.join(policies)} and OPT at "
        f"{len(sizes)} size(s) from {sizes[0]:,} to {sizes[-1]:,} entries"
        + (f", in {jobs} processes" if jobs > 1 else "")
        + ": get each key, set it on a miss.",
        file=stream,
        flush=True,
    )
    total = len(trace.keys) * runs
    try:
        with progress(total, "simulate", enabled=not args.no_progress) as update:
            simulation = simulate(trace.keys, sizes, policies, jobs=jobs, progress=update)
    except BrokenProcessPool:
        return _fail(
            "simulate",
            "a worker process died (out of memory?); --jobs 1 replays in this process",
            EXIT_FAILED,
        )
    elapsed = time.perf_counter() - started

    columns = ["entries", "% of keys", *policies, OPT]
    rows = [
        [
            f"{size:,}",
            _percent_of(size, trace.distinct),
            *(f"{simulation.ratio(c, i):.2f}" for c in simulation.columns),
        ]
        for i, size in enumerate(simulation.sizes)
    ]
    print(file=stream)
    print_table(
        f"Hit ratio (%) of {trace.name} by cache size",
        columns,
        rows,
        file=stream,
        numeric=[True] * len(columns),
    )
    print(
        f"\nAn unbounded cache would get {ceiling(simulation.requests, simulation.distinct):.2f}%"
        " (only each key's first request misses).",
        file=stream,
    )
    if "ttl" in policies:
        print("ttl is FIFO here: a trace has no ttls, so the oldest insert goes.", file=stream)
    print(file=stream)
    recommendation = recommend(simulation, args.target)
    if recommendation is None:
        print(
            "Recommendation: none. Every request is a key's first: no cache can hit.",
            file=stream,
        )
    else:
        for line in recommendation.lines():
            print(line, file=stream)
    print(f"\n{runs} runs in {format_duration(elapsed)}.", file=stream, flush=True)

    if args.plot is not None:
        try:
            plot(simulation, args.plot, f"{trace.name}: hit ratio by cache size", recommendation)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            return _fail("simulate", f"can't write {args.plot}: {reason}", EXIT_USAGE)
        print(f"Plot: {args.plot}", file=stream)
    return EXIT_OK
