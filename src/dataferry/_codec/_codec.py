"""Codec: value -> serializer -> compressor -> encryptor/signer -> envelope bytes, and back."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import orjson

from dataferry._codec._compressors import DecompressionError
from dataferry._codec._encryption import HmacSigner
from dataferry._codec._envelope import (
    CHECKSUM_RESIDUE,
    CHECKSUM_SIZE,
    FIXED_HEADER,
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    FLAG_SIGNED,
    MAC_SIZE,
    MAGIC,
    NONCE_SIZE,
    PLAIN_HEADER_SIZE,
    PLAIN_JSON_HEADER,
    PLAIN_JSON_PREFIX,
    VERSION,
    EnvelopeError,
    Header,
    checksum,
    compressor_name,
    crc32,
    pack_header,
    parse_header,
    unpack_header,
)
from dataferry._codec._keyring import Keyring
from dataferry._codec._protocols import Compressor, Encryptor, Serializer
from dataferry._codec._registry import default_compressor, default_serializer
from dataferry._codec._serializers import JsonSerializer
from dataferry._errors import (
    ConfigurationError,
    KeyringError,
    PayloadTooLargeError,
    SerializationError,
)

__all__ = ["DEFAULT_MAX_VALUE_BYTES", "Codec", "DecodeError", "Decoded"]

#: Default ``Codec(max_value_bytes=)``: the largest serialized value written or decompressed.
DEFAULT_MAX_VALUE_BYTES = 32 * 1024 * 1024

_crc32 = crc32
# Decoded(...) runs a Python-level __new__; the hot paths build the tuple directly (~0.1 us).
_new_tuple = tuple.__new__
# What the batch fast path binds to locals once per batch.
_FAST_PATH = (PLAIN_JSON_HEADER.unpack_from, crc32, _new_tuple, CHECKSUM_RESIDUE)
assert (PLAIN_HEADER_SIZE, CHECKSUM_SIZE) == (25, 4)  # the literals of the fast path


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


def _check_decompress(comp: Compressor) -> None:
    # The bound on decompression is passed as an argument: a compressor written for the old
    # one-argument protocol would fail on every read, so say so now rather than miss forever.
    try:
        inspect.signature(comp.decompress).bind(b"", 1)
    except TypeError:
        raise ConfigurationError(
            f"{comp!r}.decompress must accept (data, max_size, /) and refuse output over "
            "max_size bytes before allocating it"
        ) from None
    except ValueError:  # pragma: no cover - no signature (a builtin): trust it
        pass


class Codec:
    """The pipeline between live values and the bytes stored in L2.

    Reusable and thread-safe. Reading never depends on this codec's own settings for the
    format: the envelope says which serializer and compressor wrote an entry and whether it is
    encrypted or signed, so a codec reads entries written by differently configured nodes, and
    per-entry ``compress=``/``encrypt=`` choices, as long as it holds the keys.

    **Integrity.** Every entry is bound to the storage key it is written under (``key=``;
    tenant keys differ), so an entry that is edited, truncated, or copied to another key or
    tenant is a :class:`DecodeError` (a miss), never a wrong value:

    * a *keyed* codec (``encryptor=`` or ``signing_key=``) writes only authenticated entries
      and reads only those: AES-GCM with the storage key as associated data, or HMAC-SHA256
      over the storage key, header and payload. ``encrypt=False`` on a codec with an encryptor
      writes a *signed* entry, with ``signing_key`` if given, else with a MAC key derived
      (HKDF-SHA256, a label of its own) from the encryptor's ``keyring`` (rotating the
      encryptor's keyring rotates it too). An encryptor without a ``keyring`` attribute can't
      supply one: ``encrypt=False`` then raises :class:`ConfigurationError` unless
      ``signing_key=`` is given. An entry that is neither encrypted nor signed with our keys -
      e.g. planted by anyone who can write to Redis - is refused, unless
      ``accept_unauthenticated=True``.
    * an *unkeyed* codec writes plain entries that carry a CRC-32 over the storage key, header
      and payload, so bit flips and moved entries are misses. The checksum is **not a security
      boundary**: anyone who can write to the L2 can compute it. Use keys for that.

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
        max_value_bytes: The largest serialized value, in bytes (default 32 MiB). ``encode``
            raises :class:`PayloadTooLargeError` above it, and ``decode`` refuses (a miss) a
            compressed payload that declares or inflates to more, before allocating it, so a
            forged "compression bomb" costs nothing. Set it on readers at least as high as on
            writers.
        accept_unauthenticated: Let a keyed codec also *read* plain (checksummed but not
            authenticated) entries. Off by default; meant only for the window of a rollout that
            adds keys to a cache whose entries were written without them, and to be turned off
            once those entries have expired: while it is on, anyone who can write to the L2
            can plant values this codec serves. Pickled entries are never read unauthenticated.
            Writes are authenticated either way. No effect on an unkeyed codec.

    Raises:
        ConfigurationError: A :class:`PickleSerializer` without ``encryptor`` or
            ``signing_key`` (unpickling unauthenticated bytes would let anyone who can write
            to Redis run code here), a ``max_value_bytes`` that is not a positive int, or an
            object that doesn't fit its protocol.

    """

    __slots__ = (
        "_accept_plain",
        "_accept_unauthenticated",
        "_auth_ids",
        "_compressor",
        "_compressors",
        "_encryptor",
        "_fast_json",
        "_keyed",
        "_max_value",
        "_plain_readers",
        "_readers",
        "_serializer",
        "_signer",
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
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        accept_unauthenticated: bool = False,
    ) -> None:
        self._serializer: Serializer = serializer if serializer is not None else JsonSerializer()
        if encryptor is not None and not isinstance(encryptor, Encryptor):
            raise ConfigurationError(f"{encryptor!r} is not an Encryptor")
        self._encryptor = encryptor
        signer: HmacSigner | None = None
        if isinstance(signing_key, Keyring):
            signer = HmacSigner(signing_key)
        elif isinstance(signing_key, (bytes, bytearray)):
            signer = HmacSigner(Keyring({"default": bytes(signing_key)}))
        elif signing_key is not None:
            raise ConfigurationError("signing_key must be a Keyring or a 32-byte key")
        self._keyed = encryptor is not None or signer is not None
        if signer is None and isinstance(getattr(encryptor, "keyring", None), Keyring):
            # encrypt=False entries are signed with a key derived from the encryptor's keyring.
            signer = HmacSigner.following(encryptor)
        self._signer = signer
        if not isinstance(max_value_bytes, int) or isinstance(max_value_bytes, bool):
            raise ConfigurationError("max_value_bytes must be an int")
        if max_value_bytes < 1:
            raise ConfigurationError("max_value_bytes must be at least 1")
        self._max_value = max_value_bytes
        if not isinstance(accept_unauthenticated, bool):
            raise ConfigurationError("accept_unauthenticated must be a bool")
        self._accept_unauthenticated = accept_unauthenticated
        # Plain (checksummed, unauthenticated) entries: always for an unkeyed codec, and for a
        # keyed one only when explicitly asked (a rollout that adds keys).
        self._accept_plain = not self._keyed or accept_unauthenticated

        readers: dict[int, Serializer] = {JsonSerializer.id: JsonSerializer()}  # always readable
        for s in (*serializers, self._serializer):
            if not isinstance(s, Serializer):
                raise ConfigurationError(f"{s!r} is not a Serializer")
            _check_id("serializer", s)
            if _requires_authentication(s) and not self._keyed:
                raise ConfigurationError(
                    f"{s!r} needs encryptor= or signing_key=: without them, anyone who can "
                    "write to the cache could make this process unpickle their bytes"
                )
            readers[s.id] = s
        self._readers = readers
        # The hot path (plain entries) may only use serializers that are safe on any bytes. Each
        # comes with its untyped loader: orjson.loads itself for JSON (one call less per hit).
        self._plain_readers = {
            i: (s, orjson.loads if type(s) is JsonSerializer else s.loads)
            for i, s in readers.items()
            if not _requires_authentication(s)
        }
        self._auth_ids = frozenset(i for i, s in readers.items() if _requires_authentication(s))
        # decode_many's fast path: plain JSON entries read by DataFerry's own JsonSerializer
        # (not when a custom serializer took id 1, nor when plain entries are refused).
        json_reader = self._plain_readers.get(JsonSerializer.id)
        self._fast_json: JsonSerializer | None = (
            json_reader[0]
            if self._accept_plain
            and json_reader is not None
            and type(json_reader[0]) is JsonSerializer
            else None
        )

        if compressor is not None and not isinstance(compressor, Compressor):
            raise ConfigurationError(f"{compressor!r} is not a Compressor")
        self._compressor = compressor
        comps: dict[int, Compressor] = {}
        for c in (*compressors, *((compressor,) if compressor is not None else ())):
            if not isinstance(c, Compressor):
                raise ConfigurationError(f"{c!r} is not a Compressor")
            _check_id("compressor", c)
            _check_decompress(c)
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
        """Whether ``encrypt=False`` writes are signed (``signing_key=``, or the encryptor's)."""
        return self._signer is not None

    @property
    def authenticates(self) -> bool:
        """Whether this codec is keyed (writes, and reads, only authenticated entries)."""
        return self._keyed

    @property
    def accept_unauthenticated(self) -> bool:
        """Whether a keyed codec also reads plain entries (the rollout opt-in)."""
        return self._accept_unauthenticated

    @property
    def max_value_bytes(self) -> int:
        """The largest serialized value written, or decompressed on read."""
        return self._max_value

    def check_type(self, type: Any) -> None:
        """Raise :class:`ConfigurationError` now if this codec can't decode into ``type``.

        E.g. ``type=datetime`` without msgspec or pydantic installed: the message says what to
        install. :meth:`decode` runs this check before reading any bytes, so the error comes
        from the call that asks for the type, hit or miss alike. Builds and caches the decoder;
        a no-op for ``None`` and for custom serializers without a ``decoder(type)`` method.
        """
        if type is not None:
            build = getattr(self._serializer, "decoder", None)
            if build is not None:
                build(type)

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
        True = must encrypt; False = store unencrypted: signed if this codec is keyed, else
        plain with a checksum.

        Raises:
            SerializationError: The serializer can't encode ``value`` (whatever it raised, a
                ``RecursionError`` included, is chained as ``__cause__``).
            PayloadTooLargeError: The serialized value is over ``max_value_bytes``.
            ConfigurationError: ``encrypt=True`` without an encryptor, ``compress=True``
                without zstandard installed, or ``encrypt=False`` on a codec whose encryptor
                has no keyring and which has no ``signing_key``.

        """
        serializer = self._serializer
        try:
            payload = serializer.dumps(value)
        except SerializationError:
            raise
        except Exception as exc:  # a user serializer's bug, pickle's RecursionError...
            raise SerializationError(
                f"{serializer!r} cannot encode {type_name(value)}: {type_name(exc)}: {exc}"
            ) from exc
        if len(payload) > self._max_value:
            raise PayloadTooLargeError(
                f"serialized value is {len(payload)} bytes, over max_value_bytes="
                f"{self._max_value}; nothing was written"
            )
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

        # Choose how the entry is protected, then frame one header for it.
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
        elif self._keyed:
            raise ConfigurationError(
                f"encrypt=False needs signing_key=: this codec writes only authenticated "
                f"entries, and {enc!r} has no keyring to derive a signing key from"
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
        storage_key = key.encode("utf-8")
        if encrypt:
            assert enc is not None
            return header + enc.encrypt(key_id, nonce, payload, header + storage_key, tenant)
        body = header + payload
        if signer is not None:
            return body + signer.sign(key_id, storage_key, body)
        return body + checksum(storage_key, body)

    def decode(
        self, data: bytes, *, key: str, tenant: str | None = None, type: Any = None
    ) -> Decoded:
        """Decode envelope bytes read from storage key ``key``; raise DecodeError on any fault.

        Truncated, corrupted, forged, unauthenticated (on a keyed codec), oversized,
        wrong-version, wrong-key and wrong-tenant entries all raise :class:`DecodeError`
        (never another exception, never a wrong value).

        Raises:
            DecodeError: The bytes can't be decoded (the caller treats it as a miss).
            ConfigurationError: ``type`` can't be decoded with the libraries installed (see
                :meth:`check_type`); raised before the bytes are read, whatever they are.

        """
        if type is not None:
            self.check_type(type)
        try:
            if not isinstance(data, bytes):  # bytearray / memoryview from some backends
                data = bytes(data)
            if type is None and self._fast_json is not None:
                # The commonest entry (plain, uncompressed JSON, no tags), as decode_many reads
                # it; a fault of any kind falls through to the paths below, which name it.
                try:
                    prefix, created, expiry, ntags, kid_len = _FAST_PATH[0](data)
                    if (
                        prefix == PLAIN_JSON_PREFIX
                        and not ntags
                        and not kid_len
                        and _crc32(data, _crc32(key.encode(), 0)) == CHECKSUM_RESIDUE
                    ):
                        value = orjson.loads(data[25:-4])
                        return _new_tuple(Decoded, (value, created, expiry, ()))
                except Exception:  # the paths below name the fault
                    pass
            # Hot paths: entries without tags or compression, plain (with a serializer that is
            # safe on any bytes) or encrypted. One struct call, a few slices, and no Header
            # object; everything else takes the general path, which checks the same things.
            magic, version, flags, ser_id, comp_id, created, expiry, ntags = (
                FIXED_HEADER.unpack_from(data)
            )
            if ntags == 0 and comp_id == 0 and magic == MAGIC and version == VERSION:
                if flags == 0:
                    if data[PLAIN_HEADER_SIZE - 1] == 0 and self._accept_plain:
                        reader = self._plain_readers.get(ser_id)
                        if reader is not None:
                            # One CRC pass over key + entry as stored (see CHECKSUM_RESIDUE).
                            if _crc32(data, _crc32(key.encode("utf-8"), 0)) != CHECKSUM_RESIDUE:
                                raise DecodeError(_BAD_CHECKSUM)
                            payload = data[PLAIN_HEADER_SIZE:-CHECKSUM_SIZE]
                            if type is None:
                                value = reader[1](payload)
                            else:
                                value = reader[0].loads(payload, type)
                            return _new_tuple(Decoded, (value, created, expiry, ()))
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
                        value = ser.loads(plaintext, type)
                        return _new_tuple(Decoded, (value, created, expiry, ()))
            return self._decode(data, key, tenant, type)
        except (DecodeError, ConfigurationError):
            # ConfigurationError: a type= the serializer can't decode into (a call error, not
            # a fault of the bytes); the registry's missing-library errors are DecodeErrors.
            raise
        except (EnvelopeError, KeyringError) as exc:  # their messages never hold data
            raise DecodeError(str(exc)) from exc
        except Exception as exc:  # any fault in stored bytes is a miss
            # Only the exception's class: some libraries (pydantic) put the input in messages.
            raise DecodeError(type_name(exc)) from exc

    @staticmethod
    def created_at(data: bytes) -> float | None:
        """The creation time in an entry's header (None: no header), nothing else checked.

        For skipping entries a clear made stale before decoding (decrypting) them.
        """
        try:
            return float(FIXED_HEADER.unpack_from(data)[5])
        except Exception:
            return None

    def decode_many(
        self,
        keys: Sequence[str],
        blobs: Sequence[bytes | bytearray | memoryview | None],
        *,
        tenant: str | None = None,
        type: Any = None,
        fresh_after: float = float("-inf"),
        created_after: float = float("-inf"),
    ) -> tuple[list[tuple[str, Decoded, int]], list[tuple[str, str]]]:
        """Decode a batch read: ``blobs[i]`` holds the bytes read from ``keys[i]`` (None: absent).

        Returns ``(found, failed)``: ``found`` lists ``(key, entry, stored size)`` for the
        entries whose ``logical_expiry`` is after ``fresh_after`` and whose ``created_at`` is
        after ``created_after``, in order (the others are dropped without deserializing or
        decrypting their value); ``failed`` lists ``(key, reason)`` for the
        bytes that :meth:`decode` refuses. Each entry is checked exactly as :meth:`decode`
        checks it; the common one (plain, uncompressed JSON without tags) takes a path with one
        struct call, one CRC pass over the bytes as stored and one slice handed to orjson.

        Raises:
            ConfigurationError: ``type`` can't be decoded with the libraries installed.

        """
        loads, plain_json = self._batch_loader(type)
        found: list[tuple[str, Decoded, int]] = []
        failed: list[tuple[str, str]] = []
        append = found.append
        unpack, crc, new, residue = _FAST_PATH
        for key, data in zip(keys, blobs, strict=True):
            if data is None:
                continue
            # Any exception here (short bytes, bad JSON, a buffer a typed loader refuses...)
            # falls through to decode(), which raises the DecodeError that names the fault; a
            # success is exactly what decode() returns (the same checks and value, one pass).
            try:
                prefix, created, expiry, ntags, kid_len = unpack(data)
                if (
                    prefix == plain_json
                    and not ntags
                    and not kid_len
                    and crc(data, crc(key.encode(), 0)) == residue
                ):
                    if expiry > fresh_after and created > created_after:
                        value = loads(data[25:-4])  # PLAIN_HEADER_SIZE, CHECKSUM_SIZE
                        append((key, new(Decoded, (value, created, expiry, ())), len(data)))
                    continue
                if created <= created_after:
                    continue  # cleared: not even decrypted (an erased epoch can't be)
            except Exception:  # decode() below names the fault
                pass
            dec = self._decode_or_report(data, key, tenant, type, failed)
            if dec is not None and dec.logical_expiry > fresh_after:
                append((key, dec, len(data)))
        return found, failed

    def decode_values(
        self,
        keys: Sequence[str],
        blobs: Sequence[bytes | bytearray | memoryview | None],
        names: Sequence[Any],
        *,
        tenant: str | None = None,
        type: Any = None,
        fresh_after: float = float("-inf"),
        created_after: float = float("-inf"),
        tagged: list[tuple[Any, float, tuple[str, ...]]] | None = None,
    ) -> tuple[dict[Any, Any], int, list[tuple[str, str]]]:
        """:meth:`decode_many` for callers that need only the values.

        Returns ``({names[i]: value}, hits, failed)``: ``names[i]`` labels ``keys[i]`` in the
        result (e.g. the caller's key before its namespace prefix); ``hits`` counts the fresh
        entries (a name given twice counts twice). No envelope metadata is built: a batch read
        without an L1 to fill keeps nothing per entry but the value (the header fields and the
        payload slice are dropped as soon as the value is decoded). ``tagged``, if given,
        receives ``(name, created_at, tags)`` for each fresh entry that has tags.
        """
        loads, plain_json = self._batch_loader(type)
        values: dict[Any, Any] = {}
        failed: list[tuple[str, str]] = []
        stale = 0
        unpack, crc, _, residue = _FAST_PATH
        for name, key, data in zip(names, keys, blobs, strict=True):
            if data is None:
                continue
            try:  # as in decode_many
                prefix, created, expiry, ntags, kid_len = unpack(data)
                if (
                    prefix == plain_json
                    and not ntags
                    and not kid_len
                    and crc(data, crc(key.encode(), 0)) == residue
                ):
                    if expiry > fresh_after and created > created_after:
                        values[name] = loads(data[25:-4])
                    else:
                        stale += 1
                    continue
                if created <= created_after:
                    stale += 1
                    continue
            except Exception:  # decode() below names the fault
                pass
            dec = self._decode_or_report(data, key, tenant, type, failed)
            if dec is not None:
                if dec.logical_expiry > fresh_after:
                    values[name] = dec.value
                    if dec.tags and tagged is not None:
                        tagged.append((name, dec.created_at, dec.tags))
                else:
                    stale += 1
        # Counted from the few misses, not per hit: absent, refused, stale.
        hits = len(keys) - blobs.count(None) - len(failed) - stale
        return values, hits, failed

    def _batch_loader(self, type: Any) -> tuple[Any, bytes]:
        """The batch fast path's loader and the entry prefix it takes; checks ``type`` first.

        Without a fast path (a keyed codec, a custom serializer with id 1), the prefix is one
        no entry starts with, so every entry goes to :meth:`decode`.
        """
        if type is not None:
            self.check_type(type)
        json = self._fast_json
        if json is None:
            return None, b"no fast path"
        return (orjson.loads if type is None else json.decoder(type)), PLAIN_JSON_PREFIX

    def _decode_or_report(
        self,
        data: bytes | bytearray | memoryview,
        key: str,
        tenant: str | None,
        type: Any,
        failed: list[tuple[str, str]],
    ) -> Decoded | None:
        try:
            return self.decode(bytes(data), key=key, tenant=tenant, type=type)
        except DecodeError as exc:
            failed.append((key, str(exc)))
            return None

    def _decode(self, data: bytes, key: str, tenant: str | None, type: Any) -> Decoded:
        flags, ser_id, comp_id, created, expiry, tags, key_id, nonce, size = parse_header(data)
        storage_key = key.encode("utf-8")
        end = len(data)
        if flags & FLAG_ENCRYPTED:
            if flags & FLAG_SIGNED:
                raise DecodeError("entry is both signed and encrypted")
            enc = self._encryptor
            if enc is None:
                raise DecodeError("entry is encrypted and this codec has no encryptor")
            payload = enc.decrypt(key_id, nonce, data[size:], data[:size] + storage_key, tenant)
            authenticated = True
        elif flags & FLAG_SIGNED:
            signer = self._signer
            if signer is None:
                raise DecodeError("entry is signed and this codec has no signing key")
            end -= MAC_SIZE
            if end < size:
                raise DecodeError("truncated MAC")
            view = memoryview(data)
            if not signer.verify(key_id, storage_key, view[:end], view[end:]):
                raise DecodeError("MAC does not match (tampered, moved, or unknown key id)")
            payload = data[size:end]
            authenticated = True
        else:
            if not self._accept_plain:
                raise DecodeError(
                    "entry is neither signed nor encrypted; this codec requires it "
                    "(accept_unauthenticated=False)"
                )
            end -= CHECKSUM_SIZE
            if end < size:
                raise DecodeError("truncated checksum")
            if _crc32(data, _crc32(storage_key, 0)) != CHECKSUM_RESIDUE:
                raise DecodeError(_BAD_CHECKSUM)
            payload = data[size:end]
            authenticated = False
        if flags & FLAG_COMPRESSED:
            comp = self._compressors.get(comp_id) or _registry(default_compressor, comp_id)
            if comp is None:
                raise DecodeError(f"unknown compressor id {comp_id}")
            try:
                payload = comp.decompress(payload, self._max_value)
            except DecompressionError as exc:  # ours: the message is safe to show
                raise DecodeError(f"{compressor_name(comp_id)}: {exc}") from exc
        ser = self._readers.get(ser_id)
        if ser is None:
            ser = _registry(default_serializer, ser_id)
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
        signer = self._signer
        extra = ", signing_key=..." if signer is not None and not signer.derived else ""
        if self._max_value != DEFAULT_MAX_VALUE_BYTES:
            extra += f", max_value_bytes={self._max_value}"
        if self._accept_unauthenticated:
            extra += ", accept_unauthenticated=True"
        return (
            f"Codec(serializer={self._serializer!r}, compressor={self._compressor!r}, "
            f"encryptor={self._encryptor!r}{extra})"
        )


_BAD_CHECKSUM = "checksum does not match (corrupted, or stored under another key or tenant)"


def _registry(lookup: Any, ident: int) -> Any:
    # A DataFerry serializer or compressor whose optional library is missing: a miss for the
    # entries that need it (the log says what to install), not an error of the call.
    try:
        return lookup(ident)
    except ConfigurationError as exc:
        raise DecodeError(str(exc)) from exc


def _default_zstd() -> Compressor:
    comp = default_compressor(1)
    if comp is None:  # pragma: no cover - the registry always knows zstd
        raise ConfigurationError("no zstd compressor")
    return comp


def type_name(obj: object) -> str:
    """Return the class name of an object (for messages that must not carry values)."""
    return obj.__class__.__name__
