"""Envelope v2: the self-describing bytes DataFerry stores in L2.

Layout (big-endian unless noted)::

    magic "DF" | version u8 (2) | flags u8 | serializer id u8 | compressor id u8
    | created_at f64 | logical_expiry f64 | tag count u16, then per tag: u16 length + UTF-8
    | key id: u8 length + ASCII | nonce (12 B, only if encrypted)
    | payload (ciphertext incl. 16-byte GCM tag if encrypted)
    | trailer: HMAC-SHA256 (32 B) if signed; CRC-32 (4 B, little-endian) if neither signed nor
      encrypted; nothing if encrypted (the GCM tag authenticates)

Everything before the payload is the *header*. Every entry is checked against the storage key it
is read from, so editing any byte or moving an entry to another key or tenant is detected:

* **encrypted**: the header plus the full storage key is the AEAD's associated data;
* **signed**: the MAC covers the length-prefixed storage key, the header and the payload;
* **neither** ("plain"): the CRC-32 covers the storage key (UTF-8) followed by the header and the
  payload. It catches bit flips and entries copied to another key; it is *not* a security
  boundary (anyone can compute it), which is why a codec with keys refuses plain entries.

The compressor id is 0 exactly when the payload is not compressed; the key id is empty exactly
when the entry is neither encrypted nor signed. Serializer and compressor ids are part of the
wire format (see :data:`SERIALIZER_NAMES`, :data:`COMPRESSOR_NAMES`); golden vectors in the
tests pin the format.

**Other versions.** A reader refuses an entry of any other version (in particular the v1 entries
written before this format) exactly like a corrupt entry: it is a miss, the value is recomputed
by the factory and rewritten in the current version. Nothing is migrated, since it is a cache;
during a rolling upgrade, old and new nodes each see the other's entries as misses and rewrite
them, so expect a short dip in the L2 hit ratio, not errors. v2 added the CRC-32 trailer of
plain entries; v1 had no integrity check on them.
"""

from __future__ import annotations

import importlib
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COMPRESSOR_NAMES",
    "FLAG_COMPRESSED",
    "FLAG_ENCRYPTED",
    "FLAG_SIGNED",
    "FIXED_HEADER",
    "CHECKSUM_RESIDUE",
    "PLAIN_JSON_HEADER",
    "PLAIN_JSON_PREFIX",
    "CHECKSUM_SIZE",
    "MAC_SIZE",
    "MAGIC",
    "NONCE_SIZE",
    "PLAIN_HEADER_SIZE",
    "ParsedHeader",
    "SERIALIZER_NAMES",
    "VERSION",
    "EnvelopeError",
    "Header",
    "checksum",
    "compressor_name",
    "crc32",
    "pack_header",
    "parse_header",
    "serializer_name",
    "unpack_header",
]

MAGIC = b"DF"
VERSION = 2
FLAG_COMPRESSED = 0x01
FLAG_ENCRYPTED = 0x02
FLAG_SIGNED = 0x04
_KNOWN_FLAGS = FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_SIGNED
_FLAG_NAMES = (
    (FLAG_COMPRESSED, "compressed"),
    (FLAG_ENCRYPTED, "encrypted"),
    (FLAG_SIGNED, "signed"),
)
NONCE_SIZE = 12
MAC_SIZE = 32
CHECKSUM_SIZE = 4
#: CRC-32 of any byte string followed by its own CRC-32 in little-endian order. A plain entry
#: is intact exactly when ``crc32(storage_key + entry) == CHECKSUM_RESIDUE``: one pass over
#: the bytes as stored, with no slicing (a property of CRC-32, used by Ethernet the same way).
CHECKSUM_RESIDUE = 0x2144DF1C

#: Wire ids of DataFerry's serializers (1-127 are reserved for DataFerry).
SERIALIZER_NAMES: dict[int, str] = {1: "json", 2: "msgpack", 3: "pickle"}
#: Wire ids of DataFerry's compressors (0 = not compressed; 1-127 reserved for DataFerry).
COMPRESSOR_NAMES: dict[int, str] = {0: "none", 1: "zstd", 2: "gzip", 3: "lz4"}

