"""L1 coherence across OS processes: a fleet of caches under random load, then L1 against L2.

Each node is a process of its own (``tests/fleet_worker.py``, started with ``spawn``) with its
own L1, ``RedisCache`` and ``RedisBackplane``, all on one real redis-server. They read and
write a small key space at random, so nodes overwrite each other's keys all the time. Then they
stop writing, wait until each has heard every message the others sent (the counts of
``backplane_sent`` against the ``backplane_messages`` events received), and report what their
L1 holds; a cache without L1 reads L2. A key is divergent when some node's L1 holds a value
other than L2's (an L1 without the key is fine: the next read goes to L2).

New fleet scenarios go in ``tests/fleet_worker.py`` (``@scenario``) and run with
:func:`~tests.fleet_worker.start_fleet`, as :func:`run_fleet` does here.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Sequence
from typing import Any

import dataferry as df
from tests.fleet_worker import AsyncNode, Facade, FleetReport, scenario, start_fleet

#: Seconds of random load per fleet: the issue's figure for the async fleet.
DURATION = 10.0
#: The sync fleet runs the same mix for less time (the file stays under ~25 s).
SYNC_DURATION = 3.0
#: The control run only needs long enough for nodes to overwrite each other's L1 entries.
CONTROL_DURATION = 1.5
PROCESSES = 4
#: A small key space: with 4 writers, most keys are written by several nodes in turn.
KEYS = tuple(f"key{i}" for i in range(50))
#: Divergent entries printed in a failure message (each with its key's recent history).
SHOWN = 10


def run_fleet(
    url: str,
    namespace: str,
    facades: Sequence[Facade],
    duration: float,
    *,
    backplane: bool = True,
    **params: Any,
) -> tuple[FleetReport, dict[str, Any]]:
    """Run ``random_ops`` on one process per facade; return the report and L2's view."""
    with start_fleet(
        url,
        scenario="random_ops",
        facades=facades,
        keys=KEYS,
        namespace=namespace,
        params={"duration": duration, **params},
        # A new seed per run (printed in failure messages, so a failing run can be replayed).
        seed=int(datetime.datetime.now().timestamp()),
        backplane=backplane,
    ) as fleet:
        fleet.run(timeout=duration + 60)
        fleet.settle()
        l2 = read_l2(url, namespace)
        report = fleet.close()
    return report, l2


def read_l2(url: str, namespace: str) -> dict[str, Any]:
    """Every key's fresh value in L2 (as any node's L2 read would decode it)."""
    reader = df.DataFerry(memory=None, distributed=df.RedisCache.from_url(url), namespace=namespace)
    with reader:
        view = {}
        for key in KEYS:
            found, value = reader.try_get(key)
            if found:
                view[key] = value
    return view


def show(value: Any) -> str:
    """A value written by a worker, as ``w{worker}/{op}#{sequence}``."""
    if isinstance(value, dict) and value.keys() == {"w", "op", "n"}:
        return f"w{value['w']}/{value['op']}#{value['n']}"
    return repr(value)


def divergences(report: FleetReport, l2: dict[str, Any]) -> list[str]:
    """One entry per (node, key) whose L1 value is not L2's, with the key's recent history."""
    found = []
    for node, view in enumerate(report.l1_views):
        for key, value in sorted(view.items()):
            if key in l2 and l2[key] == value:
                continue
            held = show(l2[key]) if key in l2 else "nothing fresh (removed or expired)"
            lines = [f"node {node} L1 {key} = {show(value)}, L2 holds {held}; last operations:"]
            events = sorted(
                (when, worker, op, result)
                for worker, ran in enumerate(report.ran)
                for when, op, result in ran["history"].get(key, [])
            )
            lines += [
                f"    {when:.6f} node {worker} {op} -> {show(result)}"
                for when, worker, op, result in events
            ]
            found.append("\n".join(lines))
    return found


def summary(report: FleetReport, l2: dict[str, Any]) -> str:
    ops = {
        op: report.total(op) for op in ("get", "get_or_set", "set", "remove", "expire", "set_many")
    }
    return (
        f"seed {report.seed}, ops {ops}, factory calls {report.total('factory_calls')}, "
        f"messages sent {report.total('sent')}, "
        f"L1 entries per node {[len(v) for v in report.l1_views]}, L2 keys {len(l2)}, "
        f"max latency {max(s['max_latency_ms'] for s in report.settled):.1f} ms"
    )


