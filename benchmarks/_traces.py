"""Read the cache access traces in ``/work/shared/traces`` (see its README).

``lirs/*.trace.gz``: gzip text, one integer key per line.
``cache2k/*.trace.xz``: xz, a stream of big-endian unsigned 32-bit keys.
"""

from __future__ import annotations

import array
import gzip
import lzma
import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Trace", "default_trace_dir", "find_traces", "load_trace", "trace_name"]

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "DATAFERRY_TRACES"


@dataclass(frozen=True)
class Trace:
    name: str
    keys: list[str]  # str keys, as MemoryCache takes
    distinct: int


def default_trace_dir() -> Path:
    """``$DATAFERRY_TRACES``, else ``../shared/traces`` relative to the repo root."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "traces").resolve()


def find_traces(root: Path) -> list[Path]:
    """Every trace file under ``root``: LIRS first, then cache2k, each sorted by name."""
    lirs = sorted((root / "lirs").glob("*.trace.gz"))
    cache2k = sorted((root / "cache2k").glob("*.trace.xz"))
    return lirs + cache2k


def trace_name(path: Path) -> str:
    return path.name.split(".trace")[0]


def load_trace(path: Path) -> Trace:
    """Read one trace into a list of str keys."""
    if path.name.endswith(".trace.gz"):
        with gzip.open(path, "rt") as f:
            # One integer per line; "*" lines are markers in the LIRS format, not requests.
            keys = [s for s in (line.strip() for line in f) if s.isdigit()]
    elif path.name.endswith(".trace.xz"):
        with lzma.open(path) as f:
            raw = f.read()
        ints = array.array("I")
        if ints.itemsize != 4:  # pragma: no cover - every mainstream platform has 4-byte I
            raise RuntimeError("array 'I' is not 32 bits here")
        ints.frombytes(raw[: len(raw) - len(raw) % 4])
        if sys.byteorder == "little":
            ints.byteswap()
        keys = [str(k) for k in ints]
    else:
        raise ValueError(f"unknown trace format: {path}")
    return Trace(trace_name(path), keys, len(set(keys)))
