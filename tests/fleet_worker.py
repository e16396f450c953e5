"""One node of a test fleet: a DataFerry cache in an OS process of its own.

``tests/test_fleet.py`` starts several of these with :func:`start_fleet` (multiprocessing,
``spawn``: a fresh interpreter, as a real deployment has), all on one real redis-server, each
with its own L1, its own ``RedisCache`` and its own ``RedisBackplane``. The parent drives them
over a pipe, one phase at a time, all processes in step:

1. ``ready``: the cache is built and its backplane subscribed;
2. ``run``: the scenario runs (all processes start together) and returns a JSON-able summary;
3. ``settle``: the process waits until its cache has received ``expected`` backplane messages
   (every message the other processes sent), then reports its L1 view of the scenario's keys;
4. ``close``: the cache is closed and the process exits.

Scenarios live in :data:`SCENARIOS`, by name. Adding one is a function and a decorator::

    @scenario("cold_stampede", facade="async")
    async def cold_stampede(node: AsyncNode) -> dict[str, Any]:
        # node.cache, node.params, node.rng, node.index, node.deadline are at hand
        def factory() -> str:
            node.factory_calls += 1  # summed by FleetReport.total("factory_calls")
            return "v"

        await asyncio.gather(*(node.cache.get_or_set("hot", factory) for _ in range(25)))
        return {"anything": "picklable"}  # ends up in FleetReport.results[node.index]

and a test runs it with ``start_fleet(url, scenario="cold_stampede", facades=["async"] * 4,
keys=["hot"])``: ``fleet.run()``, ``fleet.settle()``, ``fleet.close().total(...)``. A scenario
may live in any importable module (this one, or the test module itself): each child process
imports the module that defines it.

The same name may be registered once per facade (``"async"``: ``AsyncDataFerry``, the
function is a coroutine; ``"sync"``: ``DataFerry``, a plain function).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import multiprocessing
import random
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Generic, Literal, TypeVar

import dataferry as df

Facade = Literal["async", "sync"]
C = TypeVar("C", df.AsyncDataFerry, df.DataFerry)

# Generous: the machine may be a loaded 2-core CI runner.
PHASE_TIMEOUT = 60.0
#: Operations kept per key and process for failure messages.
HISTORY = 6


# -- what a scenario sees ------------------------------------------------------------------------


@dataclass
class Node(Generic[C]):
    """One process's cache and everything a scenario needs to drive it."""

    cache: C
    index: int
    params: dict[str, Any]
    rng: random.Random
    #: ``time.monotonic()`` at which a timed scenario should stop (``params["duration"]``).
    deadline: float
    #: Operations done, by name: summed over the fleet by the parent.
    ops: Counter[str] = field(default_factory=Counter)
    #: Factory calls made by this process's factories (counted by the factory itself).
    factory_calls: int = 0
    #: The last sequence number :meth:`value` gave.
    seq: int = 0
    #: The last few operations on each key, for failure messages: ``(wall time, op, value)``.
    history: dict[str, deque[tuple[float, str, Any]]] = field(default_factory=dict)

    def record(self, op: str, key: str, value: Any = None) -> None:
        """Note that this process did ``op`` on ``key`` (with ``value``, for writes)."""
        log = self.history.get(key)
        if log is None:
            log = self.history[key] = deque(maxlen=HISTORY)
        log.append((time.time(), op, value))

    def value(self, op: str) -> dict[str, Any]:
        """A fresh value that tells who wrote it, with which operation, and when (sequence)."""
        self.seq += 1
        return {"w": self.index, "op": op, "n": self.seq}


AsyncNode = Node[df.AsyncDataFerry]
SyncNode = Node[df.DataFerry]


@dataclass(frozen=True)
class Scenario:
    """A registered scenario: one implementation per facade (either may be missing)."""

    name: str
    arun: Callable[[AsyncNode], Awaitable[dict[str, Any]]] | None = None
    run: Callable[[SyncNode], dict[str, Any]] | None = None


#: Every scenario, by name.
SCENARIOS: dict[str, Scenario] = {}

F = TypeVar("F", bound=Callable[..., Any])


def scenario(name: str, *, facade: Facade) -> Callable[[F], F]:
    """Register the decorated function as the ``facade`` implementation of scenario ``name``."""

    def register(fn: F) -> F:
        old = SCENARIOS.get(name, Scenario(name))
        key = "arun" if facade == "async" else "run"
        there = getattr(old, key)
        # The same function registered again (its module imported twice) is not a clash.
        if there is not None and _where(there) != _where(fn):
            raise ValueError(f"scenario {name!r} already has a {facade} implementation")
        SCENARIOS[name] = Scenario(
            name,
            arun=fn if facade == "async" else old.arun,
            run=fn if facade == "sync" else old.run,
        )
        return fn

    return register


