"""`dataferry keygen`: a new key line for DATAFERRY_KEYS that Keyring.from_env accepts."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timezone

import pytest

import dataferry as df
from dataferry._cli import main

LINE = re.compile(r"(?P<id>[^:\s]+):(?P<key>[A-Za-z0-9+/]{43}=)")


def keygen(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["keygen", *argv]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # only the line, on stdout: `$(dataferry keygen)` captures it all
    assert out.endswith("\n")
    assert out.count("\n") == 1
    return out.strip()


def test_default_id_is_the_current_month(capsys: pytest.CaptureFixture[str]) -> None:
    before = datetime.now(timezone.utc).strftime("%Y-%m")
    line = keygen(capsys)
    after = datetime.now(timezone.utc).strftime("%Y-%m")
    match = LINE.fullmatch(line)
    assert match is not None, line
    assert match["id"] in (before, after)


def test_the_line_parses_with_from_env(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    line = keygen(capsys, "--id", "billing-1")
    assert line.startswith("billing-1:")
    monkeypatch.setenv("DATAFERRY_TEST_KEYGEN", line)
    ring = df.Keyring.from_env("DATAFERRY_TEST_KEYGEN")
    assert ring.ids == ("billing-1",)
    assert ring.primary == "billing-1"
    assert len(ring.key("billing-1")) == 32


def test_rotation_puts_the_new_key_first(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = keygen(capsys, "--id", "2026-10")
    new = keygen(capsys, "--id", "2026-11")
    monkeypatch.setenv("DATAFERRY_TEST_KEYGEN", f"{new},{old}")
    ring = df.Keyring.from_env("DATAFERRY_TEST_KEYGEN")
    assert ring.primary == "2026-11"
    assert set(ring.ids) == {"2026-10", "2026-11"}
    # The keys work: what the old key encrypted still decodes after rotation.
    storage_key = "dataferry:k:k"
    old_ring = df.Keyring({"2026-10": ring.key("2026-10")})
    data = df.Codec(encryptor=df.AesGcmEncryptor(old_ring)).encode(
        "v", key=storage_key, created_at=0.0, logical_expiry=1.0
    )
    decoded = df.Codec(encryptor=df.AesGcmEncryptor(ring)).decode(data, key=storage_key)
    assert decoded.value == "v"


def test_two_runs_differ_through_the_entry_point() -> None:
    def run() -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "dataferry", "keygen", "--id", "k"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert proc.stderr == ""
        return proc.stdout

    first, second = run(), run()
    assert LINE.fullmatch(first.strip())
    assert LINE.fullmatch(second.strip())
    assert first != second


@pytest.mark.parametrize("bad", ["a b", "", "x" * 256, "a,b", "naïve", "k=="])
def test_bad_id_exits_2_without_echoing_it(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["keygen", "--id", bad])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "a key id is 1-255 characters of A-Z a-z 0-9 _ . : -" in err
    if bad:
        assert bad not in err.replace("--id", "")


def test_help_says_where_the_line_goes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["keygen", "--help"])
    out = capsys.readouterr().out
    assert "DATAFERRY_KEYS" in out
    assert "Keyring.from_env" in out
    assert "--id NAME" in out
    assert 'export DATAFERRY_KEYS="$(dataferry keygen),$DATAFERRY_KEYS"' in out


def test_without_rich_only_the_line() -> None:
    # A bare install (no `cli` extra): keygen prints no display hint, `$(dataferry keygen)`
    # and its stderr stay clean.
    code = (
        "import sys; sys.modules['rich'] = None; "
        "from dataferry._cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "keygen", "--id", "bare"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0
    assert proc.stderr == ""
    match = LINE.fullmatch(proc.stdout.rstrip("\n"))
    assert match is not None
    assert match["id"] == "bare"


def test_a_long_id_is_never_wrapped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The line is data, not display: a narrow terminal or FORCE_COLOR changes nothing.
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("FORCE_COLOR", "1")
    line = keygen(capsys, "--id", "k" * 200)
    assert LINE.fullmatch(line)
    assert line.startswith("k" * 200 + ":")
