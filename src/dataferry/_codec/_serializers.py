"""Serializers: values to bytes and back. JSON (orjson) is the default; no pickle by default."""

from __future__ import annotations

from typing import Any

import orjson

from dataferry._errors import SerializationError

__all__ = ["JsonSerializer"]


class JsonSerializer:
    """JSON on orjson: dicts, lists, str, numbers, bool, None, dataclasses, datetime, UUID.

    Reusable and thread-safe. Tuples come back as lists (JSON has no tuple).
    """

    id = 1
    __slots__ = ()

    def dumps(self, value: Any, /) -> bytes:
        """Encode ``value`` as JSON bytes; raise SerializationError if it can't be."""
        try:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        except TypeError as exc:
            raise SerializationError(f"cannot serialize {type(value).__name__} to JSON: {exc}") from exc

    def loads(self, data: bytes, /, type: Any = None) -> Any:
        """Decode JSON bytes."""
        return orjson.loads(data)

    def __repr__(self) -> str:
        return "JsonSerializer()"