_FIXED = struct.Struct(">2sBBBBddH")
_U16 = struct.Struct(">H")
#: The fixed-size start of every header (magic .. tag count), for the codec's hot path.
FIXED_HEADER = _FIXED
#: Size of the header of an entry without tags, key id or nonce (the hot path).
PLAIN_HEADER_SIZE = _FIXED.size + 1
#: The first bytes of a plain, uncompressed JSON entry (magic, version, no flags, serializer 1,
#: compressor 0): the common entry, which batch reads recognise with one comparison.
PLAIN_JSON_PREFIX = MAGIC + bytes((VERSION, 0, 1, 0))
#: The header of such an entry in one struct call: prefix, created_at, logical_expiry, tag
#: count, key id length (both 0 for the fast path); 25 bytes, :data:`PLAIN_HEADER_SIZE`.
PLAIN_JSON_HEADER = struct.Struct(">6sddHB")
assert PLAIN_JSON_HEADER.size == PLAIN_HEADER_SIZE


def _load_crc32() -> Callable[[Any, int], int]:
    # zlib-ng computes the same CRC-32 (folding with carry-less multiplication) 3-6x faster than
    # the zlib that CPython links, which matters when a batch read checks thousands of 1 KB
    # entries. Optional: without it, the stdlib's.
    # (Imported by name: type checkers need no stubs whether it is installed or not.)
    try:
        zlib_ng = importlib.import_module("zlib_ng.zlib_ng")
    except ImportError:
        return zlib.crc32
    fast: Callable[[Any, int], int] = zlib_ng.crc32
    # The wire format is zlib's CRC-32: check the standard test vector before trusting it.
    return fast if fast(b"123456789", 0) == zlib.crc32(b"123456789") == 0xCBF43926 else zlib.crc32


#: ``crc32(data, start)``: CRC-32 (ISO-HDLC, as :func:`zlib.crc32`) of a bytes-like object.
crc32 = _load_crc32()


def serializer_name(serializer_id: int) -> str:
    """Return the name of a serializer id (``"custom-<id>"`` for ids DataFerry doesn't own)."""
    return SERIALIZER_NAMES.get(serializer_id, f"custom-{serializer_id}")


def compressor_name(compressor_id: int) -> str:
    """Return the name of a compressor id (``"custom-<id>"`` for ids DataFerry doesn't own)."""
    return COMPRESSOR_NAMES.get(compressor_id, f"custom-{compressor_id}")


class EnvelopeError(ValueError):
    """The bytes are not a well-formed envelope (internal: callers turn it into a miss)."""