def _where(fn: Callable[..., Any]) -> tuple[str, str]:
    return (fn.__module__, fn.__qualname__)


# -- scenario: random reads and writes over a small key space ------------------------------------

#: (operation, weight): reads outnumber writes, as in a cache's life, but writes are frequent
#: enough that on a small key space nodes overwrite each other's keys all the time.
RANDOM_MIX: tuple[tuple[str, int], ...] = (
    ("get", 30),
    ("get_or_set", 30),
    ("set", 15),
    ("remove", 8),
    ("expire", 7),
    ("set_many", 10),
)


def _pick(node: Node[Any]) -> tuple[str, list[str]]:
    ops, weights = zip(*RANDOM_MIX, strict=True)
    op = node.rng.choices(ops, weights)[0]
    keys: list[str] = node.params["keys"]
    many = node.rng.randint(2, 4) if op == "set_many" else 1
    return op, node.rng.sample(keys, many)


@scenario("random_ops", facade="async")
async def random_ops_async(node: AsyncNode) -> dict[str, Any]:
    """Random get / get_or_set / set / remove / expire / set_many until the deadline.

    ``params["tasks"]`` (default 1) loops run concurrently in the process's event loop.
    """
    cache = node.cache

    def factory() -> dict[str, Any]:
        node.factory_calls += 1
        return node.value("factory")

    async def loop() -> None:
        while time.monotonic() < node.deadline:
            op, keys = _pick(node)
            key = keys[0]
            if op == "get":
                node.record(op, key, await cache.get(key))
            elif op == "get_or_set":
                node.record(op, key, await cache.get_or_set(key, factory))
            elif op == "set":
                value = node.value("set")
                await cache.set(key, value)
                node.record(op, key, value)
            elif op == "remove":
                await cache.remove(key)
                node.record(op, key)
            elif op == "expire":
                await cache.expire(key)
                node.record(op, key)
            else:
                values = {k: node.value("set_many") for k in keys}
                await cache.set_many(values)
                for k, v in values.items():
                    node.record(op, k, v)
            node.ops[op] += 1

    await asyncio.gather(*(loop() for _ in range(int(node.params.get("tasks", 1)))))
    return {}


@scenario("random_ops", facade="sync")
def random_ops_sync(node: SyncNode) -> dict[str, Any]:
    """The same mix as :func:`random_ops_async`, through the sync facade."""
    cache = node.cache

    def factory() -> dict[str, Any]:
        node.factory_calls += 1
        return node.value("factory")

    while time.monotonic() < node.deadline:
        op, keys = _pick(node)
        key = keys[0]
        if op == "get":
            node.record(op, key, cache.get(key))
        elif op == "get_or_set":
            node.record(op, key, cache.get_or_set(key, factory))
        elif op == "set":
            value = node.value("set")
            cache.set(key, value)
            node.record(op, key, value)
        elif op == "remove":
            cache.remove(key)
            node.record(op, key)
        elif op == "expire":
            cache.expire(key)
            node.record(op, key)
        else:
            values = {k: node.value("set_many") for k in keys}
            cache.set_many(values)
            for k, v in values.items():
                node.record(op, k, v)
        node.ops[op] += 1
    return {}


# -- the process ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerConfig:
    """What one process is told at start (pickled to the child)."""

    index: int
    url: str
    namespace: str
    facade: Facade
    scenario: str
    #: Modules that define the scenario: the child imports them to find it in SCENARIOS.
    modules: tuple[str, ...]
    keys: tuple[str, ...]
    params: dict[str, Any]
    seed: int
    backplane: bool = True
    default_ttl: float = 600.0


class _Received:
    """Counts the backplane messages a cache receives, and lets a thread wait for a count."""

    def __init__(self) -> None:
        self.count = 0
        self.max_latency_ms = 0.0
        #: Backplane states reported (a "reconnected" empties L1: messages may be lost).
        self.states: list[str] = []
        self._changed = threading.Condition()

    def __call__(self, event: str, attributes: dict[str, Any]) -> None:
        if event == "backplane_state":
            self.states.append(attributes["state"])
        if event != "backplane_messages":
            return
        with self._changed:
            self.count += 1
            self.max_latency_ms = max(self.max_latency_ms, attributes["latency_ms"])
            self._changed.notify_all()

    def wait_for(self, expected: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= expected, timeout)


def _cache_kwargs(config: WorkerConfig) -> dict[str, Any]:
    # Timeouts far above the defaults (0.25 s): this is a test of coherence, not of timeouts.
    # On a loaded 2-core runner a 250 ms stall can happen, and an L2 call abandoned after Redis
    # ran it, or a backplane reconnect, is a fault the fault tests cover; here it would only
    # blur what a divergence means.
    backplane = None
    if config.backplane:
        backplane = df.RedisBackplane.from_url(
            config.url, heartbeat=10.0, socket_timeout=10.0, socket_connect_timeout=10.0
        )
    return {
        "distributed": df.RedisCache.from_url(
            config.url, socket_timeout=10.0, socket_connect_timeout=10.0
        ),
        "backplane": backplane,
        "namespace": config.namespace,
        "default_ttl": config.default_ttl,
        "resilience": df.Resilience(timeout=10.0),
    }


