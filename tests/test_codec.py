"""The codec pipeline: serializers, compressors, encryption, signing, and safe decoding."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import os
import sys
import uuid
from decimal import Decimal
from typing import Any

import msgspec
import pydantic
import pytest

from dataferry import (
    AesGcmEncryptor,
    Codec,
    ConfigurationError,
    GzipCompressor,
    JsonSerializer,
    Keyring,
    KeyringError,
    Lz4Compressor,
    MsgpackSerializer,
    PickleSerializer,
    SerializationError,
    ZstdCompressor,
)
from dataferry._codec import DecodeError
from dataferry._codec._envelope import FLAG_SIGNED, checksum, pack_header

KEY = "app:k:user:42"
K1, K2 = os.urandom(32), os.urandom(32)


def ring(primary: str = "k1", **keys: bytes) -> Keyring:
    return Keyring(keys or {"k1": K1}, primary=primary)


def enc(data: Codec, value: Any, key: str = KEY, **kw: Any) -> bytes:
    return data.encode(value, key=key, created_at=100.0, logical_expiry=400.0, **kw)


def roundtrip(codec: Codec, value: Any, **kw: Any) -> Any:
    return codec.decode(enc(codec, value), key=KEY, **kw).value


# == types a user would expect to cache ==========================================================


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Address:
    city: str
    zip: str


@dataclasses.dataclass
class User:
    id: int
    name: str
    joined: dt.datetime
    uid: uuid.UUID
    balance: Decimal
    address: Address
    roles: tuple[str, ...]
    born: dt.date | None = None


class PydUser(pydantic.BaseModel):
    id: int
    name: str
    joined: dt.datetime
    balance: Decimal


class StructUser(msgspec.Struct):
    id: int
    name: str
    joined: dt.datetime
    uid: uuid.UUID


NOW = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)
UID = uuid.UUID("12345678-1234-5678-1234-567812345678")
USER = User(
    7,
    "Ada",
    NOW,
    UID,
    Decimal("10.10"),
    Address("Paris", "75001"),
    ("admin",),
    dt.date(1815, 12, 10),
)
TYPED = [JsonSerializer(), MsgpackSerializer()]


@pytest.mark.parametrize("serializer", TYPED, ids=lambda s: type(s).__name__)
def test_dataclass_with_datetime_uuid_decimal_decodes_untyped_as_json_data(serializer: Any) -> None:
    value = roundtrip(Codec(serializer=serializer), USER)
    assert value == {
        "id": 7,
        "name": "Ada",
        "joined": "2026-01-02T03:04:05.678000+00:00",
        "uid": "12345678-1234-5678-1234-567812345678",
        "balance": "10.10",  # a string: exact, unlike a float
        "address": {"city": "Paris", "zip": "75001"},
        "roles": ["admin"],
        "born": "1815-12-10",
    }


@pytest.mark.parametrize("serializer", TYPED, ids=lambda s: type(s).__name__)
def test_typed_decode_rebuilds_a_dataclass(serializer: Any) -> None:
    assert roundtrip(Codec(serializer=serializer), USER, type=User) == USER


@pytest.mark.parametrize("serializer", TYPED, ids=lambda s: type(s).__name__)
def test_typed_decode_rebuilds_pydantic_models_and_msgspec_structs(serializer: Any) -> None:
    codec = Codec(serializer=serializer)
    pyd = PydUser(id=1, name="Bo", joined=NOW, balance=Decimal("0.1"))
    assert roundtrip(codec, pyd, type=PydUser) == pyd
    st = StructUser(2, "Cy", NOW, UID)
    assert roundtrip(codec, st, type=StructUser) == st
    # Containers of models (msgspec can't do pydantic ones: pydantic's TypeAdapter takes over).
    assert roundtrip(codec, [pyd, pyd], type=list[PydUser]) == [pyd, pyd]
    assert roundtrip(codec, {"a": st}, type=dict[str, StructUser]) == {"a": st}
    assert roundtrip(codec, [USER], type=list[User]) == [USER]


@pytest.mark.parametrize("serializer", TYPED, ids=lambda s: type(s).__name__)
def test_typed_decode_of_plain_types(serializer: Any) -> None:
    codec = Codec(serializer=serializer)
    assert roundtrip(codec, NOW, type=dt.datetime) == NOW
    assert roundtrip(codec, UID, type=uuid.UUID) == UID
    assert roundtrip(codec, Decimal("1.23"), type=Decimal) == Decimal("1.23")
    assert roundtrip(codec, (1, "a"), type=tuple[int, str]) == (1, "a")
    # JSON keys are strings (JsonSerializer refuses int keys); type= turns them back.
    keys: dict[Any, str] = {"1": "a"} if isinstance(serializer, JsonSerializer) else {1: "a"}
    assert roundtrip(codec, keys, type=dict[int, str]) == {1: "a"}
    assert roundtrip(codec, Color.RED, type=Color) is Color.RED
    assert roundtrip(codec, {"x": 1}, type=Any) == {"x": 1}


@pytest.mark.parametrize("serializer", TYPED, ids=lambda s: type(s).__name__)
def test_a_value_that_no_longer_fits_its_type_is_a_decode_error_without_the_value(
    serializer: Any,
) -> None:
    # E.g. the class changed between deploys: a miss (the factory recomputes), not a crash.
    codec = Codec(serializer=serializer)
    data = enc(codec, {"id": "secret-value-123", "name": "x"})
    for tp in (PydUser, StructUser, User):
        with pytest.raises(DecodeError) as info:
            codec.decode(data, key=KEY, type=tp)
        assert "secret-value-123" not in str(info.value)


def test_json_encodes_sets_bytes_and_library_objects() -> None:
    codec = Codec()
    with pytest.raises(SerializationError):  # a set would silently come back as a list
        enc(codec, {1, 2})
    assert roundtrip(codec, b"\x00\xff") == "AP8="  # base64, what typed decoders expect
    assert roundtrip(codec, b"\x00\xff", type=bytes) == b"\x00\xff"
    with pytest.raises(SerializationError, match="dict keys must be str"):
        enc(codec, {1: "a"})  # would come back as {"1": "a"}
    assert roundtrip(codec, StructUser(1, "a", NOW, UID))["uid"] == str(UID)


def test_msgpack_keeps_bytes_and_non_string_keys() -> None:
    codec = Codec(serializer=MsgpackSerializer())
    assert roundtrip(codec, {1: b"\x00\xff", "t": (1, 2)}) == {1: b"\x00\xff", "t": [1, 2]}
    assert roundtrip(codec, Color.RED) == "red"
    pyd = PydUser(id=1, name="Bo", joined=NOW, balance=Decimal("0.1"))
    assert roundtrip(codec, pyd)["balance"] == "0.1"
    assert roundtrip(codec, dt.time(1, 2)) == "01:02:00"


@pytest.mark.parametrize(
    "serializer", [JsonSerializer(), MsgpackSerializer()], ids=lambda s: type(s).__name__
)
@pytest.mark.parametrize(
    "value", [object(), 2**70, {"f": lambda: 1}, {1, 2}], ids=["object", "bigint", "fn", "set"]
)
def test_unserializable_values_raise_serialization_error(serializer: Any, value: Any) -> None:
    with pytest.raises(SerializationError):
        enc(Codec(serializer=serializer), value)


# == pickle: opt-in, and only ever on authenticated bytes =======================================

UNPICKLED: list[str] = []


def _record(marker: str) -> str:
    UNPICKLED.append(marker)
    return marker


class Exploit:
    """What an attacker with write access to Redis would store: runs code when unpickled."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_record, ("pwned",))


