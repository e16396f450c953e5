"""GlideCache: the L2 on Valkey GLIDE (valkey-glide, valkey-glide-sync), standalone or Cluster.

GLIDE is imported only when a GlideCache is built or used (``import glide`` takes about 250 ms,
``glide_sync`` 150 ms), so ``import dataferry`` neither needs nor pays for the ``glide`` extra.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import copy
import importlib
import logging
import math
import sys
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from dataferry._async._glide_ops import AsyncGlideOps
from dataferry._async._redis_ops import CAS_SCRIPT, EXTEND_SCRIPT, RELEASE_SCRIPT, failed
from dataferry._backends._loops import (
    LoopGuard,
    PerLoopClients,
    close_with_loop,
    loop_shutting_down,
)
from dataferry._backends._redis import _safe_url
from dataferry._errors import ConfigurationError, DistributedCacheError
from dataferry._sync._glide_ops import GlideOps

if TYPE_CHECKING:
    from typing import TypeAlias

    import glide
    import glide_sync

    #: Any asyncio GLIDE client GlideCache accepts.
    AsyncGlideClient: TypeAlias = glide.GlideClient | glide.GlideClusterClient
    #: Any sync GLIDE client GlideCache accepts.
    GlideClient: TypeAlias = glide_sync.GlideClient | glide_sync.GlideClusterClient

__all__ = ["GlideCache", "Scripts"]

logger = logging.getLogger("dataferry")

_MISSING = "GlideCache needs the 'glide' extra: pip install 'dataferry[glide]'"
_SCHEMES = ("redis", "rediss", "valkey", "valkeys")
# Options from_url sets itself, from the URL or its own arguments.
_RESERVED = ("addresses", "use_tls", "database_id", "request_timeout", "lazy_connect")


def _import(name: str) -> Any:
    """Import a GLIDE package, or raise ConfigurationError saying how to install it."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        package = {
            "glide": "valkey-glide",
            "glide_sync": "valkey-glide-sync",
            "glide_shared": "valkey-glide and valkey-glide-sync",
        }[name]
        raise ConfigurationError(f"{_MISSING} ({package}: not installed)") from exc
    logger_class = getattr(module, "Logger", None)
    level = getattr(module, "LogLevel", None)
    if logger_class is not None and level is not None:
        # GLIDE's core otherwise prints a line on stderr for every timeout and failed
        # connection, which DataFerry already counts, logs (once per state change) and
        # turns into a miss. init() configures only a logger not configured yet: an
        # application's own GLIDE logging, set up before, is kept (after: set_logger_config).
        logger_class.init(level.OFF)
    return module


class Scripts:
    """The Lua scripts of the compare-and-set and lock operations, registered with one package.

    The texts are RedisCache's. A GLIDE ``Script`` keeps its text in GLIDE's core while the
    object lives (``invoke_script`` sends ``EVALSHA`` and loads the text on ``NOSCRIPT``), so
    one set per package lives as long as the process.
    """

    __slots__ = ("cas", "extend", "release")

    def __init__(self, script: Any) -> None:
        self.cas = script(CAS_SCRIPT)
        self.release = script(RELEASE_SCRIPT)
        self.extend = script(EXTEND_SCRIPT)


_SCRIPTS: dict[str, Scripts] = {}
_SCRIPTS_LOCK = threading.Lock()
# Drop them while the interpreter is whole: a GLIDE Script collected during the interpreter's
# teardown fails in its __del__ (cffi is half gone) and prints "Exception ignored" tracebacks.
atexit.register(_SCRIPTS.clear)


def _scripts(package: str) -> Scripts:
    with _SCRIPTS_LOCK:
        scripts = _SCRIPTS.get(package)
        if scripts is None:
            module = _import(package)
            scripts = _SCRIPTS[package] = Scripts(module.Script)
        return scripts


def _client_kind(client: object) -> tuple[str, bool] | None:
    """``(package, is_cluster)`` of a GLIDE client, or None if it is not one."""
    # A client exists only if its package was imported: look there, never import.
    for package in ("glide", "glide_sync"):
        module = sys.modules.get(package)
        if module is not None and isinstance(
            client, (module.GlideClient, module.GlideClusterClient)
        ):
            return package, isinstance(client, module.GlideClusterClient)
    return None


