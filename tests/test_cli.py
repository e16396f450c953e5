"""The `dataferry` command line: help, argument errors, exit codes, `python -m dataferry`."""

from __future__ import annotations

import importlib
import json
import os
import pty
import re
import runpy
import select
import subprocess
import sys
import time
from pathlib import Path

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


# -- the display: rich with the `cli` extra on a terminal; plain text and a hint without it --

HINT = (
    "dataferry: install 'dataferry[cli]' for tables, progress bars and colour "
    "(pip install 'dataferry[cli]')"
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TINY_DEMO = ["demo", "--duration", "0.4", "--keys", "200", "--concurrency", "8"]
TINY_DEMO += ["--db-latency-ms", "0.5", "--baseline-seconds", "0.3"]


def cli_command(*, rich: bool) -> list[str]:
    """The real entry point in a fresh interpreter; without rich, `import rich` fails there."""
    block = "" if rich else "sys.modules['rich'] = None; "
    code = (
        f"import sys; {block}from dataferry._cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", code]


def clean_env(columns: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env["COLUMNS"] = str(columns)
    return env


def run_with_stderr_on_a_terminal(
    argv: list[str], *, rich: bool, columns: int
) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (as in a shell) and stdout on a pipe.

    Returns the exit status, stdout, and what the terminal received on stderr.
    """
    master, slave = pty.openpty()
    with subprocess.Popen(
        [*cli_command(rich=rich), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=clean_env(columns),
    ) as proc:
        os.close(slave)
        received = bytearray()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child's side is closed, it has exited
                break
            if not chunk:
                break
            received += chunk
        os.close(master)
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        status = proc.wait(timeout=60)
    return status, out, received.decode()


def shown_lines(text: str) -> list[str]:
    """What a terminal displays: each line, and each state of a line redrawn with \\r."""
    return [line for line in re.split(r"[\r\n]", ANSI.sub("", text)) if line.strip()]


@pytest.mark.parametrize("rich", [True, False], ids=["rich", "without-rich"])
@pytest.mark.parametrize("columns", [40, 80])
@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_demo_fits_the_terminal(rich: bool, columns: int) -> None:
    status, out, err = run_with_stderr_on_a_terminal(TINY_DEMO, rich=rich, columns=columns)
    assert status == 0, err
    lines = shown_lines(err)
    # The hint: once without rich, never with it; one line (a terminal may wrap it).
    assert [line for line in lines if line.startswith("dataferry: install")] == (
        [] if rich else [HINT]
    )
    bars = [line for line in lines if line.startswith(("with cache", "without cache"))]
    assert len(bars) >= 3  # the cached run's bar drawn more than once, then the baseline's
    assert "100%" in bars[-1]
    limit = columns if rich else columns - 1  # plain: the last column stays free
    assert max(len(line) for line in lines if line != HINT) <= limit
    # stdout is a pipe: plain text, the plan first and the verdict last.
    assert "\x1b[" not in out
    assert out.startswith("dataferry demo\n")
    assert "Verdict: " in out
    assert "latency p95" in out
    if columns == 80:
        assert max(len(line) for line in out.splitlines()) <= 80


def test_demo_without_rich_on_a_pipe() -> None:
    # What CI runs in a bare virtualenv: no terminal, no rich. It works, in plain text.
    proc = subprocess.run(
        [*cli_command(rich=False), *TINY_DEMO],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=clean_env(80),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0] == HINT
    assert proc.stderr.count("dataferry: install") == 1
    assert "\r" not in proc.stderr  # a log gets whole lines
    assert proc.stderr.splitlines()[-1].startswith("without cache 100%")
    assert "Results" in proc.stdout
    assert "Verdict: " in proc.stdout


def _sqlite_entry(tmp_path: Path) -> str:
    path = str(tmp_path / "l2.sqlite")
    cache = dataferry.DataFerry(distributed=dataferry.SQLiteCache(path), namespace="shop")
    cache.set("user:1", {"name": "Ada [bold]Lovelace[/bold]"}, ttl=120, tags=["users"])
    cache.close()
    return path


def test_inspect_without_rich_prints_a_plain_table_and_the_hint(tmp_path: Path) -> None:
    path = _sqlite_entry(tmp_path)
    argv = ["inspect", "user:1", "--sqlite", path, "--namespace", "shop"]
    proc = subprocess.run(
        [*cli_command(rich=False), *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=clean_env(80),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == HINT + "\n"
    lines = proc.stdout.splitlines()
    assert lines[0] == "dataferry inspect"
    assert "  serializer      json" in lines
    assert '"name": "Ada [bold]Lovelace[/bold]"' in proc.stdout
    # JSON is for programs: no hint, nothing but the JSON.
    proc = subprocess.run(
        [*cli_command(rich=False), *argv, "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=clean_env(80),
    )
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert json.loads(proc.stdout)["value"] == {"name": "Ada [bold]Lovelace[/bold]"}


def test_inspect_on_a_terminal_draws_a_rich_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sqlite_entry(tmp_path)
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich's switch: treat the output as a terminal
    monkeypatch.setenv("COLUMNS", "60")
    assert main(["inspect", "user:1", "--sqlite", path, "--namespace", "shop"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # rich is installed: no hint
    assert "\x1b[" in out
    shown = ANSI.sub("", out)
    assert max(len(line) for line in shown.splitlines()) <= 60
    assert re.search(r"^ *serializer +json *$", shown, re.MULTILINE)
    assert "Ada [bold]Lovelace[/bold]" in shown  # a stored value is never read as markup
    # Not found: the same table, and status 3.
    assert main(["inspect", "user:2", "--sqlite", path, "--namespace", "shop"]) == 3
    assert "not found" in ANSI.sub("", capsys.readouterr().out)
