# GENERATED from src/dataferry/_async/_l2.py by scripts/unasync.py: do not edit.
"""The L2 accessor: the one door every distributed-cache call of a cache goes through.

A call passes through the cache's resilience policy (:class:`~dataferry.Resilience`: a
timeout, retries for reads, a circuit breaker), then down the cache's layers
(``distributed_layers=``: telemetry, chaos for tests...), then reaches the backend. Failures
stop here: they are counted (``distributed_errors``), logged once per outage, failed writes
are queued for auto-recovery (``_recovery.py``), and the failure is turned into what a miss or
a skipped write looks like, so the facade never handles an L2 exception itself, unless it asks
for it with ``raise_errors=True``.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from dataferry._sync._recovery import CAS, DELETE, NOT_QUEUED, SET, L2Writer, Op
from dataferry._backends import DistributedCache
from dataferry._core import Versions
from dataferry._errors import CircuitOpenError, DataFerryError, DistributedCacheError
from dataferry._events import CacheEvents
from dataferry._layers import DistributedLayer
from dataferry._resilience import CLOSED, Timeouts, CircuitBreaker, Resilience
from dataferry._synchronization import Batcher, Cancelled, Runtime
from dataferry._telemetry import NO_OPERATION as NO_STEP

__all__ = ["DistributedAccessor"]

logger = logging.getLogger("dataferry")

#: Most queued background writes (with a value) when auto-recovery is off.
_BACKGROUND_BOUND = 10_000
#: Most keys in one coalesced read (one MGET): a bigger crowd of readers makes more batches.
_COALESCED_MAX = 512


class DistributedAccessor:
    """Calls the L2 through the resilience policy and the layers; failures become misses."""

    __slots__ = (
        "_backend",
        "_backoff",
        "_batcher",
        "_breaker",
        "_close_timeout",
        "_dirty",
        "_down",
        "_events",
        "_layers",
        "_retries",
        "_step",
        "_timeouts",
        "_writer",
        "backend",
        "resilience",
    )

    def __init__(
        self,
        backend: DistributedCache,
        layers: Sequence[DistributedLayer],
        events: CacheEvents,
        versions: Versions,
        resilience: Resilience | None = None,
        close_timeout: float = 5.0,
        step: Callable[[str, Sequence[str]], Any] | None = None,
        coalesce: Runtime | None = None,
    ) -> None:
        self.backend = backend
        #: Coalesced reads (``coalesce``: the cache's runtime, which owns the batches' work):
        #: the ``get`` calls of one event-loop iteration (threads: of a short window while
        #: another batch is out) go to the L2 as one ``get_many``.
        self._batcher = (
            None
            if coalesce is None
            else Batcher(self._get_batch, coalesce, window=None, max_size=_COALESCED_MAX)
        )
        self.resilience = resilience
        self._backend = backend
        self._layers = tuple(layers)
        self._events = events
        self._down = False
        self._close_timeout = close_timeout
        #: ``l2_call(operation, keys)`` of the cache's telemetry (None: off): a span and a
        #: duration around each attempt.
        self._step: Callable[[str, Sequence[str]], Any] | None = step
        # Set by any failure or queued write: a success then has bookkeeping to do (reset the
        # breaker, log the recovery, start the replay). Clear, a success costs one test.
        self._dirty = False
        if resilience is None:
            self._timeouts: Timeouts | None = None
            self._breaker = CircuitBreaker(0, 0.0, events)  # never opens
            self._retries = 0
            self._backoff = (0.0, 0.0)
            replay, bound, interval, wait = False, _BACKGROUND_BOUND, 1.0, close_timeout
        else:
            self._timeouts = Timeouts(resilience.timeout)
            self._breaker = CircuitBreaker(
                resilience.failure_threshold, resilience.cooldown, events
            )
            self._retries = resilience.retries
            self._backoff = resilience.retry_backoff
            replay = resilience.recovery_queue > 0
            bound = resilience.recovery_queue if replay else _BACKGROUND_BOUND
            interval = resilience.recovery_interval
            # A direct write waits this long at most for an older write of its key in flight
            # (a batch is a few L2 calls, each bounded by the timeout).
            wait = 4 * resilience.timeout if resilience.timeout is not None else close_timeout
        self._writer = L2Writer(
            backend,
            events,
            run=self._run,
            note_failure=self._note_failure,
            end_cooldown=self._breaker.end_cooldown,
            pause=Timeouts(None).pause,
            bound=bound,
            interval=interval,
            replay=replay,
            wait_bound=wait,
            versions=versions,
        )

    def on_written(self, callback: Callable[[str, list[str], list[str]], None]) -> None:
        """Call ``callback(operation, keys, untrusted)`` after queued writes reached the L2.

        ``untrusted``: the keys whose L1 entry may not be what the L2 holds (replays, and
        background writes whose key was invalidated meanwhile); ``operation``
        ``"superseded"``: replays dropped because the L2 holds a newer entry.
        """
        self._writer.on_written = callback

    def breaker_state(self) -> str:
        """The circuit breaker's state: ``closed``, ``half_open`` or ``open``."""
        return str(self._breaker.state)

    @property
    def down(self) -> bool:
        """Whether the latest L2 call failed (until one succeeds): an outage is going on."""
        return self._down

    # -- reads ------------------------------------------------------------------------------------

    def get(self, skey: str, *, raise_errors: bool = False) -> bytes | None:
        """The bytes under ``skey``, or None (also when the L2 failed).

        A write of ``skey`` this cache queued and the L2 has not taken yet (background write,
        outage) is answered from the queue: a cache reads its own writes.
        """
        writer = self._writer
        if writer.count:
            queued = writer.peek(skey)
            if queued is not NOT_QUEUED:
                return queued  # type: ignore[no-any-return]
        batcher = self._batcher
        try:
            if batcher is not None:
                return (batcher.get((skey,))).get(skey)
            data = self._run("get", (skey,), True, self._backend.get, skey)
        except Exception as exc:
            self._failed("get", exc, raise_errors)
            return None
        return data  # type: ignore[no-any-return]

    def _get_batch(self, skeys: list[str]) -> dict[str, bytes | None]:
        """One coalesced read: the ``get`` calls of a batch, as one ``get_many``."""
        found = self._run("get_many", skeys, True, self._backend.get_many, skeys)
        return dict(zip(skeys, found, strict=True))

    def get_many(self, skeys: list[str], *, raise_errors: bool = False) -> list[bytes | None]:
        """The bytes of each key in order (all None when the L2 failed)."""
        try:
            found: list[bytes | None] = self._run(
                "get_many", skeys, True, self._backend.get_many, skeys
            )
        except Exception as exc:
            self._failed("get_many", exc, raise_errors)
            found = [None] * len(skeys)
        writer = self._writer
        if writer.count:
            for i, skey in enumerate(skeys):
                queued = writer.peek(skey)
                if queued is not NOT_QUEUED:
                    found[i] = queued
        return found

    # -- writes -----------------------------------------------------------------------------------

    def set(
        self,
        skey: str,
        data: bytes,
        ttl: float,
        *,
        raise_errors: bool = False,
        background: bool = False,
    ) -> bool:
        """Store ``data`` for ``ttl`` seconds; whether the L2 took it.

        ``background``: queue the write and return True at once; the cache's writer does it
        in order per key. ``raise_errors``: raise the failure (after counting and queueing it)
        as DistributedCacheError, or CircuitOpenError if the breaker is open.
        """
        ops = [(skey, Op(SET, data, ttl, fresh=background))]
        return self._write(
            "set", ops, raise_errors, background, self._backend.set, skey, data, ttl
        )

    def set_many(
        self,
        batch: list[tuple[str, bytes, float]],
        *,
        raise_errors: bool = False,
        background: bool = False,
    ) -> bool:
        """Store each ``(key, bytes, ttl)`` in one round trip; whether the L2 took them."""
        ops = [(k, Op(SET, d, t, fresh=background)) for k, d, t in batch]
        return self._write(
            "set_many", ops, raise_errors, background, self._backend.set_many, batch
        )

    def delete(
        self, skey: str, *, raise_errors: bool = False, background: bool = False
    ) -> bool:
        """Delete ``skey``; whether the L2 answered (a failed delete is replayed later)."""
        ops = [(skey, Op(DELETE, fresh=background))]
        return self._write(
            "delete", ops, raise_errors, background, self._backend.delete, skey
        )

    def delete_many(
        self, skeys: list[str], *, raise_errors: bool = False, background: bool = False
    ) -> bool:
        """Delete the keys in one round trip; whether the L2 answered."""
        ops = [(k, Op(DELETE, fresh=background)) for k in skeys]
        return self._write(
            "delete_many", ops, raise_errors, background, self._backend.delete_many, skeys
        )

    def _write(
        self,
        operation: str,
        ops: list[tuple[str, Op]],
        raise_errors: bool,
        background: bool,
        method: Callable[..., Any],
        *args: Any,
    ) -> bool:
        """A write or delete: queued (``background``), else ``method(*args)`` now.

        ``ops`` are what the queue keeps of it, one per key: handed to the writer at once
        in the background, or when the call fails (for auto-recovery).
        """
        if background and self._queue(ops):
            return True
        keys = [k for k, _ in ops]
        if self._writer.count:
            self._writer.claim(keys)
        try:
            self._run(operation, keys, False, method, *args)
        except Exception as exc:
            for _, op in ops:
                op.fresh = False  # tried once, and counted below: not a first failure
            self._write_failed(operation, exc, raise_errors, ops)
            return False
        return True

    def compare_and_set(
        self, skey: str, expected: bytes, data: bytes, *, raise_errors: bool = False
    ) -> bool:
        """Replace ``expected`` by ``data`` under ``skey`` atomically; whether it did.

        A failed one is queued and replayed as itself (it still only replaces ``expected``).
        """
        if self._writer.count:
            self._writer.claim((skey,))
        try:
            done = self._run(
                CAS, (skey,), False, self._backend.compare_and_set, skey, expected, data
            )
        except Exception as exc:
            op = Op(CAS, data, expected=expected)
            self._write_failed(CAS, exc, raise_errors, ((skey, op),))
            return False
        return bool(done)

    # -- locks ----------------------------------------------------------------------------------

    def acquire_lock(self, name: str, token: bytes, ttl: float) -> bool | None:
        """Take the lock ``name`` for ``ttl`` s if it is free: whether it did, None if L2 failed.

        Not retried (a retry after a timeout could find the lock taken by its own first try).
        """
        try:
            taken = self._run(
                "acquire_lock", (name,), False, self._backend.acquire_lock, name, token, ttl
            )
        except Exception as exc:
            self._failed("acquire_lock", exc, False)
            return None
        return bool(taken)

    def release_lock(self, name: str, token: bytes) -> None:
        """Free the lock ``name`` if ``token`` holds it (a failure is counted: it expires)."""
        try:
            self._run(
                "release_lock", (name,), False, self._backend.release_lock, name, token
            )
        except Exception as exc:
            self._failed("release_lock", exc, False)

    def _queue(self, ops: Sequence[tuple[str, Op]]) -> bool:
        """Hand ``ops`` to the writer (background); False: no room, write them now."""
        if not self._writer.put(ops, background=True):
            return False
        self._dirty = True
        return True

    # -- the policy -------------------------------------------------------------------------------

    def _run(
        self,
        operation: str,
        keys: Sequence[str],
        read: bool,
        method: Callable[..., Any],
        *args: Any,
    ) -> Any:
        """``method(*args)`` through timeout → retry (reads) → breaker → layers; or raise."""
        timeouts = self._timeouts
        step = self._step
        if timeouts is None:  # resilience=None: the layers and the backend only
            with NO_STEP if step is None else step(operation, keys):
                pending = (
                    self._layered(operation, keys, method, args) if self._layers else method(*args)
                )
                result = pending
            if self._dirty:
                self._settle()
            return result
        breaker = self._breaker
        token = timeouts.enter()
        probe = False
        attempt = 0
        try:
            while True:
                try:
                    if breaker.state is not CLOSED:
                        probe = breaker.admit()  # raises CircuitOpenError: skipped at once
                    # Telemetry: a span and a duration per attempt, around the layers.
                    with NO_STEP if step is None else step(operation, keys):
                        if self._layers:
                            result = self._layered(operation, keys, method, args)
                        else:
                            result = method(*args)
                    break
                except Exception as exc:
                    if isinstance(exc, CircuitOpenError) or _misuse(exc):
                        raise
                    self._dirty = True
                    breaker.failure(exc, probe)
                    probe = False
                    if not read or attempt >= self._retries:
                        raise
                    wait = random.uniform(*self._backoff)
                    if timeouts.time_left(token) <= wait:
                        raise
                    attempt += 1
                    timeouts.pause(wait)
        except Cancelled:
            if not timeouts.expired(token):  # the caller was cancelled: not an L2 failure
                if probe:
                    breaker.abandon()
                raise
            error = DistributedCacheError(
                f"the distributed cache did not answer {operation} within {timeouts.timeout} s"
            )
            error.__cause__ = TimeoutError()
            self._dirty = True
            breaker.failure(error, probe)
            raise error from error.__cause__
        finally:
            timeouts.leave(token)
        if self._dirty:
            self._settle()
        return result

    def _layered(
        self,
        operation: str,
        keys: Sequence[str],
        method: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> Any:
        def call() -> Any:
            return method(*args)

        chain: Callable[[], Any] = call
        for layer in reversed(self._layers):
            chain = functools.partial(layer.run, operation, keys, chain)
        return chain()

    def _settle(self) -> None:
        """After a success following failures or queued writes: recover."""
        self._breaker.success()
        if self._down:
            self._recovered()
        writer = self._writer
        self._dirty = bool(writer.count)
        if writer.count:
            writer.kick()

    # -- failures ---------------------------------------------------------------------------------

    def _failed(self, operation: str, exc: Exception, raise_errors: bool) -> None:
        if _misuse(exc):
            raise exc  # a configuration mistake (e.g. no client for this half): the user's
        self._note_failure(operation, exc)
        if raise_errors:
            raise _surfaced(operation, exc)

    def _write_failed(
        self,
        operation: str,
        exc: Exception,
        raise_errors: bool,
        ops: Sequence[tuple[str, Op]],
    ) -> None:
        if _misuse(exc):
            raise exc
        self._note_failure(operation, exc)
        if self._writer.put(ops, background=False):
            self._dirty = True
        if raise_errors:
            raise _surfaced(operation, exc)

    def _note_failure(self, operation: str, exc: Exception) -> None:
        """Count a failed (or skipped) L2 call and log the first of an outage."""
        self._dirty = True
        self._events.emit("distributed_errors", operation=operation, error=type(exc).__name__)
        if isinstance(exc, CircuitOpenError):
            return  # skipped at once: the opening was logged, each skip would be noise
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

    # -- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        """Write queued L2 writes out (up to ``close_timeout`` s), then release the backend.

        Failures are counted, not raised.
        """
        self._writer.close(self._close_timeout)
        try:
            self._backend.close()
        except Exception as exc:
            self._note_failure("close", exc)


def _misuse(exc: Exception) -> bool:
    """A DataFerryError that is not an L2 failure: a configuration mistake, raised as is."""
    return isinstance(exc, DataFerryError) and not isinstance(exc, DistributedCacheError)


def _surfaced(operation: str, exc: Exception) -> DistributedCacheError:
    """``exc`` as the DistributedCacheError a caller who asked for errors gets."""
    if isinstance(exc, DistributedCacheError):
        return exc  # the backend's, with the driver's exception chained; or CircuitOpenError
    error = DistributedCacheError(
        f"the distributed cache failed ({operation}): {type(exc).__name__}: {exc}"
    )
    error.__cause__ = exc
    return error