# -- the asyncio clients, one per event loop ---------------------------------------------------


class _LoopClient:
    """The asyncio client a cache built in one event loop, and the guard that closes it."""

    __slots__ = ("client", "closed", "guard")

    def __init__(self, client: AsyncGlideClient) -> None:
        self.client = client
        self.guard: LoopGuard | None = None
        self.closed = False

    async def aclose(self) -> BaseException | None:
        """Close the client in its (running) loop; return the error. Idempotent."""
        if self.closed:
            return None
        if self.guard is not None:
            self.guard.disarm()
        self.closed = True
        try:
            await self.client.close()
        except Exception as exc:  # pragma: no cover - closing rarely fails
            return exc
        return None

    def abandon(self) -> None:
        """Close the client of a loop that was closed without closing it."""
        if self.guard is not None:
            self.guard.disarm()
        if not self.closed:
            self.closed = True
            _close_now(self.client)


def _close_now(client: AsyncGlideClient) -> None:
    # GLIDE's async close() awaits nothing: it fails the pending requests and frees the native
    # client. Run it to completion here, since the client's loop is gone.
    coro = client.close()
    try:
        coro.send(None)
    except StopIteration:
        return
    except Exception as exc:  # pragma: no cover - a pending future of the closed loop
        logger.debug("closing the GLIDE client of a closed event loop failed: %r", exc)
        return
    coro.close()  # pragma: no cover - a GLIDE whose close() suspends


# -- GLIDE's reply pipe across event loops -----------------------------------------------------
#
# GLIDE 2.x's asyncio client receives every reply, for every client of the process, through one
# pipe read by one event loop: the loop of the first client created (or of the first one
# created after that loop closed). Replies to clients of other loops are handed to them with
# call_soon_threadsafe. When the reading loop ends while clients of other loops (in other
# threads) are still in use, nothing reads the pipe any more and their calls hang until some
# new client is created. So when a loop that GlideCache built a client in shuts down while it
# is the reading loop, it stops reading and offers the pipe to every other loop GlideCache has
# clients in: the first of them to run takes it (one that is shutting down too declines). This
# reaches into glide.glide_client's module state (checked with valkey-glide 2.6); with a
# version lacking it, nothing is done and GLIDE's own behaviour applies.

_PIPE_LOCK = threading.Lock()
_PIPE_GUARDS: dict[asyncio.AbstractEventLoop, LoopGuard] = {}


def _watch_pipe(loop: asyncio.AbstractEventLoop) -> None:
    """Hand GLIDE's reply pipe on when ``loop`` (running, with a GlideCache client) ends."""
    with _PIPE_LOCK:
        for old in [old for old in _PIPE_GUARDS if old.is_closed()]:
            del _PIPE_GUARDS[old]  # closed without shutting down its async generators
        if loop in _PIPE_GUARDS or loop_shutting_down(loop):
            return
        _PIPE_GUARDS[loop] = LoopGuard(lambda: _pipe_loop_ends(loop))


async def _pipe_loop_ends(loop: asyncio.AbstractEventLoop) -> None:
    # In `loop`, from its shutdown_asyncgens(): the last moment it can stop reading.
    with _PIPE_LOCK:
        _PIPE_GUARDS.pop(loop, None)
        others = [other for other in _PIPE_GUARDS if not other.is_closed()]
    internals: Any = sys.modules.get("glide.glide_client")
    try:
        with internals._async_pipe_lock:
            if not internals._async_pipe_registered or internals._async_pipe_loop is not loop:
                return
            loop.remove_reader(internals._async_pipe_read_fd)
            internals._async_pipe_registered = False
            internals._async_pipe_loop = None
    except AttributeError:  # pragma: no cover - another GLIDE version
        return
    for other in others:
        with contextlib.suppress(RuntimeError):  # closed in the meantime
            other.call_soon_threadsafe(_take_pipe, other)