def _forged_pickle_entry(flags: int = 0, key_id: str = "", tail: bytes | None = None) -> bytes:
    import pickle

    header = pack_header(
        flags=flags,
        serializer_id=PickleSerializer.id,
        compressor_id=0,
        created_at=0.0,
        logical_expiry=1e12,
        key_id=key_id,
    )
    body = header + pickle.dumps(Exploit())
    # A plain entry with a valid checksum: anyone can compute one (not a security boundary).
    return body + (checksum(KEY.encode(), body) if tail is None else tail)


def test_pickle_is_refused_without_encryption_or_signing() -> None:
    with pytest.raises(ConfigurationError, match="encryptor= or signing_key="):
        Codec(serializer=PickleSerializer())
    with pytest.raises(ConfigurationError, match="encryptor= or signing_key="):
        Codec(serializers=[PickleSerializer()])


@pytest.mark.parametrize(
    "codec",
    [
        Codec(serializer=PickleSerializer(), signing_key=K1),
        Codec(serializer=PickleSerializer(), encryptor=AesGcmEncryptor(ring())),
    ],
    ids=["signed", "encrypted"],
)
def test_pickle_round_trips_any_object_when_authenticated(codec: Codec) -> None:
    value = {"t": (1, 2), "s": frozenset({3}), "c": Address("Oslo", "0150")}
    assert roundtrip(codec, value) == value


