"""L1: the in-process object cache (no I/O, shared by the async and sync facades)."""

from dataferry._memory._cache import MemoryCache, MemoryStats

__all__ = ["MemoryCache", "MemoryStats"]
