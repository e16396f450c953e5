"""Readers of last resort: DataFerry's own serializers and compressors, by wire id.

A codec reads an entry with the serializer and compressor the envelope names, even if it is
configured with others, so entries written by other nodes (or with per-entry options) decode.
Instances are built on first use; an optional library that is missing shows up as a decode
error for the entries that need it. Pickle is deliberately absent: it is read only by a codec
that was explicitly given a :class:`PickleSerializer`.
"""

from __future__ import annotations

from collections.abc import Callable

from dataferry._codec._compressors import GzipCompressor, Lz4Compressor, ZstdCompressor
from dataferry._codec._protocols import Compressor, Serializer
from dataferry._codec._serializers import JsonSerializer, MsgpackSerializer

__all__ = ["default_compressor", "default_serializer"]

_SERIALIZERS: dict[int, Callable[[], Serializer]] = {
    JsonSerializer.id: JsonSerializer,
    MsgpackSerializer.id: MsgpackSerializer,
}
_COMPRESSORS: dict[int, Callable[[], Compressor]] = {
    ZstdCompressor.id: ZstdCompressor,
    GzipCompressor.id: GzipCompressor,
    Lz4Compressor.id: Lz4Compressor,
}
# Built instances. Filled lazily without a lock: two threads may both build one, which is
# harmless (they are stateless or thread-local), and the dict write is atomic.
_serializers: dict[int, Serializer] = {}
_compressors: dict[int, Compressor] = {}


def default_serializer(serializer_id: int) -> Serializer | None:
    """Return DataFerry's serializer for ``serializer_id`` (never pickle), or None if unknown.

    Raises ConfigurationError if its optional library is not installed.
    """
    ser = _serializers.get(serializer_id)
    if ser is None:
        factory = _SERIALIZERS.get(serializer_id)
        if factory is None:
            return None
        ser = _serializers[serializer_id] = factory()
    return ser


def default_compressor(compressor_id: int) -> Compressor | None:
    """Return DataFerry's compressor for ``compressor_id``, or None if unknown.

    Raises ConfigurationError if its optional library is not installed.
    """
    comp = _compressors.get(compressor_id)
    if comp is None:
        factory = _COMPRESSORS.get(compressor_id)
        if factory is None:
            return None
        comp = _compressors[compressor_id] = factory()
    return comp