def _stats(cache: df.AsyncDataFerry | df.DataFerry) -> dict[str, int]:
    return dataclasses.asdict(cache.stats())


def _settled(received: _Received, expected: int, timeout: float) -> dict[str, Any]:
    arrived = received.wait_for(expected, timeout)
    return {
        "arrived": arrived,
        "expected": expected,
        "received": received.count,
        "states": list(received.states),
        "max_latency_ms": received.max_latency_ms,
    }


#: Reads that only L1 may answer: a miss there is a miss, L2 is not asked.
L1_ONLY = df.EntryOptions(skip_distributed=True)


async def _amain(conn: Connection, config: WorkerConfig, impl: Scenario) -> None:
    assert impl.arun is not None
    cache = df.AsyncDataFerry(**_cache_kwargs(config))
    received = _Received()
    cache.subscribe(received)
    async with cache:
        conn.send(("ready", None))
        _expect(await asyncio.to_thread(conn.recv), "run")
        node = _node(cache, config)
        result = await impl.arun(node)
        conn.send(("ran", _ran(node, result, cache)))
        expected = _expect(await asyncio.to_thread(conn.recv), "settle")
        settled = await asyncio.to_thread(_settled, received, expected, PHASE_TIMEOUT)
        l1 = {}
        for key in config.keys:
            found, value = await cache.try_get(key, options=L1_ONLY)
            if found:
                l1[key] = value
        settled.update(l1=l1, stats=_stats(cache))
        conn.send(("settled", settled))
        _expect(await asyncio.to_thread(conn.recv), "close")
    conn.send(("closed", _stats(cache)))


def _smain(conn: Connection, config: WorkerConfig, impl: Scenario) -> None:
    assert impl.run is not None
    cache = df.DataFerry(**_cache_kwargs(config))
    received = _Received()
    cache.subscribe(received)
    with cache:
        conn.send(("ready", None))
        _expect(conn.recv(), "run")
        node = _node(cache, config)
        result = impl.run(node)
        conn.send(("ran", _ran(node, result, cache)))
        expected = _expect(conn.recv(), "settle")
        settled = _settled(received, expected, PHASE_TIMEOUT)
        l1 = {}
        for key in config.keys:
            found, value = cache.try_get(key, options=L1_ONLY)
            if found:
                l1[key] = value
        settled.update(l1=l1, stats=_stats(cache))
        conn.send(("settled", settled))
        _expect(conn.recv(), "close")
    conn.send(("closed", _stats(cache)))


def _node(cache: C, config: WorkerConfig) -> Node[C]:
    duration = float(config.params.get("duration", 0.0))
    return Node(
        cache=cache,
        index=config.index,
        params={**config.params, "keys": list(config.keys)},
        rng=random.Random(config.seed),
        deadline=time.monotonic() + duration,
    )


def _ran(node: Node[Any], result: dict[str, Any], cache: Any) -> dict[str, Any]:
    return {
        "result": result,
        "ops": dict(node.ops),
        "factory_calls": node.factory_calls,
        "sent": cache.stats().backplane_sent,
        "history": {key: list(log) for key, log in node.history.items()},
    }


def _expect(message: tuple[str, Any], phase: str) -> Any:
    name, payload = message
    if name != phase:
        raise RuntimeError(f"worker expected {phase!r} from the parent, got {name!r}")
    return payload


def worker_main(conn: Connection, config: WorkerConfig) -> None:
    """The child process: build the cache, then follow the parent's phases (see module doc)."""
    try:
        for module in config.modules:
            importlib.import_module(module)
        impl = SCENARIOS[config.scenario]
        if config.facade == "async":
            asyncio.run(_amain(conn, config, impl))
        else:
            _smain(conn, config, impl)
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", f"worker {config.index}:\n{traceback.format_exc()}"))
        raise
    finally:
        conn.close()


# -- the parent's side ---------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A worker process failed, died, or did not answer in time."""


