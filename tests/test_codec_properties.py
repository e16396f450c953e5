"""Hypothesis: round trips through every pipeline, and a decoder that only ever misses.

Every envelope kind (plain with its checksum, compressed, encrypted, signed, and signed by an
encryptor's derived key for ``encrypt=False``) must decode to exactly the value written, or
raise DecodeError: a flipped bit, an edit, or a move to another key or tenant never yields a
different value.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dataferry import (
    AesGcmEncryptor,
    Codec,
    GzipCompressor,
    JsonSerializer,
    Keyring,
    Lz4Compressor,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
    ZstdCompressor,
)
from dataferry._codec import DecodeError

KEYRING = Keyring({"k1": os.urandom(32), "k2": os.urandom(32)}, primary="k2")
SIGNING = os.urandom(32)

# -- strategies ----------------------------------------------------------------------------------

# What JSON, MessagePack and pickle all carry unchanged: 64-bit ints, finite floats (orjson
# writes NaN as null), str-keyed dicts and lists (tuples would come back as lists).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=40,
)
tags = st.lists(st.text(min_size=1, max_size=12), max_size=3).map(tuple)
tenants = st.none() | st.from_regex(r"[A-Za-z0-9_.-]{1,16}", fullmatch=True)

COMPRESSORS = {
    "none": None,
    "zstd": ZstdCompressor(min_size=0),
    "gzip": GzipCompressor(min_size=0),
    "lz4": Lz4Compressor(min_size=0),
}
SERIALIZERS: dict[str, Serializer] = {
    "json": JsonSerializer(),
    "msgpack": MsgpackSerializer(),
    "pickle": PickleSerializer(),
}
# "aes-plain": a codec with an encryptor writing encrypt=False (signed, derived key).
PROTECTIONS = ["none", "aes", "signed", "aes-plain"]
ENCRYPT = {"none": None, "aes": None, "signed": None, "aes-plain": False}


def make_codec(serializer: str, compressor: str, protection: str) -> Codec:
    return Codec(
        serializer=SERIALIZERS[serializer],
        compressor=COMPRESSORS[compressor],
        encryptor=AesGcmEncryptor(KEYRING) if protection.startswith("aes") else None,
        signing_key=SIGNING if protection == "signed" else None,
    )


CODECS = {
    (s, c, p): make_codec(s, c, p)
    for s in SERIALIZERS
    for c in COMPRESSORS
    for p in PROTECTIONS
    if not (s == "pickle" and p == "none")  # refused by design (see test_codec)
}


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("serializer", list(SERIALIZERS))
@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=json_values,
    combo=st.tuples(st.sampled_from(list(COMPRESSORS)), st.sampled_from(PROTECTIONS)),
    tags=tags,
    tenant=tenants,
    compress=st.sampled_from([None, True, False]),
    created=st.floats(min_value=0, max_value=4e9),
)
def test_every_pipeline_round_trips_json_values(
    serializer: str,
    value: Any,
    combo: tuple[str, str],
    tags: tuple[str, ...],
    tenant: str | None,
    compress: bool | None,
    created: float,
) -> None:
    compressor, protection = combo
    assume((serializer, compressor, protection) in CODECS)
    codec = CODECS[(serializer, compressor, protection)]
    key = f"app:t:{tenant}:k" if tenant else "app:k:k"
    data = codec.encode(
        value,
        key=key,
        created_at=created,
        logical_expiry=created + 60,
        tags=tags,
        compress=compress,
        tenant=tenant,
        encrypt=ENCRYPT[protection],
    )
    header = Codec.read_header(data)
    assert header.encrypted == (protection == "aes")
    assert header.signed == (protection in ("signed", "aes-plain"))
    if compress is False:
        assert not header.compressed
    decoded = codec.decode(data, key=key, tenant=tenant)
    assert decoded.value == value
    assert (decoded.created_at, decoded.logical_expiry, decoded.tags) == (
        created,
        created + 60,
        tags,
    )


# -- the decoder only ever misses ----------------------------------------------------------------

ALL_CODECS = list(CODECS.values())
ALL_KINDS = list(CODECS)
envelope_like = st.builds(
    lambda flags, rest: b"DF\x02" + bytes([flags]) + rest,
    st.integers(0, 7),
    st.binary(max_size=120),
)


@settings(max_examples=400)
@given(data=st.binary(max_size=200) | envelope_like, codec=st.sampled_from(ALL_CODECS))
def test_arbitrary_bytes_only_ever_raise_decode_error(data: bytes, codec: Codec) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode(data, key="app:k:k", tenant=None)


def encode_kind(kind: tuple[str, str, str], value: Any, key: str, tenant: str | None) -> bytes:
    return CODECS[kind].encode(
        value,
        key=key,
        created_at=1.0,
        logical_expiry=2.0,
        tags=("t",),
        tenant=tenant,
        encrypt=ENCRYPT[kind[2]],
    )


@settings(max_examples=300)
@given(
    value=json_values,
    kind=st.sampled_from(ALL_KINDS),
    edits=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=3
    ),
)
def test_an_edited_envelope_is_a_miss_or_the_exact_value(
    value: Any, kind: tuple[str, str, str], edits: list[tuple[int, int]]
) -> None:
    data = bytearray(encode_kind(kind, value, "k", None))
    for pos, mask in edits:
        data[pos % len(data)] ^= mask
    try:
        decoded = CODECS[kind].decode(bytes(data), key="k")
    except DecodeError:
        return
    # Edits may cancel out (same byte twice); then it must be the very entry written.
    assert (decoded.value, decoded.created_at, decoded.logical_expiry, decoded.tags) == (
        value,
        1.0,
        2.0,
        ("t",),
    )


@settings(max_examples=400)
@given(value=json_values, kind=st.sampled_from(ALL_KINDS), bit=st.integers(min_value=0))
def test_a_flipped_bit_in_any_envelope_is_always_a_decode_error(
    value: Any, kind: tuple[str, str, str], bit: int
) -> None:
    # Plain entries too: CRC-32 detects every single-bit error (and every burst up to 32 bits).
    data = bytearray(encode_kind(kind, value, "app:t:acme:k", "acme"))
    bit %= len(data) * 8
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecodeError):
        CODECS[kind].decode(bytes(data), key="app:t:acme:k", tenant="acme")


keys = st.from_regex(r"[a-z0-9:]{1,24}", fullmatch=True)


@settings(max_examples=300)
@given(
    value=json_values,
    kind=st.sampled_from(ALL_KINDS),
    src=st.tuples(keys, tenants),
    dst=st.tuples(keys, tenants),
)
def test_an_entry_moved_to_another_key_or_tenant_is_always_a_decode_error(
    value: Any, kind: tuple[str, str, str], src: tuple[str, str | None], dst: tuple[str, str | None]
) -> None:
    def storage_key(key: str, tenant: str | None) -> str:
        return f"app:t:{tenant}:{key}" if tenant else f"app:k:{key}"

    assume(storage_key(*src) != storage_key(*dst))
    data = encode_kind(kind, value, storage_key(*src), src[1])
    with pytest.raises(DecodeError):
        CODECS[kind].decode(data, key=storage_key(*dst), tenant=dst[1])
    assert CODECS[kind].decode(data, key=storage_key(*src), tenant=src[1]).value == value


KEYED = [c for (s, _, p), c in CODECS.items() if p != "none"]
PLAIN_KINDS = [k for k in ALL_KINDS if k[2] == "none"]


@settings(max_examples=150)
@given(value=json_values, kind=st.sampled_from(PLAIN_KINDS), reader=st.sampled_from(KEYED))
def test_a_keyed_codec_never_serves_a_plain_entry(
    value: Any, kind: tuple[str, str, str], reader: Codec
) -> None:
    data = encode_kind(kind, value, "k", None)
    with pytest.raises(DecodeError):
        reader.decode(data, key="k")
