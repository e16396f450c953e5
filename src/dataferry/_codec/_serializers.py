"""Serializers: values to bytes and back. JSON (orjson) is the default; pickle only on request.

Values encode the way a user of these types expects: dataclasses, pydantic models and msgspec
Structs as objects, ``datetime``/``date``/``time`` as ISO 8601, ``UUID`` and ``Decimal`` as
strings (exact), enums as their value. Decoding without a type gives plain JSON-like data;
``loads(data, type=User)`` rebuilds the declared type. What JSON can't carry back even with
``type=`` (NaN, non-string keys, sets) is refused at encode: see :class:`JsonSerializer`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import pickle
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar

import orjson

from dataferry._codec._typed import typed_decoder
from dataferry._errors import ConfigurationError, SerializationError

__all__ = ["JsonSerializer", "MsgpackSerializer", "PickleSerializer"]


def _library_object(obj: Any, *, str_keys: bool) -> Any:
    """Return a builtin form of a pydantic model or msgspec Struct, or ``NotImplemented``.

    ``str_keys``: turn the keys of typed dict fields into strings (for JSON; decoding into the
    model or Struct turns them back, and keys of one typed field can't collide).
    """
    # Only look at libraries already imported: an instance can't exist before its library is.
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(obj, pydantic.BaseModel):
        return obj.model_dump(mode="json")  # keys become strings; NaN stays a float
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and isinstance(obj, msgspec.Struct):
        return msgspec.to_builtins(obj, str_keys=str_keys)
    return NotImplemented


def _json_default(obj: Any) -> Any:
    # orjson calls this only for types it doesn't encode natively.
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(obj).decode("ascii")  # what msgspec and pydantic expect
    converted = _library_object(obj, str_keys=True)
    if converted is not NotImplemented:
        return converted
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


_NOT_FINITE = "NaN and infinite floats have no JSON form (orjson would store null)"
_NON_STR_KEY = "Dict key must be str"
_LEAVES = frozenset({str, int, bool, type(None)})


def _children(obj: Any) -> Any:
    """Return what orjson would encode inside ``obj`` (not a dict, list, tuple or leaf)."""
    if isinstance(obj, float):  # a float subclass
        return (float(obj),)
    if isinstance(obj, dict):
        return obj.values()
    if isinstance(obj, (list, tuple)):
        return obj
    if isinstance(obj, enum.Enum):
        return (obj.value,)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    converted = _library_object(obj, str_keys=True)
    return () if converted is NotImplemented else (converted,)  # datetime, UUID, bytes...


def _has_non_finite_float(value: Any) -> bool:
    """Whether ``value`` holds a NaN or infinite float anywhere orjson would encode it.

    Only called when the JSON holds ``null`` (values holding ``None``): a walk in Python, shaped
    for speed (leaves never touch the stack). Iterative, so no recursion limit to hit, and
    bounded: orjson has just encoded the same tree (at most 255 levels, no cycles).
    """
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        obj = pop()
        cls = type(obj)
        if cls is dict:
            items = obj.values()
        elif cls is list or cls is tuple:
            items = obj
        elif cls is float:
            items = (obj,)
        else:
            items = _children(obj)
        for item in items:
            kind = type(item)
            if kind in _LEAVES:
                continue
            if kind is float:
                if item - item != 0.0:  # NaN - NaN and inf - inf are NaN; x - x is 0.0
                    return True
            else:
                push(item)
    return False


class JsonSerializer:
    """JSON on orjson: the default serializer (wire id 1). Reusable and thread-safe.

    The JSON mapping: what a value is stored as, and what reading it gives back without
    ``type=`` (with ``type=T``, :meth:`loads` rebuilds ``T`` from it):

    * ``dict`` with ``str`` keys, ``list``, ``str``, ``int`` (-2**63 .. 2**64-1), ``bool``,
      finite ``float``, ``None``: themselves;
    * ``tuple``: an array, read back as a ``list`` (``type=tuple[...]`` restores it);
    * ``datetime``, ``date``, ``time``: an ISO 8601 string, read back as ``str`` unless
      ``type=datetime`` (etc.);
    * ``UUID``, ``Decimal`` (exact, not a float), ``bytes`` (base64): a string, read back as
      ``str`` unless ``type=``;
    * ``Enum``: its value; read back as the value unless ``type=TheEnum``;
    * dataclass, pydantic model, msgspec ``Struct``: an object, read back as a ``dict`` unless
      ``type=TheClass`` (typed dict fields of models and Structs may have non-str keys).

    Refused with :class:`~dataferry.SerializationError` at encode, because they would come back
    as something else that ``type=`` can't restore: NaN and infinite floats, anywhere (orjson
    writes them as ``null``); dict keys that are not ``str`` (JSON keys are strings, and
    ``{1: "a", "1": "b"}`` would collide; convert the keys, or use
    :class:`MsgpackSerializer`, which keeps them); ``set``/``frozenset`` (no JSON form; pass
    a sorted list); ints beyond 64 bits; strings with lone surrogates; other objects.

    ``loads(data, type=T)`` decodes into ``T`` (a dataclass, pydantic model, msgspec Struct, or
    a type expression like ``list[User]``); beyond plain builtins this needs msgspec or pydantic
    (``pip install 'dataferry[msgspec]'``), and asking for such a type without them raises
    :class:`~dataferry.ConfigurationError`.

    The NaN check costs a substring search of the output for ``null``, and a walk of the value
    only when it finds one (values holding ``None``).
    """

    id = 1
    __slots__ = ()

    def dumps(self, value: Any, /) -> bytes:
        """Encode ``value`` as JSON bytes; raise SerializationError if it can't be."""
        try:
            out = orjson.dumps(value, default=_json_default)
        except TypeError as exc:
            reason = str(exc)
            if reason.startswith(_NON_STR_KEY):
                reason = (
                    "dict keys must be str (other keys would come back as strings, and 1 "
                    "and '1' would collide): convert them, or use MsgpackSerializer"
                )
            raise SerializationError(
                f"cannot serialize {type(value).__name__} to JSON: {reason}"
            ) from exc
        if b"null" in out and _has_non_finite_float(value):
            raise SerializationError(f"cannot serialize {type(value).__name__}: {_NOT_FINITE}")
        return out

    def loads(self, data: bytes, /, type: Any = None) -> Any:
        """Decode JSON bytes, into ``type`` when given."""
        if type is None:
            return orjson.loads(data)
        return typed_decoder("json", type, orjson.loads)(data)

    def decoder(self, type: Any, /) -> Callable[[bytes], Any]:
        """Return a function decoding JSON bytes into ``type`` (built once per type).

        Raises :class:`~dataferry.ConfigurationError` if ``type`` needs a library that is not
        installed (the message says which).
        """
        return typed_decoder("json", type, orjson.loads)

    def __repr__(self) -> str:
        return "JsonSerializer()"


