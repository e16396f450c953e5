"""Console output of the ``dataferry`` command line: tables, progress bars, durations, hints.

With the ``dataferry[cli]`` extra (``rich``) and a terminal-like stream (rich's own test:
a TTY, or ``FORCE_COLOR`` / ``TTY_COMPATIBLE=1`` set), tables and progress bars are rich's,
with colour. Otherwise, and always without ``rich``, they are plain text that fits the
terminal width (``shutil.get_terminal_size``, which honours ``COLUMNS``), so the commands
work the same in a bare virtualenv, a pipe or a CI log.
"""

from __future__ import annotations

import math
import shutil
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TextIO

__all__ = [
    "ProgressUpdate",
    "format_duration",
    "hint_missing_extra",
    "print_paragraph",
    "print_table",
    "progress",
    "rich_available",
    "terminal_width",
    "use_rich",
]

#: Redraw interval of the plain progress line on a terminal, and between lines elsewhere.
_TTY_INTERVAL = 0.1
_LOG_INTERVAL = 2.0


def rich_available() -> bool:
    """Return whether the ``rich`` package (the ``dataferry[cli]`` extra) can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _rich_console(file: TextIO) -> Any:
    from rich.console import Console

    return Console(file=file)


def use_rich(file: TextIO | None = None) -> bool:
    """Return whether output to ``file`` (default stdout) is drawn with rich.

    True when rich is importable and rich considers the stream a terminal (a TTY, or
    ``FORCE_COLOR`` / ``TTY_COMPATIBLE=1`` in the environment); a pipe or a file gets plain
    text, easy to grep and diff.
    """
    if not rich_available():
        return False
    return bool(_rich_console(file if file is not None else sys.stdout).is_terminal)


def terminal_width() -> int:
    """Return the terminal's width in columns (``COLUMNS`` first; 80 when unknown)."""
    return max(1, shutil.get_terminal_size().columns)


