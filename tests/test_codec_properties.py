"""Hypothesis: round trips through every pipeline, and a decoder that only ever misses."""

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
PROTECTIONS = ["none", "aes", "signed"]


def make_codec(serializer: str, compressor: str, protection: str) -> Codec:
    return Codec(
        serializer=SERIALIZERS[serializer],
        compressor=COMPRESSORS[compressor],
        encryptor=AesGcmEncryptor(KEYRING) if protection == "aes" else None,
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
    )
    header = Codec.read_header(data)
    assert header.encrypted == (protection == "aes")
    assert header.signed == (protection == "signed")
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
envelope_like = st.builds(
    lambda flags, rest: b"DF\x01" + bytes([flags]) + rest,
    st.integers(0, 7),
    st.binary(max_size=120),
)


@settings(max_examples=400)
@given(data=st.binary(max_size=200) | envelope_like, codec=st.sampled_from(ALL_CODECS))
def test_arbitrary_bytes_only_ever_raise_decode_error(data: bytes, codec: Codec) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode(data, key="app:k:k", tenant=None)


@settings(max_examples=200)
@given(
    value=json_values,
    codec=st.sampled_from(ALL_CODECS),
    edits=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=3
    ),
)
def test_corrupted_envelopes_never_raise_anything_but_decode_error(
    value: Any, codec: Codec, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(codec.encode(value, key="k", created_at=1.0, logical_expiry=2.0, tags=("t",)))
    for pos, mask in edits:
        data[pos % len(data)] ^= mask
    with contextlib.suppress(DecodeError):
        codec.decode(bytes(data), key="k")


AUTHENTICATED = [c for (s, _, p), c in CODECS.items() if p != "none"]


@settings(max_examples=300)
@given(
    value=json_values,
    codec=st.sampled_from(AUTHENTICATED),
    bit=st.integers(min_value=0),
    tenant=tenants,
)
def test_a_flipped_bit_in_an_authenticated_envelope_is_always_a_decode_error(
    value: Any, codec: Codec, bit: int, tenant: str | None
) -> None:
    data = bytearray(
        codec.encode(value, key="k", created_at=1.0, logical_expiry=2.0, tenant=tenant)
    )
    bit %= len(data) * 8
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecodeError):
        codec.decode(bytes(data), key="k", tenant=tenant)