def test_forged_pickle_entries_are_never_unpickled() -> None:
    UNPICKLED.clear()
    signing = Codec(serializer=PickleSerializer(), signing_key=K1)
    encrypting = Codec(serializer=PickleSerializer(), encryptor=AesGcmEncryptor(ring()))
    forged = [
        _forged_pickle_entry(),  # unsigned, unencrypted
        _forged_pickle_entry(FLAG_SIGNED, "default", b"\x00" * 32),  # a made-up MAC
        _forged_pickle_entry(FLAG_SIGNED, "k1", os.urandom(32)),
    ]
    rollout = Codec(serializer=PickleSerializer(), signing_key=K1, accept_unauthenticated=True)
    for codec in (signing, encrypting, Codec(serializers=[], signing_key=K1), rollout):
        for data in forged:
            with pytest.raises(DecodeError):
                codec.decode(data, key=KEY)
    with pytest.raises(DecodeError, match="neither signed nor encrypted"):
        signing.decode(forged[0], key=KEY)
    # Even a codec that reads plain entries during a rollout never unpickles them.
    with pytest.raises(DecodeError, match="refusing to deserialize an unauthenticated entry"):
        rollout.decode(forged[0], key=KEY)
    # A default codec has no pickle reader at all.
    with pytest.raises(DecodeError, match="unknown serializer id 3"):
        Codec().decode(forged[0], key=KEY)
    assert UNPICKLED == []


def test_signed_pickle_entry_with_a_flipped_bit_is_never_unpickled() -> None:
    UNPICKLED.clear()
    codec = Codec(serializer=PickleSerializer(), signing_key=K1)
    data = bytearray(enc(codec, Exploit()))
    assert UNPICKLED == []  # pickling doesn't run it
    codec.decode(bytes(data), key=KEY)
    assert UNPICKLED == ["pwned"]  # proves the payload would run if it were accepted
    UNPICKLED.clear()
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x10
        with pytest.raises(DecodeError):
            codec.decode(bytes(flipped), key=KEY)
    assert UNPICKLED == []


def test_pickle_without_encryption_is_signed() -> None:
    # With the encryptor's derived key, or with signing_key= when given.
    codec = Codec(serializer=PickleSerializer(), encryptor=AesGcmEncryptor(ring()))
    data = enc(codec, (1,), encrypt=False)
    assert Codec.read_header(data).signed
    assert codec.decode(data, key=KEY).value == (1,)
    both = Codec(serializer=PickleSerializer(), encryptor=AesGcmEncryptor(ring()), signing_key=K2)
    data = enc(both, (1,), encrypt=False)
    assert Codec.read_header(data).signed
    assert both.decode(data, key=KEY).value == (1,)
    assert Codec(serializer=PickleSerializer(), signing_key=K2).decode(data, key=KEY).value == (1,)


def test_pickle_serializer_validates_protocol_and_unpicklable_values() -> None:
    with pytest.raises(ConfigurationError, match="protocol"):
        PickleSerializer(protocol=99)
    codec = Codec(serializer=PickleSerializer(protocol=4), signing_key=K1)
    with pytest.raises(SerializationError):
        enc(codec, lambda: 1)


# == compression =================================================================================

COMPRESSORS = [ZstdCompressor, GzipCompressor, Lz4Compressor]
BIG = {"rows": [{"name": "dataferry", "n": i} for i in range(200)]}


@pytest.mark.parametrize("cls", COMPRESSORS)
def test_compression_applies_from_min_size_and_is_recorded(cls: Any) -> None:
    codec = Codec(compressor=cls(min_size=1024))
    small, big = enc(codec, "x" * 10), enc(codec, BIG)
    assert not Codec.read_header(small).compressed
    header = Codec.read_header(big)
    assert header.compressed
    assert header.compressor_id == cls.id
    assert len(big) < len(JsonSerializer().dumps(BIG)) / 3
    assert codec.decode(big, key=KEY).value == BIG


