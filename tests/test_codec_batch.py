"""Batch decoding (``Codec.decode_many`` / ``decode_values``, behind ``get_many``): every entry
is judged exactly as ``Codec.decode`` judges it, whichever path it takes, and a fault is a
reported miss for that key only."""

from __future__ import annotations

import dataclasses
import os
import zlib
from typing import Any

import pytest

from dataferry import (
    AesGcmEncryptor,
    Codec,
    ConfigurationError,
    Keyring,
    MsgpackSerializer,
    ZstdCompressor,
)
from dataferry._codec import Decoded, DecodeError
from dataferry._codec._envelope import crc32

K1 = os.urandom(32)
VALUE = {"user": "ada", "roles": ["reader"], "score": 1.5, "text": "x" * 1000}
NOW = 1_000.0


@dataclasses.dataclass
class User:
    user: str
    roles: list[str]
    score: float
    text: str


def entry(codec: Codec, key: str, value: Any = VALUE, expiry: float = 2_000.0, **kw: Any) -> bytes:
    return codec.encode(value, key=key, created_at=500.0, logical_expiry=expiry, **kw)


def one_by_one(codec: Codec, keys: list[str], blobs: list[Any], **kw: Any) -> list[Any]:
    """What decode() says of each blob: a Decoded, the DecodeError's message, or None."""
    out: list[Any] = []
    for key, data in zip(keys, blobs, strict=True):
        if data is None:
            out.append(None)
            continue
        try:
            out.append(codec.decode(data, key=key, **kw))
        except DecodeError as exc:
            out.append(str(exc))
    return out


def mixed_batch(codec: Codec) -> tuple[list[str], list[Any]]:
    """Every kind of entry a batch can meet, good and bad, under its own key."""
    keys = [f"ns:k:{i}" for i in range(15)]
    good = entry(codec, keys[0])
    flipped = bytearray(entry(codec, keys[5]))
    flipped[40] ^= 0x01
    blobs: list[Any] = [
        good,  # the common entry
        None,  # absent
        entry(codec, keys[2], tags=("t1", "t2")),  # tagged: the general path
        entry(codec, keys[3], compress=True),  # compressed
        entry(codec, keys[4], expiry=NOW - 1),  # stale: dropped, not an error
        bytes(flipped),  # a bit flip: refused
        entry(codec, keys[0]),  # stored under another key: refused
        good[:20],  # truncated inside the header
        good[:27],  # truncated inside the checksum
        b"",  # empty
        bytearray(entry(codec, keys[10])),  # a bytearray from some backend
        memoryview(entry(codec, keys[11])),  # a memoryview
        Codec(serializer=MsgpackSerializer()).encode(
            VALUE, key=keys[12], created_at=500.0, logical_expiry=2_000.0
        ),  # another serializer, named in the envelope
        entry(codec, keys[13], value=[1, None, "é"]),
        entry(codec, keys[14], expiry=NOW, tags=("t",)),  # stale, on the general path
    ]
    return keys, blobs


def check_batch(codec: Codec, keys: list[str], blobs: list[Any], **kw: Any) -> None:
    expected = one_by_one(codec, keys, blobs, **kw)
    found, failed = codec.decode_many(keys, blobs, fresh_after=NOW, **kw)
    want_found = [
        (k, d, len(b))
        for k, d, b in zip(keys, expected, blobs, strict=True)
        if isinstance(d, Decoded) and d.logical_expiry > NOW
    ]
    assert found == want_found
    assert all(type(d) is Decoded for _, d, _ in found)
    assert failed == [(k, e) for k, e in zip(keys, expected, strict=True) if isinstance(e, str)]

    names = [f"user-{k}" for k in keys]
    values, hits, failed_v = codec.decode_values(keys, blobs, names, fresh_after=NOW, **kw)
    assert values == {f"user-{k}": d.value for k, d, _ in want_found}
    assert list(values) == [f"user-{k}" for k, _, _ in want_found]  # in order
    assert hits == len(want_found)
    assert failed_v == failed


def test_a_batch_decodes_each_entry_exactly_as_decode_does() -> None:
    codec = Codec()
    keys, blobs = mixed_batch(codec)
    check_batch(codec, keys, blobs)
    found, failed = codec.decode_many(keys, blobs, fresh_after=NOW)
    # The figures the rest of this file relies on: what hit and what was refused.
    assert [k for k, _, _ in found] == ["ns:k:0", "ns:k:2", "ns:k:3", *keys[10:14]]
    assert [k for k, _ in failed] == ["ns:k:5", "ns:k:6", "ns:k:7", "ns:k:8", "ns:k:9"]
    assert "checksum does not match" in dict(failed)["ns:k:6"]


