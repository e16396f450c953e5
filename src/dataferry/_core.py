"""What both facades share and that does no I/O: components, defaults, encode/decode, events.

:class:`AsyncDataFerry` and its generated twin :class:`DataFerry` keep only the I/O-shaped
control flow; everything else lives here once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from dataferry._backends import DistributedCache
from dataferry._codec import Codec, Decoded, DecodeError
from dataferry._errors import (
    ConfigurationError,
    DistributedCacheError,
    InvalidKeyError,
    PayloadTooLargeError,
)
from dataferry._events import CacheEvents, Stats
from dataferry._keys import check_id, check_key, key_prefix
from dataferry._memory import MemoryCache
from dataferry._options import Entry, EntryOptions, _check_seconds

__all__ = ["DEFAULT", "MISS", "Core", "logger"]

logger = logging.getLogger("dataferry")

#: Sentinel: "argument not given" (``memory`` defaults to a new MemoryCache, None means none).
DEFAULT: Any = type("_Default", (), {"__repr__": lambda self: "DEFAULT"})()
#: Sentinel for a cache miss, distinct from a cached ``None``.
MISS: Any = type("_Miss", (), {"__repr__": lambda self: "MISS"})()

#: Most tags one entry may carry (each is checked against every tag invalidation on read).
MAX_TAGS = 256


class Core:
    """Components and defaults shared by one cache and all of its tenant views."""

    __slots__ = (
        "_l2_down",
        "codec",
        "defaults",
        "events",
        "l2",
        "max_payload_bytes",
        "memory",
        "namespace",
    )

    def __init__(
        self,
        *,
        memory: MemoryCache | None,
        distributed: DistributedCache | None,
        codec: Codec | None,
        namespace: str,
        default_ttl: float,
        default_options: EntryOptions | None,
        max_payload_bytes: int,
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
        _check_seconds("default_ttl", default_ttl, allow_zero=False)
        if (
            isinstance(max_payload_bytes, bool)
            or not isinstance(max_payload_bytes, int)
            or max_payload_bytes < 1
        ):
            raise ConfigurationError(
                f"max_payload_bytes must be a positive int, got {max_payload_bytes!r}"
            )
        base = EntryOptions(
            ttl=float(default_ttl), skip_memory=False, skip_distributed=False
        ).merged(default_options)
        self.memory = memory
        self.l2 = distributed
        self.codec = codec if codec is not None else Codec()
        self.namespace = check_id(namespace, "namespace")
        self.defaults = base
        self.max_payload_bytes = max_payload_bytes
        self.events = CacheEvents()
        self._l2_down = False

    # -- keys and options -------------------------------------------------------------------

    def prefix(self, tenant: str | None) -> str:
        """Return the storage-key prefix for ``tenant`` (validated)."""
        if tenant is not None:
            check_id(tenant, "tenant id")
        return key_prefix(self.namespace, tenant)

    @staticmethod
    def storage_key(prefix: str, key: object) -> str:
        """Validate ``key`` and return its storage key."""
        return prefix + check_key(key)

    def storage_keys(self, prefix: str, keys: Iterable[object]) -> list[tuple[str, str]]:
        """Validate every key first (bad input raises before any I/O); return (key, skey)."""
        if isinstance(keys, (str, bytes)):
            raise InvalidKeyError("expected an iterable of keys, got a single str/bytes")
        out = []
        for key in keys:
            k = check_key(key)
            out.append((k, prefix + k))
        return out

    def resolve(self, ttl: float | None, options: EntryOptions | None) -> EntryOptions:
        """Merge the cache defaults, ``options`` and an explicit ``ttl`` (highest priority)."""
        if options is not None and not isinstance(options, EntryOptions):
            raise ConfigurationError(f"options must be EntryOptions, got {options!r}")
        opts = self.defaults.merged(options)
        if ttl is not None:
            _check_seconds("ttl", ttl)
            opts = opts.merged(EntryOptions(ttl=ttl))
        return opts

    @staticmethod
    def tags_of(tags: Iterable[str] | None) -> tuple[str, ...]:
        """Validate tags: an iterable of non-empty str (not a bare str)."""
        if tags is None:
            return ()
        if isinstance(tags, (str, bytes)):
            raise ConfigurationError("tags must be an iterable of str, not a single str")
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
        self, result: Any, opts: EntryOptions, tags: tuple[str, ...]
    ) -> tuple[Any, EntryOptions, tuple[str, ...]]:
        """Unwrap a factory's :class:`Entry` result into (value, options, tags)."""
        if type(result) is not Entry:
            return result, opts, tags
        if result.options is not None:
            opts = opts.merged(result.options)
        if result.ttl is not None:
            opts = opts.merged(EntryOptions(ttl=result.ttl))
        if result.tags is not None:
            tags = self.tags_of(result.tags)
        return result.value, opts, tags

    def use_memory(self, opts: EntryOptions) -> MemoryCache | None:
        """The L1 to use for a call with ``opts``, or None."""
        return None if opts.skip_memory else self.memory

    def use_l2(self, opts: EntryOptions) -> DistributedCache | None:
        """The L2 to use for a call with ``opts``, or None."""
        return None if opts.skip_distributed else self.l2

    # -- L1 -----------------------------------------------------------------------------------

    @staticmethod
    def l1_ttl(opts: EntryOptions, logical_expiry: float, now: float) -> float:
        """Seconds an entry may live in L1: what is left of its freshness, capped by l1_ttl."""
        left = logical_expiry - now
        if opts.l1_ttl is not None and opts.l1_ttl < left:
            return opts.l1_ttl
        return left

    # -- L2 bytes -----------------------------------------------------------------------------

    def encode(
        self,
        skey: str,
        value: Any,
        opts: EntryOptions,
        tags: tuple[str, ...],
        now: float,
        tenant: str | None,
        *,
        strict: bool,
    ) -> bytes | None:
        """Encode an entry for L2.

        Raises SerializationError for a value the codec can't encode. An entry larger than
        ``max_payload_bytes`` raises PayloadTooLargeError when ``strict`` (``set``), else is
        counted and skipped (``get_or_set`` returns the value without storing it).
        """
        assert opts.ttl is not None
        data = self.codec.encode(
            value,
            key=skey,
            created_at=now,
            logical_expiry=now + opts.ttl,
            tags=tags,
            compress=opts.compress,
            encrypt=opts.encrypt,
            tenant=tenant,
        )
        if len(data) > self.max_payload_bytes:
            if strict:
                raise PayloadTooLargeError(
                    f"encoded entry is {len(data)} bytes, over max_payload_bytes="
                    f"{self.max_payload_bytes}; nothing was written"
                )
            self.events.payload_too_large += 1
            logger.warning(
                "entry of %d bytes over max_payload_bytes=%d: returned, not stored",
                len(data),
                self.max_payload_bytes,
            )
            return None
        return data

    def decode(self, skey: str, data: bytes, tenant: str | None, type: Any) -> Decoded | None:
        """Decode L2 bytes; any fault is a miss (counted and logged without the value)."""
        try:
            return self.codec.decode(data, key=skey, tenant=tenant, type=type)
        except DecodeError as exc:
            self.events.emit("decode_errors", error=str(exc))
            logger.warning("undecodable L2 entry treated as a miss: %s", exc)
            return None

    def fresh(self, skey: str, data: bytes | None, tenant: str | None, type: Any) -> Any:
        """Return the decoded entry if ``data`` is fresh, else ``MISS``; counts L2 hit/miss."""
        if data is not None:
            dec = self.decode(skey, data, tenant, type)
            if dec is not None and dec.logical_expiry > time.time():
                self.events.distributed_hits += 1
                return dec
        self.events.distributed_misses += 1
        return MISS

    def l2_failed(self, operation: str, exc: DistributedCacheError) -> None:
        """Count and log an L2 failure (once per outage at warning level)."""
        self.events.emit("distributed_errors", operation=operation, error=type(exc).__name__)
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        if not self._l2_down:
            self._l2_down = True
            logger.warning(
                "distributed cache failed (%s: %s); answering from L1 and the factory",
                operation,
                cause,
            )
        else:
            logger.debug("distributed cache still failing (%s: %s)", operation, cause)

    def l2_ok(self) -> None:
        """Note a successful L2 call (logs recovery after an outage)."""
        if self._l2_down:
            self._l2_down = False
            logger.info("distributed cache answers again")

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
        return Stats(**counts)
