"""No silent value changes through L2: JSON refuses what it can't bring back, and any serializer
failure is a SerializationError at the write, chained to what the serializer raised."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import pickle
import sys
import uuid
from decimal import Decimal
from typing import Any

import msgspec
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry import (
    AesGcmEncryptor,
    Codec,
    JsonSerializer,
    Keyring,
    MsgpackSerializer,
    PickleSerializer,
    SerializationError,
)

KEY = "app:k:k"
NAN, INF = math.nan, math.inf


def enc(codec: Codec, value: Any) -> bytes:
    return codec.encode(value, key=KEY, created_at=0.0, logical_expiry=1.0)


def roundtrip(codec: Codec, value: Any, type: Any = None) -> Any:
    return codec.decode(enc(codec, value), key=KEY, type=type).value


class Weird(float):
    """A float subclass (orjson doesn't encode them)."""


class Level(enum.Enum):
    BAD = NAN


@dataclasses.dataclass
class Point:
    x: float
    y: float | None = None


@dataclasses.dataclass
class Track:
    points: list[Point]


class Reading(pydantic.BaseModel):
    value: float
    note: str | None = None


class Sample(msgspec.Struct):
    value: float
    extra: dict[int, float] = {}


# == NaN and infinities ==========================================================================

NON_FINITE = [
    NAN,
    INF,
    -INF,
    [1.0, NAN],
    (None, INF),
    {"a": {"b": [None, {"c": -INF}]}},
    {"x": None, "deep": [[[[[[NAN]]]]]]},
    Point(1.0, NAN),
    Track([Point(0.0), Point(1.0, INF)]),
    Reading(value=NAN),
    Reading(value=INF, note=None),
    Sample(NAN),
    Sample(1.0, {1: NAN}),
    Level.BAD,
]


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_nan_and_infinities_are_refused_anywhere(value: Any) -> None:
    # orjson would store them as null: the value would come back as None, silently.
    with pytest.raises(SerializationError, match="NaN and infinite floats"):
        enc(Codec(), value)


def test_float_subclasses_are_refused_whatever_their_value() -> None:
    for value in (Weird(1.5), Weird("nan"), {"w": [Weird("inf")], "n": None}):
        with pytest.raises(SerializationError):
            enc(Codec(), value)


def test_values_with_none_and_finite_floats_are_stored_exactly() -> None:
    codec = Codec()
    value = {"a": None, "b": [1.5, None, -0.0, 1e308], "c": "null", "nullable": True}
    assert roundtrip(codec, value) == value
    assert roundtrip(codec, Point(1.0), type=Point) == Point(1.0)
    assert roundtrip(codec, Reading(value=2.5), type=Reading) == Reading(value=2.5)
    assert roundtrip(codec, Sample(1.0, {1: 2.0}), type=Sample) == Sample(1.0, {1: 2.0})


def test_msgpack_and_pickle_carry_nan() -> None:
    for codec in (
        Codec(serializer=MsgpackSerializer()),
        Codec(serializer=PickleSerializer(), signing_key=b"k" * 32),
    ):
        back = roundtrip(codec, [NAN, INF])
        assert math.isnan(back[0])
        assert back[1] == INF


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()  # NaN and infinities included
    | st.text(max_size=8)
)
json_trees = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=30,
)


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(v) for v in value)
    return False


def _as_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    return value


@settings(max_examples=300)
@given(value=json_trees)
def test_json_either_refuses_a_value_or_brings_it_back_exactly(value: Any) -> None:
    codec = Codec()
    try:
        data = enc(codec, value)
    except SerializationError:
        assert _has_non_finite(value)
        return
    assert not _has_non_finite(value)
    assert codec.decode(data, key=KEY).value == _as_json(value)  # tuples become lists
    assert codec.decode(data, key=KEY, type=Any).value == _as_json(value)


# == dict keys ===================================================================================


@pytest.mark.parametrize(
    "value",
    [
        {1: "a"},
        {1: "a", "1": "b"},  # would collide into one key
        {True: 1},
        {None: 1},
        {1.5: 1},
        {(1, 2): 1},
        {uuid.UUID(int=1): 1},
        {dt.date(2026, 1, 1): 1},
        {"ok": [{"nested": {2: "x"}}]},
        Point(1.0, None).__dict__ | {3: 1},
    ],
    ids=repr,
)
def test_non_string_dict_keys_are_refused(value: Any) -> None:
    with pytest.raises(SerializationError, match="dict keys must be str") as info:
        enc(Codec(), value)
    assert "MsgpackSerializer" in str(info.value)  # the way out


def test_msgpack_keeps_non_string_keys() -> None:
    codec = Codec(serializer=MsgpackSerializer())
    assert roundtrip(codec, {1: "a", "1": "b"}) == {1: "a", "1": "b"}


