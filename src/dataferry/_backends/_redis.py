"""RedisCache: the L2 on Redis or Valkey, standalone, Cluster or Sentinel-managed."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry

from dataferry._async._direct import AsyncDirect
from dataferry._async._redis_ops import AsyncRedisOps, failed
from dataferry._backends._loops import (
    LoopGuard,
    PerLoopClients,
    abandon,
    close_with_loop,
    connection_loops,
)
from dataferry._errors import ConfigurationError, DistributedCacheError
from dataferry._sync._direct import Direct
from dataferry._sync._redis_ops import RedisOps

__all__ = ["AsyncClusterClient", "AsyncRedisClient", "ClusterClient", "RedisCache", "RedisClient"]

logger = logging.getLogger("dataferry")

AsyncClusterClient = redis.asyncio.RedisCluster
ClusterClient = redis.RedisCluster
#: Any asyncio redis-py client RedisCache accepts (a Sentinel ``master_for`` is a ``Redis``).
AsyncRedisClient = redis.asyncio.Redis | redis.asyncio.RedisCluster
#: Any sync redis-py client RedisCache accepts.
RedisClient = redis.Redis | redis.RedisCluster

_C = TypeVar("_C")
# Builds a client: returns it and the clients that closing it must close (a Sentinel-managed
# master comes with the Sentinels' own clients).
_Factory = Callable[[], tuple[_C, list[_C]]]

_ASYNC_TYPES = (redis.asyncio.Redis, redis.asyncio.RedisCluster)
_SYNC_TYPES = (redis.Redis, redis.RedisCluster)


class _AsyncCluster(redis.asyncio.RedisCluster):
    """The asyncio cluster client ``from_url`` builds: it learns the slots before routing.

    redis-py's asyncio ``RedisCluster.execute_command`` picks how to route a command before it
    initialises the client: while it has no slot table (a new client, or one that dropped its
    nodes after too many ``MOVED``), a keyed command is routed as a keyless one, to the
    default node, and draws ``MOVED``. Twenty concurrent first commands on a new client draw
    enough of them to make it close every connection (``reinitialize_steps``), failing the
    commands of every other task with ``ConnectionError`` (seen with redis-py 8.1). Here the
    slot table is loaded first (redis-py's ``initialize`` serialises concurrent callers on its
    own lock); once loaded, a command costs one flag check more, and no extra coroutine.
    """

    def execute_command(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        if self._initialize:
            return self._initialized_first(*args, **kwargs)
        return super().execute_command(*args, **kwargs)

    async def _initialized_first(self, *args: Any, **kwargs: Any) -> Any:
        await self.initialize()
        return await super().execute_command(*args, **kwargs)


def _check_bytes(client: AsyncRedisClient | RedisClient) -> None:
    # The codec reads bytes; a client that decodes replies would hand it str (or fail on
    # binary payloads), so refuse it up front rather than on the first hit.
    if client.get_encoder().decode_responses:
        raise ConfigurationError(
            "RedisCache needs a client that returns bytes: create it with "
            "decode_responses=False (the default)"
        )


def _safe_url(url: str) -> str:
    # For repr() and messages: never show a password.
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


def _check_url(url: str, *, cluster: bool) -> None:
    """Refuse a malformed URL when the cache is built, not on its first call."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(
            f"a Redis URL starts with redis://, rediss:// or unix://, got {_safe_url(url)!r}"
        )
    try:
        parse_url(url)  # type: ignore[no-untyped-call]  # query options, as redis-py reads them
        parts.port  # noqa: B018 - a property that raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigurationError(f"bad Redis URL {_safe_url(url)!r}: {exc}") from exc
    db: str | None = None
    query = parse_qs(parts.query)
    if "db" in query:
        db = query["db"][0]
    elif parts.scheme != "unix":
        # redis-py silently ignores a path it can't read as a number (and uses db 0).
        db = unquote(parts.path).replace("/", "") or None
    if db is not None and not db.isdigit():
        raise ConfigurationError(
            f"bad Redis URL {_safe_url(url)!r}: the database must be a number, got {db!r}"
        )
    if cluster and db is not None and int(db) != 0:
        raise ConfigurationError(
            f"bad Redis URL {_safe_url(url)!r}: a Redis Cluster has only database 0"
        )