@dataclass(frozen=True, slots=True)
class Header:
    """The decoded header of an envelope: everything stored in L2 except the value itself."""

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

    @property
    def integrity(self) -> str:
        """What detects tampering or corruption: ``aes-256-gcm``, ``hmac-sha256`` or ``crc32``.

        Only the first two are authentication; ``crc32`` (plain entries) catches accidents.
        """
        if self.flags & FLAG_ENCRYPTED:
            return "aes-256-gcm"
        return "hmac-sha256" if self.flags & FLAG_SIGNED else "crc32"

    @property
    def serializer_name(self) -> str:
        """The name of the serializer that wrote the entry (``json``, ``msgpack``, ...)."""
        return serializer_name(self.serializer_id)

    @property
    def compressor_name(self) -> str:
        """The name of the compressor of the payload (``none``, ``zstd``, ``gzip``, ``lz4``)."""
        return compressor_name(self.compressor_id)

    def describe(self) -> dict[str, Any]:
        """Return the header as a JSON-able dict (for ``dataferry inspect``); no value, no key."""
        return {
            "version": self.version,
            "flags": [name for bit, name in _FLAG_NAMES if self.flags & bit],
            "serializer": self.serializer_name,
            "compressor": self.compressor_name,
            "key_id": self.key_id or None,
            "integrity": self.integrity,
            "created_at": self.created_at,
            "logical_expiry": self.logical_expiry,
            "tags": list(self.tags),
            "header_size": self.size,
        }


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
    """Return the header bytes for an entry; raise :class:`EnvelopeError` if it can't be framed."""
    if not tags and not key_id and not nonce:  # the common case, one struct call
        return (
            _FIXED.pack(
                MAGIC, VERSION, flags, serializer_id, compressor_id, created_at, logical_expiry, 0
            )
            + b"\x00"
        )
    if len(tags) > 0xFFFF:
        raise EnvelopeError("more than 65535 tags")
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
        if len(raw) > 0xFFFF:
            raise EnvelopeError("tag longer than 65535 UTF-8 bytes")
        parts.append(_U16.pack(len(raw)))
        parts.append(raw)
    try:
        kid = key_id.encode("ascii")
    except UnicodeEncodeError:
        raise EnvelopeError("key id is not ASCII") from None
    if len(kid) > 255:
        raise EnvelopeError("key id longer than 255 bytes")
    if bool(flags & (FLAG_ENCRYPTED | FLAG_SIGNED)) != bool(kid):
        raise EnvelopeError("a key id is required exactly when encrypted or signed")
    parts.append(bytes((len(kid),)))
    parts.append(kid)
    if flags & FLAG_ENCRYPTED:
        if len(nonce) != NONCE_SIZE:
            raise EnvelopeError("nonce must be 12 bytes")
        parts.append(nonce)
    return b"".join(parts)


def checksum(storage_key: bytes, body: bytes) -> bytes:
    """Return the CRC-32 trailer of a plain entry: over ``storage_key`` then ``body``."""
    return crc32(body, crc32(storage_key, 0)).to_bytes(CHECKSUM_SIZE, "little")


ParsedHeader = tuple[int, int, int, float, float, tuple[str, ...], str, bytes, int]


def parse_header(data: bytes) -> ParsedHeader:
    """Parse the header at the start of ``data`` into a tuple (the codec's fast form).

    Returns ``(flags, serializer_id, compressor_id, created_at, logical_expiry, tags, key_id,
    nonce, size)``; raises :class:`EnvelopeError` if malformed.
    """
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
    if bool(flags & FLAG_COMPRESSED) != (comp != 0):
        raise EnvelopeError("compressor id disagrees with the compressed flag")
    pos = _FIXED.size
    n = len(data)
    tags: tuple[str, ...] = ()
    try:
        if ntags:
            found: list[str] = []
            for _ in range(ntags):
                (length,) = _U16.unpack_from(data, pos)
                pos += 2
                if pos + length > n:
                    raise EnvelopeError("truncated tag")
                found.append(bytes(data[pos : pos + length]).decode("utf-8"))
                pos += length
            tags = tuple(found)
        if pos >= n:
            raise EnvelopeError("truncated key id")
        kid_len = data[pos]
        pos += 1
        if pos + kid_len > n:
            raise EnvelopeError("truncated key id")
        key_id = bytes(data[pos : pos + kid_len]).decode("ascii") if kid_len else ""
        pos += kid_len
    except (struct.error, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"malformed header: {exc}") from None
    if bool(flags & (FLAG_ENCRYPTED | FLAG_SIGNED)) != bool(key_id):
        raise EnvelopeError("key id disagrees with the encrypted/signed flags")
    nonce = b""
    if flags & FLAG_ENCRYPTED:
        if pos + NONCE_SIZE > n:
            raise EnvelopeError("truncated nonce")
        nonce = bytes(data[pos : pos + NONCE_SIZE])
        pos += NONCE_SIZE
    return flags, ser, comp, created, expiry, tags, key_id, nonce, pos


def unpack_header(data: bytes) -> Header:
    """Parse the header at the start of ``data``; raise :class:`EnvelopeError` if malformed."""
    return Header(VERSION, *parse_header(data))
