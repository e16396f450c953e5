"""`dataferry inspect`: an operator's view of what an L2 entry holds."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

import dataferry as df
from dataferry._cli import main

KEY = os.urandom(32)
KEYS_ENV = "DATAFERRY_TEST_INSPECT_KEYS"


def keyring() -> df.Keyring:
    return df.Keyring({"2026-11": KEY}, primary="2026-11")


@pytest.fixture
def keys_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEYS_ENV, "2026-11:" + base64.b64encode(KEY).decode())
    return KEYS_ENV


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plain_entry_in_sqlite_shows_metadata_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "l2.sqlite")
    cache = df.DataFerry(distributed=df.SQLiteCache(path), namespace="shop")
    cache.set("user:1", {"name": "Ada"}, ttl=120, tags=["users", "vip"])
    cache.close()
    code, out, _ = run(capsys, "inspect", "user:1", "--sqlite", path, "--namespace", "shop")
    assert code == 0
    assert "shop:k:user:1" in out
    assert "envelope v1" in out
    assert "json" in out
    assert "users, vip" in out
    assert "fresh" in out
    assert '"name": "Ada"' in out


def test_encrypted_compressed_entry_needs_the_keyring(
    redis_url: str, keys_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    codec = df.Codec(
        compressor=df.ZstdCompressor(min_size=10), encryptor=df.AesGcmEncryptor(keyring())
    )
    cache = df.DataFerry(distributed=df.RedisCache.from_url(redis_url), codec=codec)
    cache.tenant("acme").set("report", {"rows": ["secret"] * 50}, ttl=300)
    cache.close()
    args = ("inspect", "report", "--redis", redis_url, "--tenant", "acme", "--json")
    code, out, _ = run(capsys, *args)
    assert code == 0
    shown = json.loads(out)
    assert shown["storage_key"] == "dataferry:t:acme:report"
    assert shown["envelope"]["flags"] == ["compressed", "encrypted"]
    assert shown["envelope"]["compressor"] == "zstd"
    assert shown["envelope"]["key_id"] == "2026-11"
    assert 0 < shown["ttl_left"] <= 300
    assert shown["fresh"] is True
    assert "value" not in shown
    assert "secret" not in out
    assert "--keys-env" in shown["value_note"]
    code, out, _ = run(capsys, *args, "--keys-env", keys_env)
    assert code == 0
    assert json.loads(out)["value"] == {"rows": ["secret"] * 50}
    assert base64.b64encode(KEY).decode() not in out


def test_wrong_keyring_says_it_cannot_decode(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    codec = df.Codec(encryptor=df.AesGcmEncryptor(keyring()))
    cache = df.DataFerry(distributed=df.RedisCache.from_url(redis_url), codec=codec)
    cache.set("k", "v")
    cache.close()
    monkeypatch.setenv("OTHER_KEYS", "2026-11:" + base64.b64encode(os.urandom(32)).decode())
    code, out, _ = run(capsys, "inspect", "k", "--redis", redis_url, "--keys-env", "OTHER_KEYS")
    assert code == 0
    assert "could not decode" in out


def test_missing_key_exits_3(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", "nope", "--redis", redis_url)
    assert code == 3
    assert "not found" in out


def test_foreign_bytes_are_reported_not_crashed_on(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = df.RedisCache.from_url(redis_url)
    backend.set("raw:thing", b"hello, not an envelope", 60)
    backend.close()
    code, out, _ = run(capsys, "inspect", "raw:thing", "--redis", redis_url, "--raw-key")
    assert code == 0
    assert "not a DataFerry envelope" in out


def test_no_value_hides_the_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "l2.sqlite")
    cache = df.DataFerry(distributed=df.SQLiteCache(path))
    cache.set("k", "private")
    cache.close()
    code, out, _ = run(capsys, "inspect", "k", "--sqlite", path, "--no-value")
    assert code == 0
    assert "private" not in out


@pytest.mark.parametrize(
    "argv",
    [
        ("inspect", "k", "--sqlite", "x.db", "--namespace", "bad:ns"),
        ("inspect", "k", "--sqlite", "x.db", "--tenant", "a b"),
        ("inspect", "", "--sqlite", "x.db"),
        ("inspect", "k", "--sqlite", "x.db", "--keys-env", "DATAFERRY_TEST_UNSET_VAR"),
    ],
)
def test_bad_arguments_exit_2(argv: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("dataferry inspect:")


def test_unreachable_redis_exits_1(redis_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    redis_server.kill()
    code, _, err = run(capsys, "inspect", "k", "--redis", redis_server.url)
    assert code == 1
    assert "can't be read" in err
