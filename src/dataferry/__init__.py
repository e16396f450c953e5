"""DataFerry: a hybrid cache (in-process L1 + distributed L2) for async and sync Python.

Everything public is importable from ``dataferry``; modules whose names start with ``_`` are
private and may change without notice.
"""

from dataferry._async._facade import AsyncDataFerry
from dataferry._backends import DistributedCache
from dataferry._builder import Builder
from dataferry._codec import Codec, Compressor, Encryptor, JsonSerializer, Serializer
from dataferry._errors import (
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
from dataferry._events import Stats
from dataferry._memory import MemoryCache, MemoryStats
from dataferry._options import Entry, EntryOptions
from dataferry._sync._facade import DataFerry

__version__ = "0.1.0"

__all__ = [
    "AsyncDataFerry",
    "Builder",
    "CircuitOpenError",
    "Codec",
    "Compressor",
    "ConfigurationError",
    "DataFerry",
    "DataFerryError",
    "DistributedCache",
    "DistributedCacheError",
    "Encryptor",
    "Entry",
    "EntryOptions",
    "FactoryTimeoutError",
    "InvalidKeyError",
    "InvalidTenantError",
    "JsonSerializer",
    "KeyringError",
    "MemoryCache",
    "MemoryStats",
    "PayloadTooLargeError",
    "SerializationError",
    "Serializer",
    "Stats",
    "__version__",
]
