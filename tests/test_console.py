"""The command line's console output: durations, tables, progress bars, the missing-extra hint."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from dataferry._console import (
    format_duration,
    hint_missing_extra,
    print_table,
    progress,
    rich_available,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# A fresh interpreter where `import rich` fails, as after a bare `pip install dataferry`.
WITHOUT_RICH = "import sys; sys.modules['rich'] = None; "


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def plain_unless_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich draws on terminals only: a FORCE_COLOR of the caller's shell must not count."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "80")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0 s"),
        (5e-10, "0.500 ns"),
        (1.234e-9, "1.23 ns"),
        (999.4e-9, "999 ns"),
        (999.6e-9, "1.00 µs"),  # rounded first, then the unit chosen
        (1.4e-6, "1.40 µs"),
        (12.34e-6, "12.3 µs"),
        (137e-6, "137 µs"),
        (999.96e-6, "1.00 ms"),
        (0.0021, "2.10 ms"),
        (0.0192, "19.2 ms"),
        (0.4, "400 ms"),
        (1.5, "1.50 s"),
        (42.0, "42.0 s"),
        (1234.5, "1,234 s"),
        (-0.002, "-2.00 ms"),
        (float("nan"), "n/a"),
        (float("inf"), "∞ s"),
    ],
)
def test_format_duration_switches_units(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_plain_table_aligns_and_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        ["latency p50", "1.40 µs", "5.42 ms"],
        ["a label long enough to need wrapping in a narrow terminal", "18,515", "10,239"],
    ]
    for width in (80, 40):
        monkeypatch.setenv("COLUMNS", str(width))
        out = io.StringIO()
        print_table("Results", ["", "with", "without"], rows, file=out, numeric=[False, True, True])
        lines = out.getvalue().splitlines()
        assert lines[0] == "Results"
        assert set(lines[2].strip()) == {"-"}  # under the header
        assert max(len(line) for line in lines) <= width
        # Numbers right-aligned, under their header's right edge.
        header, p50 = lines[1], lines[3]
        assert p50.endswith("1.40 µs  5.42 ms")
        assert header.endswith("with  without")
        assert len(header) == len(p50)
    # At 40 columns the label wrapped onto more lines, its words kept whole.
    assert len(lines) > 5
    assert "a label long enough to need wrapping in a narrow terminal" in " ".join(
        line.split("  ")[1] for line in lines[4:]
    )


def test_plain_table_without_header_is_a_list_of_fields() -> None:
    out = io.StringIO()
    print_table("dataferry inspect", ["", ""], [["key", "k"], ["value", "{\n  1\n}"]], file=out)
    assert out.getvalue() == (
        "dataferry inspect\n  key    k\n  value  {\n           1\n         }\n"
    )


def test_table_rows_must_match_the_columns() -> None:
    with pytest.raises(ValueError, match="one item per column"):
        print_table("t", ["a", "b"], [["1"]], file=io.StringIO())
    with pytest.raises(ValueError, match="one item per column"):
        print_table("t", ["a", "b"], [["1", "2"]], file=io.StringIO(), numeric=[True])


@pytest.mark.parametrize("width", [40, 80])
def test_rich_table_on_a_terminal(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    screen = Terminal()
    rows = [["[red]not markup[/red]", "1,234"], ["a much longer label " * 3, "5"]]
    print_table("Results", ["name", "count"], rows, file=screen, numeric=[False, True])
    text = screen.getvalue()
    assert "\x1b[" in text  # colour
    shown = ANSI.sub("", text)
    assert "─" in shown  # rich's rule under the header
    assert "[red]not markup[/red]" in shown  # stored text is shown, not interpreted
    assert max(len(line) for line in shown.splitlines()) <= width
    # rich=False: plain text even on a terminal.
    plain = Terminal()
    print_table("Results", ["name", "count"], rows, file=plain, rich=False)
    assert "\x1b[" not in plain.getvalue()


def test_plain_progress_line_fits_every_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "0")  # rich's switch: not rich's terminal
    for width in (1, 5, 12, 20, 40, 80, 200):
        monkeypatch.setenv("COLUMNS", str(width))
        screen = Terminal()
        with progress(10, "without cache", file=screen) as update:
            update(4, "1,234,567 requests, 89,012/s")
        text = screen.getvalue()
        assert text.startswith("\r")
        assert text.endswith("\n")
        line = text[1:-1]
        assert len(line) <= width - 1  # the last column stays free: no wrap before "\r"
        if width >= 5:
            assert "40%" in line
        if width >= 20:
            assert line.startswith("without cache")
            assert "40%" in line
        if width == 200:
            assert line.endswith(" 40% 1,234,567 requests, 89,012/s")


def test_plain_progress_on_a_log_writes_the_final_state_once() -> None:
    log = io.StringIO()
    with progress(3, "loading", file=log) as update:
        for done in (1, 2, 3):
            update(done)
    # Within 2 s: no intermediate line, the final one at the end.
    assert log.getvalue() == "loading 100%\n"
    off = io.StringIO()
    with progress(3, "loading", file=off, enabled=False) as update:
        update(3)
    assert off.getvalue() == ""


def test_interrupted_progress_ends_its_line_where_it_was() -> None:
    log = io.StringIO()

    def interrupted() -> None:
        with progress(10, "loading", file=log) as update:
            update(5)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert log.getvalue() == "loading  50%\n"


def test_hint_names_the_extra(capsys: pytest.CaptureFixture[str]) -> None:
    hint_missing_extra("cli", "tables, progress bars and colour")
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "dataferry: install 'dataferry[cli]' for tables, progress bars and colour "
        "(pip install 'dataferry[cli]')\n"
    )
    other = io.StringIO()
    hint_missing_extra("plot", "plots", file=other)
    assert other.getvalue().count("\n") == 1
    assert "pip install 'dataferry[plot]'" in other.getvalue()


def test_rich_available_follows_the_import() -> None:
    assert rich_available()
    code = "from dataferry._console import rich_available; print(rich_available())"
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_RICH + code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert proc.stdout == "False\n"