def format_duration(seconds: float) -> str:
    """Format a duration with 3 significant digits in ns, µs, ms or s.

    ``format_duration(0.0000123)`` is ``'12.3 µs'``, ``format_duration(0.0021)`` is
    ``'2.10 ms'``; 999.9 µs rounds to ``'1.00 ms'``. Durations from 1,000 s on keep every
    digit of the seconds (``'1,234 s'``).
    """
    if math.isnan(seconds):
        return "n/a"
    if math.isinf(seconds):
        return "∞ s" if seconds > 0 else "-∞ s"
    if seconds == 0:
        return "0 s"
    sign = "-" if seconds < 0 else ""
    magnitude = abs(seconds)
    for unit, scale in (("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)):
        # Round first: 999.96 µs is "1.00 ms", not "1000 µs".
        value = float(f"{magnitude / scale:.3g}")
        if value < 1000:
            return f"{sign}{_three_digits(value)} {unit}"
    return f"{sign}{magnitude:,.0f} s"


def _three_digits(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:#.3g}"  # under a nanosecond: "0.500"


def hint_missing_extra(extra: str, what: str, *, file: TextIO | None = None) -> None:
    """Print one line (default: to stderr) saying which extra brings ``what``.

    E.g. ``dataferry: install 'dataferry[cli]' for tables, progress bars and colour
    (pip install 'dataferry[cli]')``.
    """
    stream = file if file is not None else sys.stderr
    stream.write(f"dataferry: install 'dataferry[{extra}]' for {what} ")
    stream.write(f"(pip install 'dataferry[{extra}]')\n")
    stream.flush()


# -- tables ---------------------------------------------------------------------------------------


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    file: TextIO | None = None,
    numeric: Sequence[bool] | None = None,
    rich: bool | None = None,
) -> None:
    """Print a table with a title to ``file`` (default stdout).

    A rich table when :func:`use_rich` says so (``rich=False`` forces plain text), else
    aligned plain text: numeric columns (``numeric[i]`` true) right-aligned, the others
    left-aligned, text columns wrapped so the table fits the terminal width where the numeric
    columns leave room. When every column name is empty the table has no header (a list of
    fields). Cells may hold line breaks. Cell text is shown as is (never read as rich markup).
    """
    stream = file if file is not None else sys.stdout
    flags = list(numeric) if numeric is not None else [False] * len(columns)
    if len(flags) != len(columns) or any(len(row) != len(columns) for row in rows):
        raise ValueError("every row and `numeric` need one item per column")
    if rich is not False and use_rich(stream):
        _print_rich_table(title, columns, rows, stream, flags)
    else:
        stream.write(_plain_table(title, columns, rows, flags, terminal_width()))
        stream.flush()


def _print_rich_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    stream: TextIO,
    numeric: Sequence[bool],
) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    header = any(columns)
    table = Table(
        title=Text(title, style="bold") if title else None,
        title_justify="left",
        box=box.SIMPLE_HEAD if header else None,
        pad_edge=False,
        collapse_padding=True,
        show_header=header,
        header_style="bold cyan",
    )
    for n, (name, is_number) in enumerate(zip(columns, numeric, strict=True)):
        # A list of fields (no header) reads best with its names in bold.
        style = "green" if is_number else ("bold" if n == 0 and not header else None)
        table.add_column(
            Text(name),
            justify="right" if is_number else "left",
            overflow="fold",
            style=style,
        )
    for row in rows:
        # Text, not str: a stored value like "[red]" must not be read as rich markup.
        table.add_row(*(Text(cell) for cell in row))
    _rich_console(stream).print(table)


def _plain_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: Sequence[bool],
    width: int,
) -> str:
    indent, gap = "  ", "  "
    header = any(columns)
    table = [*([list(columns)] if header else []), *(list(row) for row in rows)]
    if not table:
        return title + "\n" if title else ""
    widths = [max(_cell_width(line[i]) for line in table) for i in range(len(columns))]
    # Shrink the widest text column until the table fits. Numbers are never wrapped (their
    # column's header may be); a text column keeps at least 12 characters.
    body = table[1:] if header else table
    floor = [
        max((_cell_width(line[i]) for line in body), default=1) if is_number else min(w, 12)
        for i, (w, is_number) in enumerate(zip(widths, numeric, strict=True))
    ]
    room = width - len(indent) - len(gap) * (len(columns) - 1)
    while sum(widths) > room:
        shrinkable = [i for i, w in enumerate(widths) if w > floor[i]]
        if not shrinkable:
            break  # as narrow as it goes: wider than the terminal
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1

    lines = textwrap.wrap(title, max(width, 1)) if title else []
    for n, row in enumerate(table):
        cells = [_wrap_cell(cell, w) for cell, w in zip(row, widths, strict=True)]
        for k in range(max(len(c) for c in cells)):
            parts = []
            for cell, w, is_number in zip(cells, widths, numeric, strict=True):
                text = cell[k] if k < len(cell) else ""
                parts.append(f"{text:>{w}}" if is_number else f"{text:<{w}}")
            lines.append((indent + gap.join(parts)).rstrip())
        if n == 0 and header:
            lines.append(indent + "-" * (sum(widths) + len(gap) * (len(widths) - 1)))
    return "\n".join(lines) + "\n"


def print_paragraph(
    text: str,
    *,
    file: TextIO | None = None,
    style: str | None = None,
    rich: bool | None = None,
) -> None:
    """Print ``text`` as one paragraph wrapped to the terminal width (at most 100 columns).

    With rich (see :func:`use_rich`; ``rich=False`` forces plain text) ``style`` (a rich
    style such as ``"bold green"``) colours it; plain text ignores ``style``.
    """
    stream = file if file is not None else sys.stdout
    width = min(terminal_width(), 100)
    if rich is not False and use_rich(stream):
        from rich.text import Text

        console = _rich_console(stream)
        console.width = min(console.width, width)
        console.print(Text(text, style=style or ""))
    else:
        stream.write(textwrap.fill(text, width, break_on_hyphens=False) + "\n")
        stream.flush()


def _cell_width(cell: str) -> int:
    return max((len(line) for line in cell.splitlines()), default=0)


def _wrap_cell(cell: str, width: int) -> list[str]:
    out: list[str] = []
    for line in cell.splitlines() or [""]:
        if len(line) <= width:
            out.append(line)
        else:
            out += textwrap.wrap(line, width, break_on_hyphens=False) or [""]
    return out


# -- progress -------------------------------------------------------------------------------------


class ProgressUpdate(Protocol):
    """What :func:`progress` yields: report the completed amount (absolute, not a step)."""

    def __call__(self, done: float, status: str = "") -> None:
        """Set the completed amount to ``done``; ``status`` is a short text after the bar."""


def _no_update(done: float, status: str = "") -> None:
    """The update of a disabled progress bar."""