def test_incompressible_payloads_are_stored_as_they_are() -> None:
    codec = Codec(compressor=ZstdCompressor(min_size=0), serializer=MsgpackSerializer())
    data = enc(codec, os.urandom(4096))
    assert not Codec.read_header(data).compressed


@pytest.mark.parametrize("cls", COMPRESSORS)
def test_per_entry_compress_overrides_the_codec(cls: Any) -> None:
    codec = Codec(compressor=cls(min_size=10))
    assert not Codec.read_header(enc(codec, BIG, compress=False)).compressed
    forced = enc(codec, "tiny", compress=True)
    assert Codec.read_header(forced).compressor_id == cls.id
    assert codec.decode(forced, key=KEY).value == "tiny"


def test_compress_true_without_a_compressor_uses_zstd() -> None:
    data = enc(Codec(), BIG, compress=True)
    assert Codec.read_header(data).compressor_name == "zstd"
    assert Codec().decode(data, key=KEY).value == BIG


@pytest.mark.parametrize("cls", COMPRESSORS)
def test_any_codec_reads_entries_of_any_builtin_compressor(cls: Any) -> None:
    data = enc(Codec(compressor=cls(min_size=0)), BIG)
    for reader in (
        Codec(),
        Codec(compressor=GzipCompressor()),
        Codec(serializer=MsgpackSerializer()),
    ):
        assert reader.decode(data, key=KEY).value == BIG


@pytest.mark.parametrize("cls", COMPRESSORS)
def test_decompression_is_bounded(cls: Any) -> None:
    bomb = cls(min_size=0).compress(b"\x00" * 100_000)
    with pytest.raises(ValueError, match="larger than"):
        cls().decompress(bomb, 99_999)
    assert cls().decompress(bomb, 100_000) == b"\x00" * 100_000
    # Through a codec: the reader's own max_value_bytes applies, and it is a miss.
    data = enc(Codec(compressor=cls(min_size=0)), "a" * 100_000)
    assert Codec(max_value_bytes=100_002).decode(data, key=KEY).value == "a" * 100_000
    with pytest.raises(DecodeError, match="larger than"):
        Codec(max_value_bytes=100_001).decode(data, key=KEY)


@pytest.mark.parametrize("cls", COMPRESSORS)
def test_truncated_or_padded_compressed_payloads_are_refused(cls: Any) -> None:
    comp = cls()
    for payload in (b"hello" * 1000, b""):
        frame = comp.compress(payload)
        assert comp.decompress(frame, len(payload)) == payload
        for bad in (frame[:-3], frame + b"junk"):
            with pytest.raises(Exception):  # noqa: B017, PT011 - any error; the codec maps it
                comp.decompress(bad, 10**6)


def test_frames_without_a_content_size_are_refused() -> None:
    # DataFerry always writes the size; a frame without one could only be bounded by
    # inflating it, so it is refused outright (a miss), before any output is allocated.
    import lz4.frame
    import zstandard

    payload = b"a" * 5000
    frames: list[tuple[Any, bytes]] = [
        (ZstdCompressor, zstandard.ZstdCompressor(write_content_size=False).compress(payload)),
        (Lz4Compressor, lz4.frame.compress(payload, store_size=False)),
    ]
    for cls, frame in frames:
        with pytest.raises(ValueError, match=r"content size|declared size"):
            cls().decompress(frame, 10**6)
    with pytest.raises(ValueError, match="trailing"):
        Lz4Compressor().decompress(lz4.frame.compress(payload) + b"junk", 10**6)


@pytest.mark.parametrize("cls", COMPRESSORS)
def test_compressor_options_are_validated(cls: Any) -> None:
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigurationError, match="min_size"):
            cls(min_size=bad)


def test_gzip_level_is_validated_and_output_is_deterministic() -> None:
    with pytest.raises(ConfigurationError, match="0-9"):
        GzipCompressor(level=11)
    assert GzipCompressor().compress(b"abc" * 100) == GzipCompressor().compress(b"abc" * 100)


