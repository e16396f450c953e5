# GENERATED from tests/_async/test_distributed_lock.py by scripts/unasync.py: do not edit.
"""The distributed stampede lock (``EntryOptions(distributed_lock=True)``) across cache nodes.

Each node is a cache with its own L1 and its own L2 client (its own Redis connections, or its
own SQLite connection to the same file), as two processes would have. The sync twin
(tests/_sync/test_distributed_lock.py) is generated from this file; the test across OS
processes is in tests/test_fleet.py.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import dataferry as df
from tests.chaos import (
    Latch,
    Reading,
    Faults,
    sync_until,
    sync_wait,
    count_events,
    wait_event,
)

NS = "lock"
LOCKED = df.EntryOptions(distributed_lock=True)


def node(l2_factory: Any, **kwargs: Any) -> df.DataFerry:
    return df.DataFerry(distributed=l2_factory(), namespace=NS, **kwargs)


class Factory:
    """A factory that counts its calls and, when given a latch, waits on it first."""

    def __init__(self, value: Any, latch: Latch | None = None, error: bool = False) -> None:
        self.value = value
        self.latch = latch
        self.error = error
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.latch is not None:
            self.latch.wait()
        if self.error:
            raise RuntimeError("the database is down")
        return self.value


def test_one_node_computes_and_the_other_waits_for_its_value(l2_factory: Any) -> None:
    a, b = node(l2_factory), node(l2_factory)
    latch = Latch()
    make_a, make_b = Factory("from a", latch), Factory("from b")
    waits = count_events(b, "lock_waits")
    with a, b:
        first = Reading(lambda: a.get_or_set("report", make_a, options=LOCKED))

        def a_holds_the_lock() -> bool:
            return latch.entered == 1

        sync_until(a_holds_the_lock)
        second = Reading(lambda: b.get_or_set("report", make_b, options=LOCKED))
        sync_wait(waits(1))  # b found the lock taken and polls L2
        latch.open()
        assert first.result() == "from a"
        assert second.result() == "from a"
        assert (make_a.calls, make_b.calls) == (1, 0)
        assert b.stats().lock_waits == 1
        assert b.stats().lock_timeouts == 0
        # b read a's value from L2 and keeps it in its L1.
        assert b.get("report", options=df.EntryOptions(skip_distributed=True)) == "from a"


class HoldSecondAcquire:
    """An L2 layer that lets the first ``acquire_lock`` through and holds the second."""

    def __init__(self) -> None:
        self.acquires = 0
        self.reached = threading.Event()
        self.opened = threading.Event()

    def _hold(self, operation: str) -> bool:
        if operation != "acquire_lock":
            return False
        self.acquires += 1
        if self.acquires != 2:
            return False
        self.reached.set()
        return True

    async def arun(self, op: str, keys: Sequence[str], call: Any) -> Any:  # unasync: keep
        if self._hold(op):  # unasync: keep
            await wait_event(self.opened, 10)  # unasync: keep
        return await call()  # unasync: keep

    def run(self, op: str, keys: Sequence[str], call: Callable[[], Any], /) -> Any:
        if self._hold(op):
            assert self.opened.wait(10), "the test never let the lock be taken"
        return call()


def test_a_lock_freed_with_a_value_between_two_polls_serves_that_value(
    l2_factory: Any,
) -> None:
    # b polls (no value yet) and, before it takes the lock, a writes its value and releases
    # the lock: b takes a free lock, and must read the value once more rather than compute.
    hold = HoldSecondAcquire()
    a, b = node(l2_factory), node(l2_factory, distributed_layers=[hold])
    latch = Latch()
    make_a, make_b = Factory("from a", latch), Factory("from b")
    with a, b:
        first = Reading(lambda: a.get_or_set("report", make_a, options=LOCKED))

        def a_holds_the_lock() -> bool:
            return latch.entered == 1

        sync_until(a_holds_the_lock)
        second = Reading(lambda: b.get_or_set("report", make_b, options=LOCKED))
        sync_wait(hold.reached)  # b's first poll found no value; it tries the lock
        latch.open()
        assert first.result() == "from a"  # written, and the lock released
        hold.opened.set()
        assert second.result() == "from a"
        assert (make_a.calls, make_b.calls) == (1, 0)


def test_without_the_option_each_node_computes(l2_factory: Any) -> None:
    a, b = node(l2_factory), node(l2_factory)
    latch = Latch()
    make_a, make_b = Factory("from a", latch), Factory("from b")
    with a, b:
        first = Reading(lambda: a.get_or_set("report", make_a))

        def a_computes() -> bool:
            return latch.entered == 1

        sync_until(a_computes)
        assert b.get_or_set("report", make_b) == "from b"
        latch.open()
        assert first.result() == "from a"
        assert (make_a.calls, make_b.calls) == (1, 1)


def test_a_holder_whose_factory_fails_lets_a_waiter_compute(l2_factory: Any) -> None:
    a, b = node(l2_factory), node(l2_factory)
    latch = Latch()
    failing, make_b = Factory(None, latch, error=True), Factory("from b")
    waits = count_events(b, "lock_waits")
    with a, b:
        first = Reading(
            lambda: _error_of(lambda: a.get_or_set("report", failing, options=LOCKED))
        )

        def a_holds_the_lock() -> bool:
            return latch.entered == 1

        sync_until(a_holds_the_lock)
        second = Reading(lambda: b.get_or_set("report", make_b, options=LOCKED))
        sync_wait(waits(1))
        latch.open()  # a's factory raises: a releases the lock without a value
        assert isinstance(first.result(), RuntimeError)
        assert second.result() == "from b"
        assert make_b.calls == 1
        assert b.stats().lock_timeouts == 0  # b took the freed lock, it did not time out


def _error_of(call: Any) -> BaseException | None:
    try:
        call()
    except Exception as exc:
        return exc
    return None


def test_a_crashed_holders_lock_expires(l2_factory: Any) -> None:
    backend = l2_factory()
    # A holder that crashed: it took the lock (documented layout {ns}:lock:k:{key}) and is gone.
    assert backend.acquire_lock(f"{NS}:lock:k:report", secrets.token_bytes(16), 0.3)
    with node(l2_factory) as cache:
        make = Factory("computed")
        started = time.monotonic()
        value = cache.get_or_set(
            "report", make, options=df.EntryOptions(distributed_lock=True)
        )
        waited = time.monotonic() - started
        assert value == "computed"
        assert make.calls == 1
        assert cache.stats().lock_waits == 1
        assert cache.stats().lock_timeouts == 0  # the lock expired: taken, no timeout
        assert waited < 5  # far below the default distributed_lock_timeout (10 s)
    backend.close()


def test_the_wait_is_bounded_then_the_factory_runs_anyway(l2_factory: Any) -> None:
    backend = l2_factory()
    assert backend.acquire_lock(f"{NS}:lock:k:report", secrets.token_bytes(16), 60)
    with node(l2_factory) as cache:
        seen = count_events(cache, "lock_timeouts")
        make = Factory("computed")
        options = df.EntryOptions(distributed_lock=True, distributed_lock_timeout=0.2)
        assert cache.get_or_set("report", make, options=options) == "computed"
        sync_wait(seen(1))
        assert make.calls == 1
        assert cache.stats().lock_timeouts == 1
    backend.close()


def test_an_l2_failure_on_the_lock_runs_the_factory(l2_factory: Any) -> None:
    faults = Faults(ConnectionError("lock store down"), "acquire_lock")
    with node(l2_factory, distributed_layers=[faults]) as cache:
        make = Factory("computed")
        assert cache.get_or_set("report", make, options=LOCKED) == "computed"
        assert make.calls == 1
        assert faults.calls["acquire_lock"] == 1
        assert cache.stats().distributed_errors == 1
        # The value was written to L2 all the same.
        faults.failing = False
        with node(l2_factory, memory=None) as reader:
            assert reader.get("report") == "computed"


def test_the_lock_is_released_after_the_value_is_written(l2_factory: Any) -> None:
    with node(l2_factory) as cache:
        cache.get_or_set("report", Factory(1), options=LOCKED)
        cache.get_or_set("other", Factory(2), options=LOCKED)
    # Both locks were released: anyone can take them at once.
    backend = l2_factory()
    for key in ("report", "other"):
        assert backend.acquire_lock(f"{NS}:lock:k:{key}", b"me", 5)
    backend.close()


def test_lock_option_is_validated() -> None:
    with pytest.raises(df.ConfigurationError):
        df.EntryOptions(distributed_lock=1)  # type: ignore[arg-type]
    with pytest.raises(df.ConfigurationError):
        df.EntryOptions(distributed_lock_timeout=0)


def test_the_lock_on_a_cluster_and_sentinel(topology_l2_factory: Any) -> None:
    a, b = node(topology_l2_factory), node(topology_l2_factory)
    latch = Latch()
    make_a, make_b = Factory("from a", latch), Factory("from b")
    waits = count_events(b, "lock_waits")
    with a, b:
        first = Reading(lambda: a.get_or_set("{user:7}:report", make_a, options=LOCKED))

        def a_holds_the_lock() -> bool:
            return latch.entered == 1

        sync_until(a_holds_the_lock)
        second = Reading(lambda: b.get_or_set("{user:7}:report", make_b, options=LOCKED))
        sync_wait(waits(1))
        latch.open()
        assert first.result() == second.result() == "from a"
        assert (make_a.calls, make_b.calls) == (1, 0)
