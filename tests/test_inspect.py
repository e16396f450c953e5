"""`dataferry inspect`: an operator's view of what an L2 entry holds.

Exit statuses a user scripts against: 0 found, 1 L2 unreachable/unreadable, 2 bad argument
(including a SQLite file that doesn't exist), 3 no such entry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import dataferry as df
from dataferry._cli import main
from dataferry._codec._envelope import VERSION

KEY = os.urandom(32)
KEYS_ENV = "DATAFERRY_TEST_INSPECT_KEYS"


def keyring() -> df.Keyring:
    return df.Keyring({"2026-11": KEY}, primary="2026-11")


@pytest.fixture
def keys_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEYS_ENV, "2026-11:" + base64.b64encode(KEY).decode())
    return KEYS_ENV


@pytest.fixture(autouse=True)
def plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table in plain text: a FORCE_COLOR of the caller's shell would make it rich's."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)


def flat(text: str) -> str:
    """The words of a table, one space apart: a cell may wrap to fit the terminal."""
    return " ".join(text.split())


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
    assert f"envelope v{VERSION}" in out
    assert "integrity crc32 (not authenticated)" in flat(out)
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
    assert shown["envelope"]["integrity"] == "aes-256-gcm"
    assert 0 < shown["ttl_left"] <= 300
    assert shown["fresh"] is True
    assert "value" not in shown
    assert "secret" not in out
    assert shown["value_note"] == "encrypted and no keys given (--keys-env NAME)"
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
    assert "could not decode: authentication failed: wrong key" in out
    assert "(InvalidTag)" in out


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
    assert err.count("\n") == 1


# -- a default install (no msgpack) ---------------------------------------------------------------

# Runs the CLI in a fresh interpreter where `import msgpack` fails, as on `pip install dataferry`.
WITHOUT_MSGPACK = (
    "import sys; sys.modules['msgpack'] = None; "
    "from dataferry._cli import main; raise SystemExit(main(sys.argv[1:]))"
)


def run_without_msgpack(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_MSGPACK, *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_json_entry_decodes_without_msgpack(tmp_path: Path) -> None:
    path = str(tmp_path / "l2.sqlite")
    cache = df.DataFerry(distributed=df.SQLiteCache(path), namespace="shop")
    cache.set("user:1", {"name": "Ada"}, ttl=120)
    cache.close()
    proc = run_without_msgpack(
        "inspect", "user:1", "--sqlite", path, "--namespace", "shop", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    shown = json.loads(proc.stdout)
    assert shown["envelope"]["serializer"] == "json"
    assert shown["value"] == {"name": "Ada"}


def test_msgpack_entry_without_msgpack_says_what_to_install(tmp_path: Path) -> None:
    path = str(tmp_path / "l2.sqlite")
    codec = df.Codec(serializer=df.MsgpackSerializer())
    cache = df.DataFerry(distributed=df.SQLiteCache(path), codec=codec)
    cache.set("k", {"n": 1})
    cache.close()
    proc = run_without_msgpack("inspect", "k", "--sqlite", path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "serializer msgpack" in flat(proc.stdout)
    assert "could not decode" in proc.stdout
    assert "install 'dataferry[msgpack]'" in flat(proc.stdout)


def test_msgpack_entry_decodes_when_msgpack_is_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "l2.sqlite")
    codec = df.Codec(serializer=df.MsgpackSerializer())
    cache = df.DataFerry(distributed=df.SQLiteCache(path), codec=codec)
    cache.set("k", {"n": 1, "blob": "x" * 10})
    cache.close()
    code, out, _ = run(capsys, "inspect", "k", "--sqlite", path, "--json")
    assert code == 0
    assert json.loads(out)["value"] == {"n": 1, "blob": "x" * 10}


# -- why a value can't be decoded -----------------------------------------------------------------


class RawSerializer:
    """Writes fixed bytes under any wire id: what another writer could leave in L2."""

    def __init__(self, serializer_id: int, payload: bytes) -> None:
        self.id = serializer_id
        self.payload = payload

    def dumps(self, value: Any, /) -> bytes:
        return self.payload

    def loads(self, data: bytes, /, type: Any = None) -> Any:
        return data


def envelope(storage_key: str, payload: bytes, *, serializer_id: int = 1) -> bytes:
    """A well-framed plain entry for ``storage_key`` whose payload is ``payload``."""
    now = time.time()
    codec = df.Codec(serializer=RawSerializer(serializer_id, payload))
    return codec.encode(None, key=storage_key, created_at=now, logical_expiry=now + 300)


def plant(path: str, storage_key: str, payload: bytes, *, serializer_id: int = 1) -> None:
    backend = df.SQLiteCache(path)
    backend.set(storage_key, envelope(storage_key, payload, serializer_id=serializer_id), 300)
    backend.close()


def test_signed_entry_with_another_key_says_mac_does_not_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "l2.sqlite")
    cache = df.DataFerry(distributed=df.SQLiteCache(path), codec=df.Codec(signing_key=keyring()))
    cache.set("k", "signed value")
    cache.close()
    code, out, _ = run(capsys, "inspect", "k", "--sqlite", path)
    assert code == 0
    assert "signed and no keys given (--keys-env NAME)" in out
    monkeypatch.setenv("OTHER_KEYS", "2026-11:" + base64.b64encode(os.urandom(32)).decode())
    code, out, _ = run(capsys, "inspect", "k", "--sqlite", path, "--keys-env", "OTHER_KEYS")
    assert code == 0
    assert "could not decode: MAC does not match" in out
    assert "signed value" not in out


def test_encrypted_under_an_unknown_key_id_names_the_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "l2.sqlite")
    codec = df.Codec(encryptor=df.AesGcmEncryptor(keyring()))
    cache = df.DataFerry(distributed=df.SQLiteCache(path), codec=codec)
    cache.set("k", "v")
    cache.close()
    monkeypatch.setenv("OLD_KEYS", "2025-01:" + base64.b64encode(os.urandom(32)).decode())
    code, out, _ = run(capsys, "inspect", "k", "--sqlite", path, "--keys-env", "OLD_KEYS")
    assert code == 0
    assert "could not decode: key id '2026-11' is not in the keyring" in out


def test_unknown_serializer_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "l2.sqlite")
    plant(path, "dataferry:k:k", b"\x00\x01", serializer_id=200)
    code, out, _ = run(capsys, "inspect", "k", "--sqlite", path)
    assert code == 0
    assert "serializer custom-200" in flat(out)
    assert "could not decode: unknown serializer id 200" in out


def test_undecodable_payload_never_leaks_its_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "l2.sqlite")
    plant(path, "dataferry:k:k", b'{"card": "4111-SECRET-1111", oops')
    for extra in ((), ("--json",)):
        code, out, err = run(capsys, "inspect", "k", "--sqlite", path, *extra)
        assert code == 0
        assert "could not decode: the payload is not valid JSON (JSONDecodeError)" in flat(out)
        assert "SECRET" not in out + err


@pytest.mark.parametrize("record_keys", [False, True])
def test_the_caches_decode_warning_never_names_the_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, record_keys: bool
) -> None:
    path = str(tmp_path / "l2.sqlite")
    plant(path, "shop:k:card", b'{"card": "4111-SECRET-1111", oops')
    cache = df.DataFerry(
        distributed=df.SQLiteCache(path),
        namespace="shop",
        telemetry=df.Telemetry(record_keys=record_keys),
    )
    with caplog.at_level(logging.WARNING, logger="dataferry"):
        for _ in range(3):  # repeats within a minute are counted, not logged
            assert cache.get("card", default="miss") == "miss"
    cache.close()
    warnings = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(warnings) == 1
    assert cache.stats().decode_errors == 3
    message = warnings[0].getMessage()
    # The key only when asked for (it may be personal data); else a stable short hash of it.
    assert ("shop:k:card" in message) is record_keys
    assert warnings[0].dataferry_event == "decode_error"
    assert warnings[0].dataferry_namespace == "shop"
    if not record_keys:
        assert warnings[0].dataferry_key.startswith("key#")
        assert warnings[0].dataferry_key in message
    assert "SECRET" not in caplog.text


def test_plain_pickle_is_never_unpickled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "l2.sqlite")
    plant(path, "dataferry:k:k", b"cos\nsystem\n(S'echo pwned'\ntR.", serializer_id=3)
    code, out, _ = run(capsys, "inspect", "k", "--sqlite", path)
    assert code == 0
    assert "pickled and not authenticated: never unpickled" in out


def test_plain_entry_decodes_with_a_keyring_too(
    tmp_path: Path, keys_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "l2.sqlite")
    cache = df.DataFerry(distributed=df.SQLiteCache(path))
    cache.set("k", [1, 2])
    cache.close()
    code, out, _ = run(capsys, "inspect", "k", "--sqlite", path, "--keys-env", keys_env, "--json")
    assert code == 0
    assert json.loads(out)["value"] == [1, 2]


# -- SQLite: read-only, never created -------------------------------------------------------------


def test_missing_sqlite_file_exits_2_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing.db"
    code, out, err = run(capsys, "inspect", "k", "--sqlite", str(path))
    assert code == 2
    assert out == ""
    assert err == f"dataferry inspect: --sqlite: {str(path)!r} does not exist\n"
    assert list(tmp_path.iterdir()) == []


def test_missing_sqlite_file_through_the_entry_point(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dataferry", "inspect", "k", "--sqlite", "missing.db"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("dataferry inspect: --sqlite:")
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "inspect", "k", "--sqlite", str(tmp_path))
    assert code == 2
    assert "is a directory" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello, not a database at all" * 100, "file is not a database"),
        (b"", "not a SQLiteCache database (no dataferry_cache table)"),
    ],
)
def test_a_file_that_is_not_a_sqlite_cache_exits_1(
    tmp_path: Path, content: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "other.db"
    path.write_bytes(content)
    code, _, err = run(capsys, "inspect", "k", "--sqlite", str(path))
    assert code == 1
    assert err.startswith("dataferry inspect: the L2 cache can't be read: SQLite")
    assert message in err
    assert err.count("\n") == 1
    assert path.read_bytes() == content  # read-only: not turned into a database


@pytest.mark.parametrize(
    ("value", "expires_at", "shown"),
    [
        ("not an envelope", 9e9, "not a DataFerry envelope"),
        (7, 9e9, None),
        (b"DF", "soon", None),
    ],
)
def test_hand_written_rows_are_reported(
    tmp_path: Path,
    value: object,
    expires_at: object,
    shown: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import sqlite3

    path = tmp_path / "l2.sqlite"
    backend = df.SQLiteCache(path)
    backend.set("dataferry:k:other", envelope("dataferry:k:other", b"1"), 60)  # creates the table
    backend.close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO dataferry_cache VALUES ('dataferry:k:k', ?, ?)", (value, expires_at)
        )
    conn.close()
    code, out, err = run(capsys, "inspect", "k", "--sqlite", str(path))
    if shown is None:
        assert code == 1
        assert "the row of this key is not a cache entry" in err
    else:
        assert code == 0
        assert shown in out


def test_inspect_does_not_write_to_the_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "l2.sqlite"
    cache = df.DataFerry(distributed=df.SQLiteCache(path))
    cache.set("k", "v", ttl=60)
    cache.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for key in ("k", "absent"):
        run(capsys, "inspect", key, "--sqlite", str(path))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_expired_sqlite_entry_is_not_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "l2.sqlite")
    backend = df.SQLiteCache(path)
    backend.set("dataferry:k:gone", envelope("dataferry:k:gone", b"1"), 0.01)
    backend.set("dataferry:k:here", envelope("dataferry:k:here", b"2"), 60)
    backend.close()
    time.sleep(0.05)
    code, out, _ = run(capsys, "inspect", "gone", "--sqlite", path)
    assert (code, "not found" in out) == (3, True)
    code, out, _ = run(capsys, "inspect", "here", "--sqlite", path, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["value"] == 2
    assert 50 < shown["ttl_left"] <= 60


def test_cluster_flag_needs_redis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "inspect", "k", "--sqlite", str(tmp_path / "x.db"), "--cluster")
    assert code == 2
    assert "--cluster goes with --redis" in err


# -- bad URLs: a message and exit 2, never a traceback --------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost:notaport/0", "the port must be an integer from 1 to 65535"),
        ("redis://:hunter2@localhost:99999/0", "the port must be an integer from 1 to 65535"),
        ("redis://localhost:0/0", "the port must be an integer from 1 to 65535"),
        ("http://x", "starts with redis://, rediss:// or unix:// (got http://)"),
        ("localhost:6379", "starts with redis://, rediss:// or unix://, e.g. redis://localhost"),
        ("redis://[::1/0", "not a URL, e.g. redis://localhost:6379/0"),
        ("redis://localhost:6379/abc", "the database (the path after the host) must be a number"),
        ("unix://", "a unix:// URL needs a socket path"),
        ("redis://localhost:6379/0?db=x", "Invalid value for 'db' in connection URL"),
        ("redis://:hunter2@localhost/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
        ("redis://:hunter2@localhost/0?colour=blue", "unknown option 'colour' in the URL's query"),
        ("unix:///run/redis.sock?colour=blue", "unknown option 'colour' in the URL's query"),
    ],
)
def test_bad_redis_url_exits_2(url: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "inspect", "k", "--redis", url)
    assert code == 2
    assert out == ""
    assert err.startswith("dataferry inspect: bad --redis URL: ")
    assert message in err
    assert err.count("\n") == 1
    assert "hunter2" not in err


def test_bad_url_through_the_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dataferry", "inspect", "k", "--redis", "redis://h:notaport/0"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "dataferry inspect: bad --redis URL: the port must be an integer from 1 to 65535\n"
    )


def test_unresolvable_host_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "inspect", "k", "--redis", "redis://:hunter2@nohost.invalid:6379/0")
    assert code == 1
    assert err.startswith("dataferry inspect: the L2 cache can't be read: ")
    assert err.count("\n") == 1
    assert "hunter2" not in err


def test_query_options_redis_py_knows_are_accepted(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = redis_url + "?socket_timeout=2&client_name=dataferry-inspect&health_check_interval=5"
    code, out, err = run(capsys, "inspect", "absent", "--redis", url)
    assert (code, err) == (3, "")
    assert "not found" in out
