"""Builder: fluent configuration of an AsyncDataFerry or DataFerry."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from dataferry._backends import DistributedCache
from dataferry._codec import Codec
from dataferry._errors import ConfigurationError
from dataferry._memory import MemoryCache
from dataferry._options import EntryOptions

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

    def with_redis(
        self, url_or_client: Any, *, cluster: bool = False, **kwargs: Any
    ) -> Builder[C]:
        """Use Redis as L2: a URL (``redis://``, ``rediss://``, ``unix://``) or a redis-py client."""
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

    def with_codec(self, codec: Codec) -> Builder[C]:
        """Use ``codec`` for L2 values."""
        self._kwargs["codec"] = codec
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
        return self._cls(**self._kwargs)