def test_a_batch_decodes_into_a_type() -> None:
    pytest.importorskip("msgspec")
    codec = Codec()
    keys, blobs = mixed_batch(codec)
    del keys[13], blobs[13]  # a list is not a User: a miss either way
    check_batch(codec, keys, blobs, type=User)
    found, _ = codec.decode_many(keys, blobs, type=User)
    assert found[0][1].value == User(**VALUE)  # type: ignore[arg-type]


def test_a_batch_names_a_type_it_cannot_decode_before_reading() -> None:
    class NotDecodable:
        def __init__(self, x: object) -> None: ...

    with pytest.raises(ConfigurationError):
        Codec().decode_many(["k"], [None], type=NotDecodable)
    with pytest.raises(ConfigurationError):
        Codec().decode_values(["k"], [None], ["k"], type=NotDecodable)


def test_a_keyed_codec_refuses_plain_entries_in_a_batch_too() -> None:
    # The batch fast path reads plain JSON entries; a keyed codec must still refuse them.
    keyed = Codec(encryptor=AesGcmEncryptor(Keyring({"k1": K1})))
    plain = entry(Codec(), "ns:k:p")
    sealed = entry(keyed, "ns:k:e")
    found, failed = keyed.decode_many(["ns:k:p", "ns:k:e"], [plain, sealed])
    assert [k for k, _, _ in found] == ["ns:k:e"]
    assert [k for k, _ in failed] == ["ns:k:p"]
    assert "neither signed nor encrypted" in failed[0][1]
    values, hits, failed = keyed.decode_values(["ns:k:p"], [plain], ["p"])
    assert values == {}
    assert hits == 0
    assert len(failed) == 1
    # ... unless the rollout opt-in says otherwise.
    rollout = Codec(encryptor=AesGcmEncryptor(Keyring({"k1": K1})), accept_unauthenticated=True)
    check_batch(rollout, ["ns:k:p", "ns:k:e"], [plain, sealed])


@pytest.mark.parametrize(
    "codec",
    [
        Codec(signing_key=K1),
        Codec(compressor=ZstdCompressor(min_size=0)),
        Codec(serializer=MsgpackSerializer()),
    ],
    ids=["hmac", "zstd", "msgpack"],
)
def test_a_batch_of_other_pipelines_matches_decode(codec: Codec) -> None:
    keys = [f"ns:k:{i}" for i in range(4)]
    blobs: list[Any] = [entry(codec, k) for k in keys]
    blobs[1] = blobs[0]  # moved: refused
    blobs[2] = None
    check_batch(codec, keys, blobs)


def test_a_custom_serializer_with_the_json_id_is_not_read_as_json() -> None:
    class Upper:
        id = 1

        def dumps(self, value: Any) -> bytes:
            return str(value).upper().encode()

        def loads(self, data: bytes, type: Any = None) -> Any:
            return data.decode()

    codec = Codec(serializer=Upper())
    keys = ["ns:k:a", "ns:k:b"]
    blobs: list[Any] = [entry(codec, k, value="abc") for k in keys]
    found, failed = codec.decode_many(keys, blobs)
    assert [d.value for _, d, _ in found] == ["ABC", "ABC"]
    assert not failed
    assert codec.decode_values(keys, blobs, keys)[0] == {"ns:k:a": "ABC", "ns:k:b": "ABC"}


def test_decode_values_counts_a_key_asked_twice_as_two_hits() -> None:
    codec = Codec()
    data = entry(codec, "ns:k:a")
    values, hits, failed = codec.decode_values(
        ["ns:k:a", "ns:k:a", "ns:k:b"], [data, data, None], ["a", "a", "b"]
    )
    assert values == {"a": VALUE}
    assert hits == 2
    assert not failed


def test_the_batch_lists_must_line_up() -> None:
    with pytest.raises(ValueError, match="zip"):
        Codec().decode_many(["a", "b"], [None])
    with pytest.raises(ValueError, match="zip"):
        Codec().decode_values(["a"], [None], ["a", "b"])


def test_the_checksum_is_zlibs_crc32_whichever_implementation_computes_it() -> None:
    # zlib-ng's crc32 is used when installed; the wire format is zlib's CRC-32 either way.
    for data in (b"", b"DF", os.urandom(1), os.urandom(1031), os.urandom(70_000)):
        for start in (0, 1, 0xFFFFFFFF, zlib.crc32(b"ns:k:key")):
            assert crc32(data, start) == zlib.crc32(data, start)
        assert crc32(memoryview(data), 0) == zlib.crc32(data)