@contextmanager
def progress(
    total: float,
    description: str,
    *,
    file: TextIO | None = None,
    enabled: bool = True,
) -> Iterator[ProgressUpdate]:
    r"""Show a progress bar on ``file`` (default stderr) while the ``with`` block runs.

    Yields ``update(done, status="")``: ``done`` is the completed amount out of ``total``,
    ``status`` an optional short text (e.g. a rate) shown after the bar while there is room.
    With rich on a terminal: a rich progress bar as wide as the terminal. Otherwise one plain
    line, never wider than the terminal: redrawn in place (``\r``) on a TTY, at most ten
    times a second; on anything else (a log, a pipe, CI) a new line at most every 2 s, so
    logs stay readable. The last state is drawn when the block ends. ``enabled=False`` draws
    nothing.
    """
    stream = file if file is not None else sys.stderr
    if not enabled:
        yield _no_update
    elif use_rich(stream):
        with _rich_progress(total, description, stream) as update:
            yield update
    else:
        line = _PlainProgress(total, description, stream)
        try:
            yield line.update
        finally:
            line.close()


@contextmanager
def _rich_progress(total: float, description: str, stream: TextIO) -> Iterator[ProgressUpdate]:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
    from rich.table import Column

    def text_column(template: str, style: str, min_width: int | None = None) -> TextColumn:
        # Cut with an ellipsis, never wrapped: the bar stays one line at any width.
        return TextColumn(
            template,
            style=style,
            markup=False,
            table_column=Column(no_wrap=True, overflow="ellipsis", min_width=min_width),
        )

    bar = Progress(
        # The description is what says which bar this is: the status gives way first.
        text_column("{task.description}", "bold", min_width=min(len(description), 20)),
        BarColumn(bar_width=None),
        TaskProgressColumn(),
        text_column("{task.fields[status]}", "dim"),
        console=_rich_console(stream),
        expand=True,
        refresh_per_second=10,
    )
    with bar:
        task = bar.add_task(description, total=total, status="")

        def update(done: float, status: str = "") -> None:
            bar.update(task, completed=min(done, total), status=status)

        yield update


class _PlainProgress:
    """The progress line without rich (see :func:`progress`)."""

    def __init__(self, total: float, description: str, stream: TextIO) -> None:
        self._total = total
        self._description = description
        self._stream = stream
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._interval = _TTY_INTERVAL if self._tty else _LOG_INTERVAL
        # A log gets its first line after one interval, not a "0%" line at once.
        self._last_draw = time.monotonic()
        self._done = 0.0
        self._status = ""
        self._drawn: tuple[float, str] | None = None
        self._drawn_width = 0

    def update(self, done: float, status: str = "") -> None:
        self._done, self._status = done, status
        now = time.monotonic()
        if now - self._last_draw >= self._interval:
            self._last_draw = now
            self._draw()

    def close(self) -> None:
        if self._drawn != (self._done, self._status):
            self._draw()
        if self._tty:
            self._stream.write("\n")
        self._stream.flush()

    def _draw(self) -> None:
        self._drawn = (self._done, self._status)
        fraction = min(max(self._done / self._total, 0.0), 1.0) if self._total > 0 else 1.0
        # On a terminal, one column short of the width: a line filling the last column
        # makes some terminals wrap before the "\r".
        width = terminal_width() - (1 if self._tty else 0)
        line = _progress_line(self._description, fraction, self._status, width, bar=self._tty)
        if self._tty:
            # Blank out what a longer previous line left behind (no escape codes: a dumb
            # terminal shows them as text).
            padded = line.ljust(min(self._drawn_width, width))
            self._drawn_width = len(line)
            self._stream.write("\r" + padded)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


def _progress_line(description: str, fraction: float, status: str, width: int, *, bar: bool) -> str:
    """``description [####    ]  42% status``, fitted into ``width`` columns.

    The bar shrinks first (to 10 cells), then the status goes, then the description is cut;
    what is left is always at most ``width`` long.
    """
    percent = f"{fraction:4.0%}"
    for show_status in (True, False):
        tail = f" {percent}" + (f" {status}" if show_status and status else "")
        if not bar:
            line = description + tail
            if len(line) <= width:
                return line
            continue
        room = width - len(description) - len(tail) - 3  # " [" and "]"
        if room >= 10:
            cells = min(room, 40)
            filled = int(fraction * cells)
            return f"{description} [{'#' * filled}{' ' * (cells - filled)}]{tail}"
    # Narrow: cut the description, keep the percentage.
    percent = percent.strip()
    keep = width - len(percent) - 1
    if keep < 2:
        return percent[:width]
    cut = description if len(description) <= keep else description[: keep - 1] + "…"
    return f"{cut} {percent}"
