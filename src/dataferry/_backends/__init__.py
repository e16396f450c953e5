"""L2 backends: each moves bytes with a TTL and translates its driver's errors."""

from dataferry._backends._protocol import DistributedCache

__all__ = ["DistributedCache"]
