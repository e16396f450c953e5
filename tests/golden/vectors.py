"""Golden envelope vectors: the inputs, how to build their codecs, and the generator.

``envelopes.json`` (envelope v2) is committed and frozen: it pins the wire format, so a change
that breaks entries already stored in someone's Redis fails ``tests/test_envelope.py``.
Regenerate only when adding vectors (existing ones must not change):

    .venv/bin/python -m tests.golden.vectors --add-missing

A new envelope *version* gets a new file: the vectors of the version it replaces move to
``envelopes_v<N>.json``, frozen too, and the tests check that current readers refuse them (a
miss, not a wrong value). ``envelopes_v1.json`` holds the v1 vectors (same specs, same keys).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

from dataferry import (
    AesGcmEncryptor,
    Codec,
    Compressor,
    GzipCompressor,
    JsonSerializer,
    Keyring,
    Lz4Compressor,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
    ZstdCompressor,
)

PATH = Path(__file__).with_name("envelopes.json")
#: Vectors of envelope versions that current readers must refuse, by version.
OLD_PATHS = {1: Path(__file__).with_name("envelopes_v1.json")}

# Test-only keys, public on purpose: they appear in the committed vectors.
KEYS = {"k1": bytes(range(32)), "k2": bytes(range(32, 64))}
NONCE = bytes.fromhex("000102030405060708090a0b")
CREATED_AT = 1767225600.0  # 2026-01-01T00:00:00Z
LOGICAL_EXPIRY = CREATED_AT + 300.0

SMALL = {
    "id": 42,
    "name": "Zoë",
    "roles": ["admin", "ops"],
    "score": 0.5,
    "active": True,
    "x": None,
}
LARGE = {
    "items": [
        {"sku": f"SKU-{i:04d}", "qty": i % 7, "price": 9.99, "note": "dataferry"} for i in range(40)
    ]
}

# name -> spec. "write_primary" is the keyring primary when the entry was written; readers hold
# both keys with k2 primary (so k1 vectors also pin reading after a rotation).
SPECS: dict[str, dict[str, Any]] = {
    "plain_json": {"value": SMALL},
    "plain_json_tags": {"value": SMALL, "tags": ["users", "région-é"]},
    "plain_msgpack": {"value": SMALL, "serializer": "msgpack"},
    "compressed_zstd": {"value": LARGE, "compressor": "zstd"},
    "compressed_gzip": {"value": LARGE, "compressor": "gzip"},
    "compressed_lz4": {"value": LARGE, "compressor": "lz4"},
    "encrypted": {"value": SMALL, "encrypt": True},
    "encrypted_tenant": {
        "value": SMALL,
        "encrypt": True,
        "tenant": "acme",
        "key": "app:t:acme:user:42",
    },
    "encrypted_rotated_key": {"value": SMALL, "encrypt": True, "write_primary": "k1"},
    "compressed_encrypted": {"value": LARGE, "compressor": "zstd", "encrypt": True},
    "msgpack_compressed_encrypted": {
        "value": LARGE,
        "serializer": "msgpack",
        "compressor": "lz4",
        "encrypt": True,
        "tags": ["orders"],
    },
    "signed": {"value": SMALL, "sign": True},
    "signed_compressed": {"value": LARGE, "compressor": "gzip", "sign": True},
    "signed_pickle": {"value": SMALL, "serializer": "pickle", "sign": True},
    # v2: a plain entry under a tenant key (the checksum covers the key), and encrypt=False on
    # a codec with an encryptor: signed with a key derived from the encryptor's keyring.
    "plain_json_tenant": {"value": SMALL, "tenant": "acme", "key": "app:t:acme:user:42"},
    "signed_by_encryptor": {"value": SMALL, "encrypt": True, "entry_encrypt": False},
    "signed_by_encryptor_compressed": {
        "value": LARGE,
        "compressor": "zstd",
        "encrypt": True,
        "entry_encrypt": False,
        "tags": ["orders"],
    },
}

_SERIALIZERS: dict[str, type[Serializer]] = {
    "json": JsonSerializer,
    "msgpack": MsgpackSerializer,
    "pickle": PickleSerializer,
}
_COMPRESSORS: dict[str, type[Compressor]] = {
    "zstd": ZstdCompressor,
    "gzip": GzipCompressor,
    "lz4": Lz4Compressor,
}


def keyring(primary: str = "k2") -> Keyring:
    """The test keyring with ``primary`` as primary."""
    return Keyring(KEYS, primary=primary)


def build_codec(spec: dict[str, Any], *, primary: str = "k2") -> Codec:
    """The codec a vector was written with (``primary`` = the keyring's primary)."""
    comp_name = spec.get("compressor")
    encryptor = AesGcmEncryptor(keyring(primary)) if spec.get("encrypt") else None
    if encryptor is not None:
        encryptor._nonce_factory = lambda: NONCE  # test-only hook: golden vectors only
    return Codec(
        serializer=_SERIALIZERS[spec.get("serializer", "json")](),
        compressor=_COMPRESSORS[comp_name](min_size=0) if comp_name else None,
        encryptor=encryptor,
        signing_key=keyring(primary) if spec.get("sign") else None,
    )


def storage_key(spec: dict[str, Any]) -> str:
    """The storage key a vector was written under."""
    return str(spec.get("key", "app:k:user:42"))


def encode(spec: dict[str, Any]) -> bytes:
    """Encode a vector's value with its writer codec (deterministic nonce)."""
    codec = build_codec(spec, primary=spec.get("write_primary", "k2"))
    return codec.encode(
        spec["value"],
        key=storage_key(spec),
        created_at=CREATED_AT,
        logical_expiry=LOGICAL_EXPIRY,
        tags=tuple(spec.get("tags", ())),
        tenant=spec.get("tenant"),
        encrypt=spec.get("entry_encrypt"),
    )


def reproducible(spec: dict[str, Any]) -> bool:
    """Whether encoding is byte-for-byte stable across library versions.

    Compressor output may change with a zstd/zlib/lz4 upgrade and pickle's with Python's, all
    without breaking the format, so those vectors are pinned for decoding only.
    """
    return not spec.get("compressor") and spec.get("serializer", "json") != "pickle"


def load(path: Path = PATH) -> dict[str, dict[str, Any]]:
    """Read the committed vectors (of the current version, unless ``path`` says otherwise)."""
    data: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["vectors"]
    return data


def main(argv: list[str]) -> int:
    """Add vectors for new specs to envelopes.json; never rewrite an existing one."""
    if argv != ["--add-missing"]:
        print(__doc__)
        return 2
    existing = load() if PATH.exists() else {}
    for name, spec in SPECS.items():
        if name not in existing:
            existing[name] = {
                "spec": spec,
                "envelope": encode(spec).hex(),
                "reproducible": reproducible(spec),
            }
            print("added", name)
    doc = {
        "format": "DataFerry envelope v2 golden vectors (see tests/golden/vectors.py)",
        "keys": {k: base64.b64encode(v).decode() for k, v in KEYS.items()},
        "nonce": NONCE.hex(),
        "vectors": existing,
    }
    PATH.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
