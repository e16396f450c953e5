"""The exceptions DataFerry raises.

Every exception derives from :class:`DataFerryError`, so ``except DataFerryError`` catches
anything the library raises on purpose. Where the meaning fits, an exception also derives from
the stdlib base a user would reach for first (``ValueError``, ``TypeError``, ``TimeoutError``)::

    DataFerryError
    ├── ConfigurationError (ValueError)     bad constructor / builder / option / argument values
    ├── CacheClosedError (RuntimeError)     a call on a cache after ``aclose()`` / ``close()``
    ├── InvalidKeyError (ValueError)        key not a str, empty, or over 1024 UTF-8 bytes
    ├── InvalidTenantError (ValueError)     tenant id not a str in [A-Za-z0-9_.-]{1,64}
    ├── SerializationError (TypeError)      a value the serializer cannot encode
    ├── PayloadTooLargeError (ValueError)   an entry over ``max_payload_bytes`` (or a value over
    │                                       the codec's ``max_value_bytes`` once serialized)
    ├── DistributedCacheError               the L2 (Redis, SQLite) failed; translated driver error
    │   └── CircuitOpenError                the L2 is skipped while its circuit breaker is open
    ├── FactoryTimeoutError (TimeoutError)  a factory ran past its hard timeout
    └── KeyringError                        a malformed keyring, key or key source

Bad input raises at the call that caused it and nothing is written. Infrastructure failures
(an L2 that is down, a corrupted entry) never raise to the caller: they are logged, counted,
and the call is answered from L1 or the factory.
"""

from __future__ import annotations

__all__ = [
    "CacheClosedError",
    "CircuitOpenError",
    "ConfigurationError",
    "DataFerryError",
    "DistributedCacheError",
    "FactoryTimeoutError",
    "InvalidKeyError",
    "InvalidTenantError",
    "KeyringError",
    "PayloadTooLargeError",
    "SerializationError",
]


class DataFerryError(Exception):
    """Root of every exception DataFerry raises on purpose."""


class ConfigurationError(DataFerryError, ValueError):
    """A constructor, builder, option or call argument got a value it cannot work with."""


class CacheClosedError(DataFerryError, RuntimeError):
    """The cache was closed (``aclose()`` / ``close()``): a closed cache is never reopened.

    Create a new cache instead; closing is for the end of the program or of its event loop's
    use of the cache. A tenant view is closed with its cache.
    """


class InvalidKeyError(DataFerryError, ValueError):
    """A cache key is not a ``str``, is empty, or is longer than 1024 UTF-8 bytes."""


class InvalidTenantError(DataFerryError, ValueError):
    """A tenant id is not a ``str`` matching ``[A-Za-z0-9_.-]{1,64}``.

    (A bad namespace is a :class:`ConfigurationError`: it comes from the cache's setup.)
    """


class SerializationError(DataFerryError, TypeError):
    """The serializer cannot encode a value (raised at ``set``; nothing is written)."""


class PayloadTooLargeError(DataFerryError, ValueError):
    """An encoded entry is larger than ``max_payload_bytes`` (nothing is written)."""


class DistributedCacheError(DataFerryError):
    """The distributed cache (L2) failed; the driver's exception is chained as ``__cause__``."""


class CircuitOpenError(DistributedCacheError):
    """The L2 is being skipped because its circuit breaker is open."""


class FactoryTimeoutError(DataFerryError, TimeoutError):
    """A factory ran past its hard timeout and no stale value could be served."""


class KeyringError(DataFerryError):
    """A keyring, an encryption key or a key source is malformed (keys are never shown)."""
