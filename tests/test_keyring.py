"""Keyring: construction, env/file/Azure Key Vault sources, rotation, and key secrecy."""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import os
import pickle
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._requests_basic import RestRequestsTransportResponse

from dataferry import AesGcmEncryptor, Codec, ConfigurationError, Keyring, KeyringError
from dataferry._codec import DecodeError

K1, K2, K3 = (os.urandom(32) for _ in range(3))


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def secret_forms(key: bytes) -> list[str]:
    """Every way key material could leak into text."""
    return [b64(key), base64.urlsafe_b64encode(key).decode(), key.hex(), repr(key)[2:-1]]


# == construction ================================================================================


def test_keyring_holds_keys_by_id_with_a_primary() -> None:
    ring = Keyring({"2026-11": K2, "2026-10": K1}, primary="2026-11")
    assert ring.primary == "2026-11"
    assert ring.ids == ("2026-11", "2026-10") == tuple(ring)
    assert len(ring) == 2
    assert "2026-10" in ring
    assert "nope" not in ring
    assert ring.key("2026-10") == K1
    assert Keyring({"only": bytearray(K1)}).primary == "only"


@pytest.mark.parametrize(
    ("keys", "primary", "message"),
    [
        ({}, None, "at least one key"),
        ({"a": K1, "b": K2}, None, "primary= is required"),
        ({"a": K1}, "b", "'b' is not in the keyring"),
        ({"a": K1[:16]}, None, "'a' is 16 bytes; AES-256 needs 32"),
        ({"a": b64(K1)[:-4]}, None, "'a' is 30 bytes; AES-256 needs 32"),
        ({"a": "not base64!" + b64(K1)}, None, "'a' is a str but not base64"),
        ({"a": b64(K1) + "=="}, None, "'a' is a str but not base64"),
        ({"a": 12345}, None, "must be bytes or base64 str, not int"),
        ({"bad id": K1}, None, "key ids must be"),
        ({"é": K1}, None, "key ids must be"),
        ({"x" * 256: K1}, None, "key ids must be"),
        ({1: K1}, None, "key ids must be"),
        ([("a", K1)], None, "mapping"),
    ],
)
def test_malformed_keyrings_raise_keyring_error(
    keys: Any, primary: str | None, message: str
) -> None:
    with pytest.raises(KeyringError, match=message) as info:
        Keyring(keys, primary=primary)
    assert not any(s in str(info.value) for s in secret_forms(K1))


def test_keys_may_be_base64_text_in_any_common_form() -> None:
    key = bytes([0xFB, 0xFF] * 16)  # '+' and '/' in standard base64, '-' and '_' URL-safe
    forms = [
        b64(key),
        base64.urlsafe_b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
        f"  {b64(key)}\n",
    ]
    for form in forms:
        assert Keyring({"k": form}).key("k") == key
    ring = Keyring({"k1": K1}).rotated("k2", b64(K2))
    assert (ring.primary, ring.key("k2")) == ("k2", K2)


