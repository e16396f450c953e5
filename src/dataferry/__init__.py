"""DataFerry: a hybrid cache (in-process L1 + distributed L2) for async and sync Python.

Everything public is importable from ``dataferry``; modules whose names start with ``_`` are
private and may change without notice.
"""

from dataferry._async._facade import AsyncDataFerry
from dataferry._backends import (
    Backplane,
    DistributedCache,
    RedisBackplane,
    RedisCache,
    SQLiteCache,
)
from dataferry._builder import Builder
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
from dataferry._sync._facade import DataFerry
from dataferry._telemetry import Telemetry

__version__ = "0.1.0"

__all__ = [
    "AesGcmEncryptor",
    "AsyncDataFerry",
    "Backplane",
    "Builder",
    "CacheClosedError",
    "CircuitOpenError",
    "Codec",
    "Compressor",
    "ConfigurationError",
    "DataFerry",
    "DataFerryError",
    "DistributedCache",
    "DistributedCacheError",
    "DistributedLayer",
    "Encryptor",
    "Entry",
    "EntryOptions",
    "EvictionPolicy",
    "FactoryTimeoutError",
    "GzipCompressor",
    "InvalidKeyError",
    "InvalidTenantError",
    "JsonSerializer",
    "Keyring",
    "KeyringError",
    "LatencyHistogram",
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
    "ZstdCompressor",
    "__version__",
    "estimate_size",
]
