"""Codec: value -> serializer -> compressor -> encryptor -> envelope bytes, and back."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dataferry._codec._envelope import (
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    EnvelopeError,
    Header,
    pack_header,
    unpack_header,
)
from dataferry._codec._protocols import Compressor, Encryptor, Serializer
from dataferry._codec._serializers import JsonSerializer
from dataferry._errors import ConfigurationError

__all__ = ["Codec", "DecodeError", "Decoded"]


class DecodeError(Exception):
    """Stored bytes could not be decoded (internal: the facade turns it into a miss)."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded L2 entry: the value and its envelope metadata."""

    value: Any
    created_at: float
    logical_expiry: float
    tags: tuple[str, ...]


class Codec:
    """The pipeline between live values and the bytes stored in L2.

    Reusable and thread-safe. Reading never depends on this codec's own settings: the envelope
    says which serializer and compressor wrote an entry and whether it is encrypted.

    Args:
        serializer: Encodes values (default :class:`JsonSerializer`).
        compressor: Compresses payloads at or above its ``min_size`` (default: none).
        encryptor: Encrypts payloads (default: none).
        serializers: Extra serializers this codec can *read* (entries written by other nodes).
    """

    __slots__ = ("_compressor", "_compressors", "_encryptor", "_serializer", "_serializers")

    def __init__(
        self,
        *,
        serializer: Serializer | None = None,
        compressor: Compressor | None = None,
        encryptor: Encryptor | None = None,
        serializers: Iterable[Serializer] = (),
    ) -> None:
        self._serializer: Serializer = serializer if serializer is not None else JsonSerializer()
        self._compressor = compressor
        self._encryptor = encryptor
        readers: dict[int, Serializer] = {JsonSerializer.id: JsonSerializer()}
        for s in (*serializers, self._serializer):
            if not isinstance(s, Serializer):
                raise ConfigurationError(f"{s!r} is not a Serializer")
            readers[s.id] = s
        self._serializers = readers
        self._compressors: dict[int, Compressor] = {}
        if compressor is not None:
            self._compressors[compressor.id] = compressor

    @property
    def serializer(self) -> Serializer:
        """The serializer used for writes."""
        return self._serializer

    @property
    def encrypts(self) -> bool:
        """Whether writes are encrypted by default."""
        return self._encryptor is not None

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

        Raises SerializationError when the serializer can't encode ``value``.
        """
        serializer = self._serializer
        payload = serializer.dumps(value)
        flags = 0
        comp_id = 0
        comp = self._compressor
        if comp is not None and compress is not False and len(payload) >= comp.min_size:
            payload = comp.compress(payload)
            flags |= FLAG_COMPRESSED
            comp_id = comp.id
        enc = self._encryptor
        if enc is not None and encrypt is not False:
            key_id, nonce = enc.begin(tenant)
            flags |= FLAG_ENCRYPTED
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
            aad = header + key.encode("utf-8")
            return header + enc.encrypt(key_id, nonce, payload, aad, tenant)
        header = pack_header(
            flags=flags,
            serializer_id=serializer.id,
            compressor_id=comp_id,
            created_at=created_at,
            logical_expiry=logical_expiry,
            tags=tags,
        )
        return header + payload

    def decode(
        self, data: bytes, *, key: str, tenant: str | None = None, type: Any = None
    ) -> Decoded:
        """Decode envelope bytes read from storage key ``key``; raise DecodeError on any fault."""
        try:
            header = unpack_header(data)
            payload = memoryview(data)[header.size :]
            if header.flags & FLAG_ENCRYPTED:
                enc = self._encryptor
                if enc is None:
                    raise DecodeError("entry is encrypted and this codec has no encryptor")
                aad = bytes(memoryview(data)[: header.size]) + key.encode("utf-8")
                payload = memoryview(
                    enc.decrypt(header.key_id, header.nonce, bytes(payload), aad, tenant)
                )
            if header.flags & FLAG_COMPRESSED:
                comp = self._compressors.get(header.compressor_id)
                if comp is None:
                    raise DecodeError(f"unknown compressor id {header.compressor_id}")
                payload = memoryview(comp.decompress(bytes(payload)))
            ser = self._serializers.get(header.serializer_id)
            if ser is None:
                raise DecodeError(f"unknown serializer id {header.serializer_id}")
            value = ser.loads(bytes(payload), type)
        except DecodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - any fault in stored bytes is a miss
            raise DecodeError(f"{type_name(exc)}: {exc}") from exc
        return Decoded(value, header.created_at, header.logical_expiry, header.tags)

    @staticmethod
    def read_header(data: bytes) -> Header:
        """Parse only the envelope header (for inspection); raise DecodeError if malformed."""
        try:
            return unpack_header(data)
        except EnvelopeError as exc:
            raise DecodeError(str(exc)) from exc

    def __repr__(self) -> str:
        return (
            f"Codec(serializer={self._serializer!r}, compressor={self._compressor!r}, "
            f"encryptor={self._encryptor!r})"
        )


def type_name(exc: BaseException) -> str:
    """Return the class name of an exception (for log lines that must not carry values)."""
    return exc.__class__.__name__