def test_generate_key_returns_fresh_standard_base64_of_32_bytes() -> None:
    keys = {Keyring.generate_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert isinstance(key, str)
        assert len(base64.b64decode(key, validate=True)) == 32
        assert base64.b64encode(base64.b64decode(key)).decode() == key  # standard alphabet


def test_generated_keys_work_in_every_key_source(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    new, old = Keyring.generate_key(), Keyring.generate_key()
    monkeypatch.setenv("DF_KEYS", f"new:{new},old:{old}")
    from_env = Keyring.from_env("DF_KEYS")
    (tmp_path / "keys").write_text(f"new:{new}\nold:{old}\n")
    from_file = Keyring.from_file(tmp_path / "keys")
    direct = Keyring({"new": new, "old": old}, primary="new")
    for ring in (from_env, from_file, direct):
        assert ring.primary == "new"
        assert ring.key("old") == base64.b64decode(old)
    writer = Codec(encryptor=AesGcmEncryptor(direct))
    data = writer.encode({"v": 1}, key="k", created_at=0, logical_expiry=1)
    assert Codec(encryptor=AesGcmEncryptor(from_env)).decode(data, key="k").value == {"v": 1}


def test_key_ids_allow_the_documented_alphabet() -> None:
    key_id = "prod:2026-11_v1.a"
    assert Keyring({key_id: K1}).primary == key_id
    assert Keyring({"x" * 255: K1}).primary == "x" * 255


def test_unknown_key_id_raises_keyring_error() -> None:
    with pytest.raises(KeyringError, match="'k9' is not in the keyring"):
        Keyring({"k1": K1}).key("k9")


def test_rotation_helpers_return_new_keyrings() -> None:
    ring = Keyring({"k1": K1})
    rotated = ring.rotated("k2", K2)
    assert (rotated.primary, rotated.ids) == ("k2", ("k2", "k1"))
    assert ring.ids == ("k1",)  # unchanged
    assert rotated.without("k1").ids == ("k2",)
    with pytest.raises(KeyringError, match="cannot drop the primary"):
        rotated.without("k2")


# == sources =====================================================================================


def test_from_env_reads_id_base64_pairs_first_is_primary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DF_KEYS", f" new:{b64(K2)} , old:{b64(K1)}")
    ring = Keyring.from_env("DF_KEYS")
    assert (ring.primary, ring.key("new"), ring.key("old")) == ("new", K2, K1)


def test_from_env_accepts_urlsafe_and_unpadded_base64_and_colons_in_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = bytes([0xFB, 0xFF] * 16)  # encodes with '+' and '/' in standard base64
    unpadded = base64.urlsafe_b64encode(key).decode().rstrip("=")
    monkeypatch.setenv("DATAFERRY_KEYS", f"prod:2026:{unpadded}")
    ring = Keyring.from_env()
    assert (ring.primary, ring.key("prod:2026")) == ("prod:2026", key)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "holds no keys"),
        (" , ", "holds no keys"),
        ("{secret}", "entry #1 is not 'id:base64key'"),
        (":{secret}", "entry #1 is not 'id:base64key'"),
        ("a:{secret},bad id:{secret}", "entry #2: the id is not"),
        ("a:{secret}!!", "'a': the key is not base64"),
        ("a:{secret}==", "'a': the key is not base64"),
        ("a:A", "'a': the key is not base64"),
        ("a:{short}", "'a' is 16 bytes"),
        ("a:{secret},a:{secret}", "'a' appears twice"),
    ],
)
def test_from_env_malformed_values_never_echo_the_keys(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    secret = b64(K3)
    monkeypatch.setenv("DF_KEYS", value.format(secret=secret, short=b64(K3[:16])))
    with pytest.raises(KeyringError, match=message) as info:
        Keyring.from_env("DF_KEYS")
    rendered = "".join(traceback.format_exception(info.value))
    assert secret not in rendered
    assert b64(K3[:16]) not in rendered
    assert "DF_KEYS" in str(info.value) or "entry" in str(info.value) or "'a'" in str(info.value)


def test_from_env_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DF_NOPE", raising=False)
    with pytest.raises(KeyringError, match="DF_NOPE is not set"):
        Keyring.from_env("DF_NOPE")


def test_from_file_reads_lines_commas_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# rotated 2026-11\nk3:{b64(K3)}\n\n  k2:{b64(K2)}, k1:{b64(K1)}\n")
    ring = Keyring.from_file(path)
    assert (ring.primary, ring.ids) == ("k3", ("k3", "k2", "k1"))
    assert ring.key("k1") == K1


def test_from_file_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="cannot read key file"):
        Keyring.from_file(tmp_path / "missing")
    path = tmp_path / "keys"
    path.write_text(f"k1:{b64(K1)[:-4]}\n")
    with pytest.raises(KeyringError, match="'k1' is 30 bytes") as info:
        Keyring.from_file(str(path))
    assert b64(K1)[:-4] not in str(info.value)


# == secrecy =====================================================================================


def test_keys_never_appear_in_reprs_logs_or_decode_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ring = Keyring({"k1": K1, "k2": K2}, primary="k2")
    encryptor = AesGcmEncryptor(ring)
    codec = Codec(encryptor=encryptor, signing_key=ring)
    texts = [repr(ring), str(ring), repr(encryptor), repr(codec)]
    data = codec.encode({"v": 1}, key="k", created_at=0, logical_expiry=1)
    for bad in (data[:-1], data + b"x", data.replace(b"k2", b"k1", 1)):
        with pytest.raises(DecodeError) as info:
            codec.decode(bad, key="k")
        texts.append("".join(traceback.format_exception(info.value)))
    texts.extend(r.getMessage() for r in caplog.records)
    for text in texts:
        for key in (K1, K2):
            assert not any(form in text for form in secret_forms(key)), text
    assert repr(ring) == "Keyring(ids=['k1', 'k2'], primary='k2')"


def test_keyrings_refuse_to_be_pickled_but_copy_as_themselves() -> None:
    ring = Keyring({"k1": K1})
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(ring)
    codec = Codec(encryptor=AesGcmEncryptor(ring))
    assert copy.copy(ring) is ring
    assert copy.deepcopy(codec.encryptor).keyring is ring  # type: ignore[union-attr]


# == Azure Key Vault, through the SDK's pluggable HTTP transport =================================

VAULT = "https://dataferry-test.vault.azure.net"


