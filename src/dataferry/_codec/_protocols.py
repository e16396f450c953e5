"""The small contracts of the codec pipeline: serializer, compressor, encryptor."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Compressor", "Encryptor", "Serializer"]


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back.

    ``id`` is written into every envelope (1-127 are reserved for DataFerry's own serializers),
    so readers decode with the serializer that wrote the entry.

    Optional: a ``decoder(type, /)`` method returning a ``bytes -> value`` function and raising
    :class:`~dataferry.ConfigurationError` for a type it can't decode into. A codec calls it
    (:meth:`Codec.check_type`) before decoding with ``type=``, so such a type fails at the call.
    """

    id: int

    def dumps(self, value: Any, /) -> bytes:
        """Encode ``value``; raise :class:`~dataferry.SerializationError` if it can't be.

        (:meth:`Codec.encode` turns any other exception into ``SerializationError``.)
        """
        ...

    def loads(self, data: bytes, /, type: Any = None) -> Any:
        """Decode ``data``, into ``type`` when given (dataclass, pydantic model, Struct...)."""
        ...


@runtime_checkable
class Compressor(Protocol):
    """Compresses payloads of at least ``min_size`` bytes; ``id`` is written in the envelope.

    ``decompress`` receives the reading codec's ``max_value_bytes`` as ``max_size`` and must
    raise, *before* allocating the output, if the result would be larger: stored entries may be
    forged, and a few KB can claim to inflate to gigabytes. (A :class:`~dataferry.Codec`
    refuses a compressor whose ``decompress`` doesn't take ``max_size``.)
    """

    id: int
    min_size: int

    def compress(self, data: bytes, /) -> bytes:
        """Return ``data`` compressed."""
        ...

    def decompress(self, data: bytes, max_size: int, /) -> bytes:
        """Return ``data`` decompressed; raise any exception on corrupt or too large input."""
        ...


@runtime_checkable
class Encryptor(Protocol):
    """Authenticated encryption with associated data, keyed per key id (and tenant).

    An encryptor may also have a ``keyring`` attribute (a :class:`~dataferry.Keyring`, as
    :class:`~dataferry.AesGcmEncryptor` does): a codec then signs its ``encrypt=False`` entries
    with a key derived from it. Without one, ``encrypt=False`` needs ``Codec(signing_key=...)``.
    """

    def begin(self, tenant: str | None, /) -> tuple[str, bytes]:
        """Return ``(key_id, nonce)`` for a new write: the primary key and a fresh nonce."""
        ...

    def encrypt(
        self, key_id: str, nonce: bytes, plaintext: bytes, aad: bytes, tenant: str | None, /
    ) -> bytes:
        """Return the ciphertext (including its authentication tag)."""
        ...

    def decrypt(
        self, key_id: str, nonce: bytes, ciphertext: bytes, aad: bytes, tenant: str | None, /
    ) -> bytes:
        """Return the plaintext; raise any exception when authentication fails."""
        ...