def check_coherent(report: FleetReport, l2: dict[str, Any]) -> None:
    context = summary(report, l2)
    for node, settled in enumerate(report.settled):
        # Every message must arrive: a lost one is how an L1 goes stale for good.
        assert settled["arrived"], (
            f"node {node} heard {settled['received']} of {settled['expected']} messages "
            f"(backplane states {settled['states']}); {context}"
        )
        assert settled["received"] == settled["expected"], f"node {node}: {settled}"
        assert settled["states"] == [], f"node {node} backplane states {settled['states']}"
        stats = settled["stats"]
        faults = {
            name: stats[name]
            for name in ("distributed_errors", "decode_errors", "backplane_dropped")
            if stats[name]
        }
        assert not faults, f"node {node} had faults {faults}; {context}"
        # Each node did real work on keys the others wrote too.
        assert sum(report.ran[node]["ops"].values()) >= 50, context
        assert settled["received"] > 0, context
    # The check can only find a divergence in entries that L1 still holds.
    assert sum(len(view) for view in report.l1_views) >= 10, context
    diverged = divergences(report, l2)
    assert not diverged, (
        f"{len(diverged)} divergent L1 entries (first {SHOWN} shown):\n"
        + "\n".join(diverged[:SHOWN])
        + f"\n{context}"
    )


def test_four_async_processes_keep_their_l1s_coherent(redis_url: str) -> None:
    report, l2 = run_fleet(redis_url, "fleet-async", ["async"] * PROCESSES, DURATION)
    check_coherent(report, l2)


def test_four_sync_processes_keep_their_l1s_coherent(redis_url: str) -> None:
    report, l2 = run_fleet(redis_url, "fleet-sync", ["sync"] * PROCESSES, SYNC_DURATION)
    check_coherent(report, l2)


def test_without_a_backplane_the_same_load_leaves_l1s_divergent(redis_url: str) -> None:
    # The control: the check above does see stale L1 entries when nothing invalidates them
    # (and so the L1-only reads of the workers do answer from L1).
    report, l2 = run_fleet(
        redis_url, "fleet-control", ["async", "sync"] * 2, CONTROL_DURATION, backplane=False
    )
    assert report.total("sent") == 0
    assert divergences(report, l2), summary(report, l2)


# -- the distributed stampede lock ----------------------------------------------------------------

#: Callers per process in the stampede (4 processes: the issue's 4 x 25).
CALLERS = 25


@scenario("cold_stampede", facade="async")
async def cold_stampede(node: AsyncNode) -> dict[str, Any]:
    """25 concurrent cold ``get_or_set`` of one key; the factory takes a while (a slow query)."""
    options = df.EntryOptions(distributed_lock=node.params["lock"])

    async def factory() -> str:
        node.factory_calls += 1
        await asyncio.sleep(1.0)  # long enough for every process to be waiting
        return f"computed by node {node.index}"

    values = await asyncio.gather(
        *(node.cache.get_or_set("hot", factory, options=options) for _ in range(CALLERS))
    )
    return {"values": sorted(set(values)), "lock_waits": node.cache.stats().lock_waits}


def stampede(url: str, namespace: str, *, lock: bool) -> FleetReport:
    with start_fleet(
        url,
        scenario="cold_stampede",
        facades=["async"] * PROCESSES,
        keys=["hot"],
        namespace=namespace,
        params={"lock": lock},
    ) as fleet:
        fleet.run(timeout=60)
        fleet.settle()
        return fleet.close()


def test_the_lock_makes_one_factory_call_across_processes(redis_url: str) -> None:
    report = stampede(redis_url, "fleet-lock", lock=True)
    assert report.total("factory_calls") == 1
    values = {v for result in report.results for v in result["values"]}
    assert len(values) == 1  # every caller of every process got the one computed value
    assert sum(result["lock_waits"] for result in report.results) == PROCESSES - 1


def test_without_the_lock_each_process_computes_once(redis_url: str) -> None:
    # The control: single-flight stops at the process boundary.
    report = stampede(redis_url, "fleet-nolock", lock=False)
    assert report.total("factory_calls") == PROCESSES
