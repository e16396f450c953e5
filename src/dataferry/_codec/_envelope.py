"""Envelope v1: the self-describing bytes DataFerry stores in L2.

Layout (big-endian)::

    magic "DF" | version u8 | flags u8 | serializer id u8 | compressor id u8
    | created_at f64 | logical_expiry f64 | tag count u16, then per tag: u16 length + UTF-8
    | key id: u8 length + ASCII | nonce (12 B, only if encrypted)
    | payload (ciphertext incl. 16-byte GCM tag if encrypted; + 32-byte HMAC if signed)

Everything before the payload is the *header*; with encryption, the header plus the full storage
key is the AEAD's associated data, so editing any header byte or moving the entry to another
key fails authentication. Golden vectors in the tests pin this format.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "FLAG_COMPRESSED",
    "FLAG_ENCRYPTED",
    "FLAG_SIGNED",
    "MAGIC",
    "NONCE_SIZE",
    "VERSION",
    "EnvelopeError",
    "Header",
    "pack_header",
    "unpack_header",
]

MAGIC = b"DF"
VERSION = 1
FLAG_COMPRESSED = 0x01
FLAG_ENCRYPTED = 0x02
FLAG_SIGNED = 0x04
_KNOWN_FLAGS = FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_SIGNED
NONCE_SIZE = 12

_FIXED = struct.Struct(">2sBBBBddH")
_U16 = struct.Struct(">H")


class EnvelopeError(ValueError):
    """The bytes are not a well-formed envelope (internal: callers turn it into a miss)."""


@dataclass(frozen=True, slots=True)
class Header:
    """The decoded header of an envelope."""

    version: int
    flags: int
    serializer_id: int
    compressor_id: int
    created_at: float
    logical_expiry: float
    tags: tuple[str, ...]
    key_id: str
    nonce: bytes
    size: int  # header length in bytes: the payload starts here

    @property
    def compressed(self) -> bool:
        """Whether the payload is compressed."""
        return bool(self.flags & FLAG_COMPRESSED)

    @property
    def encrypted(self) -> bool:
        """Whether the payload is encrypted."""
        return bool(self.flags & FLAG_ENCRYPTED)

    @property
    def signed(self) -> bool:
        """Whether the payload carries an HMAC."""
        return bool(self.flags & FLAG_SIGNED)


def pack_header(
    *,
    flags: int,
    serializer_id: int,
    compressor_id: int,
    created_at: float,
    logical_expiry: float,
    tags: tuple[str, ...] = (),
    key_id: str = "",
    nonce: bytes = b"",
) -> bytes:
    """Return the header bytes for an entry."""
    if not tags and not key_id and not nonce:  # the common case, one struct call
        return _FIXED.pack(
            MAGIC, VERSION, flags, serializer_id, compressor_id, created_at, logical_expiry, 0
        ) + b"\x00"
    parts = [
        _FIXED.pack(
            MAGIC,
            VERSION,
            flags,
            serializer_id,
            compressor_id,
            created_at,
            logical_expiry,
            len(tags),
        )
    ]
    for tag in tags:
        raw = tag.encode("utf-8")
        parts.append(_U16.pack(len(raw)))
        parts.append(raw)
    kid = key_id.encode("ascii")
    if len(kid) > 255:
        raise EnvelopeError("key id longer than 255 bytes")
    parts.append(bytes((len(kid),)))
    parts.append(kid)
    if flags & FLAG_ENCRYPTED:
        if len(nonce) != NONCE_SIZE:
            raise EnvelopeError("nonce must be 12 bytes")
        parts.append(nonce)
    return b"".join(parts)


def unpack_header(data: bytes) -> Header:
    """Parse the header at the start of ``data``; raise :class:`EnvelopeError` if malformed."""
    try:
        magic, version, flags, ser, comp, created, expiry, ntags = _FIXED.unpack_from(data, 0)
    except struct.error:
        raise EnvelopeError("truncated header") from None
    if magic != MAGIC:
        raise EnvelopeError("bad magic")
    if version != VERSION:
        raise EnvelopeError(f"unsupported envelope version {version}")
    if flags & ~_KNOWN_FLAGS:
        raise EnvelopeError(f"unknown flags {flags:#x}")
    pos = _FIXED.size
    n = len(data)
    tags: list[str] = []
    try:
        for _ in range(ntags):
            (length,) = _U16.unpack_from(data, pos)
            pos += 2
            if pos + length > n:
                raise EnvelopeError("truncated tag")
            tags.append(data[pos : pos + length].decode("utf-8"))
            pos += length
        if pos >= n:
            raise EnvelopeError("truncated key id")
        kid_len = data[pos]
        pos += 1
        if pos + kid_len > n:
            raise EnvelopeError("truncated key id")
        key_id = data[pos : pos + kid_len].decode("ascii")
        pos += kid_len
    except (struct.error, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"malformed header: {exc}") from None
    nonce = b""
    if flags & FLAG_ENCRYPTED:
        if pos + NONCE_SIZE > n:
            raise EnvelopeError("truncated nonce")
        nonce = bytes(data[pos : pos + NONCE_SIZE])
        pos += NONCE_SIZE
    return Header(version, flags, ser, comp, created, expiry, tuple(tags), key_id, nonce, pos)
