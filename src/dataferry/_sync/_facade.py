# GENERATED from src/dataferry/_async/_facade.py by scripts/unasync.py: do not edit.
"""DataFerry: the async facade (the sync ``DataFerry`` is generated from this file)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from typing_extensions import Self

from dataferry._sync._backplane import Action, BackplaneAccessor
from dataferry._sync._datasource import CachedSource
from dataferry._sync._decorator import CachedDecorator, cached_decorator
from dataferry._sync._flight import SingleFlight
from dataferry._sync._l2 import DistributedAccessor
from dataferry._sync._loader import Loader
from dataferry._sync._pipeline import Compute, Staged, Stale, serve_refreshing
from dataferry._sync._tags import clear, ensure, remove_by_tag, seed_epochs
from dataferry._backends import Backplane, DistributedCache
from dataferry._callables import Factory, LoadMany
from dataferry._codec import Codec, Decoded
from dataferry._config import from_env_kwargs, from_url_kwargs
from dataferry._core import CLOSED_MEMORY, DEFAULT, MISS, NO_L1, Core
from dataferry._errors import ConfigurationError, DistributedCacheError, InvalidKeyError
from dataferry._events import Stats
from dataferry._freshness import L1Plan, plan_l1
from dataferry._keys import check_tenant
from dataferry._layers import DistributedLayer
from dataferry._memory import MemoryCache
from dataferry._options import NOT_GIVEN, Entry, EntryOptions
from dataferry._resilience import DEFAULT_RESILIENCE, Resilience, check_resilience
from dataferry._resolve import Resolved
from dataferry._scopes import Floor
from dataferry._sources import SourceLike
from dataferry._synchronization import Runtime, KeyFailure
from dataferry._telemetry import (
    DEFAULT_TELEMETRY,
    CacheTelemetry,
    Telemetry,
    check_telemetry,
)
from dataferry.events import BY_NAME, HOT, CacheEvent

if TYPE_CHECKING:
    from dataferry._builder import Builder

__all__ = ["DataFerry"]

T = TypeVar("T")
D = TypeVar("D")
E = TypeVar("E", bound=CacheEvent)
K = TypeVar("K")

_MiB = 1024 * 1024


def _no_factory() -> None:
    """The factory of a batch key's fail-safe work, which only serves its stale value."""


