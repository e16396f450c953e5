"""L2 backends: each moves bytes with a TTL and translates its driver's errors."""

from dataferry._backends._backplane import Backplane, RedisBackplane
from dataferry._backends._glide import GlideCache
from dataferry._backends._glide_backplane import GlideBackplane
from dataferry._backends._protocol import DistributedCache
from dataferry._backends._redis import RedisCache
from dataferry._backends._sqlite import SQLiteCache

__all__ = [
    "Backplane",
    "DistributedCache",
    "GlideBackplane",
    "GlideCache",
    "RedisBackplane",
    "RedisCache",
    "SQLiteCache",
]
