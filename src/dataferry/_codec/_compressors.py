"""Compressors: zstd (the default), gzip and lz4, each with a wire id and a size threshold.

Optional libraries are imported when a compressor is constructed, so ``import dataferry`` never
needs them. Decompression is bounded by ``max_output_size``: an entry claiming to inflate past
it is refused (a decode error, i.e. a miss), so a forged entry can't exhaust memory.
"""

from __future__ import annotations

import threading
import zlib
from typing import Any

from dataferry._errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_OUTPUT_SIZE",
    "DEFAULT_MIN_SIZE",
    "GzipCompressor",
    "Lz4Compressor",
    "ZstdCompressor",
]

#: Payloads smaller than this are stored as they are (compressing them rarely pays).
DEFAULT_MIN_SIZE = 1024
#: Decompressed payloads larger than this are refused (Redis strings top out at 512 MiB).
DEFAULT_MAX_OUTPUT_SIZE = 512 * 1024 * 1024


def _check_sizes(min_size: int, max_output_size: int) -> None:
    if not isinstance(min_size, int) or min_size < 0:
        raise ConfigurationError("min_size must be an int >= 0")
    if not isinstance(max_output_size, int) or max_output_size < 1:
        raise ConfigurationError("max_output_size must be an int >= 1")


def _import(module: str, extra: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise ConfigurationError(
            f"this compressor needs {module}: pip install 'dataferry[{extra}]'"
        ) from exc


class ZstdCompressor:
    """Zstandard (``zstandard`` package, ``zstd`` extra): the default compressor.

    Args:
        level: Compression level (1-22, negative for faster; default 3).
        min_size: Payloads smaller than this many bytes are stored uncompressed.
        max_output_size: Refuse to decompress an entry larger than this.

    """

    id = 1
    __slots__ = ("_local", "_zstd", "level", "max_output_size", "min_size")

    def __init__(
        self,
        *,
        level: int = 3,
        min_size: int = DEFAULT_MIN_SIZE,
        max_output_size: int = DEFAULT_MAX_OUTPUT_SIZE,
    ) -> None:
        _check_sizes(min_size, max_output_size)
        self._zstd = _import("zstandard", "zstd")
        self.level = level
        self.min_size = min_size
        self.max_output_size = max_output_size
        # zstd contexts are not thread-safe; one pair per thread reuses their buffers.
        self._local = threading.local()

    def compress(self, data: bytes, /) -> bytes:
        """Return ``data`` as one zstd frame (with its content size)."""
        local = self._local
        try:
            cctx = local.c
        except AttributeError:
            cctx = local.c = self._zstd.ZstdCompressor(level=self.level)
        return cctx.compress(data)  # type: ignore[no-any-return]

    def decompress(self, data: bytes, /) -> bytes:
        """Return the content of the zstd frame ``data``; raise if larger than the limit."""
        size = self._zstd.frame_content_size(data)
        if size > self.max_output_size:
            raise ValueError("zstd frame larger than max_output_size")
        local = self._local
        try:
            dctx = local.d
        except AttributeError:
            dctx = local.d = self._zstd.ZstdDecompressor()
        # zstd trusts a frame's content size (checked above); without one (frames we didn't
        # write), max_output_size bounds the output.
        out = dctx.decompress(data, max_output_size=self.max_output_size, allow_extra_data=False)
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
        max_output_size: Refuse to decompress an entry larger than this.

    """

    id = 2
    __slots__ = ("level", "max_output_size", "min_size")

    def __init__(
        self,
        *,
        level: int = 6,
        min_size: int = DEFAULT_MIN_SIZE,
        max_output_size: int = DEFAULT_MAX_OUTPUT_SIZE,
    ) -> None:
        _check_sizes(min_size, max_output_size)
        if level not in range(10):
            raise ConfigurationError("gzip level must be 0-9")
        self.level = level
        self.min_size = min_size
        self.max_output_size = max_output_size

    def compress(self, data: bytes, /) -> bytes:
        """Return ``data`` as a gzip member (mtime 0, so output is deterministic)."""
        obj = zlib.compressobj(self.level, zlib.DEFLATED, 31)  # wbits 31 = gzip framing
        return obj.compress(data) + obj.flush()

    def decompress(self, data: bytes, /) -> bytes:
        """Return the content of the gzip member ``data``; raise if corrupt or too large."""
        obj = zlib.decompressobj(31)
        out = obj.decompress(data, self.max_output_size)
        if obj.unconsumed_tail:
            raise ValueError("gzip payload larger than max_output_size")
        if not obj.eof or obj.unused_data:
            raise ValueError("truncated or trailing gzip data")
        return out

    def __repr__(self) -> str:
        return f"GzipCompressor(level={self.level}, min_size={self.min_size})"


class Lz4Compressor:
    """LZ4 frames (``lz4`` package, ``lz4`` extra): the fastest, with the lowest ratio.

    Args:
        level: Compression level (0 = fast default; 3-16 = high compression).
        min_size: Payloads smaller than this many bytes are stored uncompressed.
        max_output_size: Refuse to decompress an entry larger than this.

    """

    id = 3
    __slots__ = ("_frame", "level", "max_output_size", "min_size")

    def __init__(
        self,
        *,
        level: int = 0,
        min_size: int = DEFAULT_MIN_SIZE,
        max_output_size: int = DEFAULT_MAX_OUTPUT_SIZE,
    ) -> None:
        _check_sizes(min_size, max_output_size)
        self._frame = _import("lz4.frame", "lz4")
        self.level = level
        self.min_size = min_size
        self.max_output_size = max_output_size

    def compress(self, data: bytes, /) -> bytes:
        """Return ``data`` as one LZ4 frame."""
        return self._frame.compress(  # type: ignore[no-any-return]
            data, compression_level=self.level, store_size=True
        )

    def decompress(self, data: bytes, /) -> bytes:
        """Return the content of the LZ4 frame ``data``; raise if corrupt or too large."""
        frame = self._frame
        size = frame.get_frame_info(data)["content_size"]
        if size > self.max_output_size:
            raise ValueError("lz4 frame larger than max_output_size")
        if size:
            # The one-shot function sizes its buffer from the frame header (checked above).
            out, used = frame.decompress(data, return_bytes_read=True)
        else:
            # No content size (a frame we didn't write): the streaming decompressor bounds it,
            # at the price of allocating max_output_size up front.
            dec = frame.LZ4FrameDecompressor()
            out = dec.decompress(data, max_length=self.max_output_size)
            if not dec.eof:
                raise ValueError("truncated lz4 frame or larger than max_output_size")
            used = len(data) - len(dec.unused_data or b"")
        if used != len(data):
            raise ValueError("trailing data after the lz4 frame")
        return out  # type: ignore[no-any-return]

    def __copy__(self) -> Lz4Compressor:
        return self  # configuration is immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Lz4Compressor:
        return self

    def __repr__(self) -> str:
        return f"Lz4Compressor(level={self.level}, min_size={self.min_size})"