class DataFerry:
    """A hybrid cache: an in-process L1 in front of a distributed L2, for synchronous (threaded) code.

    Every argument is keyword-only and optional::

        cache = DataFerry(memory=MemoryCache(max_entries=100_000),
                               distributed=RedisCache.from_url("redis://localhost:6379/0"),
                               namespace="shop", default_ttl=300)
        with cache:
            user = cache.get_or_set(f"user:{uid}", lambda: db.load(uid), ttl=60)

    Args:
        memory: The L1 (default: a new :class:`MemoryCache`); ``None`` for no L1.
        distributed: The L2 (:class:`RedisCache`, :class:`SQLiteCache`...); ``None`` = L1 only.
        codec: How values become L2 bytes (default: JSON, no compression, no encryption).
        namespace: Prefix of every storage key, ``[A-Za-z0-9_.-]{1,64}``.
        default_ttl: Seconds (or a ``timedelta``) an entry stays fresh when a call gives no ttl.
        default_options: Defaults for every :class:`EntryOptions` field.
        max_payload_bytes: Largest encoded entry written to L2 (default 8 MiB).
        distributed_layers: Layers every L2 call passes through, outermost first (see
            :class:`DistributedLayer`).
        join_timeout: Most seconds a caller waits for another caller's computation of the same
            key before computing on its own (default 30).
        offload_sync_factories: Run factories that are not ``async`` functions in a worker
            thread the cache owns, so a blocking factory doesn't stop the event loop. Off by
            default: most sync factories are quick, and a thread hop costs more than they do.
            (``DataFerry`` accepts it and runs factories in the calling thread either way.)
        close_timeout: Most seconds :meth:`close` waits for factories still running in the
            cache's background tasks before it cancels them (default 5).
        raise_distributed_errors: Raise :class:`~dataferry.DistributedCacheError` (or
            :class:`~dataferry.CircuitOpenError`) from calls whose L2 part failed, instead of
            answering from L1 and the factory (the same as
            ``default_options=EntryOptions(raise_distributed_errors=True)``; a call's options
            can still turn it off).
        resilience: How L2 calls are protected: timeout, retries for reads, circuit breaker,
            auto-recovery of failed writes (default: :class:`Resilience` with its defaults;
            ``None`` turns all of it off). See :class:`Resilience`.
        backplane: Keeps the L1s of a fleet coherent (:class:`RedisBackplane`): after each
            write, remove or expire, the other nodes of the namespace drop the key from their
            L1. One backplane per cache; the cache starts it now and closes it with itself.
        telemetry: How the cache reports to OpenTelemetry (default: :class:`Telemetry` with
            its defaults: metrics and spans to the global providers, no keys; ``None``: no
            reporting at all). Nothing is reported for L1 hits but counters read when the
            application's metric reader collects.
        coalesce_reads: Send the single-key L2 reads of concurrent callers as one batch read
            (``MGET``): the reads started in one iteration of the event loop (for
            ``DataFerry``: by threads while another batch is out, until it is back). Under
            concurrency it multiplies L2 throughput (one round trip and one client call
            instead of many); a lone caller pays one more event-loop iteration per L2 read.
            Off by default (see ``benchmarks/bench_coalesce.py``).

    L1 hands every caller the same object: treat cached values as immutable (or build the
    MemoryCache with ``copy_on_read=True``). ``None`` is a value and is cached.

    Lifecycle: the cache connects lazily, works from any event loop (and, for ``DataFerry``,
    any thread), and :meth:`close` (or leaving ``with``) ends it for good: afterwards
    every call raises :class:`~dataferry.CacheClosedError`. Create it once, at module level or
    at start-up, and close it at shutdown.

    Raises:
        ConfigurationError: An argument of the wrong type or out of range.

    """

    __slots__ = (
        "__weakref__",
        "_bp",
        "_clear_names",
        "_core",
        "_flights",
        "_l2",
        "_memory",
        "_prefix",
        "_runtime",
        "_tenant",
    )

    def __init__(
        self,
        *,
        memory: MemoryCache | None = DEFAULT,
        distributed: DistributedCache | None = None,
        codec: Codec | None = None,
        namespace: str = "dataferry",
        default_ttl: float | timedelta = 300.0,
        default_options: EntryOptions | None = None,
        max_payload_bytes: int = 8 * _MiB,
        distributed_layers: Sequence[DistributedLayer] = (),
        join_timeout: float | timedelta = 30.0,
        offload_sync_factories: bool = False,
        close_timeout: float = 5.0,
        raise_distributed_errors: bool = False,
        resilience: Resilience | None = DEFAULT_RESILIENCE,
        backplane: Backplane | None = None,
        telemetry: Telemetry | None = DEFAULT_TELEMETRY,
        coalesce_reads: bool = False,
    ) -> None:
        if not isinstance(raise_distributed_errors, bool):
            raise ConfigurationError(
                f"raise_distributed_errors must be a bool, got {raise_distributed_errors!r}"
            )
        if raise_distributed_errors:  # sugar for the default of the option of that name
            default_options = EntryOptions(raise_distributed_errors=True).merged(default_options)
        core = Core(
            memory=memory,
            distributed=distributed,
            codec=codec,
            namespace=namespace,
            default_ttl=default_ttl,
            default_options=default_options,
            max_payload_bytes=max_payload_bytes,
            join_timeout=join_timeout,
        )
        layers = tuple(distributed_layers)
        for layer in layers:
            if not isinstance(layer, DistributedLayer):
                raise ConfigurationError(f"{layer!r} is not a DistributedLayer")
        config = check_telemetry(telemetry)
        tel = None
        core.log.show_keys = config is not None and config.record_keys
        if config is not None and (config.metrics or config.traces):
            tel = core.telemetry = CacheTelemetry(config, core)
        if not isinstance(offload_sync_factories, bool):
            raise ConfigurationError(
                f"offload_sync_factories must be a bool, got {offload_sync_factories!r}"
            )
        runtime = Runtime(offload=offload_sync_factories, close_timeout=close_timeout)
        if not isinstance(coalesce_reads, bool):
            raise ConfigurationError(f"coalesce_reads must be a bool, got {coalesce_reads!r}")
        policy = check_resilience(resilience)
        accessor = None
        if core.l2 is not None:
            accessor = DistributedAccessor(
                core.l2,
                layers,
                core.events,
                core.versions,
                policy,
                runtime.close_timeout,
                step=None if tel is None else tel.l2_call,
                coalesce=runtime if coalesce_reads else None,
            )
        flights = SingleFlight(core.events, runtime, core.join_timeout)
        bp = None
        if backplane is not None:
            if not isinstance(backplane, Backplane):
                raise ConfigurationError(f"backplane must be a Backplane, got {backplane!r}")
            bp = BackplaneAccessor(backplane, core, runtime)
        self._bind(core, runtime, accessor, flights, None, bp)
        if accessor is not None:
            accessor.on_written(self._landed)
            if tel is not None:
                tel.breaker = accessor.breaker_state
        if bp is not None:
            bp.start()

    def _bind(
        self,
        core: Core,
        runtime: Runtime,
        l2: DistributedAccessor | None,
        flights: SingleFlight,
        tenant: str | None,
        bp: BackplaneAccessor | None,
    ) -> None:
        self._core = core
        self._bp = bp
        self._runtime = runtime
        self._l2 = l2
        self._flights = flights
        self._tenant = tenant
        self._prefix = core.prefix(tenant)
        self._clear_names = core.scopes.clear_names(tenant)
        # Hot-path copy: an attribute load on self is cheaper than core.memory. A closed cache
        # swaps it for CLOSED_MEMORY, so L1 hits pay nothing for the closed check.
        self._memory: Any = CLOSED_MEMORY if runtime.closed else core.hit_memory
        core.views.add(self)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """A cache whose L2 and settings a URL gives (keyword arguments win over the URL).

        ``memory://``, ``sqlite:///path``, ``redis://host:6379/0`` (``rediss://``,
        ``unix://``; ``?cluster=true`` for a Cluster), ``redis+sentinel://h1:26379,h2:26379/
        service``; settings as query parameters: ``namespace``, ``default_ttl``,
        ``max_entries`` (0: no L1), ``backplane=true``. Example:
        ``DataFerry.from_url("redis://cache:6379/0?namespace=shop&default_ttl=300")``.

        Raises:
            ConfigurationError: A bad URL or setting, named (nothing is connected yet).

        """
        return cls(**{**from_url_kwargs(url), **kwargs})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Self:
        """A cache configured by ``DATAFERRY_*`` environment variables.

        ``DATAFERRY_URL`` (default ``memory://``, forms as :meth:`from_url`),
        ``DATAFERRY_NAMESPACE``, ``DATAFERRY_DEFAULT_TTL``, ``DATAFERRY_MAX_ENTRIES``,
        ``DATAFERRY_BACKPLANE``, ``DATAFERRY_CLUSTER`` (they win over the URL's parameters)
        and ``DATAFERRY_KEYS`` (a keyring, ``id:base64,...``: entries are encrypted).
        ``environ``: where to read them (default ``os.environ``); keyword arguments win.

        Raises:
            ConfigurationError: A bad variable, named. KeyringError: a bad DATAFERRY_KEYS.

        """
        return cls(**{**from_env_kwargs(os.environ if environ is None else environ), **kwargs})

    @classmethod
    def builder(cls) -> Builder[Self]:
        """Return a fluent :class:`Builder` for this cache type."""
        from dataferry._builder import Builder

        return Builder(cls)

    def tenant(self, tenant_id: str) -> Self:
        """Return a view with the same API whose keys (and keys of encryption) are the tenant's.

        Views share the L1, L2, codec, counters and lifecycle of their cache; their storage
        keys are ``{namespace}:t:{tenant}:{key}``, so tenants can never read each other's
        entries. A view owns nothing: closing it does nothing, closing the cache closes it.

        Raises:
            InvalidTenantError: ``tenant_id`` is not a str matching ``[A-Za-z0-9_.-]{1,64}``.

        """
        check_tenant(tenant_id)
        view = object.__new__(type(self))
        view._bind(self._core, self._runtime, self._l2, self._flights, tenant_id, self._bp)
        return view

    @property
    def namespace(self) -> str:
        """The namespace of every storage key."""
        return self._core.namespace

    @property
    def tenant_id(self) -> str | None:
        """The tenant of this view, or None for the root cache."""
        return self._tenant

    @property
    def closed(self) -> bool:
        """Whether the cache was closed (every call then raises CacheClosedError)."""
        return self._runtime.closed

    def stats(self) -> Stats:
        """Return a snapshot of hits and misses per level, factory calls, joins, errors..."""
        return self._core.stats()

    def subscribe(self, listener: Callable[[str, dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``listener(event, attributes)`` on cache events; return an unsubscribe function.

        Events (named as the :class:`Stats` counters they bump): ``stampede_joins`` (a caller
        joined another's computation), ``distributed_errors`` (an L2 call failed; attributes
        ``operation``, ``error``), ``decode_errors`` (an undecodable L2 entry became a miss;
        ``key``, ``error``), ``failsafe_activations`` (a stale value was served; ``key``,
        ``reason``: ``factory_error``, ``soft_timeout`` or ``hard_timeout``), ``circuit_state``
        (the L2 circuit breaker changed state; ``state``: ``open``, ``half_open`` or
        ``closed``), ``recovery_drops`` (queued L2 writes were dropped; ``count``),
        ``lock_waits`` / ``lock_timeouts`` (a miss waited for another process's distributed
        lock / gave up waiting; ``key``), ``backplane_messages`` (another node's
        invalidation was applied; ``action``, ``key``, ``latency_ms``), ``backplane_state``
        (``state``: ``connected``, ``disconnected`` or ``reconnected``). Listeners run in
        the calling task or thread (backplane events: the backplane's thread), may subscribe
        and unsubscribe at any time, and can't break a cache call: an exception they raise
        is logged and dropped. Views share their cache's listeners.
        """
        return self._core.events.subscribe(listener)

    def on(self, event: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Call ``handler(e)`` for every event of type ``event``; return an unsubscribe function.

        ``event`` is a class of :mod:`dataferry.events` (``CacheEvent``: every event). Like
        :meth:`subscribe`, a handler runs where the event happens and can't break a cache
        call. Subscribing to ``Hit``, ``Miss`` or ``Eviction`` (or ``CacheEvent``) turns on
        their reporting, which every L1 lookup then pays for, until the last such handler
        unsubscribes.

        Raises:
            ConfigurationError: ``event`` is not an event class, or ``handler`` not callable.

        """
        if not (isinstance(event, type) and issubclass(event, CacheEvent)):
            raise ConfigurationError(f"event must be a class of dataferry.events, got {event!r}")
        if not callable(handler):
            raise ConfigurationError(f"handler must be callable, got {handler!r}")
        names = {name for name, cls in BY_NAME.items() if issubclass(cls, event)}

        def listener(name: str, attributes: dict[str, Any]) -> None:
            if name in names:
                handler(BY_NAME[name].build(name, attributes))  # type: ignore[arg-type]

        core = self._core
        unsubscribe = core.events.subscribe(listener)
        hot = bool(names & HOT)
        if hot:
            core.listen_hot(+1)
        done = False

        def stop() -> None:
            nonlocal done
            if done:
                return
            done = True
            unsubscribe()
            if hot:
                core.listen_hot(-1)

        return stop

    def _rebind_memory(self) -> None:
        """Read L1 through what the core now wants (reporting turned on or off)."""
        if not self._runtime.closed:
            self._memory = self._core.hit_memory

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._runtime.check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the cache for good: later calls raise :class:`~dataferry.CacheClosedError`.

        Factories still running in the background get ``close_timeout`` seconds to finish
        (their callers get their values; nothing more is written), then are cancelled. Then
        the L2 writes still queued (background writes, failed writes waiting for
        auto-recovery) get up to ``close_timeout`` seconds more to reach the L2 (an L2 that
        is down gets three tries; what is left is dropped, logged and counted in
        ``Stats.recovery_drops``), and the L2's connections are released. Closing twice does
        nothing; closing a tenant view does nothing (close the cache it came from).
        """
        runtime = self._runtime
        if self._tenant is not None or runtime.closed:
            return
        for view in list(self._core.views):  # L1 hits stop at once, before the drain
            view._memory = CLOSED_MEMORY
        runtime.close()
        if self._l2 is not None:
            self._l2.close()
        if self._bp is not None:
            self._bp.close()
        if self._core.telemetry is not None:
            self._core.telemetry.retire()

    # -- reads ----------------------------------------------------------------------------------

    @overload
    def get_or_set(
        self,
        key: str,
        factory: Callable[[], Entry[T]],
        *,
        ttl: float | timedelta | None = ...,
        tags: Iterable[str] | None = ...,
        options: EntryOptions | None = ...,
        type: type[T] | None = ...,
    ) -> T: ...

    @overload
    def get_or_set(
        self,
        key: str,
        factory: Callable[[], T],
        *,
        ttl: float | timedelta | None = ...,
        tags: Iterable[str] | None = ...,
        options: EntryOptions | None = ...,
        type: type[T] | None = ...,
    ) -> T: ...

    def get_or_set(
        self,
        key: str,
        factory: Factory[Any],
        *,
        ttl: float | timedelta | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
        type: Any = None,
    ) -> Any:
        """Return the cached value for ``key``, computing it with ``factory()`` on a miss.

        Concurrent callers of a missing key share one ``factory()`` call; its exception reaches
        every one of them and is not cached. ``factory`` may be sync or async and may return an
        :class:`Entry` to adapt its own ttl/tags. ``type`` makes the value that type whichever
        level answers (decoded from L2, or converted as L2 would, e.g. into a dataclass).
        """
        memory = self._memory
        if memory is not None and options is None and type is None:
            # Fast path: only valid keys are ever stored, so a hit needs no validation.
            try:
                value = memory.get(self._prefix + key, MISS)
            except TypeError:
                raise InvalidKeyError(
                    f"cache keys must be str, not {key.__class__.__name__}"
                ) from None
            if value is not MISS:
                return value
            return self._get_or_set(key, factory, ttl, tags, options, type, False)
        return self._get_or_set(key, factory, ttl, tags, options, type, True)

    def _get_or_set(
        self,
        key: str,
        factory: Factory[Any],
        ttl: float | timedelta | None,
        tags: Iterable[str] | None,
        options: EntryOptions | None,
        type: Any,
        check_memory: bool,
    ) -> Any:
        self._runtime.check_open()
        core = self._core
        skey = core.storage_key(self._prefix, key)
        if not callable(factory):
            raise ConfigurationError(f"factory must be callable, got {factory!r}")
        if type is not None:
            core.codec.check_type(type)  # e.g. a type that needs an extra: raise on hits too
        opts = core.resolve(ttl, options)
        tag_tuple = core.tags_of(tags)
        if check_memory and not opts.skip_memory:
            value = self._l1_get(skey, type)
            if value is not MISS:
                return value
        stale = None
        if opts.fail_safe or opts.refreshes:
            value, stale = serve_refreshing(self, skey, opts, type, factory, tag_tuple)
            if value is not MISS:
                return value
        work = Compute(self, skey, factory, opts, tag_tuple, type, stale)
        with core.op("get_or_set", key, self._tenant):
            value = self._flights.run(skey, work)
        return value if type is None else self._typed(value, type)

    def _l1_get(self, skey: str, type: Any) -> Any:
        """The L1 value of ``skey`` (as ``type`` when given), or MISS."""
        memory = self._memory  # with hit/miss reporting and spans, when they are on
        if memory is None:
            return MISS
        if type is None:
            return memory.get(skey, MISS)
        entry = memory.get_entry(skey)
        if entry is None:
            return MISS
        value, meta = entry
        return self._core.typed(value, meta, type)

    def _typed(self, value: Any, type: Any) -> Any:
        # A value another caller's flight produced: make it the type this caller asked for.
        typed = self._core.typed(value, None, type)
        return value if typed is MISS else typed

    def _read_l2(self, skey: str, opts: Resolved, type: Any) -> Any:
        """The flight's first phase: a fresh L2 entry (also put in L1), or MISS."""
        l2 = self._l2
        if l2 is None or opts.skip_distributed:
            return MISS
        started = self._core.versions.current()
        floor = self._floor()
        data = l2.get(skey, raise_errors=opts.raise_distributed_errors)
        return self._accept_l2(skey, data, opts, type, started, floor)

    def _accept_l2(
        self, skey: str, data: bytes | None, opts: Resolved, type: Any, started: int, floor: Floor
    ) -> Any:
        """The value of ``data`` read from L2 if fresh (also put in L1), else MISS.

        ``floor`` is what this view's entries are judged by (:meth:`_floor`).
        """
        core = self._core
        dec = core.fresh(skey, data, self._tenant, type, floor)
        if dec is MISS:
            return MISS
        if dec.tags and not self._tags_hold(skey, dec.tags, dec.created_at):
            return MISS
        assert data is not None
        self._fill_l1(skey, dec, opts, type, len(data), time.time(), 0.0, started)
        return dec.value

    def _floor(self) -> Floor:
        """The latest clear of this view's entries (fetching the records if need be).

        Called before every L2 read and write of entries: it also makes sure the epochs the
        codec derives this view's keys from are current.
        """
        names = self._clear_names
        core = self._core
        scopes = core.scopes
        if scopes.missing(names):
            ensure(self, names)
            if core.codec.encrypts:
                unseeded = scopes.unseeded(names)
                if unseeded:
                    seed_epochs(self, unseeded)
        return scopes.floor(self._tenant, names)

    def _epochs_for_writes(self, opts: Resolved) -> None:
        """Before encrypting entries for L2: make sure this view's key epochs are current."""
        if self._l2 is not None and not opts.skip_distributed and self._core.codec.encrypts:
            self._floor()

    def _tags_hold(self, skey: str, tags: tuple[str, ...], created_at: float) -> bool:
        """Whether an L2 entry of ``skey`` with ``tags`` outlived their removals.

        Counts the lookup as a hit or a miss (entries with tags are counted once checked).
        """
        held = not self._tag_removed(tags, created_at)
        self._core.counted(skey, held)
        return held

    def _tag_removed(self, tags: tuple[str, ...], created_at: float) -> bool:
        """Whether any of ``tags`` was removed at or after ``created_at`` (in this tenant)."""
        scopes = self._core.scopes
        names = scopes.tag_names(self._tenant, tags)
        ensure(self, names)
        return scopes.latest(names) >= created_at

    def _fill_l1(
        self,
        skey: str,
        dec: Decoded,
        opts: Resolved,
        type: Any,
        size: int,
        now: float,
        cost: float,
        started: int,
    ) -> L1Plan | None:
        """Put an entry read from L2 in L1; return how (None: not put in L1).

        ``started`` is the invalidation version noted before the read: if the key was written
        or invalidated since, the value read may be the one replaced, and is not put in L1.
        """
        core = self._core
        memory = core.memory
        if memory is None or opts.skip_memory or not core.versions.fill_ok(skey, started):
            return None
        plan = plan_l1(opts, dec.created_at, dec.logical_expiry, dec.tags, type, now, cost)
        memory.set(
            skey, dec.value, plan.ttl, meta=plan.meta, size_hint=size, stale_ttl=plan.stale_ttl
        )
        if dec.tags:
            core.index_tags(skey, self._tenant, dec.tags)
        return plan

    @overload
    def get(
        self,
        key: str,
        default: Any = ...,
        *,
        options: EntryOptions | None = ...,
        type: None = ...,
    ) -> Any: ...

    @overload
    def get(
        self,
        key: str,
        default: None = ...,
        *,
        options: EntryOptions | None = ...,
        type: type[T],
    ) -> T | None: ...

    @overload
    def get(
        self,
        key: str,
        default: D,
        *,
        options: EntryOptions | None = ...,
        type: type[T],
    ) -> T | D: ...

    def get(
        self,
        key: str,
        default: Any = None,
        *,
        options: EntryOptions | None = None,
        type: Any = None,
    ) -> Any:
        """Return the cached value for ``key``, or ``default`` on a miss."""
        memory = self._memory
        if memory is not None and options is None and type is None:
            try:
                value = memory.get(self._prefix + key, MISS)
            except TypeError:
                raise InvalidKeyError(
                    f"cache keys must be str, not {key.__class__.__name__}"
                ) from None
            if value is not MISS:
                return value
            value = self._read(key, options, type, False)
        else:
            value = self._read(key, options, type, True)
        return default if value is MISS else value

    @overload
    def try_get(
        self, key: str, *, options: EntryOptions | None = ..., type: None = ...
    ) -> tuple[bool, Any]: ...

    @overload
    def try_get(
        self, key: str, *, options: EntryOptions | None = ..., type: type[T]
    ) -> tuple[bool, T | None]: ...

    def try_get(
        self, key: str, *, options: EntryOptions | None = None, type: Any = None
    ) -> tuple[bool, Any]:
        """Return ``(True, value)`` on a hit and ``(False, None)`` on a miss."""
        value = self._read(key, options, type, True)
        return (False, None) if value is MISS else (True, value)

    def _read(
        self, key: str, options: EntryOptions | None, type: Any, check_memory: bool
    ) -> Any:
        """L1 then L2 lookup without a factory; returns MISS on a miss."""
        self._runtime.check_open()
        core = self._core
        skey = core.storage_key(self._prefix, key)
        if type is not None:
            core.codec.check_type(type)
        opts = core.resolve(None, options)
        if check_memory and not opts.skip_memory:
            value = self._l1_get(skey, type)
            if value is not MISS:
                return value
        if opts.refreshes:  # a value past its refresh point is still fresh
            value, _ = serve_refreshing(self, skey, opts, type, None, ())
            if value is not MISS:
                return value
        with core.op("get", key, self._tenant) as op:
            value = self._read_l2(skey, opts, type)
            op.outcome = "miss" if value is MISS else "hit"
        return value

    def exists(self, key: str, *, options: EntryOptions | None = None) -> bool:
        """Return whether ``key`` holds a fresh value in L1 or L2."""
        return self._read(key, options, None, True) is not MISS

    @overload
    def get_many(
        self, keys: Iterable[str], *, options: EntryOptions | None = ..., type: None = ...
    ) -> dict[str, Any]: ...

    @overload
    def get_many(
        self, keys: Iterable[str], *, options: EntryOptions | None = ..., type: type[T]
    ) -> dict[str, T]: ...

    def get_many(
        self,
        keys: Iterable[str],
        *,
        options: EntryOptions | None = None,
        type: Any = None,
    ) -> dict[str, Any]:
        """Return ``{key: value}`` for the keys that hit (L1 first, then one L2 round trip)."""
        self._runtime.check_open()
        core = self._core
        names = core.check_keys(keys)
        if type is not None:
            core.codec.check_type(type)
        opts = core.resolve(None, options)
        prefix = self._prefix
        if core.memory is None or opts.skip_memory:
            # No L1 to read or fill: one batch read, decoded straight into the result.
            l2 = self._l2
            if l2 is None or opts.skip_distributed or not names:
                return {}
            skeys = [prefix + k for k in names]
            with core.op("get_many", None, self._tenant):
                floor = self._floor()
                blobs = l2.get_many(skeys, raise_errors=opts.raise_distributed_errors)
                tagged: list[tuple[Any, float, tuple[str, ...]]] = []
                values = core.fresh_values(skeys, blobs, names, self._tenant, type, floor, tagged)
                if tagged:
                    storage = dict(zip(names, skeys, strict=True))
                    for k, created_at, tags in tagged:
                        if not self._tags_hold(storage[k], tags, created_at):
                            del values[k]
            return values
        pairs = [(k, prefix + k) for k in names]
        found, missing = self._l1_get_many(pairs, opts, type)
        if missing:
            with core.op("get_many", None, self._tenant):
                hits = self._l2_get_many([skey for _, skey in missing], opts, type)
            for k, skey in missing:
                if skey in hits:
                    found[k] = hits[skey]
        return {k: found[k] for k, _ in pairs if k in found}

    def _l1_get_many(
        self, pairs: list[tuple[str, str]], opts: Resolved, type: Any
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        found: dict[str, Any] = {}
        missing: list[tuple[str, str]] = []
        use_memory = self._core.memory is not None and not opts.skip_memory
        for k, skey in pairs:
            value = self._l1_get(skey, type) if use_memory else MISS
            if value is MISS:
                missing.append((k, skey))
            else:
                found[k] = value
        return found, missing

    def _l2_get_many(
        self, skeys: list[str], opts: Resolved, type: Any, stale: dict[str, Stale] | None = None
    ) -> dict[str, Any]:
        """``{skey: value}`` of the fresh L2 entries among ``skeys`` (also put in L1).

        With fail-safe, the stale entries still in their fail-safe window are put in
        ``stale`` (when newer than what it holds), as a ``get_or_set`` miss keeps them.
        """
        l2 = self._l2
        if l2 is None or opts.skip_distributed or not skeys:
            return {}
        core = self._core
        started = core.versions.current()
        floor = self._floor()
        blobs = l2.get_many(skeys, raise_errors=opts.raise_distributed_errors)
        found = core.fresh_many(skeys, blobs, self._tenant, type, floor)
        if stale is not None and opts.fail_safe and len(found) < len(skeys):
            self._stale_many(skeys, blobs, found, opts, type, floor, stale)
        if any(dec.tags for _, dec, _ in found):
            kept = []
            for entry in found:
                dec = entry[1]
                if not dec.tags or self._tags_hold(entry[0], dec.tags, dec.created_at):
                    kept.append(entry)
            found = kept
        if core.memory is not None and not opts.skip_memory:
            now = time.time()
            for skey, dec, size in found:
                self._fill_l1(skey, dec, opts, type, size, now, 0.0, started)
        return {skey: dec.value for skey, dec, _ in found}

    def _stale_many(
        self,
        skeys: list[str],
        blobs: list[bytes | None],
        found: list[tuple[str, Decoded, int]],
        opts: Resolved,
        type: Any,
        floor: Floor,
        stale: dict[str, Stale],
    ) -> None:
        """Add the fail-safe candidates of a batch read (expired, in their window) to ``stale``."""
        fresh = {skey for skey, _, _ in found}
        left = [
            (s, d) for s, d in zip(skeys, blobs, strict=True) if d is not None and s not in fresh
        ]
        if not left:
            return
        now = time.time()
        # Decoded again without reporting faults: fresh_many has counted and logged them.
        olds, _ = self._core.codec.decode_many(
            [s for s, _ in left],
            [d for _, d in left],
            tenant=floor.kdf,
            type=type,
            fresh_after=now - opts.stale_window,
            created_after=floor.at,
        )
        for skey, dec, _ in olds:
            if dec.logical_expiry > now:
                continue  # fresh, yet not found: its tags were removed
            if dec.tags and self._tag_removed(dec.tags, dec.created_at):
                continue  # removed by tag: not a fail-safe candidate either
            old = stale.get(skey)
            if old is None or dec.created_at > old.created_at:
                stale[skey] = Stale(dec.value, dec.created_at, dec.logical_expiry, dec.tags)

    def get_or_set_many(
        self,
        keys: Iterable[str],
        load_many: LoadMany[T],
        *,
        ttl: float | timedelta | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
        type: type[T] | None = None,
    ) -> dict[str, T]:
        """Return ``{key: value}`` for ``keys``, loading the misses with one call.

        ``load_many(missing_keys)`` (sync or async) returns a mapping; keys it leaves out are
        absent from the result and not cached. Each key is single-flight: keys that another
        call is already computing are waited for, not loaded twice. When ``load_many`` raises
        and the options ask for fail-safe, each key with a stale value still in its fail-safe
        window gets that value (as ``get_or_set`` does); if any key is left without one, the
        exception is raised. Nothing is cached from a failed call.

        Raises:
            ConfigurationError: ``load_many`` is not callable, or returned no mapping.

        """
        self._runtime.check_open()
        core = self._core
        pairs = core.storage_keys(self._prefix, keys)
        if not callable(load_many):
            raise ConfigurationError(f"load_many must be callable, got {load_many!r}")
        if type is not None:
            core.codec.check_type(type)
        opts = core.resolve(ttl, options)
        tag_tuple = core.tags_of(tags)
        found, failed = self._get_or_set_many(pairs, load_many, opts, tag_tuple, type)
        if failed:
            raise next(iter(failed.values())).error
        return {k: found[k] for k, _ in pairs if k in found}

    def _get_or_set_many(
        self,
        pairs: list[tuple[str, str]],
        load_many: LoadMany[Any],
        opts: Resolved,
        tags: tuple[str, ...],
        type: Any,
    ) -> tuple[dict[str, Any], dict[str, KeyFailure]]:
        """The work of :meth:`get_or_set_many` (and of a loader's batch), arguments checked.

        Returns ``({key: value}, {key: KeyFailure})``: the keys found or loaded, and the keys
        that got no value because ``load_many`` failed (fail-safe had none to serve). A
        failure is per key, so the keys of the batch found in L1 or L2 keep their values.
        """
        found, missing = self._l1_get_many(pairs, opts, type)
        failures: dict[str, KeyFailure] = {}
        if not missing:
            return found, failures
        stale: dict[str, Stale] = {}
        if opts.fail_safe or opts.refreshes:
            rest = []
            for k, skey in missing:
                # A value past its refresh point (not its expiry) is served as get does; an
                # expired one is kept as the key's fail-safe candidate.
                value, old = serve_refreshing(self, skey, opts, type, None, tags)
                if value is not MISS:
                    found[k] = value
                    continue
                if old is not None:
                    stale[skey] = old
                rest.append((k, skey))
            missing = rest
            if not missing:
                return found, failures
        core = self._core
        user_key = dict((skey, k) for k, skey in missing)
        started = core.versions.current()

        def read(skeys: list[str]) -> dict[str, Any]:
            return self._l2_get_many(skeys, opts, type, stale)

        def load(skeys: list[str]) -> dict[str, Any]:
            return self._load_many(skeys, user_key, load_many, opts, tags, stale, started)

        with core.op("get_or_set_many", None, self._tenant):
            results = self._flights.run_many(list(user_key), read, load)
        for skey, value in results.items():
            if isinstance(value, KeyFailure):
                failures[user_key[skey]] = value
            else:
                found[user_key[skey]] = value if type is None else self._typed(value, type)
        return found, failures

    def _load_many(
        self,
        skeys: list[str],
        user_key: dict[str, str],
        load_many: LoadMany[Any],
        opts: Resolved,
        tags: tuple[str, ...],
        stale: dict[str, Stale],
        started: int,
    ) -> dict[str, Any]:
        """The batch flight's second phase: one ``load_many`` call, its values stored.

        A failure doesn't raise: each key it leaves without a value maps to a
        :class:`KeyFailure` (which the joiners of that key get too), so the batch's other keys
        keep their values. With fail-safe, a key whose ``load_many`` raised gets its stale
        value from ``stale`` instead.
        """
        core = self._core
        wanted = [user_key[s] for s in skeys]
        core.events.emit("factory_calls", key=None)
        try:
            try:
                with core.step("factory"):
                    loaded = self._runtime.call(lambda: load_many(wanted))
            except Exception as exc:
                core.events.emit("factory_errors", key=None, error=type(exc).__name__)
                failure = KeyFailure(exc)
                return {
                    s: self._serve_stale(s, stale[s], opts, tags, exc) if s in stale else failure
                    for s in skeys
                }
            # Not fail-safe: a load_many that returns no mapping is a mistake to show.
            if not isinstance(loaded, Mapping):
                raise ConfigurationError(
                    f"load_many must return a mapping, got {loaded.__class__.__name__}"
                )
            values = {s: loaded[user_key[s]] for s in skeys if user_key[s] in loaded}
            self._store_many(values, opts, tags, strict=False, started=started)
        except Exception as exc:
            failure = KeyFailure(exc)
            return dict.fromkeys(skeys, failure)
        return values

    def _serve_stale(
        self, skey: str, stale: Stale, opts: Resolved, tags: tuple[str, ...], exc: Exception
    ) -> Any:
        """The stale value of ``skey``, served because ``load_many`` raised ``exc``.

        Through the same rules as a ``get_or_set`` miss (counted, logged, throttled in L1).
        """
        work = Compute(self, skey, _no_factory, opts, tags, None, stale)
        return work._fall_back(exc, "factory_error")

    # -- writes ---------------------------------------------------------------------------------

    def set(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | timedelta | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
    ) -> None:
        """Store ``value`` under ``key`` in L1 and L2.

        Raises SerializationError / PayloadTooLargeError (nothing written) for a value the
        L2 can't hold.
        """
        self._runtime.check_open()
        core = self._core
        skey = core.storage_key(self._prefix, key)
        opts = core.resolve(ttl, options)
        tag_tuple = core.tags_of(tags)
        with core.op("set", key, self._tenant):
            self._store(skey, value, opts, tag_tuple, strict=True)

    def _store(
        self,
        skey: str,
        value: Any,
        opts: Resolved,
        tags: tuple[str, ...],
        *,
        strict: bool,
    ) -> None:
        self._epochs_for_writes(opts)
        self._commit(self._stage(skey, value, opts, tags, strict=strict))

    def _stage(
        self,
        skey: str,
        value: Any,
        opts: Resolved,
        tags: tuple[str, ...],
        *,
        strict: bool,
        cost: float = 0.0,
        started: int | None = None,
    ) -> Staged | None:
        """Encode ``value`` and put it in L1; return the L2 write still to do (or None).

        Encoding comes first: a value L2 can't hold raises before anything is stored.
        ``started``: the key's version when the computation of ``value`` began. If the key
        was written, removed or invalidated since (here, or on another node through the
        backplane), the value may predate that change (a read-through load racing a
        write-through save): it answers its callers but is stored nowhere.
        """
        if self._runtime.closed:
            return None  # a factory finishing while the cache closes: answer, write nothing
        core = self._core
        if started is not None and not core.versions.fill_ok(skey, started):
            return None  # computed from data older than a write of the key: not stored
        memory = None if opts.skip_memory else core.memory
        use_l2 = self._l2 is not None and not opts.skip_distributed
        version = core.versions.bump(skey)  # a read begun before this write must not refill L1
        if opts.ttl <= 0:  # "do not cache": drop any old value so it isn't served
            if memory is not None:
                memory.remove(skey)
            if not use_l2:
                return None
            # None: whatever L1 holds at the end (a read's refill) goes, as after a remove.
            return Staged(skey, None, 0.0, opts, version, NO_L1 if memory is None else None)
        now = time.time()
        ttl = opts.logical_ttl()
        expiry = now + ttl
        data = None
        if use_l2:
            data = core.encode(
                skey,
                value,
                created_at=now,
                logical_expiry=expiry,
                tags=tags,
                compress=opts.compress,
                encrypt=opts.encrypt,
                tenant=self._tenant,
                strict=strict,
            )
            if data is None:  # too large for L2: not stored at any level (see README)
                return None
        if memory is not None:
            plan = plan_l1(opts, now, expiry, tags, None, now, cost or self._core.cost)
            memory.set(
                skey,
                value,
                plan.ttl,
                meta=plan.meta,
                size_hint=None if data is None else len(data),
                stale_ttl=plan.stale_ttl,
            )
            if tags:
                core.index_tags(skey, self._tenant, tags)
        if data is None:
            return None
        held = NO_L1 if memory is None else memory._entry_of(skey)
        return Staged(skey, data, opts.physical_ttl(ttl, bool(tags)), opts, version, held)

    def _commit(self, staged: Staged | None) -> None:
        """Do the L2 write that :meth:`_stage` left (a set, or a delete for ``ttl=0``)."""
        if staged is None or self._l2 is None:
            return
        raise_errors = staged.opts.raise_distributed_errors
        background = staged.background
        if staged.data is None:
            self._l2.delete(staged.skey, raise_errors=raise_errors, background=background)
        else:
            self._l2.set(
                staged.skey,
                staged.data,
                staged.ttl,
                raise_errors=raise_errors,
                background=background,
            )
        self._check_landed(staged.skey, staged.version, staged.held)
        if self._bp is not None:
            action = Action.REMOVE if staged.data is None else Action.SET
            self._bp.publish(action, (staged.skey,))

    def set_many(
        self,
        items: Mapping[str, Any],
        *,
        ttl: float | timedelta | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
    ) -> None:
        """Store every ``{key: value}`` in L1 and, in one round trip, in L2.

        Raises SerializationError / PayloadTooLargeError for any value, with nothing written.
        """
        self._runtime.check_open()
        core = self._core
        if not isinstance(items, Mapping):
            raise ConfigurationError(f"set_many takes a mapping, got {items.__class__.__name__}")
        pairs = core.storage_keys(self._prefix, items.keys())
        opts = core.resolve(ttl, options)
        values = {skey: items[k] for k, skey in pairs}
        tag_tuple = core.tags_of(tags)
        with core.op("set_many", None, self._tenant):
            self._store_many(values, opts, tag_tuple, strict=True)

    def _store_many(
        self,
        values: dict[str, Any],
        opts: Resolved,
        tags: tuple[str, ...],
        *,
        strict: bool,
        started: int | None = None,
    ) -> None:
        """Store ``values`` (``{skey: value}``) in L1 and L2, as :meth:`_stage` does one."""
        if started is not None:
            fill_ok = self._core.versions.fill_ok
            values = {s: v for s, v in values.items() if fill_ok(s, started)}
        if self._runtime.closed or not values:
            return
        if opts.ttl <= 0:
            self._delete(list(values), opts)
            return
        core = self._core
        self._epochs_for_writes(opts)
        versions = {skey: core.versions.bump(skey) for skey in values}
        now = time.time()
        ttl = opts.logical_ttl()
        expiry = now + ttl
        encoded: dict[str, bytes | None] = {}
        if self._l2 is not None and not opts.skip_distributed:
            for skey, value in values.items():
                encoded[skey] = core.encode(
                    skey,
                    value,
                    created_at=now,
                    logical_expiry=expiry,
                    tags=tags,
                    compress=opts.compress,
                    encrypt=opts.encrypt,
                    tenant=self._tenant,
                    strict=strict,
                )
        memory = core.memory
        held: dict[str, object] = {}  # the L1 entry each write made (see _check_landed)
        if memory is not None and not opts.skip_memory:
            plan = plan_l1(opts, now, expiry, tags, None, now, core.cost)
            for skey, value in values.items():
                data = encoded.get(skey, b"")
                if data is None:
                    continue  # too large for L2: not stored at any level
                memory.set(
                    skey,
                    value,
                    plan.ttl,
                    meta=plan.meta,
                    size_hint=len(data) if data else None,
                    stale_ttl=plan.stale_ttl,
                )
                held[skey] = memory._entry_of(skey)
                if tags:
                    core.index_tags(skey, self._tenant, tags)
        physical = opts.physical_ttl(ttl, bool(tags))
        batch = [(s, d, physical) for s, d in encoded.items() if d is not None]
        if batch and self._l2 is not None:
            self._l2.set_many(
                batch,
                raise_errors=opts.raise_distributed_errors,
                background=opts.background_distributed_writes,
            )
            for skey, _, _ in batch:
                self._check_landed(skey, versions[skey], held.get(skey, NO_L1))
            if self._bp is not None:
                self._bp.publish(Action.SET, [s for s, _, _ in batch])

    def remove(self, key: str, *, options: EntryOptions | None = None) -> None:
        """Remove ``key`` from L1 and L2."""
        self._runtime.check_open()
        core = self._core
        skey = core.storage_key(self._prefix, key)
        opts = core.resolve(None, options)
        with core.op("remove", key, self._tenant):
            self._delete([skey], opts)

    def remove_many(
        self, keys: Iterable[str], *, options: EntryOptions | None = None
    ) -> None:
        """Remove every key from L1 and, in one round trip, from L2."""
        self._runtime.check_open()
        core = self._core
        pairs = core.storage_keys(self._prefix, keys)
        opts = core.resolve(None, options)
        with core.op("remove_many", None, self._tenant):
            self._delete([skey for _, skey in pairs], opts)

    def _delete(self, skeys: list[str], opts: Resolved) -> None:
        core = self._core
        memory = core.memory
        for skey in skeys:
            core.versions.bump(skey)
            if memory is not None and not opts.skip_memory:
                memory.remove(skey)
        if opts.skip_distributed or not skeys:
            return
        l2 = self._l2
        if l2 is not None:
            raise_errors = opts.raise_distributed_errors
            background = opts.background_distributed_writes
            try:
                if len(skeys) == 1:
                    l2.delete(skeys[0], raise_errors=raise_errors, background=background)
                else:
                    l2.delete_many(skeys, raise_errors=raise_errors, background=background)
            finally:
                self._forget_l1(skeys, opts)
        if self._bp is not None:
            self._bp.publish(Action.REMOVE, skeys)

    def _landed(self, operation: str, skeys: list[str], untrusted: list[str]) -> None:
        """Queued L2 operations landed (or, ``superseded``, were dropped as outdated).

        ``untrusted``: keys whose L1 entry may not be what the L2 holds. A replay happens long
        after its call, and a background write may have been overtaken by another node's:
        meanwhile this node's L1 may have taken another value (a read answered from its own
        queue, or from L2 after another node's write), so they are dropped from it. The other
        nodes hear of what landed.
        """
        core = self._core
        for skey in untrusted:
            core.invalidate(skey)
        if self._bp is not None and operation != "superseded":
            self._bp.written(operation, skeys)

    def _check_landed(self, skey: str, version: int, held: object) -> None:
        """After this node's write of ``skey`` (version ``version``) returned from L2.

        If the key was invalidated meanwhile (another node's write), a read here may have
        put that node's value in L1 while this write, which L2 now holds, was in flight:
        drop it, the next read goes to L2. Likewise if the L1 entry the write made
        (``held``) is no longer there (evicted, or not admitted): a read here then found L1
        empty and may have read the old value from L2, to put it in L1 before or after now.
        """
        core = self._core
        memory = core.memory
        if not core.versions.fill_ok(skey, version) or (
            held is not NO_L1
            and memory is not None
            and (held is None or memory._entry_of(skey) is not held)
        ):
            core.invalidate(skey)

    def _forget_l1(self, skeys: list[str], opts: Resolved) -> None:
        """After an L2 delete or expire: drop ``skeys`` from L1 again, refuse older fills.

        A read of the same key in this process during the L2 call found L1 empty and may have
        read the old value from L2 and put it back; its fill began before this bump, or
        its value is dropped now. (The backplane never tells a node of its own writes.)
        """
        core = self._core
        memory = None if opts.skip_memory else core.memory
        for skey in skeys:
            core.versions.bump(skey)
            if memory is not None:
                memory.remove(skey)

    def remove_by_tag(self, tag: str, *, options: EntryOptions | None = None) -> None:
        """Make every entry carrying ``tag`` stale, in L1 and L2, on every node.

        O(1) whatever the number of entries: one small record in L2 says when the tag was
        removed, and an entry created before it is a miss from then on (not served by
        fail-safe either). This node's L1 drops the tag's entries now; other nodes' L1s do
        when the backplane tells them (without a backplane, they keep them until their L1
        ttl, as for any write). Tags are per tenant: a view removes only its tenant's.

        Raises:
            ConfigurationError: ``tag`` is not a non-empty str (of at most 1024 bytes).

        """
        self._runtime.check_open()
        core = self._core
        (checked,) = core.tags_of((tag,))
        opts = core.resolve(None, options)
        with core.op("remove_by_tag", None, self._tenant):
            remove_by_tag(self, checked, opts)

    def clear(self, *, erase: bool = False, options: EntryOptions | None = None) -> None:
        """Make every entry of this cache stale (a tenant view: of its tenant only), in O(1).

        Like :meth:`remove_by_tag`, one record in L2 (never ``KEYS``, ``SCAN`` or
        ``FLUSHDB``): entries created before it are misses from then on, on every node. The
        root cache's clear covers its tenants too.

        ``erase=True`` (a codec that encrypts is required) also replaces the random epoch
        that the keys of this scope are derived from, so every entry written before is
        undecryptable at once, wherever a copy of it lies (replicas, snapshots): erasure of a
        tenant's cached data in O(1), e.g. for the GDPR. Entries are then unreadable even to
        someone holding the keyring, once the old epoch is gone from every node's memory
        (nodes learn the new one from the backplane, or from L2 within a second).

        Raises:
            ConfigurationError: ``erase=True`` on a cache whose codec doesn't encrypt.

        """
        self._runtime.check_open()
        if not isinstance(erase, bool):
            raise ConfigurationError(f"erase must be a bool, got {erase!r}")
        core = self._core
        opts = core.resolve(None, options)
        with core.op("clear", None, self._tenant):
            clear(self, erase, opts)

    def expire(self, key: str, *, options: EntryOptions | None = None) -> None:
        """Mark ``key`` stale: readers miss, but L2 keeps it (for fail-safe) until its TTL ends.

        The L2 entry is rewritten with its logical expiry set to now, atomically: if another
        node wrote a newer value meanwhile, that value is kept.
        """
        self._runtime.check_open()
        core = self._core
        skey = core.storage_key(self._prefix, key)
        opts = core.resolve(None, options)
        memory = core.memory
        core.versions.bump(skey)
        if memory is not None and not opts.skip_memory:
            memory.remove(skey)
        if opts.skip_distributed:
            return
        with core.op("expire", key, self._tenant):
            try:
                self._expire_l2(skey, opts)
            finally:
                self._forget_l1([skey], opts)
            if self._bp is not None:
                self._bp.publish(Action.EXPIRE, (skey,))

    def _expire_l2(self, skey: str, opts: Resolved) -> None:
        """Rewrite the L2 entry of ``skey`` as stale (see :meth:`expire`)."""
        core = self._core
        l2 = self._l2
        if l2 is None:
            return
        raise_errors = opts.raise_distributed_errors
        try:
            data = l2.get(skey, raise_errors=True)
        except DistributedCacheError:
            if raise_errors:
                raise
            # L2 unreachable: a delete (queued for when it answers) is the safe way to make
            # sure no node reads the value as fresh any more.
            l2.delete(skey)
            return
        if data is None:
            return
        dec = core.decode(skey, data, self._tenant, None)
        if dec is None:  # undecodable: nobody can use it, stale or not
            l2.delete(skey, raise_errors=raise_errors)
            return
        now = time.time()
        if dec.logical_expiry <= now:
            return
        header = core.codec.read_header(data)
        stale = core.encode(
            skey,
            dec.value,
            created_at=dec.created_at,
            logical_expiry=now,
            tags=dec.tags,
            compress=header.compressed,
            encrypt=header.encrypted,
            tenant=self._tenant,
            strict=False,
        )
        if stale is None:
            l2.delete(skey, raise_errors=raise_errors)
        else:
            l2.compare_and_set(skey, data, stale, raise_errors=raise_errors)

    # -- application surface: @cached (_decorator.py) -------------------------------------------

    def cached(
        self,
        ttl: float | timedelta | None = None,
        *,
        key: str | Callable[..., str] | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
        include_self: bool = False,
        type: Any = NOT_GIVEN,
    ) -> CachedDecorator:
        """Return a decorator that caches a function's results in this cache, by arguments.

        ::

            @cache.cached(ttl=60, tags=["users"])
            def get_user(uid: int) -> User: ...

            user = get_user(7)       # key "myapp.users.get_user:7" (module.qualname)
            get_user.invalidate(7)   # cache.remove(get_user.key(7))

        A call whose key misses runs the function through :meth:`get_or_set`: concurrent
        calls with the same arguments share one run, and ``ttl``, ``tags`` and ``options``
        (fail-safe, timeouts...) apply as they do there; the function may return an
        :class:`Entry` to adapt them. On an async cache the function may be ``async`` or
        not (calls are awaited either way); a sync cache takes sync functions only.

        Keys: by default ``{module}.{qualname}:`` and the arguments, bound as the function
        binds them (defaults applied, keyword order irrelevant) and encoded with their
        types (``1``, ``"1"``, ``1.0`` and ``True`` are four keys). Arguments may be None,
        bool, int, float, str, bytes, Decimal, UUID, datetime, date, time, timedelta, enums,
        classes, and tuples, lists, dicts, sets and frozensets of these; an object of another
        class can define ``__dataferry_key__()`` returning a str. Keys of over 256
        characters end in a digest of the arguments instead. ``self`` / ``cls`` (the first
        parameter, so named, of a function defined in a class) is left out, so all instances
        share entries, unless ``include_self=True`` (then the instance must be keyable).
        ``key="user:{uid}"`` is a ``str.format`` template of the parameters (``1`` and
        ``"1"`` give one key there); ``key=callable`` gets the call's arguments (``self``
        too, for a method) and returns the key.

        Values read from L2 are decoded into the function's return annotation (of an async
        function: the awaited type; ``Entry[T]``: ``T``), ``type=`` overrides it and
        ``type=None`` turns decoding off; no annotation, ``Any``, ``None`` or a TypeVar:
        none.

        The wrapper keeps the function's signature (for type checkers too) and has
        ``.invalidate(*args, **kwargs)``, ``.key(*args, **kwargs)`` (the key of a call,
        without namespace or tenant), ``.cache`` and ``__wrapped__``. Methods bind as
        methods: ``repo.get_user.invalidate(7)``. With ``@classmethod`` or
        ``@staticmethod``, put ``@cache.cached(...)`` above it (below works for calls; on
        Python 3.13+ a classmethod's ``.invalidate`` and ``.key`` need it above).

        Raises:
            ConfigurationError: A bad ``ttl``, ``tags``, ``options`` or ``key``; when a
                function is decorated: a generator function, a template field that names no
                parameter, a return type the codec can't decode into, an async function on
                a sync cache.
            InvalidKeyError: At a call, an argument default keys can't encode or a ``key``
                callable that returns no str (nothing is run or written).

        """
        self._runtime.check_open()
        return cached_decorator(self, ttl, key, tags, options, include_self, type)

    # -- application surface: loader (_loader.py) -----------------------------------------------

    def loader(
        self,
        load_many: LoadMany[T],
        *,
        ttl: float | timedelta | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
        type: type[T] | None = None,
        max_batch_size: int | None = None,
        window: float | timedelta | None = None,
    ) -> Loader[T]:
        """Return a batched loader (DataLoader style) of ``load_many`` over this cache.

        Concurrent ``loader.load(key)`` calls are coalesced into one batch: one L2 batch read
        of the L1 misses and one ``load_many`` call of the keys L2 lacks, each key still
        single-flight and fail-safe (see :class:`Loader`)::

            users = cache.loader(load_users, ttl=60)   # load_users(keys) -> {key: user}
            user = users.load(f"user:{uid}")     # in each of many concurrent tasks

        ``load_many(keys)`` (sync or async) returns a mapping, as for :meth:`get_or_set_many`;
        ``ttl``, ``tags``, ``options`` and ``type`` apply to every key loaded. A batch holds
        at most ``max_batch_size`` keys (``None``: no limit); the next keys form the next one.
        ``window``: how long a batch waits for more keys, unless it fills first (async: by
        default one iteration of the event loop; sync: by default, while another batch of the
        loader is loading, until one comes back (at most 1 ms), and none for a thread on its
        own).

        Raises:
            ConfigurationError: ``load_many`` not callable, a bad option, ttl or tag, a
                ``max_batch_size`` that is not an int >= 1, a negative ``window``.

        """
        self._runtime.check_open()
        return Loader(
            self,
            load_many,
            ttl=ttl,
            tags=tags,
            options=options,
            type=type,
            max_batch_size=max_batch_size,
            window=window,
        )

    # -- application surface: data sources (_datasource.py) -------------------------------------

    def through(
        self,
        source: SourceLike[K, T],
        *,
        prefix: str,
        ttl: float | timedelta | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
        type: type[T] | None = None,
        not_found_ttl: float | timedelta | None = None,
    ) -> CachedSource[K, T]:
        """Return ``source`` read and written through this cache (read- and write-through).

        ``users = cache.through(UserSource(), prefix="user")``, then ``users.get(7)``
        (cached under ``"user:7"``; a miss calls ``source.load(7)`` once for all concurrent
        callers), ``users.get_many(ids)`` (one ``source.load_many`` for the misses),
        ``users.save(7, user)`` (the source first, then the cache and the backplane:
        the cache never holds a value the source refused) and ``users.delete(7)``.
        See :class:`DataSource` for what a source is and :class:`CachedSource` for
        the details.

        Args:
            source: The data source (``load``, ``load_many``, ``save``, ``delete``).
            prefix: The start of every key: id ``7`` is cached as ``f"{prefix}:7"``. Ids are
                str, int or UUID.
            ttl: Seconds the values stay fresh (default: the cache's ``default_ttl``).
            tags: Tags of every entry (``remove_by_tag`` makes them all stale).
            options: Options of every read and write (fail-safe, timeouts, ``skip_memory``...).
            type: Decode values into this type (dataclass, pydantic model, msgspec Struct...),
                whichever level answers, as ``get_or_set(..., type=)`` does.
            not_found_ttl: Seconds a "not found" (``None`` from ``load``, an id left out by
                ``load_many``) stays cached; ``0`` doesn't cache it. Default: ``ttl``.

        Raises:
            ConfigurationError: ``source`` lacks one of the four methods, ``prefix`` is not a
                non-empty str, or ``ttl``, ``tags``, ``options``, ``type`` is invalid.

        """
        return CachedSource(
            self,
            source,
            prefix=prefix,
            ttl=ttl,
            tags=tags,
            options=options,
            type=type,
            not_found_ttl=not_found_ttl,
        )

    def __repr__(self) -> str:
        tenant = f", tenant={self._tenant!r}" if self._tenant else ""
        closed = ", closed" if self._runtime.closed else ""
        l2 = None if self._l2 is None else self._l2.backend
        return (
            f"{type(self).__name__}(namespace={self._core.namespace!r}{tenant}, "
            f"memory={self._core.memory!r}, distributed={l2!r}{closed})"
        )