def _msgpack_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, (dt.datetime, dt.date, dt.time)):
        return obj.isoformat()
    if isinstance(obj, (uuid.UUID, Decimal)):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    converted = _library_object(obj, str_keys=False)
    if converted is not NotImplemented:
        return converted
    raise TypeError(f"can not serialize {type(obj).__name__!r} object")


class MsgpackSerializer:
    """MessagePack (``msgpack`` package, ``msgpack`` extra; wire id 2). Reusable, thread-safe.

    Smaller and faster than JSON for numeric data, and bytes stay bytes. Encodes the same types
    as :class:`JsonSerializer` (datetimes as ISO 8601 strings); non-string dict keys are kept.
    ``loads(data, type=T)`` decodes into ``T`` as :class:`JsonSerializer` does.
    """

    id = 2
    __slots__ = ("_msgpack",)

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError as exc:
            raise ConfigurationError(
                "MsgpackSerializer needs msgpack: pip install 'dataferry[msgpack]'"
            ) from exc
        self._msgpack = msgpack

    def dumps(self, value: Any, /) -> bytes:
        """Encode ``value`` as MessagePack; raise SerializationError if it can't be."""
        try:
            return self._msgpack.packb(  # type: ignore[no-any-return]
                value, default=_msgpack_default, use_bin_type=True
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(
                f"cannot serialize {type(value).__name__} to MessagePack: {exc}"
            ) from exc

    def _unpack(self, data: bytes) -> Any:
        return self._msgpack.unpackb(data, raw=False, strict_map_key=False)

    def loads(self, data: bytes, /, type: Any = None) -> Any:
        """Decode MessagePack bytes, into ``type`` when given."""
        if type is None:
            return self._unpack(data)
        return typed_decoder("msgpack", type, self._unpack)(data)

    def decoder(self, type: Any, /) -> Callable[[bytes], Any]:
        """Return a function decoding MessagePack bytes into ``type`` (built once per type).

        Raises :class:`~dataferry.ConfigurationError` if ``type`` needs a library that is not
        installed (the message says which).
        """
        return typed_decoder("msgpack", type, self._unpack)

    def __copy__(self) -> MsgpackSerializer:
        return self  # stateless

    def __deepcopy__(self, memo: dict[int, Any]) -> MsgpackSerializer:
        return self

    def __repr__(self) -> str:
        return "MsgpackSerializer()"


class PickleSerializer:
    """Pickle (wire id 3): any picklable object, for trusted data only.

    Unpickling attacker-controlled bytes runs attacker code, so a :class:`Codec` accepts this
    serializer only if it also encrypts or signs (``encryptor=`` or ``signing_key=``), and it
    never unpickles an entry that did not authenticate: anyone who can write to Redis but
    doesn't hold the keys gets a miss, not code execution. ``type`` is ignored on decode.

    Args:
        protocol: The pickle protocol (default 5).

    """

    id = 3
    #: Tells :class:`Codec` to unpickle only authenticated (encrypted or signed) entries.
    requires_authentication: ClassVar[bool] = True
    __slots__ = ("protocol",)

    def __init__(self, *, protocol: int = 5) -> None:
        if protocol not in range(2, pickle.HIGHEST_PROTOCOL + 1):
            raise ConfigurationError(f"pickle protocol must be 2-{pickle.HIGHEST_PROTOCOL}")
        self.protocol = protocol

    def dumps(self, value: Any, /) -> bytes:
        """Pickle ``value``; raise SerializationError if it can't be."""
        try:
            return pickle.dumps(value, protocol=self.protocol)
        except Exception as exc:  # PicklingError, TypeError, RecursionError, a raising __reduce__
            raise SerializationError(
                f"cannot pickle {type(value).__name__}: {type(exc).__name__}: {exc}"
            ) from exc

    def loads(self, data: bytes, /, type: Any = None) -> Any:
        """Unpickle ``data`` (only ever called by a Codec on authenticated entries)."""
        return pickle.loads(data)  # authenticated entries only (see above)

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self.protocol})"