def _take_pipe(loop: asyncio.AbstractEventLoop) -> None:
    # In `loop`'s own thread. Another loop (or a client created since, in any loop) may have
    # taken it already; a loop that is shutting down would stop reading without a handover.
    internals: Any = sys.modules.get("glide.glide_client")
    try:
        with internals._async_pipe_lock:
            fd = internals._async_pipe_read_fd
            if (
                internals._async_pipe_registered
                or fd < 0
                or loop.is_closed()
                or loop_shutting_down(loop)
            ):
                return
            loop.add_reader(fd, internals._on_async_pipe_readable)
            internals._async_pipe_loop = loop
            internals._async_pipe_registered = True
    except AttributeError:  # pragma: no cover - another GLIDE version
        return


# -- configuration -----------------------------------------------------------------------------


def _milliseconds(name: str, seconds: float | None) -> int | None:
    if seconds is None:
        return None
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise ConfigurationError(f"{name} is a finite number of seconds > 0, got {seconds!r}")
    return max(1, round(seconds * 1000))


def _configuration(
    url: str,
    *,
    cluster: bool,
    request_timeout: float | None,
    connect_timeout: float | None,
    options: dict[str, Any],
) -> Any:
    """The GLIDE client configuration for ``url``, checked (no connection is made)."""
    safe = _safe_url(url)
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"a GlideCache URL starts with redis://, rediss://, valkey:// or valkeys://, "
            f"got {safe!r}"
        )
    try:
        port = parts.port or 6379
    except ValueError as exc:
        raise ConfigurationError(f"bad URL {safe!r}: {exc}") from exc
    host = parts.hostname
    if not host:
        raise ConfigurationError(f"bad URL {safe!r}: no host")
    if parts.query:
        raise ConfigurationError(
            f"bad URL {safe!r}: GlideCache takes no query options; pass them as keyword "
            "arguments of from_url (they go to GLIDE's client configuration)"
        )
    db = unquote(parts.path).strip("/") or "0"
    if not db.isdigit():
        raise ConfigurationError(f"bad URL {safe!r}: the database must be a number, got {db!r}")
    reserved = [name for name in _RESERVED if name in options]
    if reserved:
        raise ConfigurationError(
            f"GlideCache.from_url sets {', '.join(reserved)} itself (from the URL, "
            "request_timeout= and connect_timeout=)"
        )
    request_ms = _milliseconds("request_timeout", request_timeout)
    connect_ms = _milliseconds("connect_timeout", connect_timeout)
    shared = _import("glide_shared")
    kwargs = dict(options)
    try:
        if parts.password is not None:
            if "credentials" in kwargs:
                raise ConfigurationError(
                    f"credentials given twice to GlideCache.from_url: in {safe!r} and as "
                    "credentials="
                )
            kwargs["credentials"] = shared.ServerCredentials(
                password=unquote(parts.password),
                username=unquote(parts.username) if parts.username else None,
            )
        advanced = kwargs.pop("advanced_config", None)
        if advanced is None:
            advanced_type = (
                shared.AdvancedGlideClusterClientConfiguration
                if cluster
                else shared.AdvancedGlideClientConfiguration
            )
            advanced = advanced_type(connection_timeout=connect_ms)
        elif advanced.connection_timeout is None:
            # The caller's object stays as it was given.
            advanced = copy.copy(advanced)
            advanced.connection_timeout = connect_ms
        config_type = (
            shared.GlideClusterClientConfiguration if cluster else shared.GlideClientConfiguration
        )
        config = config_type(
            addresses=[shared.NodeAddress(host, port)],
            use_tls=parts.scheme in ("rediss", "valkeys"),
            database_id=int(db) or None,
            request_timeout=request_ms,
            # Connect on the first command, not in create(): GLIDE's async create() connects
            # while holding the event loop (up to the connection timeout per node).
            lazy_connect=True,
            advanced_config=advanced,
            **kwargs,
        )
        # GLIDE's own checks of the options, done when a client is created; run them now so
        # a bad option fails here, not at the first call in production (private: skipped if
        # a GLIDE version lacks it).
        check = getattr(config, "_create_a_protobuf_conn_request", None)
        if check is not None:
            check(cluster_mode=cluster)
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(
            f"GlideCache for {safe!r}: bad options: {type(exc).__name__}: {exc}"
        ) from exc
    return config


