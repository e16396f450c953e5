"""Builder: fluent configuration of an AsyncDataFerry or DataFerry."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from dataferry._backends import Backplane, DistributedCache
from dataferry._codec import (
    AesGcmEncryptor,
    Codec,
    Compressor,
    Encryptor,
    GzipCompressor,
    Keyring,
    Lz4Compressor,
    Serializer,
    ZstdCompressor,
)
from dataferry._errors import ConfigurationError
from dataferry._layers import DistributedLayer
from dataferry._memory import MemoryCache
from dataferry._options import EntryOptions
from dataferry._resilience import Resilience
from dataferry._resolve import DEFAULT_FAIL_SAFE_MAX
from dataferry._telemetry import Telemetry

__all__ = ["Builder"]

C = TypeVar("C")


class Builder(Generic[C]):
    """Fluent configuration: ``AsyncDataFerry.builder().with_redis(url)....build()``.

    Each ``with_*`` returns the builder; :meth:`build` checks the whole configuration and
    returns the cache. Unset parts take the cache's defaults.
    """

    def __init__(self, cls: type[C]) -> None:
        self._cls = cls
        self._kwargs: dict[str, Any] = {}
        self._codec_parts: dict[str, Any] = {}

    def with_memory(self, memory: MemoryCache | None = None, **kwargs: Any) -> Builder[C]:
        """Use ``memory`` as L1, or a new ``MemoryCache(**kwargs)``."""
        if memory is not None and kwargs:
            raise ConfigurationError("pass a MemoryCache or MemoryCache arguments, not both")
        self._kwargs["memory"] = memory if memory is not None else MemoryCache(**kwargs)
        return self

    def without_memory(self) -> Builder[C]:
        """Run without an L1 (every read goes to L2)."""
        self._kwargs["memory"] = None
        return self

    def with_distributed(self, backend: DistributedCache) -> Builder[C]:
        """Use ``backend`` as L2."""
        self._kwargs["distributed"] = backend
        return self

    def with_redis(self, url_or_client: Any, *, cluster: bool = False, **kwargs: Any) -> Builder[C]:
        """Use Redis as L2: a URL (``redis://``, ``rediss://``, ``unix://``) or a client."""
        from dataferry._backends import RedisCache

        if isinstance(url_or_client, str):
            backend = RedisCache.from_url(url_or_client, cluster=cluster, **kwargs)
        else:
            backend = RedisCache(url_or_client, **kwargs)
        return self.with_distributed(backend)

    def with_sqlite(self, path: str) -> Builder[C]:
        """Use an embedded SQLite file as L2 (one host, several processes)."""
        from dataferry._backends import SQLiteCache

        return self.with_distributed(SQLiteCache(path))

    def with_distributed_layers(self, *layers: DistributedLayer) -> Builder[C]:
        """Pass every L2 call through ``layers`` (outermost first)."""
        self._kwargs["distributed_layers"] = layers
        return self

    def with_resilience(self, resilience: Resilience | None) -> Builder[C]:
        """Use these L2 timeouts, retries, breaker and recovery (``None``: none of them)."""
        self._kwargs["resilience"] = resilience
        return self

    def with_telemetry(self, telemetry: Telemetry | None) -> Builder[C]:
        """Report to OpenTelemetry as ``telemetry`` says (``None``: not at all)."""
        self._kwargs["telemetry"] = telemetry
        return self

    def with_backplane(self, backplane: Backplane) -> Builder[C]:
        """Keep the L1s of a fleet coherent through ``backplane`` (e.g. a RedisBackplane)."""
        self._kwargs["backplane"] = backplane
        return self

    def with_fail_safe(
        self, max_seconds: float = DEFAULT_FAIL_SAFE_MAX, *, throttle: float = 30.0
    ) -> Builder[C]:
        """Turn fail-safe on for every call by default (see EntryOptions.fail_safe)."""
        return self._default(
            EntryOptions(fail_safe=True, fail_safe_max=max_seconds, fail_safe_throttle=throttle)
        )

    def _default(self, options: EntryOptions) -> Builder[C]:
        current = self._kwargs.get("default_options")
        self._kwargs["default_options"] = options if current is None else current.merged(options)
        return self

    def with_codec(self, codec: Codec) -> Builder[C]:
        """Use ``codec`` for L2 values (instead of with_serializer/compression/encryption)."""
        self._kwargs["codec"] = codec
        return self

    def with_serializer(self, serializer: Serializer) -> Builder[C]:
        """Encode L2 values with ``serializer`` (default: JSON on orjson)."""
        self._codec_parts["serializer"] = serializer
        return self

    def with_compression(
        self, compressor: str | Compressor = "zstd", *, min_size: int = 1024
    ) -> Builder[C]:
        """Compress L2 payloads of at least ``min_size`` bytes: "zstd", "gzip", "lz4" or one."""
        if isinstance(compressor, str):
            kinds: dict[str, type[ZstdCompressor | GzipCompressor | Lz4Compressor]] = {
                "zstd": ZstdCompressor,
                "gzip": GzipCompressor,
                "lz4": Lz4Compressor,
            }
            if compressor not in kinds:
                raise ConfigurationError(
                    f"unknown compression {compressor!r}; use one of {sorted(kinds)}"
                )
            compressor = kinds[compressor](min_size=min_size)
        self._codec_parts["compressor"] = compressor
        return self

    def with_encryption(self, keys: Keyring | Encryptor) -> Builder[C]:
        """Encrypt L2 payloads with AES-256-GCM under ``keys`` (a Keyring or an Encryptor)."""
        if isinstance(keys, Keyring):
            keys = AesGcmEncryptor(keys)
        self._codec_parts["encryptor"] = keys
        return self

    def with_namespace(self, namespace: str) -> Builder[C]:
        """Prefix every storage key with ``namespace``."""
        self._kwargs["namespace"] = namespace
        return self

    def with_default_ttl(self, seconds: float) -> Builder[C]:
        """Keep entries fresh for ``seconds`` unless a call says otherwise."""
        self._kwargs["default_ttl"] = seconds
        return self

    def with_default_options(self, options: EntryOptions) -> Builder[C]:
        """Use ``options`` as the defaults of every call."""
        self._kwargs["default_options"] = options
        return self

    def with_max_payload_bytes(self, size: int) -> Builder[C]:
        """Refuse L2 entries larger than ``size`` bytes after encoding."""
        self._kwargs["max_payload_bytes"] = size
        return self

    def build(self) -> C:
        """Return the configured cache."""
        kwargs = dict(self._kwargs)
        if self._codec_parts:
            if "codec" in kwargs:
                raise ConfigurationError(
                    "with_codec() conflicts with with_serializer/compression/encryption()"
                )
            kwargs["codec"] = Codec(**self._codec_parts)
        return self._cls(**kwargs)