class _LoopClients:
    """The clients a cache built in one event loop, and the guard that closes them with it."""

    __slots__ = ("client", "closed", "guard", "owned")

    def __init__(self, client: AsyncRedisClient, owned: list[AsyncRedisClient]) -> None:
        self.client = client
        self.owned = owned
        self.guard: LoopGuard | None = None
        self.closed = False

    async def aclose(self) -> BaseException | None:
        """Close the clients in their (running) loop; return the first error. Idempotent."""
        if self.closed:
            return None
        if self.guard is not None:
            self.guard.disarm()
        error: BaseException | None = None
        for client in self.owned:
            try:
                await client.aclose()
            except Exception as exc:  # pragma: no cover - closing rarely fails
                error = error or exc
        # Only now: a close cancelled half-way is done again by the loop's guard.
        self.closed = True
        return error

    def abandon(self) -> None:
        """Drop the clients of a closed loop, closing their sockets directly."""
        if self.guard is not None:
            self.guard.disarm()
        if not self.closed:
            self.closed = True
            for client in self.owned:
                abandon(client)


class RedisCache(AsyncRedisOps, RedisOps, PerLoopClients[_LoopClients]):
    """The distributed cache (L2) on Redis or Valkey: standalone, Cluster or Sentinel-managed.

    One object serves both facades: the ``a``-prefixed methods use an asyncio client (for
    :class:`~dataferry.AsyncDataFerry`), the others a sync client (for
    :class:`~dataferry.DataFerry`). Pass a redis-py client, or both::

        RedisCache(redis.asyncio.Redis(...))              # async facade only
        RedisCache(redis.RedisCluster(...))               # sync facade only
        RedisCache(async_client=a, sync_client=s)         # both
        RedisCache.from_url("redis://host:6379/0")        # both, built on first use
        RedisCache.from_sentinel([("host", 26379)], service_name="mymaster")

    **Event loops.** An asyncio redis-py client belongs to the event loop its connections were
    opened in. A cache built by :meth:`from_url` or :meth:`from_sentinel` builds one asyncio
    client per event loop that uses it, so it can be created at import time and used from
    successive ``asyncio.run()`` calls, or from loops running in several threads at once. The
    clients of a loop are closed in that loop when ``asyncio.run()`` (or ``asyncio.Runner``)
    ends it; those of a loop closed by hand without ``loop.shutdown_asyncgens()`` have their
    sockets closed the next time the cache is used or closed. An asyncio client passed in
    belongs to its owner and is never rebuilt: used from a loop other than the one its open
    connections belong to, every call raises :class:`~dataferry.DistributedCacheError` (a
    client its owner closed with ``await client.aclose()`` may be used from a new loop).

    Clients must return ``bytes``: one made with ``decode_responses=True`` is refused with
    :class:`~dataferry.ConfigurationError`. Using the half whose client was not given raises
    :class:`~dataferry.ConfigurationError` too. :meth:`aclose` / :meth:`close` close only the
    clients this object built; a client passed in stays its owner's to close. Any exception the
    driver raises (Redis, network, timeout, and any other) is raised as
    :class:`~dataferry.DistributedCacheError` with the driver's exception chained; the client's
    own retry policy applies first (``from_url`` and ``from_sentinel`` turn redis-py's retries
    off: DataFerry's resilience layer retries).

    **The command path.** A standalone cache built by :meth:`from_url` (without a ``retry``
    option) sends ``GET``, ``MGET`` and ``SET`` (and ``set_many``'s batch of ``SET``, in one
    write) on connections it keeps checked out of its client's pool, through redis-py's
    connection API, instead of through the client's command wrapper (a pool checkout with a
    ``poll()``, retries, observability hooks: about half the time of a 1 KB ``GET`` on
    loopback), packed by hiredis rather than by redis-py's Python packer (about 1 ms of an
    asyncio ``MGET`` of 1000 keys). Connections stay redis-py's, with the same setup; one
    whose reply may still arrive (a timeout, a cancelled task) is closed at once, and one the
    server closed while idle is replaced and the command sent again. The cache keeps up to a
    quarter of the pool's connections (64 at most) idle between commands; the pool counts them
    as in use until the cache is closed. Clients passed in, Cluster and Sentinel clients, and a
    pool of fewer than 64 connections (``max_connections``; redis-py's default is 100) use
    redis-py's client as it is.

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
            async_given=async_client,
            sync_given=sync_client,
            async_factory=None,
            sync_factory=None,
            cluster=None,
            description="client",
        )

    def _setup(
        self,
        *,
        async_given: AsyncRedisClient | None,
        sync_given: RedisClient | None,
        async_factory: _Factory[AsyncRedisClient] | None,
        sync_factory: _Factory[RedisClient] | None,
        cluster: bool | None,
        description: str,
        direct: bool = False,
    ) -> None:
        # GET, MGET and SET on connections kept out of the pool (_direct.py): only for the
        # clients this cache builds itself (standalone, without redis-py retries).
        self._direct = direct
        self._async_direct: dict[Any, AsyncDirect] = {}
        self._sync_direct: dict[Any, Direct] = {}
        # Async half. _async_clients (loop -> client) is what the commands read, without a
        # lock: dict reads are atomic, and it is only written under _async_lock.
        # _async_records holds what closing needs (the clients this cache built, per loop).
        self._async_given = async_given
        self._async_factory = async_factory
        self._async_clients: dict[Any, AsyncRedisClient] = {}
        self._async_records: dict[asyncio.AbstractEventLoop, _LoopClients] = {}
        self._async_lock = threading.Lock()
        self._async_cluster = (
            isinstance(async_given, redis.asyncio.RedisCluster) if cluster is None else cluster
        )
        # Sync half: one client (under key None) shared by every thread.
        self._sync_clients: dict[Any, RedisClient] = {}
        if sync_given is not None:
            self._sync_clients[None] = sync_given
        self._sync_factory = sync_factory
        self._sync_owned: list[RedisClient] = []
        self._sync_lock = threading.Lock()
        self._sync_cluster = (
            isinstance(sync_given, redis.RedisCluster) if cluster is None else cluster
        )
        self._description = description

    @classmethod
    def _lazy(
        cls,
        async_factory: _Factory[AsyncRedisClient],
        sync_factory: _Factory[RedisClient],
        *,
        cluster: bool,
        description: str,
        direct: bool = False,
    ) -> RedisCache:
        self = cls.__new__(cls)
        self._setup(
            async_given=None,
            sync_given=None,
            async_factory=async_factory,
            sync_factory=sync_factory,
            cluster=cluster,
            description=description,
            direct=direct,
        )
        return self

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cluster: bool = False,
        socket_timeout: float | None = 0.25,
        socket_connect_timeout: float | None = 0.25,
        **client_kwargs: Any,
    ) -> RedisCache:
        """Build a RedisCache for ``redis://``, ``rediss://`` or ``unix://`` URL.

        The URL and options are checked here, but no connection is made: the asyncio client of
        an event loop is built on the loop's first async call, the sync client on the first
        sync call. See the class docstring for how clients follow event loops.

        Args:
            url: The server (for a cluster: any node; the others are discovered).
            cluster: Use a Redis Cluster client.
            socket_timeout: Seconds to wait for a reply before failing (default 0.25, the
                default :class:`~dataferry.Resilience` timeout: the sync ``DataFerry`` can't
                interrupt a blocking socket, so these bound how long a frozen server holds a
                sync caller; keep them at or below the cache's ``Resilience.timeout``).
            socket_connect_timeout: Seconds to wait for a connection before failing (default
                0.25).
            **client_kwargs: Passed to redis-py's ``from_url`` (``decode_responses`` must stay
                false); redis-py's own retries are off unless ``retry`` is given.

        Raises:
            ConfigurationError: A malformed URL (scheme, port, database number, query
                options) or options redis-py refuses.

        """
        _check_url(url, cluster=cluster)
        options = _client_options(socket_timeout, socket_connect_timeout, client_kwargs)

        def build_async() -> tuple[AsyncRedisClient, list[AsyncRedisClient]]:
            kwargs = {"retry": AsyncRetry(NoBackoff(), 0), **options}
            client: AsyncRedisClient
            if cluster:
                client = _AsyncCluster.from_url(url, **kwargs)
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

        _dry_build(build_async, build_sync if not cluster else None, _safe_url(url))
        kind = "cluster" if cluster else "url"
        return cls._lazy(
            build_async,
            build_sync,
            cluster=cluster,
            description=f"{kind}={_safe_url(url)!r}",
            # A retry policy given for redis-py's client is the client's command path.
            direct=not cluster and "retry" not in client_kwargs,
        )

    @classmethod
    def from_sentinel(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service_name: str,
        *,
        socket_timeout: float | None = 0.25,
        socket_connect_timeout: float | None = 0.25,
        sentinel_kwargs: Mapping[str, Any] | None = None,
        **client_kwargs: Any,
    ) -> RedisCache:
        """Build a RedisCache on the master that Sentinels name for ``service_name``.

        The clients ask the Sentinels for the master on every new connection, so after a
        failover the cache reaches the promoted replica by itself. Clients are built on first
        use (one asyncio client per event loop), as with :meth:`from_url`.

        Args:
            sentinels: ``(host, port)`` of the Sentinels.
            service_name: The monitored master's name.
            socket_timeout: Seconds to wait for a reply (master and Sentinels; default 0.25,
                see :meth:`from_url`).
            socket_connect_timeout: Seconds to wait for a connection (master and Sentinels;
                default 0.25).
            sentinel_kwargs: Extra options for the connections to the Sentinels (password...).
            **client_kwargs: Extra options for the connections to the master.

        """
        try:
            addresses = [(str(host), int(port)) for host, port in sentinels]
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"from_sentinel needs (host, port) pairs: {exc}") from exc
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

        _dry_build(build_async, build_sync, f"sentinel {service_name!r}")
        return cls._lazy(
            build_async, build_sync, cluster=False, description=f"sentinel={service_name!r}"
        )

    # -- async clients, one per event loop ----------------------------------------------------

    def _async_connect(self) -> AsyncRedisClient:
        # Called by the async commands when the running loop has no client yet.
        loop = asyncio.get_running_loop()
        given = self._async_given
        if given is not None:
            return self._bind_given(given, loop)
        factory = self._async_factory
        if factory is None:
            raise ConfigurationError(
                "this RedisCache has no asyncio client (it was given a sync one): pass "
                "async_client=... as well, or use RedisCache.from_url(), which builds both"
            )
        dead: list[_LoopClients] = []
        try:
            with self._async_lock:
                dead = self._take_dead_loops()
                record = self._async_records.get(loop)
                if record is None:
                    try:
                        client, owned = factory()
                    except Exception as exc:
                        raise failed("connect", exc) from exc
                    record = _LoopClients(client, owned)
                    close_with_loop(self, loop, record, "Redis clients")
                    self._async_records[loop] = record
                    self._async_clients[loop] = client
                    direct = AsyncDirect.of(client) if self._direct else None
                    if direct is not None:
                        self._async_direct[loop] = direct
                return record.client
        finally:
            for old in dead:
                old.abandon()

    def _bind_given(
        self, client: AsyncRedisClient, loop: asyncio.AbstractEventLoop
    ) -> AsyncRedisClient:
        # A client passed in can't be rebuilt. It may move to this loop only if none of its
        # connections is open in another loop: using those would write to another loop's
        # transports (closed loop: RuntimeError; running loop: two threads on one socket).
        others = connection_loops(client) - {loop}
        if others:
            state = "closed" if all(other.is_closed() for other in others) else "still running"
            raise DistributedCacheError(
                "the asyncio Redis client given to RedisCache has connections open in another "
                f"event loop ({state}); a redis-py client can't move between event loops: close "
                "it (await client.aclose()) before its loop ends, or use RedisCache.from_url(), "
                "which builds one client per event loop"
            )
        with self._async_lock:
            self._async_clients.clear()
            self._async_clients[loop] = client
        return client

    # -- the sync client ----------------------------------------------------------------------

    def _sync_connect(self) -> RedisClient:
        factory = self._sync_factory
        if factory is None:
            raise ConfigurationError(
                "this RedisCache has no sync client (it was given an asyncio one): pass "
                "sync_client=... as well, or use RedisCache.from_url(), which builds both"
            )
        # Threads share the sync half: build one client, not one per racing thread.
        with self._sync_lock:
            client = self._sync_clients.get(None)
            if client is None:
                try:
                    client, owned = factory()
                except Exception as exc:
                    # A sync cluster client connects as it is built.
                    raise failed("connect", exc) from exc
                self._sync_owned = owned
                self._sync_clients[None] = client
                direct = Direct.of(client) if self._direct else None
                if direct is not None:
                    self._sync_direct[None] = direct
            return client

    def close(self) -> None:
        """Close the sync clients this cache built; a client passed in is left to its owner.

        Also drops the asyncio clients of event loops that were closed without closing them.
        The next sync call builds a new client.
        """
        self._drop_dead_loops()
        with self._sync_lock:
            owned, self._sync_owned = self._sync_owned, []
            if not owned:
                return
            self._sync_direct.clear()
            self._sync_clients.clear()
        error: BaseException | None = None
        for client in owned:
            try:
                client.close()
            except Exception as exc:  # pragma: no cover - closing rarely fails
                error = error or exc
        if error is not None:  # pragma: no cover
            raise failed("close", error) from error

    def __repr__(self) -> str:
        return f"RedisCache({self._description})"


def _dry_build(
    build_async: _Factory[AsyncRedisClient],
    build_sync: _Factory[RedisClient] | None,
    what: str,
) -> None:
    # Build the clients now (building connects nothing, except a sync RedisCluster, which is
    # skipped) and one connection object of each pool (redis-py reads most options only
    # there), so bad options fail at construction, not at the first call in production.
    try:
        client, _ = build_async()
        if not isinstance(client, redis.asyncio.RedisCluster):
            client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        if build_sync is not None:
            sync_client, _ = build_sync()
            if not isinstance(sync_client, redis.RedisCluster):
                sync_client.connection_pool.make_connection()
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(
            f"RedisCache for {what}: bad options: {type(exc).__name__}: {exc}"
        ) from exc


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