class KeyVaultTransport(HttpTransport):  # type: ignore[type-arg]
    """Answers Key Vault REST calls from an in-memory secret store (no network).

    The first call of a client has no token: Key Vault's auth challenge comes first, as from a
    real vault, so the SDK's challenge policy and credential run as they would in production.
    """

    def __init__(self, versions: list[dict[str, Any]]) -> None:
        self.versions = versions  # oldest first; the last one is current
        self.requests: list[tuple[str, str]] = []

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __exit__(self, *args: object) -> None:
        pass

    def _bundle(self, name: str, v: dict[str, Any], with_value: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"{VAULT}/secrets/{name}/{v['version']}",
            "attributes": {
                "enabled": v.get("enabled", True),
                "created": v["created"],
                "updated": v["created"],
            },
        }
        if with_value:
            body["value"] = v["value"]
        return body

    def _route(self, method: str, path: str, authorized: bool) -> tuple[int, dict[str, str], Any]:
        if not authorized:
            challenge = (
                'Bearer authorization="https://login.microsoftonline.com/tenant-id", '
                'resource="https://vault.azure.net"'
            )
            return 401, {"WWW-Authenticate": challenge}, None
        parts = [p for p in path.split("/") if p]
        if method != "GET" or len(parts) < 2 or parts[0] != "secrets" or parts[1] != "keys":
            return 404, {}, {"error": {"code": "SecretNotFound", "message": "not found"}}
        if len(parts) == 3 and parts[2] == "versions":
            values = [self._bundle("keys", v, with_value=False) for v in self.versions]
            return 200, {}, {"value": values, "nextLink": None}
        wanted = parts[2] if len(parts) == 3 else self.versions[-1]["version"]
        for v in self.versions:
            if v["version"] == wanted:
                if not v.get("enabled", True):
                    return 403, {}, {"error": {"code": "Forbidden", "message": "disabled"}}
                return 200, {}, self._bundle("keys", v)
        return 404, {}, {"error": {"code": "SecretNotFound", "message": "no such version"}}

    def send(self, request: Any, **kwargs: Any) -> Any:
        url = urlparse(request.url)
        self.requests.append((request.method, url.path))
        status, headers, body = self._route(
            request.method, url.path, "Authorization" in request.headers
        )
        raw = requests.Response()
        raw.status_code = status
        raw.headers.update({"Content-Type": "application/json", **headers})
        raw.raw = io.BytesIO(json.dumps(body).encode() if body is not None else b"")
        raw.url = request.url
        response = RestRequestsTransportResponse(request=request, internal_response=raw)
        response.read()
        return response


class StaticCredential:
    """A token credential for the canned vault (the real ones need Entra ID)."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("test-token", int(time.time()) + 3600)


def _version(n: int, key: bytes | str, enabled: bool = True) -> dict[str, Any]:
    value = key if isinstance(key, str) else b64(key)
    return {
        "version": f"{n:032x}",
        "value": value,
        "created": 1_700_000_000 + n,
        "enabled": enabled,
    }


def load(transport: KeyVaultTransport, **kw: Any) -> Keyring:
    return Keyring.from_azure_key_vault(
        VAULT, "keys", credential=StaticCredential(), transport=transport, **kw
    )


def test_key_vault_versions_become_key_ids_and_the_current_one_is_primary() -> None:
    transport = KeyVaultTransport(
        [_version(1, K1), _version(2, K2, enabled=False), _version(3, K3)]
    )
    credential = StaticCredential()
    ring = Keyring.from_azure_key_vault(VAULT, "keys", credential=credential, transport=transport)
    assert ring.primary == f"{3:032x}"
    assert ring.ids == (f"{3:032x}", f"{1:032x}")  # the disabled version is skipped
    assert ring.key(f"{1:032x}") == K1
    assert ring.key(f"{3:032x}") == K3
    assert credential.scopes == [("https://vault.azure.net/.default",)]
    assert ("GET", "/secrets/keys/versions") in transport.requests


def test_key_vault_rotation_end_to_end() -> None:
    transport = KeyVaultTransport([_version(1, K1)])
    encryptor = AesGcmEncryptor(load(transport))
    codec = Codec(encryptor=encryptor)
    old = codec.encode("v1", key="k", created_at=0, logical_expiry=1)
    transport.versions.append(_version(2, K2))  # a new secret version in the vault
    encryptor.set_keyring(load(transport))
    new = codec.encode("v2", key="k", created_at=0, logical_expiry=1)
    assert Codec.read_header(new).key_id == f"{2:032x}"
    assert codec.decode(old, key="k").value == "v1"
    assert codec.decode(new, key="k").value == "v2"
    transport.versions[0]["enabled"] = False  # retire the old version
    encryptor.set_keyring(load(transport))
    with pytest.raises(DecodeError):
        codec.decode(old, key="k")


def test_key_vault_loads_only_the_newest_versions() -> None:
    transport = KeyVaultTransport([_version(n, os.urandom(32)) for n in range(1, 8)])
    ring = load(transport, max_versions=3)
    assert ring.ids == tuple(f"{n:032x}" for n in (7, 6, 5))
    with pytest.raises(ConfigurationError, match="max_versions"):
        load(transport, max_versions=0)


def test_key_vault_errors_are_keyring_errors_without_the_value() -> None:
    with pytest.raises(KeyringError, match="cannot read secret 'missing'") as info:
        Keyring.from_azure_key_vault(
            VAULT, "missing", credential=StaticCredential(), transport=KeyVaultTransport([])
        )
    assert info.value.__cause__ is not None  # the Azure error, for the operator
    bad = "not-base64!" + b64(K1)
    with pytest.raises(KeyringError, match="is not a base64 key") as info2:
        load(KeyVaultTransport([_version(1, bad)]))
    assert b64(K1) not in str(info2.value)
    with pytest.raises(KeyringError, match="is 16 bytes"):
        load(KeyVaultTransport([_version(1, K1[:16])]))
