"""Read cache access traces: the request sequences ``dataferry simulate`` replays.

Three formats, each optionally compressed with gzip, xz or bzip2 (recognised by the file's
magic bytes, not its name):

- ``plain``: text, one key per line; blank lines are skipped, the rest is stripped of
  surrounding whitespace and used as the key.
- ``lirs``: text, one integer key per line, the traces of the LIRS paper (Jiang & Zhang) as the
  Caffeine simulator ships them; ``*`` lines are markers, not requests, and are skipped.
- ``cache2k``: binary, a stream of big-endian unsigned 32-bit keys (the cache2k traces).

:func:`detect_format` guesses the format: a name ending in ``.lirs`` or ``.cache2k`` (before
any compression suffix) says it; otherwise the first 64 KiB decide: NUL bytes or bytes that
aren't UTF-8 mean ``cache2k``, text whose every line is an integer or ``*`` means ``lirs``,
any other text ``plain``.

Keys come back as ``str`` (what :class:`~dataferry.MemoryCache` takes); equal keys share one
``str`` object, which keeps a multi-million-request trace small and its dict lookups fast.
"""

from __future__ import annotations

import array
import bz2
import gzip
import io
import lzma
import re
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dataferry._errors import ConfigurationError

__all__ = ["FORMATS", "Trace", "detect_format", "load_trace", "read_keys", "trace_name"]

#: The trace formats, as ``--format`` names them.
FORMATS = ("plain", "lirs", "cache2k")

_SAMPLE = 64 * 1024
_CHUNK = 1 << 20  # bytes of cache2k keys read at a time (a multiple of 4)
_GZIP_MAGIC = b"\x1f\x8b"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_BZ2_MAGIC = re.compile(rb"BZh[1-9]1AY&SY")
_COMPRESSED_SUFFIXES = (".gz", ".xz", ".bz2")
_NAME_SUFFIXES = (".trace", ".txt", ".keys", ".lirs", ".cache2k", ".bin")
# What a damaged compressed file raises while it is read (a gzip file's is an OSError).
_CORRUPT = (EOFError, lzma.LZMAError, zlib.error, gzip.BadGzipFile)


@dataclass(frozen=True)
class Trace:
    """A trace read into memory.

    Attributes:
        name: The file name without its suffixes (``multi2`` for ``multi2.trace.gz``).
        keys: The requests, in order.
        distinct: The number of distinct keys.
        format: The format it was read as (one of :data:`FORMATS`).

    """

    name: str
    keys: list[str]
    distinct: int
    format: str = "plain"


def trace_name(path: Path | str) -> str:
    """The file name of ``path`` without its compression and trace suffixes."""
    name = Path(path).name
    for suffixes in (_COMPRESSED_SUFFIXES, _NAME_SUFFIXES):
        for suffix in suffixes:
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    return name


def _open(path: Path) -> io.BufferedIOBase:
    """Open ``path`` for reading bytes, decompressing it if its magic bytes say so."""
    with open(path, "rb") as f:
        head = f.read(10)
    if head.startswith(_GZIP_MAGIC):
        return gzip.open(path, "rb")
    if head.startswith(_XZ_MAGIC):
        return lzma.open(path, "rb")
    if _BZ2_MAGIC.match(head):
        return bz2.open(path, "rb")
    return open(path, "rb")


def _corrupt(path: Path, exc: BaseException) -> ConfigurationError:
    return ConfigurationError(f"{path}: damaged compressed file ({exc or type(exc).__name__})")


def _is_lirs_line(line: str) -> bool:
    return line == "*" or (line.isascii() and line.isdigit())


def detect_format(path: Path | str) -> str:
    """Guess the format of the trace file at ``path`` (see the module docstring).

    Raises:
        OSError: The file can't be opened or read.
        ConfigurationError: The file is a damaged compressed file.

    """
    path = Path(path)
    stem = path.name
    for suffix in _COMPRESSED_SUFFIXES:
        stem = stem.removesuffix(suffix)
    if stem.endswith(".lirs"):
        return "lirs"
    if stem.endswith(".cache2k"):
        return "cache2k"
    try:
        with _open(path) as f:
            sample = f.read(_SAMPLE)
    except _CORRUPT as exc:
        raise _corrupt(path, exc) from None
    if len(sample) == _SAMPLE:
        # Only whole lines: the last one (or a UTF-8 character) may be cut at the boundary.
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    if b"\0" in sample:
        return "cache2k"
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return "cache2k"
    lines = [s for s in (line.strip() for line in text.splitlines()) if s]
    if lines and all(_is_lirs_line(line) for line in lines):
        return "lirs"
    return "plain"


