"""Envelope v2: header framing, validation, names for ``inspect``, and the golden vectors."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataferry import Codec, Keyring
from dataferry._codec import DecodeError, compressor_name, serializer_name
from dataferry._codec._envelope import (
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    FLAG_SIGNED,
    PLAIN_HEADER_SIZE,
    EnvelopeError,
    pack_header,
    unpack_header,
)
from tests.golden import vectors

GOLDEN = vectors.load()

# == header framing ===============================================================================


def test_plain_header_is_fixed_size_and_round_trips() -> None:
    raw = pack_header(flags=0, serializer_id=1, compressor_id=0, created_at=1.5, logical_expiry=2.5)
    assert len(raw) == PLAIN_HEADER_SIZE
    h = unpack_header(raw + b"{}")
    assert (h.version, h.flags, h.serializer_id, h.compressor_id) == (2, 0, 1, 0)
    assert (h.created_at, h.logical_expiry, h.tags, h.key_id, h.nonce) == (1.5, 2.5, (), "", b"")
    assert h.size == PLAIN_HEADER_SIZE


@given(
    tags=st.lists(st.text(max_size=20), max_size=5).map(tuple),
    key_id=st.from_regex(r"[A-Za-z0-9_.:-]{1,40}", fullmatch=True),
    nonce=st.binary(min_size=12, max_size=12),
    created=st.floats(allow_nan=False),
    compressed=st.booleans(),
)
def test_full_header_round_trips(
    tags: tuple[str, ...], key_id: str, nonce: bytes, created: float, compressed: bool
) -> None:
    flags = FLAG_ENCRYPTED | (FLAG_COMPRESSED if compressed else 0)
    raw = pack_header(
        flags=flags,
        serializer_id=2,
        compressor_id=1 if compressed else 0,
        created_at=created,
        logical_expiry=created,
        tags=tags,
        key_id=key_id,
        nonce=nonce,
    )
    h = unpack_header(raw + b"payload")
    assert (h.tags, h.key_id, h.nonce, h.flags, h.size) == (tags, key_id, nonce, flags, len(raw))
    assert h.created_at == created


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tags": ("t",) * 70_000}, "more than 65535 tags"),
        ({"tags": ("x" * 70_000,)}, "tag longer"),
        ({"flags": FLAG_SIGNED, "key_id": "k" * 256}, "longer than 255"),
        ({"flags": FLAG_SIGNED, "key_id": "clé"}, "not ASCII"),
        ({"flags": FLAG_SIGNED, "tags": ("t",)}, "key id is required"),
        ({"flags": 0, "key_id": "k1"}, "key id is required"),
        ({"flags": FLAG_ENCRYPTED, "key_id": "k1", "nonce": b"short"}, "nonce must be 12"),
    ],
)
def test_pack_header_refuses_what_it_cannot_frame(kwargs: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "flags": 0,
        "serializer_id": 1,
        "compressor_id": 0,
        "created_at": 0.0,
        "logical_expiry": 0.0,
    }
    with pytest.raises(EnvelopeError, match=message):
        pack_header(**{**base, **kwargs})


def _fixed(
    magic: bytes = b"DF", version: int = 2, flags: int = 0, comp: int = 0, ntags: int = 0
) -> bytes:
    return struct.pack(">2sBBBBddH", magic, version, flags, 1, comp, 0.0, 0.0, ntags)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"DF\x02", "truncated header"),
        (_fixed(magic=b"XX") + b"\x00", "bad magic"),
        (_fixed(version=1) + b"\x00", "unsupported envelope version 1"),
        (_fixed(version=3) + b"\x00", "unsupported envelope version 3"),
        (_fixed(flags=0x80) + b"\x00", "unknown flags"),
        (_fixed(comp=1) + b"\x00", "compressor id disagrees"),
        (_fixed(flags=FLAG_COMPRESSED) + b"\x00", "compressor id disagrees"),
        (_fixed(ntags=1) + b"\x00\x09ab", "truncated tag"),
        (_fixed(ntags=1) + b"\x00\x02\xff\xfe\x00", "malformed header"),
        (_fixed(ntags=2) + b"\x00", "malformed header"),
        (_fixed(), "truncated key id"),
        (_fixed() + b"\x05ab", "truncated key id"),
        (_fixed() + b"\x02k1", "key id disagrees"),
        (_fixed(flags=FLAG_SIGNED) + b"\x00", "key id disagrees"),
        (_fixed(flags=FLAG_ENCRYPTED) + b"\x02k1" + b"\x00" * 11, "truncated nonce"),
    ],
)
def test_unpack_header_rejects_malformed_bytes(data: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        unpack_header(data)
    with pytest.raises(DecodeError, match=message):
        Codec.read_header(data)
    with pytest.raises(DecodeError):
        Codec().decode(data, key="k")


# == names for `dataferry inspect` ===============================================================


def test_ids_map_to_names_for_inspection() -> None:
    assert [serializer_name(i) for i in (1, 2, 3, 200)] == [
        "json",
        "msgpack",
        "pickle",
        "custom-200",
    ]
    assert [compressor_name(i) for i in (0, 1, 2, 3, 9)] == [
        "none",
        "zstd",
        "gzip",
        "lz4",
        "custom-9",
    ]


def test_read_header_describes_an_entry_without_its_value() -> None:
    spec = GOLDEN["msgpack_compressed_encrypted"]
    header = Codec.read_header(bytes.fromhex(spec["envelope"]))
    assert (header.serializer_name, header.compressor_name) == ("msgpack", "lz4")
    assert header.compressed
    assert header.encrypted
    assert not header.signed
    assert header.describe() == {
        "version": 2,
        "flags": ["compressed", "encrypted"],
        "serializer": "msgpack",
        "compressor": "lz4",
        "key_id": "k2",
        "integrity": "aes-256-gcm",
        "created_at": vectors.CREATED_AT,
        "logical_expiry": vectors.LOGICAL_EXPIRY,
        "tags": ["orders"],
        "header_size": header.size,
    }
    plain = Codec.read_header(bytes.fromhex(GOLDEN["plain_json"]["envelope"])).describe()
    assert (plain["flags"], plain["key_id"], plain["compressor"]) == ([], None, "none")
    assert plain["integrity"] == "crc32"
    signed = Codec.read_header(bytes.fromhex(GOLDEN["signed_by_encryptor"]["envelope"]))
    assert (signed.signed, signed.encrypted, signed.integrity) == (True, False, "hmac-sha256")


# == golden vectors ===============================================================================


def test_every_flag_combination_has_a_golden_vector() -> None:
    combos = set()
    for vec in GOLDEN.values():
        h = Codec.read_header(bytes.fromhex(vec["envelope"]))
        combos.add((h.compressed, h.encrypted, h.signed))
    assert combos == {
        (False, False, False),
        (True, False, False),
        (False, True, False),
        (True, True, False),
        (False, False, True),
        (True, False, True),
    }
    assert set(vectors.SPECS) <= set(GOLDEN), "run: python -m tests.golden.vectors --add-missing"


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_vector_decodes_with_current_code(name: str) -> None:
    vec = GOLDEN[name]
    spec = vec["spec"]
    data = bytes.fromhex(vec["envelope"])
    decoded = vectors.build_codec(spec).decode(
        data, key=vectors.storage_key(spec), tenant=spec.get("tenant")
    )
    assert decoded.value == spec["value"]
    assert decoded.created_at == vectors.CREATED_AT
    assert decoded.logical_expiry == vectors.LOGICAL_EXPIRY
    assert decoded.tags == tuple(spec.get("tags", ()))


@pytest.mark.parametrize("name", sorted(n for n, v in GOLDEN.items() if v["reproducible"]))
def test_golden_vector_is_reproduced_byte_for_byte(name: str) -> None:
    vec = GOLDEN[name]
    assert vectors.encode(vec["spec"]).hex() == vec["envelope"]


@pytest.mark.parametrize("name", sorted(n for n, v in GOLDEN.items() if not v["reproducible"]))
def test_golden_vector_header_is_reproduced_where_the_payload_may_vary(name: str) -> None:
    vec = GOLDEN[name]
    old = Codec.read_header(bytes.fromhex(vec["envelope"]))
    new_bytes = vectors.encode(vec["spec"])
    new = Codec.read_header(new_bytes)
    assert new == old
    assert new_bytes[: new.size] == bytes.fromhex(vec["envelope"])[: old.size]


def test_plain_vectors_are_read_by_a_default_codec() -> None:
    # Readers never depend on their own configuration for unauthenticated entries.
    reader = Codec()
    for vec in GOLDEN.values():
        spec = vec["spec"]
        if spec.get("encrypt") or spec.get("sign"):
            continue
        data = bytes.fromhex(vec["envelope"])
        assert reader.decode(data, key=vectors.storage_key(spec)).value == spec["value"]


def test_plain_vectors_end_with_a_crc32_of_storage_key_header_and_payload() -> None:
    # The definition, spelled out: CRC-32 of the UTF-8 storage key followed by the entry up to
    # the trailer, stored little-endian. Other implementations can check entries with this.
    plain = [
        v for v in GOLDEN.values() if not Codec.read_header(bytes.fromhex(v["envelope"])).key_id
    ]
    assert len(plain) >= 5
    for vec in plain:
        data = bytes.fromhex(vec["envelope"])
        key = vectors.storage_key(vec["spec"]).encode()
        assert data[-4:] == zlib.crc32(key + data[:-4]).to_bytes(4, "little")


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_vector_read_under_another_key_or_tenant_is_a_decode_error(name: str) -> None:
    vec = GOLDEN[name]
    spec = vec["spec"]
    data = bytes.fromhex(vec["envelope"])
    codec = vectors.build_codec(spec)
    key = vectors.storage_key(spec)
    for other_key, other_tenant in [
        (key + "x", spec.get("tenant")),
        ("app:t:globex:user:42", "globex"),
        ("app:k:user:43", None),
    ]:
        with pytest.raises(DecodeError):
            codec.decode(data, key=other_key, tenant=other_tenant)


def test_encrypt_false_entries_are_signed_with_a_key_derived_from_the_encryptors_keyring() -> None:
    # Pinned: HMAC-SHA256 under HKDF(keyring key, "dataferry/v1/hmac-sha256"), the same MAC key
    # as Codec(signing_key=<that keyring>), so either reads the other's entries.
    for name in ("signed_by_encryptor", "signed_by_encryptor_compressed"):
        spec = GOLDEN[name]["spec"]
        data = bytes.fromhex(GOLDEN[name]["envelope"])
        assert Codec.read_header(data).key_id == "k2"
        reader = Codec(signing_key=vectors.keyring())
        assert reader.decode(data, key=vectors.storage_key(spec)).value == spec["value"]
        with pytest.raises(DecodeError, match="no signing key"):
            Codec().decode(data, key=vectors.storage_key(spec))
        other = Keyring({"k2": bytes(32)})
        with pytest.raises(DecodeError, match="MAC"):
            Codec(signing_key=other).decode(data, key=vectors.storage_key(spec))


def test_golden_vector_under_a_dropped_key_is_a_decode_error() -> None:
    vec = GOLDEN["encrypted_rotated_key"]
    codec = vectors.build_codec(vec["spec"])
    assert codec.encryptor is not None
    codec.encryptor.set_keyring(vectors.keyring("k2").without("k1"))  # type: ignore[attr-defined]
    with pytest.raises(DecodeError, match="not in the keyring"):
        codec.decode(bytes.fromhex(vec["envelope"]), key=vectors.storage_key(vec["spec"]))


def test_a_later_envelope_version_is_a_decode_error() -> None:
    data = bytearray.fromhex(GOLDEN["plain_json"]["envelope"])
    data[2] = 3
    with pytest.raises(DecodeError, match="version 3"):
        Codec().decode(bytes(data), key="app:k:user:42")


# == older versions: a miss, recomputed ===========================================================

V1 = vectors.load(vectors.OLD_PATHS[1])


@pytest.mark.parametrize("name", sorted(V1))
def test_v1_entries_are_misses_for_every_current_reader(name: str) -> None:
    # After an upgrade, entries written by v1 nodes are refused like corrupt ones: the cache
    # treats them as misses and the factory rewrites them as v2. Never a wrong value.
    vec = V1[name]
    spec = vec["spec"]
    data = bytes.fromhex(vec["envelope"])
    assert data[:3] == b"DF\x01"
    readers = [vectors.build_codec(spec), Codec(), Codec(accept_unauthenticated=True)]
    for reader in readers:
        with pytest.raises(DecodeError, match="unsupported envelope version 1"):
            reader.decode(data, key=vectors.storage_key(spec), tenant=spec.get("tenant"))
    with pytest.raises(DecodeError, match="unsupported envelope version 1"):
        Codec.read_header(data)


def test_v1_and_v2_vectors_cover_the_same_values() -> None:
    assert set(V1) <= set(GOLDEN)
    for name, vec in V1.items():
        assert GOLDEN[name]["spec"] == vec["spec"]
        assert GOLDEN[name]["envelope"] != vec["envelope"]