# -- GlideCache --------------------------------------------------------------------------------


class GlideCache(AsyncGlideOps, GlideOps, PerLoopClients[_LoopClient]):
    """The distributed cache (L2) on Valkey GLIDE: Valkey or Redis, standalone or Cluster.

    The same contract as :class:`~dataferry.RedisCache`, on GLIDE, the Valkey project's client
    with a Rust core: a client multiplexes every caller's commands on one connection per node.
    Needs the ``glide`` extra (``pip install 'dataferry[glide]'``: ``valkey-glide`` for the
    asyncio half, ``valkey-glide-sync`` for the sync half). One object serves both facades::

        GlideCache.from_url("redis://host:6379/0")            # both halves, built on first use
        GlideCache.from_url("valkey://host:6379", cluster=True)
        GlideCache(client)                                    # a GLIDE client you created
        GlideCache(client=async_client, sync_client=sync_client)

    **Clients passed in.** ``client`` is a ``glide`` client (``GlideClient`` or
    ``GlideClusterClient``, asyncio) or a ``glide_sync`` one; ``async_client`` / ``sync_client``
    name the half explicitly. Using the half no client was given for raises
    :class:`~dataferry.ConfigurationError` saying what to pass (nothing is built from another
    client's settings: a client's configuration may carry subscriptions or credentials
    callbacks meant for it alone). :meth:`aclose` / :meth:`close` leave those clients open.

    **Event loops.** A GLIDE asyncio client answers in the event loop it was created in. A
    cache from :meth:`from_url` builds one client per event loop that uses it (so it can be
    created at import time and used from successive ``asyncio.run()`` calls or from loops in
    several threads) and closes it when ``asyncio.run()`` / ``asyncio.Runner`` ends that loop.
    An asyncio client passed in is used in its own loop only: from another one, every call
    raises :class:`~dataferry.DistributedCacheError`. GLIDE reads the replies of all its
    asyncio clients in one event loop (that of the first client): with loops in several
    threads, blocking that loop delays every loop's replies. When it ends, GlideCache hands the
    reading on to another loop it has a client in (GLIDE 2.6 would leave the others waiting).

    **Timeouts and errors.** GLIDE bounds every request, reconnection included, by its
    ``request_timeout`` (:meth:`from_url`: 0.25 s, the default
    :class:`~dataferry.Resilience` timeout). Any exception GLIDE raises (``RequestError``,
    ``TimeoutError``, ``ConnectionError``, ``ClosingError``...) is raised as
    :class:`~dataferry.DistributedCacheError` with GLIDE's exception chained, as RedisCache
    does. GLIDE reconnects on its own in the background; while a server is down, each call
    waits for its ``request_timeout`` before failing (redis-py fails at once on a refused
    connection), so keep DataFerry's circuit breaker on. GLIDE's own log (a line on stderr
    per timeout or failed connection) is turned off when GlideCache first imports GLIDE,
    unless the application configured it already (``glide.Logger.init``; after that,
    ``Logger.set_logger_config`` still applies): DataFerry counts, logs and telemetries those
    failures itself.

    Args:
        client: A GLIDE client, asyncio (``glide``) or sync (``glide_sync``), standalone or
            cluster.
        sync_client: The ``glide_sync`` client (when both halves are wanted).
        async_client: The ``glide`` (asyncio) client (when both halves are wanted).

    """

    # The asyncio client passed in, if any (never rebuilt, never closed here).
    _async_given: AsyncGlideClient | None

    def __init__(
        self,
        client: AsyncGlideClient | GlideClient | None = None,
        *,
        sync_client: GlideClient | None = None,
        async_client: AsyncGlideClient | None = None,
    ) -> None:
        if client is not None:
            kind = _client_kind(client)
            if kind is None:
                raise ConfigurationError(
                    "GlideCache needs a Valkey GLIDE client (glide or glide_sync GlideClient / "
                    f"GlideClusterClient), not {type(client).__module__}.{type(client).__name__}"
                )
            if kind[0] == "glide":
                if async_client is not None:
                    raise ConfigurationError("two asyncio clients given to GlideCache")
                async_client = client  # type: ignore[assignment]
            else:
                if sync_client is not None:
                    raise ConfigurationError("two sync clients given to GlideCache")
                sync_client = client  # type: ignore[assignment]
        if async_client is None and sync_client is None:
            raise ConfigurationError(
                "GlideCache needs a Valkey GLIDE client; or use GlideCache.from_url(url)"
            )
        async_cluster = sync_cluster = False
        if async_client is not None:
            kind = _client_kind(async_client)
            if kind is None or kind[0] != "glide":
                raise ConfigurationError(
                    "async_client must be an asyncio GLIDE client (from the glide package), not "
                    f"{type(async_client).__module__}.{type(async_client).__name__}"
                )
            async_cluster = kind[1]
        if sync_client is not None:
            kind = _client_kind(sync_client)
            if kind is None or kind[0] != "glide_sync":
                raise ConfigurationError(
                    "sync_client must be a sync GLIDE client (from the glide_sync package), not "
                    f"{type(sync_client).__module__}.{type(sync_client).__name__}"
                )
            sync_cluster = kind[1]
        self._setup(
            config=None,
            async_cluster=async_cluster,
            sync_cluster=sync_cluster,
            description="client",
        )
        if async_client is not None:
            self._async_given = async_client
            self._async_scripts = _scripts("glide")
            # The loop the client answers in (GLIDE sets it in create()).
            loop = getattr(async_client, "_loop", None)
            if loop is not None:
                self._async_clients[loop] = async_client
        if sync_client is not None:
            self._sync_scripts = _scripts("glide_sync")
            self._sync_clients[None] = sync_client

    def _setup(
        self, *, config: Any, async_cluster: bool, sync_cluster: bool, description: str
    ) -> None:
        # Async half. _async_clients (loop -> client) is what the commands read, without a
        # lock (dict reads are atomic; it is written under _async_lock). _async_records holds
        # the clients this cache built, per loop, for closing.
        self._config = config
        self._async_given = None
        self._async_clients: dict[Any, AsyncGlideClient] = {}
        self._async_direct: dict[Any, Any] = {}  # PerLoopClients' (RedisCache only): empty
        self._async_records: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._async_lock = threading.Lock()
        self._async_cluster = async_cluster
        # Sync half: one client (under key None) shared by every thread.
        self._sync_clients: dict[Any, GlideClient] = {}
        self._sync_owned: GlideClient | None = None
        self._sync_lock = threading.Lock()
        self._sync_cluster = sync_cluster
        self._description = description

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cluster: bool = False,
        request_timeout: float | None = 0.25,
        connect_timeout: float | None = 0.25,
        **options: Any,
    ) -> GlideCache:
        """Build a GlideCache for a ``redis://``, ``rediss://``, ``valkey://``, ``valkeys://`` URL.

        ``scheme://[[user]:password@]host[:port][/db]``: the ``s`` schemes use TLS, the port
        defaults to 6379, the database to 0. The URL and options are checked here, but nothing
        connects: the asyncio client of an event loop is built on the loop's first async call,
        the sync client on the first sync call, and each connects on its first command.

        Args:
            url: The server (for a cluster: any node; GLIDE discovers the others).
            cluster: Use GLIDE's cluster client.
            request_timeout: Seconds GLIDE gives each request, reconnecting included, before
                failing it (default 0.25, the default :class:`~dataferry.Resilience` timeout:
                keep it at or below the cache's ``Resilience.timeout``); ``None``: GLIDE's
                default.
            connect_timeout: Seconds to wait for a connection (default 0.25); ``None``:
                GLIDE's default (2 s). An ``advanced_config`` that sets its own
                ``connection_timeout`` wins.
            **options: Passed to GLIDE's ``GlideClientConfiguration`` (or
                ``GlideClusterClientConfiguration``): ``client_name``, ``read_from``,
                ``reconnect_strategy``, ``inflight_requests_limit``, ``credentials`` (when the
                URL has no password), ``advanced_config`` (TLS settings)...

        Raises:
            ConfigurationError: A malformed URL (scheme, port, database, query options), bad
                options, or the ``glide`` extra is not installed.

        """
        config = _configuration(
            url,
            cluster=cluster,
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            options=options,
        )
        self = cls.__new__(cls)
        kind = "cluster" if cluster else "url"
        self._setup(
            config=config,
            async_cluster=cluster,
            sync_cluster=cluster,
            description=f"{kind}={_safe_url(url)!r}",
        )
        return self

    # -- async clients, one per event loop ----------------------------------------------------

    async def _async_connect(self) -> AsyncGlideClient:
        # Called by the async commands when the running loop has no client yet.
        loop = asyncio.get_running_loop()
        given = self._async_given
        if given is not None:
            return self._bind_given(given, loop)
        config = self._config
        if config is None:
            raise ConfigurationError(
                "this GlideCache has no asyncio client (it was given a sync one): pass "
                "async_client=... (a glide client) as well, or use GlideCache.from_url(), which "
                "builds both"
            )
        module = _import("glide")
        self._async_scripts = _scripts("glide")
        with self._async_lock:
            dead = self._take_dead_loops()
            record = self._async_records.get(loop)
        for old in dead:
            old.abandon()
        if record is not None:  # pragma: no cover - another task of this loop just built it
            return record.client
        client_type = module.GlideClusterClient if self._async_cluster else module.GlideClient
        try:
            # Lazy connection: creating awaits nothing and makes no connection.
            client: AsyncGlideClient = await client_type.create(config)
        except Exception as exc:
            raise failed("connect", exc, "GLIDE") from exc
        with self._async_lock:
            record = self._async_records.get(loop)
            if record is None:
                record = _LoopClient(client)
                close_with_loop(self, loop, record, "GLIDE client")
                self._async_records[loop] = record
                self._async_clients[loop] = client
        if record.client is not client:  # pragma: no cover - another task won the race
            await client.close()
        _watch_pipe(loop)
        return record.client

    def _bind_given(
        self, client: AsyncGlideClient, loop: asyncio.AbstractEventLoop
    ) -> AsyncGlideClient:
        owner = getattr(client, "_loop", None)
        if owner is None:  # pragma: no cover - a GLIDE that doesn't record its loop
            with self._async_lock:
                self._async_clients[loop] = client
            return client
        state = "closed" if owner.is_closed() else "still running"
        raise DistributedCacheError(
            "the asyncio GLIDE client given to GlideCache belongs to another event loop "
            f"({state}); a GLIDE client answers only in the loop it was created in: create "
            "one per loop, or use GlideCache.from_url(), which does"
        )

    # -- the sync client ----------------------------------------------------------------------

    def _sync_connect(self) -> GlideClient:
        config = self._config
        if config is None:
            raise ConfigurationError(
                "this GlideCache has no sync client (it was given an asyncio one): pass "
                "sync_client=... (a glide_sync client) as well, or use GlideCache.from_url(), "
                "which builds both"
            )
        module = _import("glide_sync")
        self._sync_scripts = _scripts("glide_sync")
        # Threads share the sync half: build one client, not one per racing thread.
        with self._sync_lock:
            client = self._sync_clients.get(None)
            if client is None:
                client_type = (
                    module.GlideClusterClient if self._sync_cluster else module.GlideClient
                )
                try:
                    client = client_type.create(config)
                except Exception as exc:
                    raise failed("connect", exc, "GLIDE") from exc
                self._sync_owned = client
                self._sync_clients[None] = client
            return client

    def close(self) -> None:
        """Close the sync client this cache built; a client passed in is left to its owner.

        Also closes the asyncio clients of event loops that were closed without closing them.
        The next sync call builds a new client. Call it once no other thread uses the cache:
        GLIDE frees the native client at once.
        """
        self._drop_dead_loops()
        with self._sync_lock:
            owned, self._sync_owned = self._sync_owned, None
            if owned is None:
                return
            self._sync_clients.clear()
        try:
            owned.close()
        except Exception as exc:  # pragma: no cover - closing rarely fails
            raise failed("close", exc, "GLIDE") from exc

    def __repr__(self) -> str:
        return f"GlideCache({self._description})"
