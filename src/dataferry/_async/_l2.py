"""The L2 accessor: the one door every distributed-cache call of a cache goes through.

A call passes down the cache's layers (``distributed_layers=``: timeouts, retries, circuit
breaker, telemetry, chaos for tests), then reaches the backend. Failures stop here: they are
counted (``distributed_errors``), logged once per outage, and turned into what a miss or a
skipped write looks like, so the facade never handles an L2 exception itself.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from dataferry._backends import DistributedCache
from dataferry._errors import DataFerryError, DistributedCacheError
from dataferry._events import CacheEvents
from dataferry._layers import DistributedLayer

__all__ = ["AsyncDistributedAccessor"]

logger = logging.getLogger("dataferry")

#: What a write returns from the guard when the L2 failed (a backend never returns it).
_FAILED: Any = object()


class AsyncDistributedAccessor:
    """Calls the L2 through the layers; failures are counted, logged, and become misses."""

    __slots__ = ("_backend", "_down", "_events", "_layers", "backend")

    def __init__(
        self,
        backend: DistributedCache,
        layers: Sequence[DistributedLayer],
        events: CacheEvents,
    ) -> None:
        self.backend = backend
        self._backend = backend
        self._layers = tuple(layers)
        self._events = events
        self._down = False

    async def _call(
        self, operation: str, keys: Sequence[str], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        for layer in reversed(self._layers):
            call = functools.partial(layer.arun, operation, keys, call)
        return await call()

    async def get(self, skey: str) -> bytes | None:
        """The bytes under ``skey``, or None (also when the L2 failed)."""
        try:
            if self._layers:
                data = await self._call("get", (skey,), lambda: self._backend.aget(skey))
            else:
                data = await self._backend.aget(skey)
        except Exception as exc:
            self._failed("get", exc)
            return None
        if self._down:
            self._recovered()
        return data  # type: ignore[no-any-return]

    async def get_many(self, skeys: list[str]) -> list[bytes | None]:
        """The bytes of each key in order (all None when the L2 failed)."""
        failed = [None] * len(skeys)
        found: list[bytes | None] = await self._guarded(
            "get_many", skeys, failed, self._backend.aget_many, skeys
        )
        return found

    async def set(self, skey: str, data: bytes, ttl: float) -> bool:
        """Store ``data`` for ``ttl`` seconds; whether the L2 took it."""
        result = await self._guarded("set", (skey,), _FAILED, self._backend.aset, skey, data, ttl)
        return result is not _FAILED

    async def set_many(self, batch: list[tuple[str, bytes, float]]) -> bool:
        """Store each ``(key, bytes, ttl)`` in one round trip; whether the L2 took them."""
        keys = [k for k, _, _ in batch]
        result = await self._guarded("set_many", keys, _FAILED, self._backend.aset_many, batch)
        return result is not _FAILED

    async def delete(self, skey: str) -> bool:
        """Delete ``skey``; whether the L2 answered."""
        result = await self._guarded("delete", (skey,), _FAILED, self._backend.adelete, skey)
        return result is not _FAILED

    async def delete_many(self, skeys: list[str]) -> bool:
        """Delete the keys in one round trip; whether the L2 answered."""
        result = await self._guarded(
            "delete_many", skeys, _FAILED, self._backend.adelete_many, skeys
        )
        return result is not _FAILED

    async def compare_and_set(self, skey: str, expected: bytes, data: bytes) -> bool:
        """Replace ``expected`` by ``data`` under ``skey`` atomically; whether it did."""
        done = await self._guarded(
            "compare_and_set", (skey,), False, self._backend.acompare_and_set, skey, expected, data
        )
        return bool(done)

    async def _guarded(
        self,
        operation: str,
        keys: Sequence[str],
        failed: Any,
        method: Callable[..., Awaitable[Any]],
        *args: Any,
    ) -> Any:
        """``method(*args)`` through the layers; ``failed`` if the L2 failed (counted)."""
        try:
            result = await self._call(operation, keys, lambda: method(*args))
        except Exception as exc:
            self._failed(operation, exc)
            return failed
        if self._down:
            self._recovered()
        return result

    async def aclose(self) -> None:
        """Release the backend's connections (failures are counted, not raised)."""
        try:
            await self._backend.aclose()
        except Exception as exc:
            self._failed("close", exc)

    def _failed(self, operation: str, exc: Exception) -> None:
        if isinstance(exc, DataFerryError) and not isinstance(exc, DistributedCacheError):
            raise exc  # a configuration mistake (e.g. no client for this half): the user's
        self._events.emit("distributed_errors", operation=operation, error=type(exc).__name__)
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        if not self._down:
            self._down = True
            logger.warning(
                "distributed cache failed (%s: %s: %s); answering from L1 and the factory",
                operation,
                type(cause).__name__,
                cause,
                extra={"dataferry_operation": operation},
            )
        else:
            logger.debug("distributed cache still failing (%s: %s)", operation, cause)

    def _recovered(self) -> None:
        self._down = False
        logger.info("distributed cache answers again")