@pytest.mark.parametrize(
    ("module", "factory"),
    [("zstandard", ZstdCompressor), ("lz4.frame", Lz4Compressor), ("msgpack", MsgpackSerializer)],
)
def test_a_missing_optional_library_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, module: str, factory: Any
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ConfigurationError, match="pip install"):
        factory()


def test_zstd_compressor_is_safe_across_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    comp = ZstdCompressor()
    payloads = [os.urandom(64) * (i + 20) for i in range(64)]

    def work(p: bytes) -> bool:
        return comp.decompress(comp.compress(p), len(p)) == p

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, payloads))


# == encryption ==================================================================================


@pytest.fixture
def aes() -> Codec:
    return Codec(encryptor=AesGcmEncryptor(ring()))


def test_encrypted_entries_hide_the_value_and_use_a_fresh_nonce(aes: Codec) -> None:
    a, b = enc(aes, {"card": "4111-1111"}), enc(aes, {"card": "4111-1111"})
    assert b"4111" not in a
    ha, hb = Codec.read_header(a), Codec.read_header(b)
    assert ha.encrypted
    assert ha.key_id == "k1"
    assert ha.nonce != hb.nonce
    assert a != b
    assert aes.decode(a, key=KEY).value == {"card": "4111-1111"}


def test_encrypted_entry_moved_to_another_key_or_tenant_is_a_decode_error(aes: Codec) -> None:
    data = enc(aes, "v", tenant="acme")
    assert aes.decode(data, key=KEY, tenant="acme").value == "v"
    with pytest.raises(DecodeError):
        aes.decode(data, key="app:k:user:43", tenant="acme")
    with pytest.raises(DecodeError):
        aes.decode(data, key=KEY, tenant="globex")
    with pytest.raises(DecodeError):
        aes.decode(data, key=KEY)


def test_each_tenant_has_its_own_data_key() -> None:
    # Same storage key and AAD: only the HKDF-derived tenant key differs.
    enc_ = AesGcmEncryptor(ring())
    key_id, nonce = enc_.begin("acme")
    ct = enc_.encrypt(key_id, nonce, b"payload", b"aad", "acme")
    assert enc_.decrypt(key_id, nonce, ct, b"aad", "acme") == b"payload"
    for other in ("globex", None):
        with pytest.raises(Exception):  # noqa: B017, PT011 - cryptography's InvalidTag
            enc_.decrypt(key_id, nonce, ct, b"aad", other)


def test_an_edited_header_is_a_decode_error(aes: Codec) -> None:
    data = bytearray(enc(aes, "v"))
    data[8] ^= 0x01  # inside created_at: not checked by the parser, only by the AEAD
    with pytest.raises(DecodeError):
        aes.decode(bytes(data), key=KEY)


def test_wrong_key_material_or_no_encryptor_is_a_decode_error(aes: Codec) -> None:
    data = enc(aes, "v")
    with pytest.raises(DecodeError):
        Codec(encryptor=AesGcmEncryptor(Keyring({"k1": K2}))).decode(data, key=KEY)
    with pytest.raises(DecodeError, match="no encryptor"):
        Codec().decode(data, key=KEY)


def test_per_entry_encrypt_option(aes: Codec) -> None:
    # encrypt=False on a keyed codec still authenticates: signed, bound to the storage key.
    unencrypted = enc(aes, "v", encrypt=False)
    header = Codec.read_header(unencrypted)
    assert (header.encrypted, header.signed, header.key_id) == (False, True, "k1")
    assert b'"v"' in unencrypted  # readable in L2, as asked
    assert aes.decode(unencrypted, key=KEY).value == "v"
    with pytest.raises(DecodeError, match="no signing key"):
        Codec().decode(unencrypted, key=KEY)
    with pytest.raises(DecodeError, match="MAC"):
        aes.decode(unencrypted, key="app:k:user:43")
    with pytest.raises(ConfigurationError, match="no encryptor"):
        enc(Codec(), "v", encrypt=True)
    assert Codec.read_header(enc(aes, "v", encrypt=True)).encrypted


