"""Default keys of ``@cache.cached``: typed, canonical, stable across processes, bounded."""

from __future__ import annotations

import datetime as dt
import enum
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dataferry as df
from dataferry._decorator_keys import MAX_READABLE_KEY, encode_argument


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1


class Point(NamedTuple):
    x: int
    y: int


class Account:
    def __init__(self, number: str) -> None:
        self.number = number

    def __dataferry_key__(self) -> str:
        return self.number


def key_of(fn: Any, *args: Any, **kwargs: Any) -> str:
    with df.DataFerry() as cache:
        return str(cache.cached()(fn).key(*args, **kwargs))


def one(x: Any) -> None: ...


def test_supported_values_encode_to_readable_typed_text() -> None:
    assert encode_argument(1) == "1"
    assert encode_argument("1") == '"1"'
    assert encode_argument(1.0) == "1.0"
    assert encode_argument(True) == "True"
    assert encode_argument(None) == "None"
    assert encode_argument(b"1") == "b'1'"
    assert encode_argument((1,)) == "(1,)"
    assert encode_argument([1, "a"]) == '[1,"a"]'
    assert encode_argument({"b": 1, "a": [2]}) == '{"a":[2],"b":1}'
    assert encode_argument({3, 1, 2}) == "{1,2,3}"
    assert encode_argument(frozenset({"x"})) == 'frozenset({"x"})'
    assert encode_argument(Color.RED) == f"{__name__}.Color.RED"
    assert encode_argument(Level.LOW) == f"{__name__}.Level.LOW"  # not the int 1
    assert encode_argument(Point(1, 2)) == f"{__name__}.Point((1,2))"  # not the tuple
    assert encode_argument(Account("A-1")) == f'{__name__}.Account("A-1")'
    assert encode_argument(Color) == f"type({__name__}.Color)"
    assert encode_argument(Decimal("1.10")) == "Decimal(1.10)"
    u = uuid.UUID(int=1)
    assert encode_argument(u) == f"UUID({u.hex})"
    assert encode_argument(dt.date(2026, 1, 2)) == "date(2026-01-02)"
    when = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.timezone.utc)
    assert encode_argument(when) == "datetime(2026-01-02T03:04:00+00:00)"
    assert encode_argument(dt.timedelta(days=1, seconds=2)) == "timedelta(1,2,0)"
    assert encode_argument('café\n"') == '"caf\\u00e9\\n\\""'  # JSON-quoted, ASCII


def test_values_that_compare_equal_but_differ_in_type_give_different_keys() -> None:
    same_in_python = [1, 1.0, True, Decimal(1), Level.LOW]
    assert len({encode_argument(v) for v in same_in_python}) == len(same_in_python)
    assert encode_argument((1, 2)) != encode_argument([1, 2]) != encode_argument(Point(1, 2))
    assert encode_argument(set()) != encode_argument({}) != encode_argument(frozenset())


def test_unkeyable_values_name_what_is_wrong() -> None:
    with pytest.raises(df.InvalidKeyError, match="object is not keyable"):
        encode_argument(object())
    nested: list[Any] = [1]
    for _ in range(40):
        nested = [nested]
    with pytest.raises(df.InvalidKeyError, match="nested deeper"):
        encode_argument(nested)

    class Bad:
        def __dataferry_key__(self) -> int:
            return 1

    with pytest.raises(df.InvalidKeyError, match="must return a str"):
        encode_argument(Bad())


def test_long_arguments_are_replaced_by_a_digest() -> None:
    short = key_of(one, "x" * 10)
    assert short.endswith(':"xxxxxxxxxx"')
    long = key_of(one, "x" * 10_000)
    assert long == f"{__name__}.one:#" + long.rsplit("#", 1)[1]
    assert len(long) < MAX_READABLE_KEY
    assert long != key_of(one, "x" * 10_001)
    # Exactly at the limit the arguments stay readable; one character more, a digest.
    head = len(f"{__name__}.one:")
    room = MAX_READABLE_KEY - head - 2  # the quotes of a str
    assert key_of(one, "y" * room).endswith('y"')
    assert "#" in key_of(one, "y" * (room + 1))


SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from tests.test_decorator_keys import SAMPLES, key_of, one
for value in SAMPLES:
    print(key_of(one, value))
"""

SAMPLES: list[Any] = [
    {"b", "a", "c", "d"},
    frozenset({"x", "y", 1}),
    {"z": 1, "y": {2, 3}, "x": [Color.BLUE]},
    ("t", 1.5, None),
    "s" * 1000,
]


def test_keys_are_the_same_in_every_process() -> None:
    # Sets and dicts of str are ordered by hash() in memory, which changes per process:
    # keys must not depend on it.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    mine = [key_of(one, value) for value in SAMPLES]
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(root=root)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert out.stdout.splitlines() == mine


# -- every distinct value, a distinct key --------------------------------------------------------

atoms = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.decimals(allow_nan=False, places=2)
    | st.sampled_from(list(Color))
    | st.dates()
)
values = st.recursive(
    atoms,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=4)
        | st.frozensets(st.integers() | st.text(max_size=4), max_size=4)
    ),
    max_leaves=12,
)


def normal(value: Any) -> Any:
    """What should decide a key: the type and the value (floats by repr: -0.0 is not 0.0)."""
    cls = type(value)
    if cls in (list, tuple):
        return (cls.__name__, tuple(normal(v) for v in value))
    if cls is dict:
        return ("dict", frozenset((normal(k), normal(v)) for k, v in value.items()))
    if cls is frozenset:
        return ("frozenset", frozenset(normal(v) for v in value))
    if cls is float:
        return ("float", repr(value))
    if cls is Decimal:
        return ("Decimal", str(value))
    return (cls.__name__, value)


@settings(max_examples=400)
@given(values, values)
def test_two_values_share_a_key_exactly_when_they_are_the_same(a: Any, b: Any) -> None:
    assert (encode_argument(a) == encode_argument(b)) == (normal(a) == normal(b))
    assert encode_argument(a) == encode_argument(a)
