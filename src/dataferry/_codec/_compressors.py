"""Compressors: zstd (the default), gzip and lz4, each with a wire id and a size threshold.

Optional libraries are imported when a compressor is constructed, so ``import dataferry`` never
needs them. Decompression is bounded: the :class:`~dataferry.Codec` passes its
``max_value_bytes`` as ``max_size``, and a payload that would inflate past it is refused *before*
the output is allocated (zstd and lz4 frames are refused on the size their header declares, and
must declare one, as DataFerry's own always do; gzip is refused on the size its trailer states,
and stops inflating as soon as the output passes it). So a forged "compression bomb" entry is a
miss that costs at most what it declares, itself at most the limit.
"""

from __future__ import annotations

import threading
import zlib
from typing import Any

from dataferry._errors import ConfigurationError

__all__ = [
    "DEFAULT_MIN_SIZE",
    "DecompressionError",
    "GzipCompressor",
    "Lz4Compressor",
    "ZstdCompressor",
]

#: Payloads smaller than this are stored as they are (compressing them rarely pays).
DEFAULT_MIN_SIZE = 1024
# gzip and lz4 inflate in pieces of this size, so a payload refused for passing its declared
# size never costs more than that size plus one piece.
_CHUNK = 256 * 1024


class DecompressionError(ValueError):
    """A payload DataFerry's compressors refuse: over the limit, truncated, or malformed.

    Messages never hold data, so the codec passes them on (a library's own errors may).
    """


def _check_min_size(min_size: int) -> None:
    if not isinstance(min_size, int) or isinstance(min_size, bool) or min_size < 0:
        raise ConfigurationError("min_size must be an int >= 0")