def test_key_rotation() -> None:
    encryptor = AesGcmEncryptor(Keyring({"2026-10": K1}))
    codec = Codec(encryptor=encryptor, compressor=ZstdCompressor(min_size=0))
    old = enc(codec, BIG)
    encryptor.set_keyring(encryptor.keyring.rotated("2026-11", K2))
    new = enc(codec, BIG)
    assert Codec.read_header(new).key_id == "2026-11"
    assert codec.decode(old, key=KEY).value == BIG  # older ids still decrypt
    assert codec.decode(new, key=KEY).value == BIG
    encryptor.set_keyring(encryptor.keyring.without("2026-10"))
    with pytest.raises(DecodeError, match="not in the keyring"):
        codec.decode(old, key=KEY)  # dropping an id makes its entries misses
    assert codec.decode(new, key=KEY).value == BIG


def test_encryptor_needs_a_keyring() -> None:
    with pytest.raises(ConfigurationError):
        AesGcmEncryptor(K1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        AesGcmEncryptor(ring()).set_keyring({"k": K1})  # type: ignore[arg-type]


def test_encryptor_serves_many_tenants(aes: Codec) -> None:
    # More tenants than the derived-key cache holds: still correct after it is recycled.
    for i in range(4200):
        tenant = f"t{i}"
        data = enc(aes, i, key=f"app:t:{tenant}:k", tenant=tenant)
        assert aes.decode(data, key=f"app:t:{tenant}:k", tenant=tenant).value == i


def test_the_design_doc_example_works(monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    monkeypatch.setenv("DATAFERRY_KEYS", f"2026-11:{base64.b64encode(K2).decode()}")
    codec = Codec(
        serializer=JsonSerializer(),
        compressor=ZstdCompressor(min_size=1024),
        encryptor=AesGcmEncryptor(Keyring.from_env("DATAFERRY_KEYS")),
    )
    data = enc(codec, BIG, tags=("users",))
    header = Codec.read_header(data)
    assert (header.compressed, header.encrypted, header.key_id, header.tags) == (
        True,
        True,
        "2026-11",
        ("users",),
    )
    decoded = codec.decode(data, key=KEY)
    assert (decoded.value, decoded.created_at, decoded.logical_expiry) == (BIG, 100.0, 400.0)
    assert codec.encrypts
    assert codec.signs  # encrypt=False entries, with a key derived from the keyring
    assert codec.authenticates
    assert not codec.accept_unauthenticated
    assert codec.max_value_bytes == 32 * 1024 * 1024
    assert codec.compressor is not None
    assert isinstance(codec.serializer, JsonSerializer)


# == signing =====================================================================================


def test_signed_entries_are_authenticated() -> None:
    codec = Codec(signing_key=ring("k2", k1=K1, k2=K2))
    data = enc(codec, {"v": 1}, tags=("t",))
    header = Codec.read_header(data)
    assert header.signed
    assert header.key_id == "k2"
    assert not header.encrypted
    assert codec.decode(data, key=KEY).value == {"v": 1}
    with pytest.raises(DecodeError, match="MAC"):
        codec.decode(data, key="app:k:other")
    with pytest.raises(DecodeError, match="MAC"):
        codec.decode(data[:-1] + bytes([data[-1] ^ 1]), key=KEY)
    with pytest.raises(DecodeError, match="truncated MAC"):
        codec.decode(data[: header.size + 5], key=KEY)
    with pytest.raises(DecodeError, match="no signing key"):
        Codec().decode(data, key=KEY)
    # Rotation: a ring that dropped k2 can't verify it; one that kept it can.
    with pytest.raises(DecodeError):
        Codec(signing_key=Keyring({"k1": K1})).decode(data, key=KEY)


def test_a_signing_codec_refuses_unauthenticated_entries() -> None:
    unsigned = enc(Codec(), {"admin": True})
    with pytest.raises(DecodeError, match="neither signed nor encrypted"):
        Codec(signing_key=K1).decode(unsigned, key=KEY)


def test_signing_and_encryption_together() -> None:
    codec = Codec(encryptor=AesGcmEncryptor(ring()), signing_key=K2)
    sealed, signed = enc(codec, "v"), enc(codec, "v", encrypt=False)
    assert Codec.read_header(sealed).flags == 0x02  # AES-GCM already authenticates
    assert Codec.read_header(signed).signed
    assert codec.decode(sealed, key=KEY).value == codec.decode(signed, key=KEY).value == "v"
    # A header claiming both is not something this version writes.
    both = bytearray(sealed)
    both[3] |= FLAG_SIGNED
    with pytest.raises(DecodeError, match="both signed and encrypted"):
        codec.decode(bytes(both), key=KEY)


@pytest.mark.parametrize("bad", [b"short", "text", 42])
def test_signing_key_is_validated(bad: Any) -> None:
    with pytest.raises((KeyringError, ConfigurationError)):
        Codec(signing_key=bad)


# == configuration and robustness ================================================================


class ReverseCompressor:
    """A user-defined compressor with its own wire id."""

    id = 200
    min_size = 0

    def compress(self, data: bytes, /) -> bytes:
        return data[::-1]

    def decompress(self, data: bytes, max_size: int, /) -> bytes:
        if len(data) > max_size:
            raise ValueError("too large")
        return bytes(data)[::-1]


class ReprSerializer:
    """A user-defined serializer with its own wire id."""

    id = 201

    def dumps(self, value: Any, /) -> bytes:
        return repr(value).encode()

    def loads(self, data: bytes, /, type: Any = None) -> Any:
        return bytes(data).decode()


def test_custom_serializers_and_compressors_are_read_by_id() -> None:
    writer = Codec(serializer=ReprSerializer(), compressor=ReverseCompressor())
    data = enc(writer, [1, 2], compress=True)  # reversing never shrinks: force it
    header = Codec.read_header(data)
    assert (header.serializer_name, header.compressor_name) == ("custom-201", "custom-200")
    assert writer.decode(data, key=KEY).value == "[1, 2]"
    reader = Codec(serializers=[ReprSerializer()], compressors=[ReverseCompressor()])
    assert reader.decode(data, key=KEY).value == "[1, 2]"
    with pytest.raises(DecodeError, match="unknown compressor id 200"):
        Codec().decode(data, key=KEY)
    with pytest.raises(DecodeError, match="unknown serializer id 201"):
        Codec(compressors=[ReverseCompressor()]).decode(data, key=KEY)
    plain = enc(Codec(serializer=ReprSerializer()), "x")
    assert Codec(serializers=[ReprSerializer()]).decode(plain, key=KEY).value == "'x'"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"serializer": object()},
        {"serializers": [object()]},
        {"compressor": object()},
        {"compressors": [object()]},
        {"encryptor": object()},
        {"signing_key": 1.5},
    ],
    ids=lambda kw: next(iter(kw)),
)
def test_objects_that_do_not_fit_their_protocol_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Codec(**kwargs)


