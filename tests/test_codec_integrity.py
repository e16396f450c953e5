"""Integrity of L2 entries: only authenticated entries on a keyed codec, checksums on plain
ones, and bounded decompression. Every fault is a DecodeError (a miss), never a wrong value."""

from __future__ import annotations

import itertools
import os
import time
import tracemalloc
import zlib
from typing import Any

import pytest

from dataferry import (
    AesGcmEncryptor,
    Codec,
    ConfigurationError,
    GzipCompressor,
    JsonSerializer,
    Keyring,
    Lz4Compressor,
    MsgpackSerializer,
    PayloadTooLargeError,
    ZstdCompressor,
)
from dataferry._codec import DecodeError
from dataferry._codec._envelope import FLAG_COMPRESSED, checksum, pack_header

KEY = "app:k:user:42"
K1, K2 = os.urandom(32), os.urandom(32)
VALUE = {"user": "ada", "admin": False, "roles": ["reader"], "score": 1.5}


def enc(codec: Codec, value: Any = VALUE, key: str = KEY, **kw: Any) -> bytes:
    return codec.encode(value, key=key, created_at=100.0, logical_expiry=400.0, **kw)


def plant(value: Any, key: str = KEY, tags: tuple[str, ...] = ()) -> bytes:
    """What anyone who can write to Redis can store: a well-formed plain entry (CRC and all)."""
    return Codec().encode(value, key=key, created_at=0.0, logical_expiry=1e12, tags=tags)


def keyed_codecs() -> dict[str, Codec]:
    return {
        "aes": Codec(encryptor=AesGcmEncryptor(Keyring({"k1": K1}))),
        "hmac": Codec(signing_key=K1),
        "aes+hmac": Codec(encryptor=AesGcmEncryptor(Keyring({"k1": K1})), signing_key=K2),
        "aes+zstd+msgpack": Codec(
            encryptor=AesGcmEncryptor(Keyring({"k1": K1})),
            compressor=ZstdCompressor(min_size=0),
            serializer=MsgpackSerializer(),
        ),
    }


# == B1: a keyed codec accepts only authenticated entries =======================================


@pytest.mark.parametrize("name", list(keyed_codecs()))
def test_a_keyed_codec_refuses_planted_plain_entries(name: str) -> None:
    codec = keyed_codecs()[name]
    forged = [
        plant({"admin": True}),
        plant({"admin": True}, tags=("users",)),
        Codec(compressor=ZstdCompressor(min_size=0)).encode(
            {"admin": True}, key=KEY, created_at=0, logical_expiry=1e12
        ),
        Codec(serializer=MsgpackSerializer()).encode(
            {"admin": True}, key=KEY, created_at=0, logical_expiry=1e12
        ),
    ]
    for data in forged:
        assert Codec().decode(data, key=KEY).value == {"admin": True}  # well-formed...
        with pytest.raises(DecodeError, match="neither signed nor encrypted"):
            codec.decode(data, key=KEY)  # ...but not ours: a miss
    for tenant in ("acme", "globex"):  # in any tenant too
        data = plant({"admin": True}, key=f"app:t:{tenant}:user:42")
        with pytest.raises(DecodeError, match="neither signed nor encrypted"):
            codec.decode(data, key=f"app:t:{tenant}:user:42", tenant=tenant)


@pytest.mark.parametrize("name", list(keyed_codecs()))
def test_a_keyed_codec_writes_only_authenticated_entries(name: str) -> None:
    codec = keyed_codecs()[name]
    for encrypt in (None, True, False):
        if encrypt and codec.encryptor is None:
            continue
        data = enc(codec, encrypt=encrypt, tenant="acme", key="app:t:acme:u")
        header = Codec.read_header(data)
        assert header.encrypted or header.signed
        assert header.integrity in ("aes-256-gcm", "hmac-sha256")
        assert codec.decode(data, key="app:t:acme:u", tenant="acme").value == VALUE
        for key, tenant in (
            ("app:t:globex:u", "globex"),
            ("app:k:u", None),
            ("app:t:acme:v", "acme"),
        ):
            with pytest.raises(DecodeError):
                codec.decode(data, key=key, tenant=tenant)