def test_typed_fields_of_models_and_structs_may_have_int_keys() -> None:
    # Their keys can't collide (one type) and type= brings them back.
    class Scores(pydantic.BaseModel):
        by_id: dict[int, float]

    codec = Codec()
    assert roundtrip(codec, Scores(by_id={1: 1.5}), type=Scores) == Scores(by_id={1: 1.5})
    assert roundtrip(codec, Sample(1.0, {7: 2.0}))["extra"] == {"7": 2.0}


# == the documented mapping ======================================================================


def test_the_json_mapping_is_as_documented() -> None:
    codec = Codec()
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert roundtrip(codec, (1, 2)) == [1, 2]
    assert roundtrip(codec, (1, "a"), type=tuple[int, str]) == (1, "a")
    assert roundtrip(codec, when) == "2026-01-02T03:04:05+00:00"
    assert roundtrip(codec, when, type=dt.datetime) == when
    assert roundtrip(codec, dt.date(2026, 1, 2), type=dt.date) == dt.date(2026, 1, 2)
    assert roundtrip(codec, Decimal("0.10")) == "0.10"
    assert roundtrip(codec, Decimal("0.10"), type=Decimal) == Decimal("0.10")
    assert roundtrip(codec, b"\x00", type=bytes) == b"\x00"
    assert roundtrip(codec, 2**64 - 1) == 2**64 - 1
    for refused in ({1, 2}, frozenset({1}), 2**64, -(2**63) - 1, "\ud800", object()):
        with pytest.raises(SerializationError):
            enc(codec, refused)
    doc = JsonSerializer.__doc__ or ""
    for words in ("tuple", "datetime", "set", "NaN", "keys", "type="):
        assert words in doc


# == any serializer failure is a SerializationError ==============================================


class Boom(Exception):
    pass


class RaisingSerializer:
    """A user serializer with a bug: raises whatever it is given."""

    id = 210

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def dumps(self, value: Any, /) -> bytes:
        raise self.exc

    def loads(self, data: bytes, /, type: Any = None) -> Any:
        return data


class RecursingSerializer:
    """A user serializer that recurses without end on cyclic data."""

    id = 211

    def dumps(self, value: Any, /) -> bytes:
        def walk(v: Any) -> str:
            return "[" + ",".join(walk(x) for x in v) + "]" if isinstance(v, list) else repr(v)

        return walk(value).encode()

    def loads(self, data: bytes, /, type: Any = None) -> Any:
        return data


@pytest.mark.parametrize(
    "exc",
    [Boom("no"), ValueError("bad"), KeyError("k"), RuntimeError("x"), AttributeError("a")],
    ids=lambda e: type(e).__name__,
)
def test_whatever_a_serializer_raises_is_a_serialization_error(exc: Exception) -> None:
    codec = Codec(serializer=RaisingSerializer(exc))
    with pytest.raises(SerializationError) as info:
        enc(codec, {"v": 1})
    assert info.value.__cause__ is exc
    assert type(exc).__name__ in str(info.value)
    assert isinstance(info.value, TypeError)  # SerializationError's stdlib base


def test_a_serialization_error_from_a_serializer_is_passed_on_as_it_is() -> None:
    exc = SerializationError("mine")
    with pytest.raises(SerializationError) as info:
        enc(Codec(serializer=RaisingSerializer(exc)), 1)
    assert info.value is exc


def cyclic() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def deep(n: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(n):
        value = [value]
    return value


CODECS = {
    "json": Codec(),
    "msgpack": Codec(serializer=MsgpackSerializer()),
    "pickle-signed": Codec(serializer=PickleSerializer(), signing_key=b"k" * 32),
    "pickle-aes": Codec(
        serializer=PickleSerializer(), encryptor=AesGcmEncryptor(Keyring({"k": b"k" * 32}))
    ),
    "user": Codec(serializer=RecursingSerializer()),
}


@pytest.mark.parametrize(
    ("name", "value"),
    [(name, deep(100_000)) for name in CODECS]
    + [(name, cyclic()) for name in CODECS if not name.startswith("pickle")],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_values_too_deep_or_cyclic_are_serialization_errors(name: str, value: Any) -> None:
    codec = CODECS[name]
    limit = sys.getrecursionlimit()
    with pytest.raises(SerializationError) as info:
        enc(codec, value)
    assert info.value.__cause__ is not None  # RecursionError, orjson's or msgpack's own
    assert sys.getrecursionlimit() == limit
    # The codec is still usable afterwards.
    assert roundtrip(codec, [1]) in ([1], b"[1]")


def test_pickle_keeps_cycles() -> None:
    back = roundtrip(CODECS["pickle-signed"], cyclic())
    assert back[0] is back


def test_pickle_serializer_wraps_its_own_errors_too() -> None:
    class Unpicklable:
        def __reduce__(self) -> Any:
            raise Boom("nope")

    with pytest.raises(SerializationError, match="Boom") as info:
        PickleSerializer().dumps(Unpicklable())
    assert isinstance(info.value.__cause__, Boom)
    with pytest.raises(SerializationError):
        PickleSerializer().dumps(lambda: 1)
    assert pickle.loads(PickleSerializer().dumps([1])) == [1]