def test_a_compressor_whose_decompress_takes_no_limit_is_refused() -> None:
    class Unbounded:
        id = 201
        min_size = 0

        def compress(self, data: bytes, /) -> bytes:
            return data

        def decompress(self, data: bytes, /) -> bytes:
            return data

    with pytest.raises(ConfigurationError, match=r"decompress must accept \(data, max_size"):
        Codec(compressor=Unbounded())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_size"):
        Codec(compressors=[Unbounded()])  # type: ignore[list-item]


def test_wire_ids_must_fit_a_byte() -> None:
    bad = ReprSerializer()
    bad.id = 0
    with pytest.raises(ConfigurationError, match="1-255"):
        Codec(serializer=bad)
    comp = ReverseCompressor()
    comp.id = 256
    with pytest.raises(ConfigurationError, match="1-255"):
        Codec(compressor=comp)


@pytest.mark.parametrize(
    "codec",
    [
        Codec(),
        Codec(compressor=ZstdCompressor(min_size=0)),
        Codec(encryptor=AesGcmEncryptor(ring())),
        Codec(signing_key=K1),
        Codec(serializer=MsgpackSerializer(), compressor=Lz4Compressor(min_size=0)),
    ],
    ids=["plain", "zstd", "aes", "signed", "msgpack-lz4"],
)
def test_every_truncation_is_a_decode_error(codec: Codec) -> None:
    data = enc(codec, {"k": "v" * 50}, tags=("a", "b"))
    for n in range(len(data)):
        try:
            codec.decode(data[:n], key=KEY)
        except DecodeError:
            continue
        # A plain entry cut inside its JSON can't parse either; nothing else may succeed.
        pytest.fail(f"truncation to {n} bytes decoded")