def test_encrypt_false_is_signed_with_a_key_derived_from_the_encryptors_keyring() -> None:
    encryptor = AesGcmEncryptor(Keyring({"2026-10": K1}))
    codec = Codec(encryptor=encryptor)
    data = enc(codec, encrypt=False)
    header = Codec.read_header(data)
    assert (header.signed, header.encrypted, header.key_id) == (True, False, "2026-10")
    assert b'"ada"' in data  # unencrypted, as asked
    assert codec.decode(data, key=KEY).value == VALUE
    # The MAC key is derived from the keyring (HKDF, its own label), never the raw AES key:
    # a codec signing with the raw key bytes can't verify it, one with the keyring can.
    assert Codec(signing_key=Keyring({"2026-10": K1})).decode(data, key=KEY).value == VALUE
    with pytest.raises(DecodeError, match="MAC"):
        Codec(signing_key=Keyring({"2026-10": K2})).decode(data, key=KEY)
    # Editing any byte, or moving the entry, is a miss.
    for i in range(len(data)):
        edited = bytearray(data)
        edited[i] ^= 0x01
        with pytest.raises(DecodeError):
            codec.decode(bytes(edited), key=KEY)
    with pytest.raises(DecodeError):
        codec.decode(data, key="app:k:user:43")


def test_rotating_the_encryptors_keyring_rotates_the_signing_key() -> None:
    encryptor = AesGcmEncryptor(Keyring({"2026-10": K1}))
    codec = Codec(encryptor=encryptor)
    old = enc(codec, "old", encrypt=False)
    encryptor.set_keyring(encryptor.keyring.rotated("2026-11", K2))
    new = enc(codec, "new", encrypt=False)
    assert Codec.read_header(new).key_id == "2026-11"
    assert codec.decode(old, key=KEY).value == "old"  # older ids still verify
    assert codec.decode(new, key=KEY).value == "new"
    encryptor.set_keyring(encryptor.keyring.without("2026-10"))
    with pytest.raises(DecodeError, match="MAC"):
        codec.decode(old, key=KEY)  # dropping an id makes its entries misses
    assert codec.decode(new, key=KEY).value == "new"


class KeylessEncryptor:
    """A user encryptor with no ``keyring`` attribute (e.g. backed by a KMS)."""

    def __init__(self) -> None:
        self._inner = AesGcmEncryptor(Keyring({"kms": K1}))

    def begin(self, tenant: str | None, /) -> tuple[str, bytes]:
        return self._inner.begin(tenant)

    def encrypt(
        self, key_id: str, nonce: bytes, plaintext: bytes, aad: bytes, tenant: str | None, /
    ) -> bytes:
        return self._inner.encrypt(key_id, nonce, plaintext, aad, tenant)

    def decrypt(
        self, key_id: str, nonce: bytes, ciphertext: bytes, aad: bytes, tenant: str | None, /
    ) -> bytes:
        return self._inner.decrypt(key_id, nonce, ciphertext, aad, tenant)


def test_an_encryptor_without_a_keyring_needs_a_signing_key_for_encrypt_false() -> None:
    codec = Codec(encryptor=KeylessEncryptor())
    assert codec.authenticates
    assert not codec.signs
    assert codec.decode(enc(codec), key=KEY).value == VALUE  # encrypting works
    with pytest.raises(ConfigurationError, match="encrypt=False needs signing_key="):
        enc(codec, encrypt=False)
    with pytest.raises(DecodeError, match="neither signed nor encrypted"):
        codec.decode(plant(VALUE), key=KEY)  # and plain entries are still refused
    signing = Codec(encryptor=KeylessEncryptor(), signing_key=K2)
    data = enc(signing, encrypt=False)
    assert Codec.read_header(data).signed
    assert signing.decode(data, key=KEY).value == VALUE


def test_reading_plain_entries_during_a_rollout_is_an_explicit_opt_in() -> None:
    # Before: nodes without keys wrote plain entries. During the rollout, keyed nodes may read
    # them if asked to, and still write only authenticated entries.
    old_entry = enc(Codec())
    strict = Codec(encryptor=AesGcmEncryptor(Keyring({"k1": K1})))
    rollout = Codec(encryptor=AesGcmEncryptor(Keyring({"k1": K1})), accept_unauthenticated=True)
    assert not strict.accept_unauthenticated
    assert rollout.accept_unauthenticated
    assert "accept_unauthenticated=True" in repr(rollout)
    with pytest.raises(DecodeError):
        strict.decode(old_entry, key=KEY)
    assert rollout.decode(old_entry, key=KEY).value == VALUE
    assert Codec.read_header(enc(rollout)).encrypted
    assert Codec.read_header(enc(rollout, encrypt=False)).signed
    # The checksum still applies: a corrupted or moved plain entry is a miss.
    with pytest.raises(DecodeError, match="checksum"):
        rollout.decode(old_entry, key="app:k:user:43")
    with pytest.raises(DecodeError, match="checksum"):
        rollout.decode(old_entry[:-1] + bytes([old_entry[-1] ^ 1]), key=KEY)
    with pytest.raises(ConfigurationError, match="accept_unauthenticated"):
        Codec(accept_unauthenticated="yes")  # type: ignore[arg-type]