@dataclass
class FleetReport:
    """What the fleet reported, phase by phase, indexed by worker."""

    #: The seed of the run: worker ``i`` draws from ``random.Random(seed * 1000 + i)``.
    seed: int = 0
    ran: list[dict[str, Any]] = field(default_factory=list)
    settled: list[dict[str, Any]] = field(default_factory=list)
    closed: list[dict[str, int]] = field(default_factory=list)

    @property
    def results(self) -> list[dict[str, Any]]:
        """Each worker's scenario result."""
        return [r["result"] for r in self.ran]

    @property
    def l1_views(self) -> list[dict[str, Any]]:
        """Each worker's L1 view after quiescence: ``{key: value}`` of the keys L1 holds."""
        return [s["l1"] for s in self.settled]

    def total(self, name: str) -> int:
        """An operation count (or ``factory_calls``, ``sent``) summed over the fleet."""
        if name in ("factory_calls", "sent"):
            return sum(r[name] for r in self.ran)
        return sum(r["ops"].get(name, 0) for r in self.ran)


class Fleet:
    """Worker processes started with :func:`start_fleet`, driven phase by phase in step."""

    def __init__(self, processes: list[Any], conns: list[Connection], seed: int) -> None:
        self.processes = processes
        self.conns = conns
        self.report = FleetReport(seed=seed)

    def _gather(self, phase: str, timeout: float = PHASE_TIMEOUT) -> list[Any]:
        answers: list[Any] = []
        deadline = time.monotonic() + timeout
        for i, (proc, conn) in enumerate(zip(self.processes, self.conns, strict=True)):
            while not conn.poll(0.1):
                if not proc.is_alive():
                    raise WorkerError(f"worker {i} died (exit code {proc.exitcode}) before {phase}")
                if time.monotonic() > deadline:
                    raise WorkerError(f"worker {i} did not report {phase!r} within {timeout}s")
            try:
                name, payload = conn.recv()
            except EOFError:
                proc.join(PHASE_TIMEOUT)
                raise WorkerError(
                    f"worker {i} closed its pipe (exit code {proc.exitcode}) before {phase}"
                ) from None
            if name == "error":
                raise WorkerError(payload)
            if name != phase:
                raise WorkerError(f"worker {i} sent {name!r}, expected {phase!r}")
            answers.append(payload)
        return answers

    def _send(self, phase: str, payloads: Sequence[Any]) -> None:
        for conn, payload in zip(self.conns, payloads, strict=True):
            conn.send((phase, payload))

    def run(self, timeout: float = PHASE_TIMEOUT) -> list[dict[str, Any]]:
        """Start the scenario in every process at once; return what each one reported."""
        self._send("run", [None] * len(self.conns))
        self.report.ran = self._gather("ran", timeout)
        return self.report.ran

    def settle(self) -> list[dict[str, Any]]:
        """Wait until every process received every message the others sent; collect L1s.

        A node never hears its own messages, so node ``i`` expects ``sent - sent_i``.
        """
        sent = [r["sent"] for r in self.report.ran]
        total = sum(sent)
        self._send("settle", [total - mine for mine in sent])
        self.report.settled = self._gather("settled")
        return self.report.settled

    def close(self) -> FleetReport:
        """Close every cache and wait for the processes to exit."""
        self._send("close", [None] * len(self.conns))
        self.report.closed = self._gather("closed")
        for proc in self.processes:
            proc.join(PHASE_TIMEOUT)
        return self.report

    def kill(self) -> None:
        """Make sure no process is left (after a failure)."""
        for proc in self.processes:
            if proc.is_alive():
                proc.kill()
            proc.join(PHASE_TIMEOUT)
        for conn in self.conns:
            conn.close()


@contextlib.contextmanager
def start_fleet(
    url: str,
    *,
    scenario: str,
    facades: Sequence[Facade],
    keys: Sequence[str],
    namespace: str = "fleet",
    params: dict[str, Any] | None = None,
    seed: int = 0,
    backplane: bool = True,
) -> Iterator[Fleet]:
    """Start one process per entry of ``facades``; yield the fleet once every cache is ready.

    On the way out the processes are killed if they are still alive (a failed test leaves no
    process behind); a test closes them with :meth:`Fleet.close` to get their final stats.
    """
    impl = SCENARIOS[scenario]
    modules = []
    for facade in facades:
        fn = impl.arun if facade == "async" else impl.run
        if fn is None:
            raise ValueError(f"scenario {scenario!r} has no {facade} implementation")
        if fn.__module__ not in modules:
            modules.append(fn.__module__)
    ctx = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    conns: list[Connection] = []
    fleet = Fleet(processes, conns, seed)
    try:
        for index, facade in enumerate(facades):
            parent, child = ctx.Pipe()
            config = WorkerConfig(
                index=index,
                url=url,
                namespace=namespace,
                facade=facade,
                scenario=scenario,
                modules=tuple(modules),
                keys=tuple(keys),
                params=dict(params or {}),
                seed=seed * 1000 + index,
                backplane=backplane,
            )
            proc = ctx.Process(
                target=worker_main, args=(child, config), name=f"fleet-{index}", daemon=True
            )
            proc.start()
            child.close()
            processes.append(proc)
            conns.append(parent)
        fleet._gather("ready")
        yield fleet
    finally:
        fleet.kill()
