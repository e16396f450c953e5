"""L1: the in-process object cache (no I/O, shared by the async and sync facades)."""

from dataferry._memory._cache import MemoryCache, MemoryStats, Weigher
from dataferry._memory._protocol import EvictionPolicy
from dataferry._memory._weigher import estimate_size

__all__ = ["EvictionPolicy", "MemoryCache", "MemoryStats", "Weigher", "estimate_size"]
