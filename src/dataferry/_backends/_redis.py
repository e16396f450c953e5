"""RedisCache: the L2 on Redis or Valkey, standalone, Cluster or Sentinel-managed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from dataferry._async._redis_ops import DRIVER_ERRORS, AsyncRedisOps, failed
from dataferry._errors import ConfigurationError
from dataferry._sync._redis_ops import RedisOps

__all__ = ["AsyncClusterClient", "AsyncRedisClient", "ClusterClient", "RedisCache", "RedisClient"]

AsyncClusterClient = redis.asyncio.RedisCluster
ClusterClient = redis.RedisCluster
#: Any asyncio redis-py client RedisCache accepts (a Sentinel ``master_for`` is a ``Redis``).
AsyncRedisClient = redis.asyncio.Redis | redis.asyncio.RedisCluster
#: Any sync redis-py client RedisCache accepts.
RedisClient = redis.Redis | redis.RedisCluster

_C = TypeVar("_C")
# Builds a client on first use: returns it and the clients close()/aclose() must close.
_Factory = Callable[[], tuple[_C, list[_C]]]

_ASYNC_TYPES = (redis.asyncio.Redis, redis.asyncio.RedisCluster)
_SYNC_TYPES = (redis.Redis, redis.RedisCluster)


def _check_bytes(client: AsyncRedisClient | RedisClient) -> None:
    # The codec reads bytes; a client that decodes replies would hand it str (or fail on
    # binary payloads), so refuse it up front rather than on the first hit.
    if client.get_encoder().decode_responses:
        raise ConfigurationError(
            "RedisCache needs a client that returns bytes: create it with "
            "decode_responses=False (the default)"
        )


def _safe_url(url: str) -> str:
    # For repr(): never show a password.
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


class RedisCache(AsyncRedisOps, RedisOps):
    """The distributed cache (L2) on Redis or Valkey: standalone, Cluster or Sentinel-managed.

    One object serves both facades: the ``a``-prefixed methods use an asyncio client (for
    :class:`~dataferry.AsyncDataFerry`), the others a sync client (for
    :class:`~dataferry.DataFerry`). Pass a redis-py client, or both::

        RedisCache(redis.asyncio.Redis(...))              # async facade only
        RedisCache(redis.RedisCluster(...))               # sync facade only
        RedisCache(async_client=a, sync_client=s)         # both
        RedisCache.from_url("redis://host:6379/0")        # both, built on first use
        RedisCache.from_sentinel([("host", 26379)], service_name="mymaster")

    Clients must return ``bytes``: one made with ``decode_responses=True`` is refused with
    :class:`~dataferry.ConfigurationError`. Using the half whose client was not given raises
    :class:`~dataferry.ConfigurationError` too. :meth:`aclose` / :meth:`close` close only the
    clients this object built; a client passed in stays its owner's to close. Every Redis,
    network or timeout error is raised as :class:`~dataferry.DistributedCacheError` (driver
    exception chained); the client's own retry policy applies first (``from_url`` and
    ``from_sentinel`` turn redis-py's retries off: DataFerry's resilience layer retries).

    Args:
        client: A redis-py client, asyncio or sync: ``Redis``, ``RedisCluster``, or a
            Sentinel's ``master_for(...)``.
        sync_client: The sync client (when both halves are wanted).
        async_client: The asyncio client (when both halves are wanted).

    """

    def __init__(
        self,
        client: AsyncRedisClient | RedisClient | None = None,
        /,
        *,
        sync_client: RedisClient | None = None,
        async_client: AsyncRedisClient | None = None,
    ) -> None:
        if client is not None:
            if isinstance(client, _ASYNC_TYPES):
                if async_client is not None:
                    raise ConfigurationError("two asyncio clients given to RedisCache")
                async_client = client
            elif isinstance(client, _SYNC_TYPES):
                if sync_client is not None:
                    raise ConfigurationError("two sync clients given to RedisCache")
                sync_client = client
            else:
                raise ConfigurationError(
                    f"RedisCache needs a redis-py client, not {type(client).__name__}"
                )
        if async_client is None and sync_client is None:
            raise ConfigurationError(
                "RedisCache needs a redis-py client; or use RedisCache.from_url(url)"
            )
        if async_client is not None:
            if not isinstance(async_client, _ASYNC_TYPES):
                raise ConfigurationError(
                    "async_client must be a redis.asyncio client, not "
                    f"{type(async_client).__module__}.{type(async_client).__name__}"
                )
            _check_bytes(async_client)
        if sync_client is not None:
            if not isinstance(sync_client, _SYNC_TYPES):
                raise ConfigurationError(
                    "sync_client must be a sync redis client, not "
                    f"{type(sync_client).__module__}.{type(sync_client).__name__}"
                )
            _check_bytes(sync_client)
        self._setup(
            async_client=async_client,
            sync_client=sync_client,
            async_factory=None,
            sync_factory=None,
            description="client",
        )

    def _setup(
        self,
        *,
        async_client: AsyncRedisClient | None,
        sync_client: RedisClient | None,
        async_factory: _Factory[AsyncRedisClient] | None,
        sync_factory: _Factory[RedisClient] | None,
        description: str,
    ) -> None:
        self._async_client = async_client
        self._async_cluster = isinstance(async_client, redis.asyncio.RedisCluster)
        self._async_owned = []
        self._async_factory = async_factory
        self._sync_client = sync_client
        self._sync_cluster = isinstance(sync_client, redis.RedisCluster)
        self._sync_owned = []
        self._sync_factory = sync_factory
        self._sync_lock = threading.Lock()
        self._description = description

    @classmethod
    def _lazy(
        cls,
        async_factory: _Factory[AsyncRedisClient],
        sync_factory: _Factory[RedisClient],
        description: str,
    ) -> RedisCache:
        self = cls.__new__(cls)
        self._setup(
            async_client=None,
            sync_client=None,
            async_factory=async_factory,
            sync_factory=sync_factory,
            description=description,
        )
        return self

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cluster: bool = False,
        socket_timeout: float | None = 0.5,
        socket_connect_timeout: float | None = 0.5,
        **client_kwargs: Any,
    ) -> RedisCache:
        """Build a RedisCache for ``redis://``, ``rediss://`` or ``unix://`` URL.

        No connection is made here: the asyncio client is built on the first async call, the
        sync client on the first sync call. The asyncio client belongs to the event loop that
        built it: close the cache (:meth:`aclose`, or leave the facade's ``async with``) before
        that loop ends; the next async call, in any loop, then builds a new client.

        Args:
            url: The server (for a cluster: any node; the others are discovered).
            cluster: Use a Redis Cluster client.
            socket_timeout: Seconds to wait for a reply before failing.
            socket_connect_timeout: Seconds to wait for a connection before failing.
            **client_kwargs: Passed to redis-py's ``from_url`` (``decode_responses`` must stay
                false); redis-py's own retries are off unless ``retry`` is given.

        """
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                f"a Redis URL starts with redis://, rediss:// or unix://, got {_safe_url(url)!r}"
            )
        options = _client_options(socket_timeout, socket_connect_timeout, client_kwargs)

        def build_async() -> tuple[AsyncRedisClient, list[AsyncRedisClient]]:
            kwargs = {"retry": AsyncRetry(NoBackoff(), 0), **options}
            client: AsyncRedisClient
            if cluster:
                client = redis.asyncio.RedisCluster.from_url(url, **kwargs)
            else:
                client = redis.asyncio.Redis.from_url(url, **kwargs)
            return client, [client]

        def build_sync() -> tuple[RedisClient, list[RedisClient]]:
            kwargs = {"retry": Retry(NoBackoff(), 0), **options}
            client: RedisClient
            if cluster:
                client = redis.RedisCluster.from_url(url, **kwargs)
            else:
                client = redis.Redis.from_url(url, **kwargs)
            return client, [client]

        kind = "cluster" if cluster else "url"
        return cls._lazy(build_async, build_sync, f"{kind}={_safe_url(url)!r}")

    @classmethod
    def from_sentinel(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service_name: str,
        *,
        socket_timeout: float | None = 0.5,
        socket_connect_timeout: float | None = 0.5,
        sentinel_kwargs: Mapping[str, Any] | None = None,
        **client_kwargs: Any,
    ) -> RedisCache:
        """Build a RedisCache on the master that Sentinels name for ``service_name``.

        The clients ask the Sentinels for the master on every new connection, so after a
        failover the cache reaches the promoted replica by itself. Clients are built on first
        use, as with :meth:`from_url`.

        Args:
            sentinels: ``(host, port)`` of the Sentinels.
            service_name: The monitored master's name.
            socket_timeout: Seconds to wait for a reply (master and Sentinels).
            socket_connect_timeout: Seconds to wait for a connection (master and Sentinels).
            sentinel_kwargs: Extra options for the connections to the Sentinels (password...).
            **client_kwargs: Extra options for the connections to the master.

        """
        addresses = [(str(host), int(port)) for host, port in sentinels]
        if not addresses:
            raise ConfigurationError("from_sentinel needs at least one (host, port)")
        options = _client_options(socket_timeout, socket_connect_timeout, client_kwargs)
        timeouts = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
        }
        extra = dict(sentinel_kwargs or {})

        def build_async() -> tuple[AsyncRedisClient, list[AsyncRedisClient]]:
            retry = AsyncRetry(NoBackoff(), 0)
            sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                addresses, sentinel_kwargs={"retry": retry, **timeouts, **extra}
            )
            client = sentinel.master_for(service_name, **{"retry": retry, **options})
            return client, [client, *sentinel.sentinels]

        def build_sync() -> tuple[RedisClient, list[RedisClient]]:
            retry = Retry(NoBackoff(), 0)
            sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                addresses, sentinel_kwargs={"retry": retry, **timeouts, **extra}
            )
            client = sentinel.master_for(  # type: ignore[no-untyped-call]
                service_name, **{"retry": retry, **options}
            )
            return client, [client, *sentinel.sentinels]

        return cls._lazy(build_async, build_sync, f"sentinel={service_name!r}")

    def _async_connect(self) -> AsyncRedisClient:
        factory = self._async_factory
        if factory is None:
            raise ConfigurationError(
                "this RedisCache has no asyncio client (it was given a sync one): pass "
                "async_client=... as well, or use RedisCache.from_url(), which builds both"
            )
        try:
            client, owned = factory()
        except DRIVER_ERRORS as exc:
            raise failed("connect", exc) from exc
        self._async_cluster = isinstance(client, redis.asyncio.RedisCluster)
        self._async_owned = owned
        self._async_client = client
        return client

    def _sync_connect(self) -> RedisClient:
        factory = self._sync_factory
        if factory is None:
            raise ConfigurationError(
                "this RedisCache has no sync client (it was given an asyncio one): pass "
                "sync_client=... as well, or use RedisCache.from_url(), which builds both"
            )
        # Threads share the sync half: build one client, not one per racing thread.
        with self._sync_lock:
            client = self._sync_client
            if client is None:
                try:
                    client, owned = factory()
                except DRIVER_ERRORS as exc:
                    # A sync cluster client connects as it is built.
                    raise failed("connect", exc) from exc
                self._sync_cluster = isinstance(client, redis.RedisCluster)
                self._sync_owned = owned
                self._sync_client = client
            return client

    def __repr__(self) -> str:
        return f"RedisCache({self._description})"


def _client_options(
    socket_timeout: float | None, socket_connect_timeout: float | None, extra: dict[str, Any]
) -> dict[str, Any]:
    if extra.get("decode_responses"):
        raise ConfigurationError("RedisCache needs bytes: decode_responses must be false")
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        **extra,
    }
