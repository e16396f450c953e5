"""DataFerry: a hybrid cache (in-process L1 + distributed L2) for async and sync Python.

Everything public is importable from ``dataferry``; modules whose names start with ``_`` are
private and may change without notice.
"""

from dataferry._async._datasource import AsyncCachedSource
from dataferry._async._facade import AsyncDataFerry
from dataferry._async._loader import AsyncLoader
from dataferry._backends import (
    Backplane,
    DistributedCache,
    GlideBackplane,
    GlideCache,
    RedisBackplane,
    RedisCache,
    SQLiteCache,
)
from dataferry._builder import Builder
from dataferry._cache_warmer import CacheWarmer
from dataferry._codec import (
    AesGcmEncryptor,
    Codec,
    Compressor,
    Encryptor,
    GzipCompressor,
    JsonSerializer,
    Keyring,
    Lz4Compressor,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
    ZstdCompressor,
)
from dataferry._errors import (
    CacheClosedError,
    CircuitOpenError,
    ConfigurationError,
    DataFerryError,
    DistributedCacheError,
    FactoryTimeoutError,
    InvalidKeyError,
    InvalidTenantError,
    KeyringError,
    PayloadTooLargeError,
    SerializationError,
)
from dataferry._events import LatencyHistogram, Stats
from dataferry._layers import DistributedLayer
from dataferry._memory import EvictionPolicy, MemoryCache, MemoryStats, estimate_size
from dataferry._options import NOT_GIVEN, Entry, EntryOptions, NotGiven
from dataferry._resilience import Resilience
from dataferry._sources import AsyncDataSource, DataSource
from dataferry._sync._datasource import CachedSource
from dataferry._sync._facade import DataFerry
from dataferry._sync._loader import Loader
from dataferry._telemetry import Telemetry
from dataferry._version import __version__
from dataferry._warming import KeySeeder, WarmFailure, WarmProgress, WarmReport

__all__ = [
    "AesGcmEncryptor",
    "AsyncCachedSource",
    "AsyncDataFerry",
    "AsyncDataSource",
    "AsyncLoader",
    "Backplane",
    "Builder",
    "CacheClosedError",
    "CacheWarmer",
    "CachedSource",
    "CircuitOpenError",
    "Codec",
    "Compressor",
    "ConfigurationError",
    "DataFerry",
    "DataFerryError",
    "DataSource",
    "DistributedCache",
    "DistributedCacheError",
    "DistributedLayer",
    "Encryptor",
    "Entry",
    "EntryOptions",
    "EvictionPolicy",
    "FactoryTimeoutError",
    "GlideBackplane",
    "GlideCache",
    "GzipCompressor",
    "InvalidKeyError",
    "InvalidTenantError",
    "JsonSerializer",
    "KeySeeder",
    "Keyring",
    "KeyringError",
    "LatencyHistogram",
    "Loader",
    "Lz4Compressor",
    "MemoryCache",
    "MemoryStats",
    "MsgpackSerializer",
    "NOT_GIVEN",
    "NotGiven",
    "PayloadTooLargeError",
    "PickleSerializer",
    "RedisBackplane",
    "RedisCache",
    "Resilience",
    "SQLiteCache",
    "SerializationError",
    "Serializer",
    "Stats",
    "Telemetry",
    "WarmFailure",
    "WarmProgress",
    "WarmReport",
    "ZstdCompressor",
    "__version__",
    "estimate_size",
]
