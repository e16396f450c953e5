"""The default weigher: a bounded deep estimate, so max_bytes bounds memory for real values."""

from __future__ import annotations

import dataclasses
import json
import sys
import tracemalloc
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

from dataferry import DataFerry, MemoryCache, estimate_size

KiB = 1024
MiB = 1024 * KiB
# What estimate_size adds to the value's size for the key "k" and the cache's bookkeeping.
_FIXED = estimate_size("k", b"") - sys.getsizeof(b"")


def _value_size(value: Any) -> int:
    return estimate_size("k", value) - _FIXED


def _allocated(make: Callable[[], Any]) -> tuple[Any, int]:
    """Build a value; return it and the bytes its construction left allocated."""
    tracemalloc.start()
    try:
        value = make()
        allocated, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return value, allocated


def _json_rows(n: int) -> str:
    return json.dumps([{"id": i, "value": str(i)} for i in range(n)])


# -- what is counted ------------------------------------------------------------------------


def test_str_and_bytes_are_measured_exactly() -> None:
    for value in ("x" * MiB, b"x" * MiB, "é" * 1000, ""):
        assert estimate_size("key", value) == (
            sys.getsizeof("key") + sys.getsizeof(value) + _FIXED - sys.getsizeof("k")
        )


def test_a_dict_holding_a_large_string_weighs_the_string() -> None:
    # Issue B7: a shallow estimate saw a dict of one slot and missed the 1 MiB inside it.
    assert _value_size({"blob": "x" * MiB}) > MiB


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("list of ints", lambda: list(range(1000, 31_000))),
        ("list of floats", lambda: [i * 0.5 for i in range(20_000)]),
        ("list of str", lambda: [f"item number {i}" for i in range(20_000)]),
        ("rows", lambda: [{"id": 1000 + i, "name": f"user {i}", "ok": True} for i in range(5000)]),
        ("json rows", lambda: json.loads(_json_rows(5000))),
        ("nested lists", lambda: [[float(i * j) for j in range(100)] for i in range(300)]),
        ("dict of str", lambda: {f"key{i}": f"value {i}" for i in range(5000)}),
        ("set of str", lambda: {f"member {i}" for i in range(5000)}),
        ("tuple of bytes", lambda: tuple(b"%d" % i * 50 for i in range(2000))),
        ("deque of tuples", lambda: deque((i, str(i)) for i in range(5000))),
    ],
)
def test_containers_are_weighed_close_to_what_they_allocate(
    name: str, make: Callable[[], Any]
) -> None:
    # Far beyond the walk's budget, so most of each is extrapolated from a sample. The
    # estimate rounds small objects up to the allocator's 16-byte blocks (tracemalloc
    # reports requested sizes), so it may read a little above.
    value, allocated = _allocated(make)
    assert 0.9 * allocated <= _value_size(value) <= 1.5 * allocated, name


def test_objects_are_weighed_by_their_attributes_not_their_class() -> None:
    @dataclasses.dataclass
    class User:
        name: str
        bio: str

    @dataclasses.dataclass(slots=True)
    class Slotted:
        name: str
        bio: str

    for cls in (User, Slotted):
        size = _value_size(cls("ada", "x" * 100 * KiB))
        assert 100 * KiB < size < 101 * KiB, cls  # the class and its methods are not the value


def test_shared_objects_and_cycles_are_counted_once() -> None:
    blob = "x" * 100 * KiB
    shared = [blob, blob, blob]
    assert _value_size(shared) < 1.1 * _value_size([blob])
    row = {"payload": blob}
    assert _value_size([row, row]) < 1.1 * _value_size([row])
    cycle: list[Any] = ["x" * KiB]
    cycle.append(cycle)
    assert KiB < _value_size(cycle) < 2 * KiB


def test_interpreter_singletons_cost_only_their_slot() -> None:
    flags = [None, True, False, 0, 1, 255] * 1000
    assert _value_size(flags) == pytest.approx(sys.getsizeof(flags), abs=16)


def test_a_sample_sees_the_whole_sequence_not_only_its_head() -> None:
    small_then_big = ["s"] * 5000 + ["x" * KiB for _ in range(5000)]
    assert _value_size(small_then_big) > 0.8 * 5000 * KiB


# -- bounded ----------------------------------------------------------------------------------


class _Counted:
    """An object that counts how often its size is asked for."""

    calls = 0

    def __sizeof__(self) -> int:
        type(self).calls += 1
        return 48


@pytest.mark.parametrize("make", [list, tuple, set, deque, lambda xs: dict(enumerate(xs))])
def test_the_walk_visits_a_bounded_number_of_objects(make: Callable[[list[Any]], Any]) -> None:
    small = make([_Counted() for _ in range(100)])
    _Counted.calls = 0
    small_size = _value_size(small)
    assert _Counted.calls == 100  # small enough to be walked whole
    huge = make([_Counted() for _ in range(100_000)])
    _Counted.calls = 0
    huge_size = _value_size(huge)
    assert _Counted.calls <= 300  # not 100,000: a sample, extrapolated
    assert huge_size > 500 * small_size  # ... to about 1000x


def test_deep_nesting_and_broken_objects_never_fail_a_weighing() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert _value_size(deep) > 0

    class Broken:
        def __sizeof__(self) -> int:
            raise RuntimeError("no size for you")

    assert _value_size([Broken()]) > 0
    cache = MemoryCache(max_bytes=MiB)
    cache.set("k", {"a": Broken()})
    assert "k" in cache


# -- max_bytes holds real values to the budget ------------------------------------------------


def _blob(i: int) -> dict[str, str]:
    return {"blob": f"{i:08d}" + "x" * (MiB - 8)}


def test_max_bytes_bounds_what_large_values_really_hold() -> None:
    # Issue B7: 200 x 1 MiB {"blob": str} under a 32 MiB budget used to keep all 200.
    budget = 8 * MiB
    cache = MemoryCache(max_entries=None, max_bytes=budget)
    for i in range(40):
        cache.set(f"k{i}", _blob(i))
        held = [cache.get(f"k{j}") for j in range(i + 1)]
        assert sum(len(v["blob"]) for v in held if v is not None) <= budget
    assert 4 <= len(cache) < 8  # about budget / 1 MiB of them


def test_max_bytes_bounds_large_values_set_through_the_facade() -> None:
    budget = 8 * MiB
    cache = DataFerry(memory=MemoryCache(max_entries=None, max_bytes=budget), distributed=None)
    for i in range(40):
        cache.set(f"k{i}", _blob(i), ttl=60)
    held = [cache.get(f"k{i}") for i in range(40)]
    assert 4 <= sum(v is not None for v in held) < 8