def test_plain_fast_path_and_general_path_agree() -> None:
    codec = Codec()
    fast = enc(codec, {"a": 1})
    tagged = enc(codec, {"a": 1}, tags=("x",))
    assert len(fast) < len(tagged)
    a, b = codec.decode(fast, key=KEY), codec.decode(tagged, key=KEY)
    assert (a.value, a.created_at, a.logical_expiry, a.tags) == ({"a": 1}, 100.0, 400.0, ())
    assert (b.value, b.tags) == ({"a": 1}, ("x",))
    # memoryview input (some backends hand out buffers) decodes the same way.
    assert codec.decode(memoryview(fast), key=KEY).value == {"a": 1}  # type: ignore[arg-type]


def test_reprs_name_the_parts_and_never_the_keys() -> None:
    codec = Codec(compressor=GzipCompressor(), encryptor=AesGcmEncryptor(ring()), signing_key=K2)
    text = repr(codec)
    assert "GzipCompressor(level=6, min_size=1024)" in text
    assert "AesGcmEncryptor(Keyring(ids=['k1'], primary='k1'))" in text
    assert "signing_key=..." in text
    for key in (K1, K2):
        assert repr(key) not in text
        assert key.hex() not in text
    assert repr(Codec()) == "Codec(serializer=JsonSerializer(), compressor=None, encryptor=None)"
    assert "PickleSerializer(protocol=5)" in repr(
        Codec(serializer=PickleSerializer(), signing_key=K1)
    )
    assert repr(ZstdCompressor()) == "ZstdCompressor(level=3, min_size=1024)"
    assert repr(Lz4Compressor(min_size=0)) == "Lz4Compressor(level=0, min_size=0)"
    assert repr(MsgpackSerializer()) == "MsgpackSerializer()"
    from dataferry._codec._encryption import HmacSigner

    assert repr(HmacSigner(ring())) == "HmacSigner(Keyring(ids=['k1'], primary='k1'))"


@pytest.mark.parametrize("serializer", TYPED, ids=lambda s: type(s).__name__)
def test_typed_decode_falls_back_to_pydantic_without_msgspec(
    monkeypatch: pytest.MonkeyPatch, serializer: Any
) -> None:
    from dataferry._codec import _typed

    monkeypatch.setitem(sys.modules, "msgspec", None)  # as if msgspec were not installed
    monkeypatch.setattr(_typed, "_cache", {})
    codec = Codec(serializer=serializer)
    pyd = PydUser(id=1, name="Bo", joined=NOW, balance=Decimal("0.1"))
    assert roundtrip(codec, [pyd], type=list[PydUser]) == [pyd]
    assert roundtrip(codec, pyd, type=PydUser) == pyd
    assert roundtrip(codec, Address("Rome", "00100"), type=Address) == Address("Rome", "00100")
    assert roundtrip(codec, {"a": 1}, type=dict[str, int]) == {"a": 1}


def test_typed_decode_of_unhashable_type_expressions() -> None:
    from typing import Annotated

    tp = Annotated[int, {"unhashable": []}]
    assert roundtrip(Codec(), 5, type=tp) == 5


def test_a_configured_codec_can_be_copied() -> None:
    # Frameworks deep-copy settings objects; the copy must work and share no mutable state.
    import copy

    encryptor = AesGcmEncryptor(ring())
    codec = Codec(
        serializer=MsgpackSerializer(),
        compressor=ZstdCompressor(min_size=0),
        encryptor=encryptor,
        signing_key=K2,
    )
    data = enc(codec, BIG)
    assert codec.decode(data, key=KEY).value == BIG  # warms the derived-key cache
    twin = copy.deepcopy(codec)
    assert twin.decode(data, key=KEY).value == BIG
    for part in (ZstdCompressor(), Lz4Compressor(), MsgpackSerializer()):
        assert copy.copy(part) is part  # immutable configuration
    lz4 = copy.deepcopy(Codec(compressor=Lz4Compressor(min_size=0)))
    assert lz4.decode(enc(lz4, BIG), key=KEY).value == BIG
    encryptor.set_keyring(Keyring({"k9": K2}))  # the copy keeps its own keyring
    assert twin.decode(data, key=KEY).value == BIG
