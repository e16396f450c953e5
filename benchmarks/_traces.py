"""Find the cache access traces in ``/work/shared/traces`` (see its README) and read them.

``lirs/*.trace.gz``: gzip text, one integer key per line.
``cache2k/*.trace.xz``: xz, a stream of big-endian unsigned 32-bit keys.

The readers live in the package (``dataferry._traces``, which ``dataferry simulate`` uses too);
this module only knows where the shared traces are.
"""

from __future__ import annotations

import os
from pathlib import Path

from dataferry._traces import Trace, load_trace, trace_name

__all__ = ["Trace", "default_trace_dir", "find_traces", "load_trace", "trace_name"]

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "DATAFERRY_TRACES"


def default_trace_dir() -> Path:
    """``$DATAFERRY_TRACES``, else ``../shared/traces`` relative to the repo root."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "traces").resolve()


def find_traces(root: Path) -> list[Path]:
    """Every trace file under ``root``: LIRS first, then cache2k, each sorted by name."""
    lirs = sorted((root / "lirs").glob("*.trace.gz"))
    cache2k = sorted((root / "cache2k").glob("*.trace.xz"))
    return lirs + cache2k
