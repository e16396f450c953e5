"""What both facades share and that does no I/O: components, defaults, encode/decode, events.

:class:`AsyncDataFerry` and its generated twin :class:`DataFerry` keep only the I/O-shaped
control flow; everything else lives here once.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from dataferry._backends import DistributedCache
from dataferry._codec import Codec, Decoded, DecodeError
from dataferry._errors import (
    CacheClosedError,
    ConfigurationError,
    InvalidKeyError,
    PayloadTooLargeError,
)
from dataferry._events import CacheEvents, Stats
from dataferry._freshness import L1Meta
from dataferry._keys import check_key, check_namespace, check_tenant, key_prefix
from dataferry._logging import KeyLog
from dataferry._memory import MemoryCache
from dataferry._options import Entry, EntryOptions, seconds
from dataferry._resolve import Resolved, Resolver
from dataferry._scopes import Floor, Scopes, TagIndex
from dataferry._telemetry import NO_OPERATION, CacheTelemetry

__all__ = ["CLOSED_MEMORY", "DEFAULT", "MISS", "NO_L1", "Core", "L1Meta", "Versions", "logger"]

logger = logging.getLogger("dataferry")

#: Sentinel: "argument not given" (``memory`` defaults to a new MemoryCache, None means none).
DEFAULT: Any = type("_Default", (), {"__repr__": lambda self: "DEFAULT"})()
#: Sentinel for a cache miss, distinct from a cached ``None``.
MISS: Any = type("_Miss", (), {"__repr__": lambda self: "MISS"})()
#: Sentinel: a write that left L1 alone (no L1, or ``skip_memory``).
NO_L1: Any = type("_NoL1", (), {"__repr__": lambda self: "NO_L1"})()

#: Most tags one entry may carry (each is checked against every tag invalidation on read).
MAX_TAGS = 256


class _ClosedMemory:
    """What a closed cache's hot path finds instead of its L1: every lookup raises.

    Swapping this in at close costs the L1 hit path nothing, where an ``if closed`` would be
    paid by every hit.
    """

    __slots__ = ()

    def get(self, key: str, default: Any = None) -> Any:
        raise CacheClosedError("this cache is closed; create a new one")

    def get_entry(self, key: str) -> Any:
        raise CacheClosedError("this cache is closed; create a new one")


CLOSED_MEMORY: Any = _ClosedMemory()


class _ReportingMemory:
    """The L1 as the facades read it while something subscribes to hits and misses."""

    __slots__ = ("_events", "_memory")

    def __init__(self, memory: Any, events: CacheEvents) -> None:
        self._memory = memory
        self._events = events

    def get(self, key: str, default: Any = None) -> Any:
        value = self._memory.get(key, default)
        self._events.notify("memory_misses" if value is default else "memory_hits", key=key)
        return value

    def get_entry(self, key: str) -> Any:
        entry = self._memory.get_entry(key)
        self._events.notify("memory_misses" if entry is None else "memory_hits", key=key)
        return entry


NO_TELEMETRY: Any = NO_OPERATION


class Versions:
    """Invalidation versions per storage key, so a slow L2 read never refills L1 with old data.

    Every local write and every invalidation received from the backplane bumps its key's
    version; a read notes :meth:`current` before it asks L2, and fills L1 only if the key was
    not invalidated since (:meth:`fill_ok`). The table is bounded: keys that fall out of it
    leave their version in a floor that every key is compared with (a refused fill is only a
    lost L1 fill, never a wrong value). :meth:`distrust` refuses every fill begun before it.
    """

    __slots__ = ("_floor", "_keys", "_last", "_limit", "_lock")

    def __init__(self, limit: int = 10_000) -> None:
        # The limit bounds what the table costs (about 180 bytes per key: 1.8 MB), whatever
        # the L1's size: at 100,000 keys it was 18 bytes per entry of a 1M-entry L1. A read
        # loses its L1 fill to the floor only if more writes than that land while it waits
        # for L2 (10,000 within a 250 ms timeout is 40,000 writes/s in one process).
        # An OrderedDict, not a dict: the oldest key goes at every write once the table is
        # full, and a dict used as a queue piles up deleted entries at its front that finding
        # the first key steps over one by one (30 µs per write at 100,000 keys, measured).
        self._keys: OrderedDict[str, int] = OrderedDict()
        self._last = 0
        self._floor = 0
        self._limit = limit
        self._lock = threading.Lock()

    def current(self) -> int:
        """The latest version handed out (a read in progress compares with it)."""
        return self._last

    def bump(self, skey: str) -> int:
        """Record an invalidation of ``skey``; return its version."""
        with self._lock:
            self._last = version = self._last + 1
            keys = self._keys
            keys[skey] = version
            keys.move_to_end(skey)
            if len(keys) > self._limit:
                self._floor = keys.popitem(last=False)[1]
            return version

    def fill_ok(self, skey: str, started: int) -> bool:
        """Whether an L2 read of ``skey`` begun at version ``started`` may fill L1."""
        return self._keys.get(skey, self._floor) <= started

    def distrust(self) -> None:
        """Refuse the L1 fill of every read begun before now."""
        with self._lock:
            self._last += 1
            self._floor = self._last
            self._keys.clear()


class Core:
    """Components and defaults shared by one cache and all of its tenant views."""

    __slots__ = (
        "_hot_lock",
        "codec",
        "cost",
        "events",
        "join_timeout",
        "l2",
        "log",
        "max_payload_bytes",
        "memory",
        "namespace",
        "refreshing",
        "resolver",
        "scopes",
        "tag_index",
        "telemetry",
        "versions",
        "views",
    )

    def __init__(
        self,
        *,
        memory: MemoryCache | None,
        distributed: DistributedCache | None,
        codec: Codec | None,
        namespace: str,
        default_ttl: float | timedelta,
        default_options: EntryOptions | None,
        max_payload_bytes: int,
        join_timeout: float | timedelta,
    ) -> None:
        if memory is DEFAULT:
            memory = MemoryCache()
        if memory is not None and not isinstance(memory, MemoryCache):
            raise ConfigurationError(f"memory must be a MemoryCache or None, got {memory!r}")
        if distributed is not None and not isinstance(distributed, DistributedCache):
            raise ConfigurationError(
                f"distributed must be a DistributedCache (RedisCache, SQLiteCache...), "
                f"got {distributed!r}"
            )
        if codec is not None and not isinstance(codec, Codec):
            raise ConfigurationError(f"codec must be a Codec, got {codec!r}")
        if (
            isinstance(max_payload_bytes, bool)
            or not isinstance(max_payload_bytes, int)
            or max_payload_bytes < 1
        ):
            raise ConfigurationError(
                f"max_payload_bytes must be a positive int, got {max_payload_bytes!r}"
            )
        self.resolver = Resolver(default_ttl, default_options)
        self.join_timeout = seconds("join_timeout", join_timeout, allow_zero=False)
        self.memory = memory
        self.l2 = distributed
        self.codec = codec if codec is not None else Codec()
        self.namespace = check_namespace(namespace)
        self.max_payload_bytes = max_payload_bytes
        self.events = CacheEvents()
        # The root cache and its tenant views, so closing the cache closes every view.
        self.views: weakref.WeakSet[Any] = weakref.WeakSet()
        self.versions = Versions()
        self.scopes = Scopes(self.namespace)
        self._hot_lock = threading.Lock()
        self.log = KeyLog(self.namespace)
        self.tag_index = TagIndex()
        #: The cache's OpenTelemetry reporting (None: off); set by the facade.
        self.telemetry: CacheTelemetry | None = None
        # Storage keys with a background refresh running (eager refresh, XFetch): one each.
        self.refreshing: set[str] = set()
        # A moving average of factory durations (seconds): XFetch's cost for entries that
        # this process read from L2 rather than computed.
        self.cost = 0.0

    def invalidate(self, skey: str) -> None:
        """Another node changed ``skey``: drop it from L1, refuse fills of reads begun before."""
        self.versions.bump(skey)
        memory = self.memory
        if memory is not None:
            memory.remove(skey)

    def distrust(self) -> None:
        """L1 may have missed invalidations: empty it, refuse fills of reads begun before."""
        self.versions.distrust()
        memory = self.memory
        if memory is not None:
            memory.clear()
        self.tag_index.clear()
        self.scopes.forget()

    def drop_tag(self, name: str) -> None:
        """The tag record ``name`` changed: drop its L1 entries, refuse fills begun before.

        Every fill is refused, not only those of the tag's keys: a read in flight may carry
        the tag and not be in the index yet.
        """
        self.versions.distrust()
        memory = self.memory
        for skey in self.tag_index.pop(name):
            if memory is not None:
                memory.remove(skey)

    def drop_scope(self, tenant: str | None) -> None:
        """The namespace (``tenant`` None) or a tenant was cleared: drop its L1 entries."""
        self.versions.distrust()
        memory = self.memory
        if memory is not None:
            memory.remove_prefix(f"{self.namespace}:" if tenant is None else self.prefix(tenant))

    def index_tags(self, skey: str, tenant: str | None, tags: tuple[str, ...]) -> None:
        """Note that the L1 entry ``skey`` carries ``tags`` (see :class:`TagIndex`)."""
        memory = self.memory
        if memory is not None:
            self.tag_index.add(self.scopes.tag_names(tenant, tags), skey, memory)

    @property
    def hit_memory(self) -> Any:
        """What the facades' L1 lookups read: the L1, or wrappers that report each lookup.

        Hits and misses are events only while something subscribes to them, and spans only
        with ``Telemetry(trace_memory_hits=True)``: otherwise a hit pays for neither.
        """
        memory: Any = self.memory
        if memory is None:
            return None
        if self.events.hot:
            memory = _ReportingMemory(memory, self.events)
        telemetry = self.telemetry
        if telemetry is not None and telemetry.config.trace_memory_hits:
            memory = telemetry.traced(memory)
        return memory

    def listen_hot(self, delta: int) -> None:
        """One more (``+1``) or one less (``-1``) subscriber to hits, misses and evictions."""
        events = self.events
        with self._hot_lock:
            events.hot_listeners += delta
            hot = events.hot = events.hot_listeners > 0
            memory = self.memory
            if memory is not None:
                memory.on_evict = self._evicted if hot else None
            for view in list(self.views):
                view._rebind_memory()

    def _evicted(self, keys: list[str]) -> None:
        for key in keys:
            self.events.notify("evictions", key=key)

    def op(self, name: str, key: str | None = None, tenant: str | None = None) -> Any:
        """A context manager around an operation that goes past L1 (span and duration)."""
        telemetry = self.telemetry
        return NO_TELEMETRY if telemetry is None else telemetry.operation(name, key, tenant)

    def step(self, name: str, key: str | None = None) -> Any:
        """A context manager around a part of an operation (factory, lock wait, publish)."""
        telemetry = self.telemetry
        return NO_TELEMETRY if telemetry is None else telemetry.step(name, key)

    def record_cost(self, seconds: float) -> None:
        """Fold one factory duration into the moving average of :attr:`cost`."""
        self.cost = seconds if not self.cost else 0.9 * self.cost + 0.1 * seconds

    # -- keys and options -------------------------------------------------------------------

    def prefix(self, tenant: str | None) -> str:
        """Return the storage-key prefix for ``tenant`` (validated)."""
        if tenant is not None:
            check_tenant(tenant)
        return key_prefix(self.namespace, tenant)

    @staticmethod
    def storage_key(prefix: str, key: object) -> str:
        """Validate ``key`` and return its storage key."""
        return prefix + check_key(key)

    @staticmethod
    def check_keys(keys: Iterable[object]) -> list[str]:
        """Validate every key first (bad input raises before any I/O); return them as a list."""
        if isinstance(keys, (str, bytes)):
            raise InvalidKeyError("expected an iterable of keys, got a single str/bytes")
        if not isinstance(keys, Iterable):
            raise InvalidKeyError(f"expected an iterable of keys, got {type(keys).__name__}")
        out: list[Any] = list(keys)
        for key in out:
            # The common key (a short ASCII str) is checked inline; check_key does the rest.
            if key.__class__ is not str or not 0 < len(key) <= 256 or not key.isascii():
                return [check_key(k) for k in out]
        return out

    @classmethod
    def storage_keys(cls, prefix: str, keys: Iterable[object]) -> list[tuple[str, str]]:
        """Validate every key first (bad input raises before any I/O); return (key, skey)."""
        return [(key, prefix + key) for key in cls.check_keys(keys)]

    def resolve(self, ttl: float | timedelta | None, options: EntryOptions | None) -> Resolved:
        """Merge the cache defaults, ``options`` and an explicit ``ttl`` (highest priority)."""
        return self.resolver.resolve(ttl, options)

    @staticmethod
    def tags_of(tags: Iterable[str] | None) -> tuple[str, ...]:
        """Validate tags: an iterable of non-empty str (not a bare str)."""
        if tags is None:
            return ()
        if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
            raise ConfigurationError(f"tags must be an iterable of str, got {tags!r}")
        out = tuple(tags)
        if len(out) > MAX_TAGS:
            raise ConfigurationError(f"at most {MAX_TAGS} tags per entry, got {len(out)}")
        for t in out:
            if not isinstance(t, str) or not t or len(t.encode("utf-8", "replace")) > 1024:
                raise ConfigurationError(f"tags must be non-empty str of <= 1024 bytes: {t!r}")
            if not t.isascii():
                try:
                    t.encode("utf-8")
                except UnicodeEncodeError:
                    raise ConfigurationError(f"tags must be valid Unicode: {t!r}") from None
        return out

    def adapt(
        self, result: Any, opts: Resolved, tags: tuple[str, ...]
    ) -> tuple[Any, Resolved, tuple[str, ...]]:
        """Unwrap a factory's :class:`Entry` result into (value, options, tags)."""
        if type(result) is not Entry:
            return result, opts, tags
        opts = self.resolver.adapt(result, opts)
        if result.tags is not None:
            tags = self.tags_of(result.tags)
        return result.value, opts, tags

    # -- typed values -------------------------------------------------------------------------

    def typed(self, value: Any, meta: Any, tp: Any) -> Any:
        """``value`` as the type ``tp`` asks for, as L2 would return it; ``MISS`` if it can't be.

        A value decoded from L2 into ``tp`` (recorded in its L1 metadata) or an instance of
        the class ``tp`` is returned as it is; anything else (a live dict cached by ``set``,
        a value decoded without ``type=``) goes through the serializer and back into ``tp``,
        exactly what a read from L2 would do.
        """
        if meta is not None and meta.type is not None and meta.type == tp:
            return value
        if isinstance(tp, type) and isinstance(value, tp):
            return value
        serializer = self.codec.serializer
        try:
            return serializer.loads(serializer.dumps(value), tp)
        except Exception:
            logger.debug("cached value does not fit the requested type %r: a miss", tp)
            return MISS

    # -- L2 bytes -----------------------------------------------------------------------------

    def encode(
        self,
        skey: str,
        value: Any,
        *,
        created_at: float,
        logical_expiry: float,
        tags: tuple[str, ...],
        compress: bool | None,
        encrypt: bool | None,
        tenant: str | None,
        strict: bool,
    ) -> bytes | None:
        """Encode an entry for L2.

        Raises SerializationError for a value the codec can't encode. An entry larger than
        the limits raises PayloadTooLargeError when ``strict`` (``set``), else is counted and
        skipped (``get_or_set`` returns the value without storing it).
        """
        try:
            data = self.codec.encode(
                value,
                key=skey,
                created_at=created_at,
                logical_expiry=logical_expiry,
                tags=tags,
                compress=compress,
                encrypt=encrypt,
                tenant=self.scopes.kdf_scope(tenant),
            )
            if len(data) > self.max_payload_bytes:
                raise PayloadTooLargeError(
                    f"encoded entry is {len(data)} bytes, over max_payload_bytes="
                    f"{self.max_payload_bytes}; nothing was written"
                )
        except PayloadTooLargeError as exc:
            if strict:
                raise
            self.events.payload_too_large += 1
            self.log.warn("payload_too_large", "entry {key} not stored: %s", exc, key=skey)
            return None
        return data

    def decode(
        self, skey: str, data: bytes, tenant: str | None, type: Any, floor: Floor | None = None
    ) -> Decoded | None:
        """Decode L2 bytes; any fault is a miss (counted and logged, never with the value).

        An entry created at or before ``floor.at`` (the latest clear of its scope) is a miss
        too, found from its header without decoding (or decrypting) it.
        """
        codec = self.codec
        if floor is None:
            floor = self.scopes.floor(tenant)
        if floor.at:
            created = codec.created_at(data)
            if created is not None and created <= floor.at:
                return None
        try:
            return codec.decode(data, key=skey, tenant=floor.kdf, type=type)
        except DecodeError as exc:
            self._undecodable(skey, str(exc))
            return None

    def _undecodable(self, skey: str, error: str) -> None:
        self.events.emit("decode_errors", key=skey, error=error)
        self.log.warn(
            "decode_error", "undecodable L2 entry {key} treated as a miss: %s", error, key=skey
        )

    def fresh(
        self,
        skey: str,
        data: bytes | None,
        tenant: str | None,
        type: Any,
        floor: Floor | None = None,
    ) -> Any:
        """Return the decoded entry if ``data`` is fresh, else ``MISS``; counts L2 hit/miss.

        An entry with tags is not counted yet: the caller checks its tags, then calls
        :meth:`counted`.
        """
        if data is not None:
            dec = self.decode(skey, data, tenant, type, floor)
            if dec is not None and dec.logical_expiry > time.time():
                if not dec.tags:
                    self.counted(skey, True)
                return dec
        self.counted(skey, False)
        return MISS

    def counted(self, skey: str, hit: bool) -> None:
        """Count one L2 lookup of ``skey`` as a hit or a miss (and tell subscribers)."""
        events = self.events
        if hit:
            events.distributed_hits += 1
        else:
            events.distributed_misses += 1
        if events.hot:
            events.notify("distributed_hits" if hit else "distributed_misses", key=skey)

    def fresh_many(
        self,
        skeys: list[str],
        blobs: list[bytes | None],
        tenant: str | None,
        type: Any,
        floor: Floor | None = None,
    ) -> list[tuple[str, Decoded, int]]:
        """``(skey, entry, stored size)`` of the fresh entries of a batch read, in order.

        :meth:`fresh` for many keys at once: one clock read, one codec call for the batch
        (:meth:`Codec.decode_many`); undecodable entries are misses, counted and logged.
        """
        if floor is None:
            floor = self.scopes.floor(tenant)
        found, failed = self.codec.decode_many(
            skeys,
            blobs,
            tenant=floor.kdf,
            type=type,
            fresh_after=time.time(),
            created_after=floor.at,
        )
        for skey, error in failed:
            self._undecodable(skey, error)
        # Entries with tags are counted by the caller once their tags are checked.
        hits = {skey for skey, dec, _ in found if not dec.tags}
        events = self.events
        events.distributed_hits += len(hits)
        events.distributed_misses += len(skeys) - len(found)
        if events.hot:
            self._report(skeys, hits, {skey for skey, dec, _ in found if dec.tags})
        return found

    def fresh_values(
        self,
        skeys: list[str],
        blobs: list[bytes | None],
        keys: list[str],
        tenant: str | None,
        type: Any,
        floor: Floor | None = None,
        tagged: list[tuple[Any, float, tuple[str, ...]]] | None = None,
    ) -> dict[str, Any]:
        """``{keys[i]: value}`` of the fresh entries of a batch read (``skeys[i]``'s bytes).

        :meth:`fresh_many` for a read that fills no L1: values only, keyed by the caller's
        keys (:meth:`Codec.decode_values`), so nothing is built per entry but the value.
        """
        if floor is None:
            floor = self.scopes.floor(tenant)
        values, hits, failed = self.codec.decode_values(
            skeys,
            blobs,
            keys,
            tenant=floor.kdf,
            type=type,
            fresh_after=time.time(),
            created_after=floor.at,
            tagged=tagged,
        )
        for skey, error in failed:
            self._undecodable(skey, error)
        events = self.events
        later = len(tagged) if tagged is not None else 0  # counted by the caller (tags)
        events.distributed_hits += hits - later
        events.distributed_misses += len(skeys) - hits
        if events.hot:
            names = {name for name, _, _ in tagged or ()}
            found = {s for s, name in zip(skeys, keys, strict=True) if name in values}
            pending = {s for s, name in zip(skeys, keys, strict=True) if name in names}
            self._report(skeys, found - pending, pending)
        return values

    def _report(self, skeys: list[str], hits: set[str], later: set[str]) -> None:
        # A batch's hits and misses, one event each (only while something subscribes);
        # ``later``: entries with tags, reported by the caller once they are checked.
        notify = self.events.notify
        for skey in skeys:
            if skey not in later:
                notify("distributed_hits" if skey in hits else "distributed_misses", key=skey)

    # -- stats --------------------------------------------------------------------------------

    def stats(self) -> Stats:
        """Snapshot of the counters of this cache and its L1."""
        counts: dict[str, int] = self.events.counts()
        mem = self.memory
        if mem is not None:
            m = mem.stats()
            counts.update(
                memory_hits=m.hits,
                memory_misses=m.misses,
                memory_entries=m.entries,
                memory_weight=m.weight,
                memory_evictions_size=m.evictions_size,
                memory_evictions_expired=m.evictions_expired,
            )
        return Stats(**counts, backplane_latency=self.events.latency())
