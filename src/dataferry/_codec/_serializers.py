"""Serializers: values to bytes and back. JSON (orjson) is the default; pickle only on request.

Values encode the way a user of these types expects: dataclasses, pydantic models and msgspec
Structs as objects, ``datetime``/``date``/``time`` as ISO 8601, ``UUID`` and ``Decimal`` as
strings (exact), enums as their value. Sets are refused (they would come back as lists, a
silent change of type); tuples become lists, as JSON has no tuple. Decoding without a type
gives plain JSON-like data; ``loads(data, type=User)`` rebuilds the declared type.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import pickle
import sys
import uuid
from decimal import Decimal
from typing import Any, ClassVar

import orjson

from dataferry._codec._typed import typed_decoder
from dataferry._errors import ConfigurationError, SerializationError

__all__ = ["JsonSerializer", "MsgpackSerializer", "PickleSerializer"]


def _library_object(obj: Any) -> Any:
    """Return a builtin form of a pydantic model or msgspec Struct, or ``NotImplemented``."""
    # Only look at libraries already imported: an instance can't exist before its library is.
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(obj, pydantic.BaseModel):
        return obj.model_dump(mode="json")
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and isinstance(obj, msgspec.Struct):
        return msgspec.to_builtins(obj)
    return NotImplemented


def _json_default(obj: Any) -> Any:
    # orjson calls this only for types it doesn't encode natively.
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(obj).decode("ascii")  # what msgspec and pydantic expect
    converted = _library_object(obj)
    if converted is not NotImplemented:
        return converted
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS


class JsonSerializer:
    """JSON on orjson: the default serializer (wire id 1). Reusable and thread-safe.

    Encodes dicts, lists, tuples (as lists), str, int (64-bit), float, bool, None,
    dataclasses, pydantic models, msgspec Structs, ``datetime``/``date``/``time``, ``UUID``,
    ``Decimal`` (as a string), enums and bytes (as base64); not sets. Non-string dict
    keys become strings. ``loads(data, type=T)`` decodes into ``T`` (a dataclass, pydantic
    model, msgspec Struct, or a type expression like ``list[User]``), which needs msgspec or
    pydantic installed.
    """

    id = 1
    __slots__ = ()

    def dumps(self, value: Any, /) -> bytes:
        """Encode ``value`` as JSON bytes; raise SerializationError if it can't be."""
        try:
            return orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS)
        except TypeError as exc:
            raise SerializationError(
                f"cannot serialize {type(value).__name__} to JSON: {exc}"
            ) from exc

    def loads(self, data: bytes, /, type: Any = None) -> Any:
        """Decode JSON bytes, into ``type`` when given."""
        if type is None:
            return orjson.loads(data)
        return typed_decoder("json", type, orjson.loads)(data)

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
    converted = _library_object(obj)
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
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise SerializationError(f"cannot pickle {type(value).__name__}: {exc}") from exc

    def loads(self, data: bytes, /, type: Any = None) -> Any:
        """Unpickle ``data`` (only ever called by a Codec on authenticated entries)."""
        return pickle.loads(data)  # authenticated entries only (see above)

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self.protocol})"
