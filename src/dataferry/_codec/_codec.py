"""Codec: value -> serializer -> compressor -> encryptor/signer -> envelope bytes, and back."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from dataferry._codec._encryption import HmacSigner
from dataferry._codec._envelope import (
    FIXED_HEADER,
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    FLAG_SIGNED,
    MAC_SIZE,
    MAGIC,
    NONCE_SIZE,
    PLAIN_HEADER_SIZE,
    VERSION,
    EnvelopeError,
    Header,
    pack_header,
    parse_header,
    unpack_header,
)
from dataferry._codec._keyring import Keyring
from dataferry._codec._protocols import Compressor, Encryptor, Serializer
from dataferry._codec._registry import default_compressor, default_serializer
from dataferry._codec._serializers import JsonSerializer
from dataferry._errors import ConfigurationError, KeyringError

__all__ = ["Codec", "DecodeError", "Decoded"]


class DecodeError(Exception):
    """Stored bytes could not be decoded (internal: the facade turns it into a miss)."""


class Decoded(NamedTuple):
    """A decoded L2 entry: the value and its envelope metadata (immutable)."""

    value: Any
    created_at: float
    logical_expiry: float
    tags: tuple[str, ...]


def _requires_authentication(serializer: Serializer) -> bool:
    return bool(getattr(serializer, "requires_authentication", False))


def _check_id(kind: str, obj: Serializer | Compressor) -> None:
    ident = getattr(obj, "id", None)
    if not isinstance(ident, int) or not 1 <= ident <= 255:
        raise ConfigurationError(f"{kind} {obj!r} needs an int id in 1-255")


class Codec:
    """The pipeline between live values and the bytes stored in L2.

    Reusable and thread-safe. Reading never depends on this codec's own settings: the envelope
    says which serializer and compressor wrote an entry and whether it is encrypted or signed,
    so a codec reads entries written by differently configured nodes, and per-entry
    ``compress=``/``encrypt=`` choices, as long as it holds the keys.

    Args:
        serializer: Encodes values (default :class:`JsonSerializer`).
        compressor: Compresses payloads of at least its ``min_size`` (default: none).
        encryptor: Encrypts every entry, e.g. ``AesGcmEncryptor(keyring)`` (default: none).
        signing_key: A :class:`Keyring` or a 32-byte key: entries that are not encrypted are
            signed with HMAC-SHA256, and entries that are neither encrypted nor signed are
            refused on read (a miss).
        serializers: Extra serializers this codec can *read* (custom ids written by other
            nodes). DataFerry's JSON and MessagePack serializers are always readable.
        compressors: Extra compressors this codec can *read* (custom ids).

    Raises:
        ConfigurationError: A :class:`PickleSerializer` without ``encryptor`` or
            ``signing_key`` (unpickling unauthenticated bytes would let anyone who can write
            to Redis run code here), or an object that doesn't fit its protocol.

    """

    __slots__ = (
        "_auth_ids",
        "_compressor",
        "_compressors",
        "_encryptor",
        "_plain_readers",
        "_readers",
        "_serializer",
        "_signer",
        "_write_needs_auth",
    )

    def __init__(
        self,
        *,
        serializer: Serializer | None = None,
        compressor: Compressor | None = None,
        encryptor: Encryptor | None = None,
        signing_key: Keyring | bytes | None = None,
        serializers: Iterable[Serializer] = (),
        compressors: Iterable[Compressor] = (),
    ) -> None:
        self._serializer: Serializer = serializer if serializer is not None else JsonSerializer()
        if encryptor is not None and not isinstance(encryptor, Encryptor):
            raise ConfigurationError(f"{encryptor!r} is not an Encryptor")
        self._encryptor = encryptor
        self._signer: HmacSigner | None = None
        if isinstance(signing_key, Keyring):
            self._signer = HmacSigner(signing_key)
        elif isinstance(signing_key, (bytes, bytearray)):
            self._signer = HmacSigner(Keyring({"default": bytes(signing_key)}))
        elif signing_key is not None:
            raise ConfigurationError("signing_key must be a Keyring or a 32-byte key")
        authenticates = encryptor is not None or self._signer is not None

        readers: dict[int, Serializer] = {JsonSerializer.id: JsonSerializer()}  # always readable
        for s in (*serializers, self._serializer):
            if not isinstance(s, Serializer):
                raise ConfigurationError(f"{s!r} is not a Serializer")
            _check_id("serializer", s)
            if _requires_authentication(s) and not authenticates:
                raise ConfigurationError(
                    f"{s!r} needs encryptor= or signing_key=: without them, anyone who can "
                    "write to the cache could make this process unpickle their bytes"
                )
            readers[s.id] = s
        self._readers = readers
        # The hot path (plain entries) may only use serializers that are safe on any bytes.
        self._plain_readers = {i: s for i, s in readers.items() if not _requires_authentication(s)}
        self._auth_ids = frozenset(i for i, s in readers.items() if _requires_authentication(s))
        self._write_needs_auth = _requires_authentication(self._serializer)

        if compressor is not None and not isinstance(compressor, Compressor):
            raise ConfigurationError(f"{compressor!r} is not a Compressor")
        self._compressor = compressor
        comps: dict[int, Compressor] = {}
        for c in (*compressors, *((compressor,) if compressor is not None else ())):
            if not isinstance(c, Compressor):
                raise ConfigurationError(f"{c!r} is not a Compressor")
            _check_id("compressor", c)
            comps[c.id] = c
        self._compressors = comps

    @property
    def serializer(self) -> Serializer:
        """The serializer used for writes."""
        return self._serializer

    @property
    def compressor(self) -> Compressor | None:
        """The compressor used for writes (None: compress only when asked per entry)."""
        return self._compressor

    @property
    def encryptor(self) -> Encryptor | None:
        """The encryptor, if any."""
        return self._encryptor

    @property
    def encrypts(self) -> bool:
        """Whether writes are encrypted by default."""
        return self._encryptor is not None

    @property
    def signs(self) -> bool:
        """Whether unencrypted writes are signed (and unauthenticated entries refused)."""
        return self._signer is not None

    def encode(
        self,
        value: Any,
        *,
        key: str,
        created_at: float,
        logical_expiry: float,
        tags: tuple[str, ...] = (),
        compress: bool | None = None,
        encrypt: bool | None = None,
        tenant: str | None = None,
    ) -> bytes:
        """Return the envelope bytes for ``value`` stored under storage key ``key``.

        ``compress``: None = this codec's compressor when the payload reaches its ``min_size``
        (and only if that makes it smaller); True = always compress (zstd if this codec has no
        compressor); False = never. ``encrypt``: None = encrypt if this codec has an encryptor;
        True = must encrypt; False = store unencrypted (signed if this codec signs).

        Raises:
            SerializationError: The serializer can't encode ``value``.
            ConfigurationError: ``encrypt=True`` without an encryptor, ``compress=True``
                without zstandard installed, or an unauthenticated pickle entry.

        """
        serializer = self._serializer
        payload = serializer.dumps(value)
        flags = 0
        comp_id = 0
        if compress is None:
            comp = self._compressor
            if comp is not None and len(payload) >= comp.min_size:
                packed = comp.compress(payload)
                if len(packed) < len(payload):  # incompressible data is stored as it is
                    payload = packed
                    flags = FLAG_COMPRESSED
                    comp_id = comp.id
        elif compress:
            comp = self._compressor or _default_zstd()
            payload = comp.compress(payload)
            flags = FLAG_COMPRESSED
            comp_id = comp.id

        # Choose how the entry is authenticated, then frame one header for it.
        enc = self._encryptor
        signer = self._signer
        if encrypt is None:
            encrypt = enc is not None
        key_id, nonce = "", b""
        if encrypt:
            if enc is None:
                raise ConfigurationError("encrypt=True, but this codec has no encryptor")
            key_id, nonce = enc.begin(tenant)
            flags |= FLAG_ENCRYPTED
        elif signer is not None:
            key_id = signer.key_id
            flags |= FLAG_SIGNED
        elif self._write_needs_auth:
            raise ConfigurationError(
                f"{serializer!r} entries must be encrypted or signed: encrypt=False "
                "needs a codec with signing_key="
            )
        header = pack_header(
            flags=flags,
            serializer_id=serializer.id,
            compressor_id=comp_id,
            created_at=created_at,
            logical_expiry=logical_expiry,
            tags=tags,
            key_id=key_id,
            nonce=nonce,
        )
        if encrypt:
            assert enc is not None
            aad = header + key.encode("utf-8")
            return header + enc.encrypt(key_id, nonce, payload, aad, tenant)
        if signer is not None:
            body = header + payload
            return body + signer.sign(key_id, key.encode("utf-8"), body)
        return header + payload

    def decode(
        self, data: bytes, *, key: str, tenant: str | None = None, type: Any = None
    ) -> Decoded:
        """Decode envelope bytes read from storage key ``key``; raise DecodeError on any fault.

        Truncated, corrupted, forged, wrong-version, wrong-key and wrong-tenant entries all
        raise :class:`DecodeError` (never another exception, never a wrong value).
        """
        try:
            if not isinstance(data, bytes):  # bytearray / memoryview from some backends
                data = bytes(data)
            # Hot paths: entries without tags or compression, plain (with a serializer that is
            # safe on any bytes) or encrypted. One struct call, a few slices, and no Header
            # object; everything else takes the general path, which checks the same things.
            magic, version, flags, ser_id, comp_id, created, expiry, ntags = (
                FIXED_HEADER.unpack_from(data)
            )
            if ntags == 0 and comp_id == 0 and magic == MAGIC and version == VERSION:
                if flags == 0:
                    if data[PLAIN_HEADER_SIZE - 1] == 0 and self._signer is None:
                        ser = self._plain_readers.get(ser_id)
                        if ser is not None:
                            value = ser.loads(data[PLAIN_HEADER_SIZE:], type)
                            return Decoded(value, created, expiry, ())
                elif flags == FLAG_ENCRYPTED:
                    enc = self._encryptor
                    kid_end = PLAIN_HEADER_SIZE + data[PLAIN_HEADER_SIZE - 1]
                    size = kid_end + NONCE_SIZE
                    ser = self._readers.get(ser_id)  # authenticated: any serializer may read
                    if enc is not None and ser is not None and kid_end > PLAIN_HEADER_SIZE:
                        plaintext = enc.decrypt(
                            data[PLAIN_HEADER_SIZE:kid_end].decode("ascii"),
                            data[kid_end:size],
                            data[size:],
                            data[:size] + key.encode("utf-8"),
                            tenant,
                        )
                        return Decoded(ser.loads(plaintext, type), created, expiry, ())
            return self._decode(data, key, tenant, type)
        except DecodeError:
            raise
        except (EnvelopeError, KeyringError) as exc:  # their messages never hold data
            raise DecodeError(str(exc)) from exc
        except Exception as exc:  # any fault in stored bytes is a miss
            # Only the exception's class: some libraries (pydantic) put the input in messages.
            raise DecodeError(type_name(exc)) from exc

    def _decode(self, data: bytes, key: str, tenant: str | None, type: Any) -> Decoded:
        flags, ser_id, comp_id, created, expiry, tags, key_id, nonce, size = parse_header(data)
        end = len(data)
        authenticated = False
        if flags & FLAG_SIGNED:
            signer = self._signer
            if signer is None:
                raise DecodeError("entry is signed and this codec has no signing key")
            if flags & FLAG_ENCRYPTED:
                raise DecodeError("entry is both signed and encrypted")
            end -= MAC_SIZE
            if end < size:
                raise DecodeError("truncated MAC")
            view = memoryview(data)
            if not signer.verify(key_id, key.encode("utf-8"), view[:end], view[end:]):
                raise DecodeError("MAC does not match (tampered, moved, or unknown key id)")
            authenticated = True
        payload = data[size:end]
        if flags & FLAG_ENCRYPTED:
            enc = self._encryptor
            if enc is None:
                raise DecodeError("entry is encrypted and this codec has no encryptor")
            payload = enc.decrypt(key_id, nonce, payload, data[:size] + key.encode(), tenant)
            authenticated = True
        elif not authenticated and self._signer is not None:
            raise DecodeError("entry is neither signed nor encrypted; this codec requires it")
        if flags & FLAG_COMPRESSED:
            comp = self._compressors.get(comp_id) or default_compressor(comp_id)
            if comp is None:
                raise DecodeError(f"unknown compressor id {comp_id}")
            payload = comp.decompress(payload)
        ser = self._readers.get(ser_id)
        if ser is None:
            ser = default_serializer(ser_id)
            if ser is None:
                raise DecodeError(f"unknown serializer id {ser_id}")
        elif ser_id in self._auth_ids and not authenticated:
            # Never unpickle bytes that might come from someone without our keys.
            raise DecodeError("refusing to deserialize an unauthenticated entry")
        return Decoded(ser.loads(payload, type), created, expiry, tags)

    @staticmethod
    def read_header(data: bytes) -> Header:
        """Parse only the envelope header (for inspection); raise DecodeError if malformed."""
        try:
            return unpack_header(data)
        except EnvelopeError as exc:
            raise DecodeError(str(exc)) from exc

    def __repr__(self) -> str:
        signing = ", signing_key=..." if self._signer is not None else ""
        return (
            f"Codec(serializer={self._serializer!r}, compressor={self._compressor!r}, "
            f"encryptor={self._encryptor!r}{signing})"
        )


def _default_zstd() -> Compressor:
    comp = default_compressor(1)
    if comp is None:  # pragma: no cover - the registry always knows zstd
        raise ConfigurationError("no zstd compressor")
    return comp


def type_name(exc: BaseException) -> str:
    """Return the class name of an exception (for log lines that must not carry values)."""
    return exc.__class__.__name__