def _import(module: str, extra: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise ConfigurationError(
            f"this compressor needs {module}: pip install 'dataferry[{extra}]'"
        ) from exc


# What zstd writes for an empty input at every level (single segment, size 0, one empty block).
_ZSTD_EMPTY_FRAME = bytes.fromhex("28b52ffd2000010000")


class ZstdCompressor:
    """Zstandard (``zstandard`` package, ``zstd`` extra): the default compressor.

    Frames are written with their content size, and only such frames are decompressed: the
    declared size is checked against ``max_size`` before anything is allocated, and zstd fails
    if the data inflates past what the frame declared.

    Args:
        level: Compression level (1-22, negative for faster; default 3).
        min_size: Payloads smaller than this many bytes are stored uncompressed.

    """

    id = 1
    __slots__ = ("_local", "_zstd", "level", "min_size")

    def __init__(self, *, level: int = 3, min_size: int = DEFAULT_MIN_SIZE) -> None:
        _check_min_size(min_size)
        self._zstd = _import("zstandard", "zstd")
        self.level = level
        self.min_size = min_size
        # zstd contexts are not thread-safe; one pair per thread reuses their buffers.
        self._local = threading.local()

    def compress(self, data: bytes, /) -> bytes:
        """Return ``data`` as one zstd frame (with its content size)."""
        local = self._local
        try:
            cctx = local.c
        except AttributeError:
            cctx = local.c = self._zstd.ZstdCompressor(level=self.level, write_content_size=True)
        return cctx.compress(data)  # type: ignore[no-any-return]

    def decompress(self, data: bytes, max_size: int, /) -> bytes:
        """Return the content of the zstd frame ``data``; raise if over ``max_size`` bytes."""
        size = self._zstd.frame_content_size(data)  # parses only the frame header
        if size < 0:
            raise DecompressionError(
                "zstd frame without a content size (DataFerry always writes one)"
            )
        if size > max_size:
            raise DecompressionError("zstd frame larger than the decompression limit")
        if size == 0:
            # zstd returns b"" for a declared size of 0 without reading on: check the frame.
            if data != _ZSTD_EMPTY_FRAME:
                raise DecompressionError("malformed empty zstd frame")
            return b""
        local = self._local
        try:
            dctx = local.d
        except AttributeError:
            dctx = local.d = self._zstd.ZstdDecompressor()
        # With a content size, zstd allocates exactly that and fails on any overrun.
        out = dctx.decompress(data, max_output_size=size, allow_extra_data=False)
        if len(out) != size:  # pragma: no cover - zstd enforces the declared size itself
            raise DecompressionError("zstd frame content size mismatch")
        return out  # type: ignore[no-any-return]

    def __copy__(self) -> ZstdCompressor:
        return self  # configuration is immutable; per-thread state is rebuilt on demand

    def __deepcopy__(self, memo: dict[int, Any]) -> ZstdCompressor:
        return self

    def __repr__(self) -> str:
        return f"ZstdCompressor(level={self.level}, min_size={self.min_size})"


class GzipCompressor:
    """Gzip (stdlib ``zlib``, gzip framing): no extra needed, slower and larger than zstd.

    Args:
        level: Compression level 1-9 (default 6).
        min_size: Payloads smaller than this many bytes are stored uncompressed.

    """

    id = 2
    __slots__ = ("level", "min_size")

    def __init__(self, *, level: int = 6, min_size: int = DEFAULT_MIN_SIZE) -> None:
        _check_min_size(min_size)
        if level not in range(10):
            raise ConfigurationError("gzip level must be 0-9")
        self.level = level
        self.min_size = min_size

    def compress(self, data: bytes, /) -> bytes:
        """Return ``data`` as a gzip member (mtime 0, so output is deterministic)."""
        obj = zlib.compressobj(self.level, zlib.DEFLATED, 31)  # wbits 31 = gzip framing
        return obj.compress(data) + obj.flush()

    def decompress(self, data: bytes, max_size: int, /) -> bytes:
        """Return the content of the gzip member ``data``; raise if corrupt or over the limit."""
        # The gzip trailer states the size (mod 2**32, exact for anything a Redis string can
        # hold): a bomb that says so is refused unread, and one that lies is caught as soon as
        # the output passes what it declared. Inflating in chunks keeps a refused payload from
        # ever costing more than the declared size, itself at most max_size.
        if len(data) < 18:
            raise DecompressionError("truncated gzip data")
        declared = int.from_bytes(data[-4:], "little")
        if declared > max_size:
            raise DecompressionError("gzip payload larger than the decompression limit")
        obj = zlib.decompressobj(31)
        parts: list[bytes] = []
        total = 0
        pending = data
        while True:
            chunk = obj.decompress(pending, _CHUNK)
            total += len(chunk)
            if total > declared:
                raise DecompressionError("gzip payload larger than its trailer states")
            parts.append(chunk)
            pending = obj.unconsumed_tail
            if obj.eof or not (pending or chunk):
                break
        if not obj.eof or obj.unused_data or total != declared:
            raise DecompressionError("truncated or trailing gzip data")
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def __repr__(self) -> str:
        return f"GzipCompressor(level={self.level}, min_size={self.min_size})"


class Lz4Compressor:
    """LZ4 frames (``lz4`` package, ``lz4`` extra): the fastest, with the lowest ratio.

    Frames are written with their content size; a frame is decompressed into at most the size
    it declares (checked against ``max_size`` first), so a frame that lies is refused, and one
    without a size too.

    Args:
        level: Compression level (0 = fast default; 3-16 = high compression).
        min_size: Payloads smaller than this many bytes are stored uncompressed.

    """

    id = 3
    __slots__ = ("_frame", "level", "min_size")

    def __init__(self, *, level: int = 0, min_size: int = DEFAULT_MIN_SIZE) -> None:
        _check_min_size(min_size)
        self._frame = _import("lz4.frame", "lz4")
        self.level = level
        self.min_size = min_size

    def compress(self, data: bytes, /) -> bytes:
        """Return ``data`` as one LZ4 frame (with its content size)."""
        return self._frame.compress(  # type: ignore[no-any-return]
            data, compression_level=self.level, store_size=True
        )

    def decompress(self, data: bytes, max_size: int, /) -> bytes:
        """Return the content of the LZ4 frame ``data``; raise if corrupt or over the limit."""
        frame = self._frame
        # 0 means "not stored" (or an empty payload): then nothing may come out.
        size = frame.get_frame_info(data)["content_size"]
        if size > max_size:
            raise DecompressionError("lz4 frame larger than the decompression limit")
        dec = frame.LZ4FrameDecompressor()
        parts: list[bytes] = []
        total = 0
        pending = data
        while True:
            chunk = dec.decompress(pending, max_length=_CHUNK)
            pending = b""  # the decompressor keeps what it hasn't used yet
            total += len(chunk)
            if total > size:
                raise DecompressionError("lz4 frame larger than its declared size (or without one)")
            parts.append(chunk)
            if dec.eof or dec.needs_input or not chunk:
                break
        if not dec.eof or total != size:
            raise DecompressionError("truncated lz4 frame")
        if dec.unused_data:
            raise DecompressionError("trailing data after the lz4 frame")
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def __copy__(self) -> Lz4Compressor:
        return self  # configuration is immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Lz4Compressor:
        return self

    def __repr__(self) -> str:
        return f"Lz4Compressor(level={self.level}, min_size={self.min_size})"
