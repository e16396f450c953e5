"""Typed decoding never depends silently on installed extras.

With msgspec and pydantic blocked (as if not installed), plain builtins still decode, checked;
any other type raises ConfigurationError naming what to install, at the call that asks for the
type, whatever the stored bytes: never a ``str`` for a ``datetime`` or a half-built dataclass.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from dataferry import Codec, ConfigurationError, MsgpackSerializer
from dataferry._codec import DecodeError


def run_without(blocked: list[str], body: str) -> dict[str, Any]:
    """Run ``body`` in a fresh interpreter where importing ``blocked`` fails; return its JSON."""
    script = "import sys\n"
    script += "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)
    script += textwrap.dedent(body)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


PRELUDE = """
import dataclasses, datetime as dt, json, typing, uuid
from decimal import Decimal
from typing import Any, Optional
import dataferry
from dataferry import Codec, ConfigurationError, MsgpackSerializer
from dataferry._codec import DecodeError

@dataclasses.dataclass
class Address:
    city: str

@dataclasses.dataclass
class User:
    name: str
    joined: dt.datetime
    address: Address

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
KEY = "app:k:k"
out = {}

def enc(codec, value):
    return codec.encode(value, key=KEY, created_at=0.0, logical_expiry=1.0)

def back(codec, value, tp):
    return codec.decode(enc(codec, value), key=KEY, type=tp).value
"""

NO_EXTRAS = (
    PRELUDE
    + """
assert "msgspec" not in sys.modules or sys.modules["msgspec"] is None
codecs = {"json": Codec(), "msgpack": Codec(serializer=MsgpackSerializer())}
for fmt, codec in codecs.items():
    builtins = [
        (7, int), ("s", str), (1.5, float), (True, bool), (None, None), (None, type(None)),
        ([1, "a"], list), ({"a": 1}, dict), ({"a": [1]}, Any), ({"a": 1}, object),
        ([1, 2], list[int]), ({"a": 1.5}, dict[str, float]), (None, Optional[int]),
        (3, int | None), ([1, 2], tuple[int, ...]), ([1, "a"], tuple[int, str]),
        ([[1], [2, 3]], list[list[int]]),
    ]
    out[fmt + ":builtins"] = [
        [repr(tp), back(codec, value, tp) == (tuple(value) if "tuple" in repr(tp) else value)]
        for value, tp in builtins
    ]
    out[fmt + ":float_from_int"] = repr(back(codec, 2, float))
    mismatches = []
    for value, tp in [("7", int), (1, str), (True, int), (1.5, int), ([1, "x"], list[int]),
                      ({"a": "b"}, dict[str, int]), (1, type(None)), ([1, 2, 3], tuple[int, str])]:
        try:
            codec.decode(enc(codec, value), key=KEY, type=tp)
            mismatches.append([repr(tp), "decoded"])
        except DecodeError:
            mismatches.append([repr(tp), "miss"])
    out[fmt + ":mismatches"] = mismatches
    refused = {}
    for tp in (dt.datetime, dt.date, uuid.UUID, Decimal, User, Address, list[User], bytes,
               Optional[dt.datetime], int | str):
        try:
            codec.check_type(tp)
            refused[repr(tp)] = "accepted"
        except ConfigurationError as exc:
            refused[repr(tp)] = str(exc)
    out[fmt + ":refused"] = refused
    # At the call that asks for the type, whatever the bytes: even garbage, even a hit.
    for data in (b"garbage", enc(codec, NOW), enc(codec, {"name": "a"})):
        try:
            codec.decode(data, key=KEY, type=dt.datetime)
            out.setdefault(fmt + ":decode", []).append("returned")
        except ConfigurationError:
            out.setdefault(fmt + ":decode", []).append("ConfigurationError")
        except DecodeError:
            out.setdefault(fmt + ":decode", []).append("DecodeError")
    try:
        codec.serializer.loads(codec.serializer.dumps(NOW), dt.datetime)
        out[fmt + ":serializer"] = "returned"
    except ConfigurationError:
        out[fmt + ":serializer"] = "ConfigurationError"
print(json.dumps(out))
"""
)


@pytest.fixture(scope="module")
def no_extras() -> dict[str, Any]:
    return run_without(["msgspec", "pydantic"], NO_EXTRAS)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_plain_builtins_decode_without_any_extra(no_extras: dict[str, Any], fmt: str) -> None:
    results = no_extras[f"{fmt}:builtins"]
    assert len(results) == 17
    assert all(ok for _, ok in results), results
    assert no_extras[f"{fmt}:float_from_int"] == "2.0"  # ints widen to float, like msgspec


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_builtins_that_dont_fit_are_misses_without_any_extra(
    no_extras: dict[str, Any], fmt: str
) -> None:
    assert {outcome for _, outcome in no_extras[f"{fmt}:mismatches"]} == {"miss"}


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_other_types_say_what_to_install(no_extras: dict[str, Any], fmt: str) -> None:
    refused = no_extras[f"{fmt}:refused"]
    assert len(refused) == 10
    for tp, message in refused.items():
        assert "pip install 'dataferry[msgspec]'" in message, (tp, message)
        assert "needs msgspec" in message
    assert "decoding into datetime needs msgspec" in refused["<class 'datetime.datetime'>"]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_the_error_comes_from_the_call_that_asks_for_the_type(
    no_extras: dict[str, Any], fmt: str
) -> None:
    # Whatever the bytes (garbage, a datetime, another value): never a str, never a miss.
    assert no_extras[f"{fmt}:decode"] == ["ConfigurationError"] * 3
    assert no_extras[f"{fmt}:serializer"] == "ConfigurationError"


def test_without_msgspec_pydantic_converts_correctly() -> None:
    result = run_without(
        ["msgspec"],
        PRELUDE
        + """
user = User("ada", NOW, Address("Oslo"))
out = {}
for fmt, codec in {"json": Codec(), "msgpack": Codec(serializer=MsgpackSerializer())}.items():
    out[fmt] = [
        back(codec, NOW, dt.datetime) == NOW,
        back(codec, user, User) == user,
        back(codec, [user], list[User]) == [user],
        back(codec, uuid.UUID(int=5), uuid.UUID) == uuid.UUID(int=5),
    ]
print(json.dumps(out))
""",
    )
    assert result == {"json": [True] * 4, "msgpack": [True] * 4}


def test_without_pydantic_msgspec_converts_correctly() -> None:
    result = run_without(
        ["pydantic"],
        PRELUDE
        + """
user = User("ada", NOW, Address("Oslo"))
codec = Codec()
print(json.dumps({"ok": [back(codec, NOW, dt.datetime) == NOW, back(codec, user, User) == user]}))
""",
    )
    assert result == {"ok": [True, True]}


class NotAType:
    """Neither msgspec nor pydantic can decode into this (no fields, no schema)."""

    def __init__(self, secret: object) -> None:
        self.secret = secret


def test_a_type_no_library_supports_is_a_configuration_error_even_with_both() -> None:
    for codec in (Codec(), Codec(serializer=MsgpackSerializer())):
        with pytest.raises(ConfigurationError, match="neither msgspec nor pydantic"):
            codec.check_type(NotAType)
        with pytest.raises(ConfigurationError, match="neither msgspec nor pydantic"):
            codec.decode(b"not even an envelope", key="k", type=NotAType)
        with pytest.raises(DecodeError):  # without a type, bad bytes are just a miss
            codec.decode(b"not even an envelope", key="k")
    codec = Codec()
    codec.check_type(None)
    codec.check_type(int)
