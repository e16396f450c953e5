"""The default weigher of a MemoryCache with ``max_bytes``: a cheap, shallow size estimate."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["ENTRY_OVERHEAD", "estimate_size"]

#: Bytes an entry costs in the cache beyond its key and value (dict slot, entry tuple, expiry
#: heap item, policy bookkeeping): 245 to 315 with tracemalloc on CPython 3.11 depending on
#: the policy (``benchmarks/bench_memory.py``), rounded.
ENTRY_OVERHEAD = 300


def estimate_size(key: str, value: Any) -> int:
    """Estimate the bytes an entry holds: ``sys.getsizeof`` of key and value, plus overhead.

    This is shallow, so it is cheap (O(1)) but undercounts containers: a list, dict or object
    counts its own header and slots, not the objects it refers to. ``bytes`` and ``str``
    values, the common case for cached payloads, are measured exactly. Pass
    ``MemoryCache(weigher=...)`` when values are large containers.
    """
    return sys.getsizeof(key) + sys.getsizeof(value) + ENTRY_OVERHEAD