def _text_lines(path: Path, f: io.BufferedIOBase) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) of every non-blank line."""
    for number, raw in enumerate(f, 1):
        try:
            stripped = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigurationError(
                f"{path}: line {number} is not UTF-8 text (a binary cache2k trace? "
                "try --format cache2k)"
            ) from None
        if stripped:
            yield number, stripped


def _read_text(
    path: Path,
    f: io.BufferedIOBase,
    limit: int | None,
    key_of: Callable[[Path, int, str], str | None],
) -> list[str]:
    """The keys of a text trace: ``key_of(path, number, line)`` of each line (None: skipped)."""
    shared: dict[str, str] = {}
    intern = shared.setdefault  # repeated keys share one str
    keys: list[str] = []
    append = keys.append
    if limit == 0:
        return keys
    for number, line in _text_lines(path, f):
        key = key_of(path, number, line)
        if key is not None:
            append(intern(key, key))
            if limit is not None and len(keys) >= limit:
                break
    return keys


def _plain_key(path: Path, number: int, line: str) -> str:
    return line


def _lirs_key(path: Path, number: int, line: str) -> str | None:
    if line.isascii() and line.isdigit():
        return str(int(line)) if line[0] == "0" and len(line) > 1 else line  # "007" is "7"
    if line == "*":  # markers between phases, not requests
        return None
    shown = line if len(line) <= 40 else line[:40] + "..."
    raise ConfigurationError(
        f"{path}: line {number} is not an integer key or '*' (LIRS format): {shown!r}"
    )


def _read_plain(path: Path, f: io.BufferedIOBase, limit: int | None) -> list[str]:
    return _read_text(path, f, limit, _plain_key)


def _read_lirs(path: Path, f: io.BufferedIOBase, limit: int | None) -> list[str]:
    return _read_text(path, f, limit, _lirs_key)


def _read_cache2k(path: Path, f: io.BufferedIOBase, limit: int | None) -> list[str]:
    ints = array.array("I")
    if ints.itemsize != 4:  # pragma: no cover - every mainstream platform has 4-byte I
        raise RuntimeError("array 'I' is not 32 bits here")
    wanted = None if limit is None else 4 * limit
    read = 0
    while wanted is None or read < wanted:
        chunk = f.read(_CHUNK if wanted is None else min(_CHUNK, wanted - read))
        if not chunk:
            break
        read += len(chunk)
        if len(chunk) % 4:
            more = f.read(4 - len(chunk) % 4)  # a short read of a stream: complete the key
            read += len(more)
            chunk += more
            if len(chunk) % 4:
                raise ConfigurationError(
                    f"{path}: {read} bytes is not a whole number of 32-bit keys "
                    "(cache2k format: big-endian unsigned 32-bit keys; truncated?)"
                )
        ints.frombytes(chunk)
    if sys.byteorder == "little":
        ints.byteswap()
    names = {k: str(k) for k in set(ints)}
    return [names[k] for k in ints]


_READERS = {"plain": _read_plain, "lirs": _read_lirs, "cache2k": _read_cache2k}


def read_keys(path: Path | str, format: str = "auto", *, limit: int | None = None) -> list[str]:
    """Read the requests of the trace at ``path``, the first ``limit`` of them if given.

    Args:
        path: The trace file (gzip, xz and bzip2 compression are recognised by content).
        format: One of :data:`FORMATS`, or ``"auto"`` to :func:`detect_format` it.
        limit: Read at most this many requests.

    Raises:
        OSError: The file can't be opened or read.
        ConfigurationError: An unknown format, or a file that doesn't parse in its format.

    """
    return load_trace(path, format, limit=limit).keys


def load_trace(path: Path | str, format: str = "auto", *, limit: int | None = None) -> Trace:
    """Read the trace at ``path`` into a :class:`Trace` (see :func:`read_keys`)."""
    path = Path(path)
    if format == "auto":
        format = detect_format(path)
    reader = _READERS.get(format)
    if reader is None:
        raise ConfigurationError(
            f"unknown trace format {format!r}; expected one of {', '.join(FORMATS)} or auto"
        )
    if limit is not None and limit < 0:
        raise ConfigurationError(f"limit must be >= 0 or None, got {limit!r}")
    try:
        with _open(path) as f:
            keys = reader(path, f, limit)
    except _CORRUPT as exc:
        raise _corrupt(path, exc) from None
    return Trace(trace_name(path), keys, len(set(keys)), format)