# == B2: unkeyed entries carry a checksum over header, storage key and payload ===================

PLAIN_CODECS = {
    "json": Codec(),
    "msgpack": Codec(serializer=MsgpackSerializer()),
    "zstd": Codec(compressor=ZstdCompressor(min_size=0)),
    "gzip": Codec(compressor=GzipCompressor(min_size=0)),
    "lz4": Codec(compressor=Lz4Compressor(min_size=0)),
}


@pytest.mark.parametrize("name", list(PLAIN_CODECS))
@pytest.mark.parametrize("tags", [(), ("users", "région")], ids=["untagged", "tagged"])
def test_every_single_bit_flip_of_a_plain_entry_is_a_miss(name: str, tags: tuple[str, ...]) -> None:
    codec = PLAIN_CODECS[name]
    data = enc(codec, VALUE, tags=tags)
    assert Codec.read_header(data).integrity == "crc32"
    served = 0
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            codec.decode(bytes(flipped), key=KEY)
        except DecodeError:
            continue
        served += 1
    assert served == 0  # v1 served 108 of 300 such flips as wrong values


def test_plain_entries_swapped_between_keys_or_tenants_are_misses() -> None:
    codec = Codec()
    keys = [f"app:k:user:{i}" for i in range(12)] + [
        f"app:t:{t}:user:{i}" for t in ("acme", "globex") for i in range(6)
    ]
    entries = {k: enc(codec, {"id": k}, key=k) for k in keys}
    for a, b in itertools.permutations(keys, 2):
        with pytest.raises(DecodeError, match="checksum"):
            codec.decode(entries[a], key=b)
    for k in keys:
        assert codec.decode(entries[k], key=k).value == {"id": k}


def test_the_checksum_costs_one_crc32_over_the_stored_bytes() -> None:
    # The trailer is the CRC-32 of storage key + entry (little-endian), so the reader checks
    # crc32(key + entry-with-trailer) against CRC-32's constant residue: one pass, no copy.
    data = enc(Codec())
    assert data[-4:] == zlib.crc32(KEY.encode() + data[:-4]).to_bytes(4, "little")
    assert zlib.crc32(data, zlib.crc32(KEY.encode())) == 0x2144DF1C


# == B3: bounded decompression ===================================================================

MiB = 1024 * 1024


