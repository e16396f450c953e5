"""A throw-away redis-server for benchmarks: the test harness's RedisServer, reused."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Benchmarks run as scripts (`python benchmarks/bench_x.py`): make the repo root importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redis_servers import RedisServer


@contextmanager
def redis_server() -> Iterator[str]:
    """Start a private redis-server on a free port (no persistence); yield its URL."""
    with RedisServer(name="bench") as server:
        yield server.url
