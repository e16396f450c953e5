"""The `dataferry` command line: help, argument errors, exit codes, `python -m dataferry`."""

from __future__ import annotations

import importlib
import re
import runpy
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dataferry
from dataferry._cli import build_parser, main
from tests.redis_servers import RedisServer


def exit_code(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dataferry")
    for command in ("demo", "inspect", "keygen"):
        assert f"    {command} " in out
    assert "exit status:" in out


@pytest.mark.parametrize("command", [[], ["demo"], ["inspect"], ["keygen"]])
def test_help_fits_an_80_column_terminal(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert exit_code([*command, "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    # No flag or word is cut at its hyphen ("--keys-" / "env").
    assert not [line for line in lines if re.search(r"\w-$", line)]


def test_demo_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in (
        "--redis URL",
        "--duration",
        "--requests",
        "--concurrency",
        "--keys",
        "--l1-size",
        "--zipf-s",
        "--db-latency-ms",
        "--seed",
        "--baseline-seconds",
        "--no-baseline",
        "--no-progress",
    ):
        assert flag in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dataferry {dataferry.__version__}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["fly"], "invalid choice: 'fly'"),
        (["demo", "--duration", "0"], "must be a finite number > 0, got '0'"),
        (["demo", "--duration", "inf"], "must be a finite number > 0, got 'inf'"),
        (["demo", "--duration", "soon"], "not a number: 'soon'"),
        (["demo", "--concurrency", "0"], "must be an integer >= 1, got '0'"),
        (["demo", "--keys", "1e3"], "not an integer: '1e3'"),
        (["demo", "--zipf-s", "-1"], "must be a finite number >= 0, got '-1'"),
        (["demo", "--db-latency-ms", "x"], "not a number: 'x'"),
        (["demo", "--duration", "1", "--requests", "10"], "not allowed with argument"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_argument_errors_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: dataferry")
    assert message in err


@given(st.integers(-1000, 1000))
def test_concurrency_must_be_positive(n: int) -> None:
    parser = build_parser()
    if n >= 1:
        assert parser.parse_args(["demo", "--concurrency", str(n)]).concurrency == n
    else:
        with pytest.raises(SystemExit):
            parser.parse_args(["demo", "--concurrency", str(n)])


@given(st.floats(min_value=0.0, max_value=1e6, exclude_min=True))
def test_duration_accepts_any_positive_number(seconds: float) -> None:
    assert build_parser().parse_args(["demo", "--duration", repr(seconds)]).duration == seconds


def test_demo_defaults_match_the_config() -> None:
    from dataferry._demo import DemoConfig

    args = build_parser().parse_args(["demo"])
    d = DemoConfig()
    assert (args.duration, args.concurrency, args.keys, args.zipf_s, args.seed) == (
        d.duration,
        d.concurrency,
        d.keys,
        d.zipf_s,
        d.seed,
    )
    assert args.redis is None
    assert args.requests is None
    assert not args.no_baseline


def test_demo_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--requests", "800", "--keys", "200", "--concurrency", "8"]
    argv += ["--db-latency-ms", "0", "--baseline-seconds", "0.1", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "hit ratio L1" in out
    assert "requests/s" in out
    assert "without cache" in out


def test_unreachable_redis_exits_1(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://:hunter2@127.0.0.1:{redis_server.port}/0"
    redis_server.close()  # a port where nobody answers any more
    argv = ["demo", "--redis", url, "--requests", "10", "--keys", "20", "--no-baseline"]
    assert main([*argv, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("creating a SQLite database")
    assert "dataferry demo: the L2 cache can't be reached:" in err
    assert "hunter2" not in err


def test_ctrl_c_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataferry._demo

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dataferry._demo, "run_demo", interrupted)
    assert main(["demo"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_python_dash_m(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # In-process, so coverage sees __main__.py ...
    monkeypatch.setattr(sys, "argv", ["dataferry", "demo", "--keys", "0"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("dataferry", run_name="__main__")
    assert info.value.code == 2
    assert "must be an integer >= 1" in capsys.readouterr().err
    # ... and for real, as a user runs it.
    proc = subprocess.run(
        [sys.executable, "-m", "dataferry", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: dataferry")
    # Importing the module (pydoc, tools) runs nothing.
    importlib.import_module("dataferry.__main__")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost:notaport/0", "the port must be an integer from 1 to 65535"),
        ("http://x", "a Redis URL starts with redis://, rediss:// or unix:// (got http://)"),
    ],
)
def test_demo_bad_redis_url_exits_2_before_doing_anything(
    url: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--redis", url, "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"dataferry demo: bad --redis URL: {message}\n"  # no SQLite database built


def test_demo_bad_redis_url_through_the_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dataferry", "demo", "--redis", "redis://:pw@h:notaport/0"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        "dataferry demo: bad --redis URL: the port must be an integer from 1 to 65535\n"
    )


def test_demo_configuration_error_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataferry._demo

    def refused(*args: object, **kwargs: object) -> None:
        raise dataferry.ConfigurationError("RedisCache refuses this\nURL")

    monkeypatch.setattr(dataferry._demo, "run_demo", refused)
    assert main(["demo", "--redis", "redis://localhost:6379/0"]) == 2
    assert capsys.readouterr().err == "dataferry demo: RedisCache refuses this URL\n"