def zstd_rle_frame(content_size: int, declared: int | None) -> bytes:
    """A hand-made zstd frame: RLE blocks of spaces then a raw "1" (valid JSON: ``1``).

    128 KiB of output per 4 bytes of input, so 400 MiB takes 12.5 KB. ``declared`` is the
    content size written in the frame header (None: no size, as other writers may do).
    """
    block = 128 * 1024
    fhd, fcs = (0, b"") if declared is None else (3 << 6, declared.to_bytes(8, "little"))
    header = b"\x28\xb5\x2f\xfd" + bytes([fhd, 0x38]) + fcs  # window 128 KiB
    body = [(0b010 | block << 3).to_bytes(3, "little") + b" "] * ((content_size - 1) // block)
    rest = (content_size - 1) % block
    if rest:
        body.append((0b010 | rest << 3).to_bytes(3, "little") + b" ")
    body.append((0b001 | 1 << 3).to_bytes(3, "little") + b"1")  # last block: raw "1"
    return header + b"".join(body)


def forged_entry(frame: bytes, compressor_id: int, key: str = KEY) -> bytes:
    """A plain JSON entry with ``frame`` as its compressed payload, checksum included."""
    body = (
        pack_header(
            flags=FLAG_COMPRESSED,
            serializer_id=JsonSerializer.id,
            compressor_id=compressor_id,
            created_at=0.0,
            logical_expiry=1e12,
        )
        + frame
    )
    return body + checksum(key.encode(), body)


def measure_miss(codec: Codec, data: bytes) -> tuple[float, int]:
    """Decode ``data`` (must be a miss); return (seconds, tracemalloc peak bytes)."""
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with pytest.raises(DecodeError):
            codec.decode(data, key=KEY)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return elapsed, peak


def test_the_hand_made_zstd_frame_is_a_real_servable_entry() -> None:
    import zstandard

    frame = zstd_rle_frame(1 * MiB, declared=1 * MiB)
    assert zstandard.ZstdDecompressor().decompress(frame) == b" " * (MiB - 1) + b"1"
    assert Codec().decode(forged_entry(frame, 1), key=KEY).value == 1


@pytest.mark.parametrize(
    "declared",
    [400 * MiB, None, 1000, 32 * MiB],
    ids=["declares-400MiB", "no-size", "lies-1000B", "lies-just-the-limit"],
)
def test_a_forged_zstd_bomb_is_a_cheap_miss(declared: int | None) -> None:
    frame = zstd_rle_frame(400 * MiB, declared=declared)
    assert len(frame) < 13_000  # 12.5 KB that would inflate to 400 MiB
    _, peak = measure_miss(Codec(), forged_entry(frame, 1))
    # Time is measured in benchmarks/bench_codec.py, not asserted here (noisy machines).
    assert peak < 50 * MiB


def xxh32(data: bytes) -> int:
    """XXH32 with seed 0 (for LZ4 frame header checksums; short inputs only)."""
    p1, p2, p3, p4, p5, m = 2654435761, 2246822519, 3266489917, 668265263, 374761393, 2**32 - 1
    assert len(data) < 16

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & m

    h = (p5 + len(data)) & m
    i = 0
    while i + 4 <= len(data):
        h = rotl((h + int.from_bytes(data[i : i + 4], "little") * p3) & m, 17) * p4 & m
        i += 4
    for byte in data[i:]:
        h = rotl((h + byte * p5) & m, 11) * p1 & m
    h = ((h ^ (h >> 15)) * p2) & m
    h = ((h ^ (h >> 13)) * p3) & m
    return h ^ (h >> 16)


def test_xxh32_matches_lz4_frame_headers() -> None:
    import lz4.frame

    frame = lz4.frame.compress(b"abc" * 100, store_size=True)
    assert frame[14] == xxh32(frame[4:14]) >> 8 & 0xFF


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """64 MiB of zeros compressed by gzip and lz4, truthful or lying about their size."""
    import lz4.frame

    chunk = bytes(MiB)
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    gzip_frame = b"".join(gz.compress(chunk) for _ in range(64)) + gz.flush()

    def lz4_frame(declared: int) -> bytes:  # 0: no size in the header
        lz = lz4.frame.LZ4FrameCompressor()
        size = 64 * MiB if declared else 0
        out: bytes = lz.begin(source_size=size)
        out += b"".join(lz.compress(chunk) for _ in range(64)) + lz.flush()
        if declared and declared != size:  # lie: patch the size, redo the header checksum
            descriptor = out[4:6] + declared.to_bytes(8, "little")
            out = out[:4] + descriptor + bytes([xxh32(descriptor) >> 8 & 0xFF]) + out[15:]
        return out

    return {
        "gzip": gzip_frame,
        # The trailer is not covered by anything a reader can check first: it may lie.
        "gzip-lies-100B": gzip_frame[:-4] + (100).to_bytes(4, "little"),
        "gzip-lies-just-the-limit": gzip_frame[:-4] + (32 * MiB).to_bytes(4, "little"),
        "lz4": lz4_frame(64 * MiB),
        "lz4-no-size": lz4_frame(0),
        "lz4-lies-just-the-limit": lz4_frame(32 * MiB),
    }


@pytest.mark.parametrize(
    "name",
    [
        "gzip",
        "gzip-lies-100B",
        "gzip-lies-just-the-limit",
        "lz4",
        "lz4-no-size",
        "lz4-lies-just-the-limit",
    ],
)
def test_gzip_and_lz4_bombs_are_bounded_misses(bombs: dict[str, bytes], name: str) -> None:
    comp_id = GzipCompressor.id if name.startswith("gzip") else Lz4Compressor.id
    data = forged_entry(bombs[name], comp_id)
    for limit in (32 * MiB, 1 * MiB):  # the default, then a tighter reader
        _, peak = measure_miss(Codec(max_value_bytes=limit), data)
        # Inflated at most up to what the frame declares, itself at most the limit.
        assert peak < min(limit, 48 * MiB) + 1 * MiB


def test_max_value_bytes_is_symmetric() -> None:
    value = "x" * 1000  # 1002 bytes of JSON
    assert Codec(max_value_bytes=1002).decode(enc(Codec(max_value_bytes=1002), value), key=KEY)
    with pytest.raises(PayloadTooLargeError, match="1002 bytes, over max_value_bytes=1001"):
        enc(Codec(max_value_bytes=1001), value)
    with pytest.raises(PayloadTooLargeError):  # compression doesn't get around it
        enc(Codec(max_value_bytes=1001, compressor=ZstdCompressor(min_size=0)), value)
    # A reader with a lower limit than the writer misses the compressed entry.
    written = enc(Codec(compressor=ZstdCompressor(min_size=0)), value)
    assert Codec().decode(written, key=KEY).value == value
    with pytest.raises(DecodeError, match="zstd: zstd frame larger than the decompression limit"):
        Codec(max_value_bytes=1001).decode(written, key=KEY)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "32MiB", None])
def test_max_value_bytes_is_validated(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_value_bytes"):
        Codec(max_value_bytes=bad)
