# GENERATED from src/dataferry/_async/_facade.py by scripts/unasync.py: do not edit.
"""DataFerry: the async facade (the sync ``DataFerry`` is generated from this file)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from dataferry._backends import DistributedCache
from dataferry._callables import Factory, LoadMany, call
from dataferry._codec import Codec
from dataferry._core import DEFAULT, MISS, Core
from dataferry._errors import ConfigurationError, DistributedCacheError, InvalidKeyError
from dataferry._events import Stats
from dataferry._memory import MemoryCache
from dataferry._options import EntryOptions
from dataferry._singleflight import SingleFlight

if TYPE_CHECKING:
    from dataferry._builder import Builder

__all__ = ["DataFerry"]

T = TypeVar("T")


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
        default_ttl: Seconds an entry stays fresh when a call gives no ttl.
        default_options: Defaults for every :class:`EntryOptions` field.
        max_payload_bytes: Largest encoded entry written to L2 (default 8 MiB).

    L1 hands every caller the same object: treat cached values as immutable (or build the
    MemoryCache with ``copy_on_read=True``). ``None`` is a value and is cached.

    """

    __slots__ = ("_core", "_flights", "_l2", "_memory", "_prefix", "_tenant")

    def __init__(
        self,
        *,
        memory: MemoryCache | None = DEFAULT,
        distributed: DistributedCache | None = None,
        codec: Codec | None = None,
        namespace: str = "dataferry",
        default_ttl: float = 300.0,
        default_options: EntryOptions | None = None,
        max_payload_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        core = Core(
            memory=memory,
            distributed=distributed,
            codec=codec,
            namespace=namespace,
            default_ttl=default_ttl,
            default_options=default_options,
            max_payload_bytes=max_payload_bytes,
        )
        self._bind(core, SingleFlight(core.events), None)

    def _bind(self, core: Core, flights: SingleFlight, tenant: str | None) -> None:
        self._core = core
        self._flights = flights
        self._tenant = tenant
        self._prefix = core.prefix(tenant)
        # Hot-path copies: attribute loads on self are cheaper than core.memory chains.
        self._memory = core.memory
        self._l2 = core.l2

    @classmethod
    def builder(cls) -> Builder[Any]:
        """Return a fluent :class:`Builder` for this cache type."""
        from dataferry._builder import Builder

        return Builder(cls)

    def tenant(self, tenant_id: str) -> DataFerry:
        """Return a view with the same API whose keys (and keys of encryption) are the tenant's.

        Views share the L1, L2, codec and counters; their storage keys are
        ``{namespace}:t:{tenant}:{key}``, so tenants can never read each other's entries.
        """
        view = object.__new__(type(self))
        view._bind(self._core, self._flights, tenant_id)
        return view

    @property
    def namespace(self) -> str:
        """The namespace of every storage key."""
        return self._core.namespace

    @property
    def tenant_id(self) -> str | None:
        """The tenant of this view, or None for the root cache."""
        return self._tenant

    def stats(self) -> Stats:
        """Return a snapshot of hits and misses per level, factory calls, joins, errors..."""
        return self._core.stats()

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> DataFerry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the L2's connections (the L1 is kept; a closed cache may be reopened)."""
        if self._l2 is not None:
            try:
                self._l2.close()
            except DistributedCacheError as exc:
                self._core.l2_failed("close", exc)

    # -- reads ----------------------------------------------------------------------------------

    def get_or_set(
        self,
        key: str,
        factory: Factory[T],
        *,
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
        type: Any = None,
    ) -> T:
        """Return the cached value for ``key``, computing it with ``factory()`` on a miss.

        Concurrent callers of a missing key share one ``factory()`` call; its exception reaches
        every one of them and is not cached. ``factory`` may be sync or async and may return an
        :class:`Entry` to adapt its own ttl/tags. ``type`` decodes L2 data into that class.
        """
        memory = self._memory
        if memory is not None and options is None:
            # Fast path: only valid keys are ever stored, so a hit needs no validation.
            try:
                value = memory.get(self._prefix + key, MISS)
            except TypeError:
                raise InvalidKeyError(
                    f"cache keys must be str, not {key.__class__.__name__}"
                ) from None
            if value is not MISS:
                return value  # type: ignore[no-any-return]
            return self._get_or_set(key, factory, ttl, tags, options, type, False)
        return self._get_or_set(key, factory, ttl, tags, options, type, True)

    def _get_or_set(
        self,
        key: str,
        factory: Factory[T],
        ttl: float | None,
        tags: Iterable[str] | None,
        options: EntryOptions | None,
        type: Any,
        check_memory: bool,
    ) -> T:
        core = self._core
        skey = core.storage_key(self._prefix, key)
        opts = core.resolve(ttl, options)
        tag_tuple = core.tags_of(tags)
        memory = core.use_memory(opts)
        if check_memory and memory is not None:
            value = memory.get(skey, MISS)
            if value is not MISS:
                return value  # type: ignore[no-any-return]

        def read() -> Any:
            return self._read_l2(skey, opts, type)

        def produce() -> Any:
            return self._produce(skey, factory, opts, tag_tuple)

        result: T = self._flights.run(skey, read, produce)
        return result

    def _read_l2(self, skey: str, opts: EntryOptions, type: Any) -> Any:
        """The flight's first phase: a fresh L2 entry (also put in L1), or MISS."""
        core = self._core
        if core.use_l2(opts) is None:
            return MISS
        dec = core.fresh(skey, self._l2_get(skey), self._tenant, type)
        if dec is MISS:
            return MISS
        memory = core.use_memory(opts)
        if memory is not None:
            memory.set(skey, dec.value, core.l1_ttl(opts, dec.logical_expiry, time.time()))
        return dec.value

    def _produce(
        self,
        skey: str,
        factory: Factory[Any],
        opts: EntryOptions,
        tags: tuple[str, ...],
    ) -> Any:
        """The flight's second phase, on a miss: run the factory and store its value."""
        core = self._core
        core.events.factory_calls += 1
        try:
            result = call(factory)
        except Exception:
            core.events.factory_errors += 1
            raise
        value, opts, tags = core.adapt(result, opts, tags)
        self._store(skey, value, opts, tags, strict=False)
        return value

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
        if memory is not None and options is None:
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
        core = self._core
        skey = core.storage_key(self._prefix, key)
        opts = core.resolve(None, options)
        memory = core.use_memory(opts)
        if check_memory and memory is not None:
            value = memory.get(skey, MISS)
            if value is not MISS:
                return value
        return self._read_l2(skey, opts, type)

    def exists(self, key: str, *, options: EntryOptions | None = None) -> bool:
        """Return whether ``key`` holds a fresh value in L1 or L2."""
        return self._read(key, options, None, True) is not MISS

    def get_many(
        self,
        keys: Iterable[str],
        *,
        options: EntryOptions | None = None,
        type: Any = None,
    ) -> dict[str, Any]:
        """Return ``{key: value}`` for the keys that hit (L1 first, then one L2 round trip)."""
        core = self._core
        pairs = core.storage_keys(self._prefix, keys)
        opts = core.resolve(None, options)
        memory = core.use_memory(opts)
        found: dict[str, Any] = {}
        missing: list[tuple[str, str]] = []
        for k, skey in pairs:
            value = MISS if memory is None else memory.get(skey, MISS)
            if value is MISS:
                missing.append((k, skey))
            else:
                found[k] = value
        if missing and core.use_l2(opts) is not None:
            blobs = self._l2_get_many([skey for _, skey in missing])
            now = time.time()
            for (k, skey), data in zip(missing, blobs, strict=True):
                dec = core.fresh(skey, data, self._tenant, type)
                if dec is not MISS:
                    found[k] = dec.value
                    if memory is not None:
                        memory.set(skey, dec.value, core.l1_ttl(opts, dec.logical_expiry, now))
        return {k: found[k] for k, _ in pairs if k in found}

    def get_or_set_many(
        self,
        keys: Iterable[str],
        load_many: LoadMany,
        *,
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
        type: Any = None,
    ) -> dict[str, Any]:
        """Return ``{key: value}`` for ``keys``, loading the misses with one call.

        ``load_many(missing_keys)`` (sync or async) returns a mapping; keys it leaves out are
        absent from the result and not cached.
        """
        core = self._core
        keys = [k for k, _ in core.storage_keys(self._prefix, keys)]
        found = self.get_many(keys, options=options, type=type)
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if not missing:
            return found
        core.events.factory_calls += 1
        try:
            loaded = call(lambda: load_many(missing))
        except Exception:
            core.events.factory_errors += 1
            raise
        if not isinstance(loaded, Mapping):
            raise ConfigurationError(
                f"load_many must return a mapping, got {loaded.__class__.__name__}"
            )
        wanted = {k: loaded[k] for k in missing if k in loaded}
        self._store_many(wanted, ttl, tags, options, strict=False)
        found.update(wanted)
        return {k: found[k] for k in dict.fromkeys(keys) if k in found}

    # -- writes ---------------------------------------------------------------------------------

    def set(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
    ) -> None:
        """Store ``value`` under ``key`` in L1 and L2.

        Raises SerializationError / PayloadTooLargeError (nothing written) for a value the
        L2 can't hold.
        """
        core = self._core
        skey = core.storage_key(self._prefix, key)
        opts = core.resolve(ttl, options)
        self._store(skey, value, opts, core.tags_of(tags), strict=True)

    def _store(
        self,
        skey: str,
        value: Any,
        opts: EntryOptions,
        tags: tuple[str, ...],
        *,
        strict: bool,
    ) -> None:
        core = self._core
        assert opts.ttl is not None
        if opts.ttl <= 0:  # "do not cache": drop any old value so it isn't served
            self._delete(skey, opts)
            return
        now = time.time()
        data = None
        if core.use_l2(opts) is not None:
            # Encode before writing anything: a value L2 can't hold raises with nothing stored.
            data = core.encode(skey, value, opts, tags, now, self._tenant, strict=strict)
        memory = core.use_memory(opts)
        if memory is not None:
            memory.set(skey, value, core.l1_ttl(opts, now + opts.ttl, now))
        if data is not None:
            self._l2_set(skey, data, opts.ttl)

    def set_many(
        self,
        items: Mapping[str, Any],
        *,
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
        options: EntryOptions | None = None,
    ) -> None:
        """Store every ``{key: value}`` in L1 and, in one round trip, in L2."""
        self._store_many(items, ttl, tags, options, strict=True)

    def _store_many(
        self,
        items: Mapping[str, Any],
        ttl: float | None,
        tags: Iterable[str] | None,
        options: EntryOptions | None,
        *,
        strict: bool,
    ) -> None:
        core = self._core
        if not isinstance(items, Mapping):
            raise ConfigurationError(f"set_many takes a mapping, got {items.__class__.__name__}")
        pairs = core.storage_keys(self._prefix, items.keys())
        opts = core.resolve(ttl, options)
        tag_tuple = core.tags_of(tags)
        assert opts.ttl is not None
        if opts.ttl <= 0:
            self._delete_many([skey for _, skey in pairs], opts)
            return
        now = time.time()
        batch: list[tuple[str, bytes, float]] = []
        if core.use_l2(opts) is not None:
            for k, skey in pairs:
                data = core.encode(
                    skey, items[k], opts, tag_tuple, now, self._tenant, strict=strict
                )
                if data is not None:
                    batch.append((skey, data, opts.ttl))
        memory = core.use_memory(opts)
        if memory is not None:
            l1_ttl = core.l1_ttl(opts, now + opts.ttl, now)
            for k, skey in pairs:
                memory.set(skey, items[k], l1_ttl)
        if batch:
            self._l2_set_many(batch)

    def remove(self, key: str, *, options: EntryOptions | None = None) -> None:
        """Remove ``key`` from L1 and L2."""
        core = self._core
        self._delete(core.storage_key(self._prefix, key), core.resolve(None, options))

    def remove_many(
        self, keys: Iterable[str], *, options: EntryOptions | None = None
    ) -> None:
        """Remove every key from L1 and, in one round trip, from L2."""
        core = self._core
        pairs = core.storage_keys(self._prefix, keys)
        self._delete_many([skey for _, skey in pairs], core.resolve(None, options))

    def expire(self, key: str, *, options: EntryOptions | None = None) -> None:
        """Mark ``key`` stale: readers miss, but L2 keeps it (for fail-safe) until its TTL ends."""
        core = self._core
        skey = core.storage_key(self._prefix, key)
        opts = core.resolve(None, options)
        memory = core.use_memory(opts)
        if memory is not None:
            memory.remove(skey)
        l2 = core.use_l2(opts)
        if l2 is None:
            return
        data = self._l2_get(skey)
        if data is None:
            return
        dec = core.decode(skey, data, self._tenant, None)
        if dec is None:
            self._delete(skey, opts)
            return
        now = time.time()
        if dec.logical_expiry <= now:
            return
        stale = core.codec.encode(
            dec.value,
            key=skey,
            created_at=dec.created_at,
            logical_expiry=now,
            tags=dec.tags,
            tenant=self._tenant,
        )
        try:
            l2.replace(skey, stale)
            core.l2_ok()
        except DistributedCacheError as exc:
            core.l2_failed("replace", exc)

    # -- L2 calls: errors are counted, logged and become misses -----------------------------

    def _delete(self, skey: str, opts: EntryOptions) -> None:
        core = self._core
        memory = core.use_memory(opts)
        if memory is not None:
            memory.remove(skey)
        l2 = core.use_l2(opts)
        if l2 is not None:
            try:
                l2.delete(skey)
                core.l2_ok()
            except DistributedCacheError as exc:
                core.l2_failed("delete", exc)

    def _delete_many(self, skeys: list[str], opts: EntryOptions) -> None:
        core = self._core
        memory = core.use_memory(opts)
        if memory is not None:
            for skey in skeys:
                memory.remove(skey)
        l2 = core.use_l2(opts)
        if l2 is not None and skeys:
            try:
                l2.delete_many(skeys)
                core.l2_ok()
            except DistributedCacheError as exc:
                core.l2_failed("delete_many", exc)

    def _l2_get(self, skey: str) -> bytes | None:
        assert self._l2 is not None
        try:
            data = self._l2.get(skey)
        except DistributedCacheError as exc:
            self._core.l2_failed("get", exc)
            return None
        self._core.l2_ok()
        return data

    def _l2_get_many(self, skeys: list[str]) -> list[bytes | None]:
        assert self._l2 is not None
        try:
            data = self._l2.get_many(skeys)
        except DistributedCacheError as exc:
            self._core.l2_failed("get_many", exc)
            return [None] * len(skeys)
        self._core.l2_ok()
        return data

    def _l2_set(self, skey: str, data: bytes, ttl: float) -> None:
        assert self._l2 is not None
        try:
            self._l2.set(skey, data, ttl)
        except DistributedCacheError as exc:
            self._core.l2_failed("set", exc)
            return
        self._core.l2_ok()

    def _l2_set_many(self, batch: list[tuple[str, bytes, float]]) -> None:
        assert self._l2 is not None
        try:
            self._l2.set_many(batch)
        except DistributedCacheError as exc:
            self._core.l2_failed("set_many", exc)
            return
        self._core.l2_ok()

    def __repr__(self) -> str:
        tenant = f", tenant={self._tenant!r}" if self._tenant else ""
        return (
            f"{type(self).__name__}(namespace={self._core.namespace!r}{tenant}, "
            f"memory={self._memory!r}, distributed={self._l2!r})"
        )
