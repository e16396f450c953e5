"""Helpers for testing code that uses DataFerry: inject L2 faults and latency on purpose.

:class:`ChaosLayer` is a :class:`~dataferry.DistributedLayer`: plug it into a cache's L2
pipeline and it makes a seeded share of the distributed-cache calls fail, slows them down, or
both, so a test can check what an application does when Redis misbehaves, without stopping
Redis::

    import dataferry as df
    from dataferry.testing import ChaosLayer

    chaos = ChaosLayer(error_rate=1.0, seed=42)              # every L2 call fails
    cache = df.AsyncDataFerry(distributed=df.RedisCache.from_url(url),
                              distributed_layers=[chaos])
    assert await cache.get_or_set("user:1", load_user) == expected   # answered by the factory
    assert cache.stats().distributed_errors > 0 and chaos.injected_errors > 0

    chaos.enabled = False                                    # Redis is healthy again

Everything here is meant for tests, benchmarks and game days, not for production traffic.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from dataferry._errors import ConfigurationError, DistributedCacheError
from dataferry._layers import OPERATIONS

__all__ = ["ChaosLayer"]

#: What ``error=`` accepts: an exception to raise, or a zero-argument callable (such as an
#: exception class) returning a fresh one per injected failure.
_ErrorSpec = Exception | Callable[[], Exception]


class ChaosLayer:
    """An L2 pipeline layer that injects failures and latency, reproducibly.

    Each call of a chosen operation first waits ``delay`` seconds (``asyncio.sleep`` on the
    async half, ``time.sleep`` on the sync half), then fails with probability ``error_rate``
    (the rest of the pipeline and the backend are then not called), else goes on. The
    decisions come from a ``random.Random(seed)`` drawn in call order, so a test that makes
    the same calls with the same seed sees the same failures.

    Args:
        error_rate: Probability in ``[0, 1]`` that a chosen call fails (``1.0``: an outage).
        delay: Seconds added to every chosen call, or ``(low, high)`` for a uniform random
            delay drawn from the seeded generator.
        seed: Seed of the generator (``None``: a different pattern per run).
        operations: The L2 operations the layer acts on, among ``"get"``, ``"get_many"``,
            ``"set"``, ``"set_many"``, ``"delete"``, ``"delete_many"`` and
            ``"compare_and_set"`` (what a :class:`~dataferry.DistributedLayer` sees); ``None``
            (default) for all. Other calls pass through untouched (and are counted in
            :attr:`calls`).
        error: The exception to raise: an instance (raised each time) or a zero-argument
            callable returning one, e.g. ``ConnectionError``. Default: a
            :class:`~dataferry.DistributedCacheError` naming the operation, which the cache
            counts in ``stats().distributed_errors`` and answers from L1 and the factory.
        enabled: Whether the layer injects anything; switch it with :attr:`enabled`.

    ``enabled``, ``error_rate`` and ``delay`` can be changed between (or during) calls, from
    any thread: each call reads them once. Counters are exact under concurrency.

    The layers of ``distributed_layers`` sit below the cache's own timeout, retry and circuit
    breaker: a retried read reaches this layer (and may be failed) again, and a call that an
    open breaker skips never reaches it, so :attr:`injected_errors` and the cache's
    ``stats().distributed_errors`` count different things. A ``delay`` longer than the cache's
    L2 timeout makes the call time out.

    Raises:
        ConfigurationError: ``error_rate`` outside ``[0, 1]``, a negative or inverted
            ``delay``, an operation name the pipeline doesn't have, or an ``error`` that is
            neither an exception nor a callable.

    Example, a slow Redis for reads only, in a sync test::

        chaos = ChaosLayer(delay=0.05, operations={"get"})
        cache = df.DataFerry(distributed=backend, distributed_layers=[chaos])
        cache.get("k")
        assert chaos.injected_delays == 1

    """

    def __init__(
        self,
        *,
        error_rate: float = 0.0,
        delay: float | tuple[float, float] = 0.0,
        seed: int | None = None,
        operations: Iterable[str] | None = None,
        error: _ErrorSpec | None = None,
        enabled: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._operations = _check_operations(operations)
        self._error = _check_error(error)
        self.error_rate = error_rate
        self.delay = delay
        self.enabled = enabled
        self._calls = 0
        self._injected_errors = 0
        self._injected_delays = 0
        self._delayed_seconds = 0.0
        self._calls_per_operation: Counter[str] = Counter()
        self._errors_per_operation: Counter[str] = Counter()

    # Settings ---------------------------------------------------------------------------------

    @property
    def error_rate(self) -> float:
        """Probability in ``[0, 1]`` that a chosen call fails; settable at any time."""
        return self._error_rate

    @error_rate.setter
    def error_rate(self, value: float) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0.0 <= value <= 1.0
        ):
            raise ConfigurationError(f"error_rate must be a number in [0, 1], got {value!r}")
        self._error_rate = float(value)

    @property
    def delay(self) -> tuple[float, float]:
        """The added latency as ``(low, high)`` seconds; set a number or a pair at any time."""
        return self._delay

    @delay.setter
    def delay(self, value: float | tuple[float, float]) -> None:
        low, high = value if isinstance(value, tuple) else (value, value)
        for bound in (low, high):
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not bound >= 0:
                raise ConfigurationError(
                    f"delay must be seconds >= 0 or a (low, high) pair of them, got {value!r}"
                )
        if low > high:
            raise ConfigurationError(f"delay (low, high) must have low <= high, got {value!r}")
        self._delay = (float(low), float(high))

    @property
    def enabled(self) -> bool:
        """Whether the layer injects anything (when False every call passes through)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ConfigurationError(f"enabled must be a bool, got {value!r}")
        self._enabled = value

    @property
    def operations(self) -> frozenset[str]:
        """The operations the layer acts on."""
        return self._operations

    # Counters ---------------------------------------------------------------------------------

    @property
    def calls(self) -> int:
        """Every call that went through the layer, chosen or not, enabled or not."""
        return self._calls

    @property
    def injected_errors(self) -> int:
        """Calls the layer made fail."""
        return self._injected_errors

    @property
    def injected_delays(self) -> int:
        """Calls the layer delayed (by a positive delay)."""
        return self._injected_delays

    @property
    def delayed_seconds(self) -> float:
        """Total seconds of delay the layer added."""
        return self._delayed_seconds

    @property
    def calls_per_operation(self) -> Counter[str]:
        """A copy of :attr:`calls` by operation name."""
        with self._lock:
            return self._calls_per_operation.copy()

    @property
    def errors_per_operation(self) -> Counter[str]:
        """A copy of :attr:`injected_errors` by operation name."""
        with self._lock:
            return self._errors_per_operation.copy()

    def reset_counters(self) -> None:
        """Set every counter back to zero (the random sequence goes on where it was)."""
        with self._lock:
            self._calls = self._injected_errors = self._injected_delays = 0
            self._delayed_seconds = 0.0
            self._calls_per_operation.clear()
            self._errors_per_operation.clear()

    # The DistributedLayer protocol -----------------------------------------------------------

    async def arun(
        self, operation: str, keys: Sequence[str], call: Callable[[], Awaitable[Any]], /
    ) -> Any:
        """Delay with ``asyncio.sleep`` and maybe fail, else ``await call()``."""
        fail, pause = self._decide(operation)
        if pause > 0.0:
            await asyncio.sleep(pause)
        if fail:
            raise self._make_error(operation)
        return await call()

    def run(self, operation: str, keys: Sequence[str], call: Callable[[], Any], /) -> Any:
        """Delay with ``time.sleep`` and maybe fail, else ``call()``."""
        fail, pause = self._decide(operation)
        if pause > 0.0:
            time.sleep(pause)
        if fail:
            raise self._make_error(operation)
        return call()

    def _decide(self, operation: str) -> tuple[bool, float]:
        # One lock for the generator and the counters: random.Random is not meant to be shared
        # between threads, and the draws must happen in call order for a seed to replay.
        with self._lock:
            self._calls += 1
            self._calls_per_operation[operation] += 1
            if not self._enabled or operation not in self._operations:
                return False, 0.0
            rate = self._error_rate
            low, high = self._delay
            # Always draw once per chosen call, whatever the rate: changing error_rate between
            # calls must not shift the rest of the sequence.
            fail = self._random.random() < rate
            pause = self._random.uniform(low, high) if high > low else low
            if pause > 0.0:
                self._injected_delays += 1
                self._delayed_seconds += pause
            if fail:
                self._injected_errors += 1
                self._errors_per_operation[operation] += 1
            return fail, pause

    def _make_error(self, operation: str) -> Exception:
        spec = self._error
        if spec is None:
            return DistributedCacheError(f"chaos: injected failure of {operation!r}")
        if isinstance(spec, Exception):
            # Raising one instance again and again would chain its old tracebacks.
            return spec.with_traceback(None)
        return spec()

    def __repr__(self) -> str:
        state = "enabled" if self._enabled else "disabled"
        return (
            f"<ChaosLayer {state} error_rate={self._error_rate} delay={self._delay} "
            f"calls={self._calls} injected_errors={self._injected_errors}>"
        )


def _check_operations(operations: Iterable[str] | None) -> frozenset[str]:
    if operations is None:
        return frozenset(OPERATIONS)
    if isinstance(operations, str):
        # A bare "get" would otherwise become {"g", "e", "t"}.
        operations = (operations,)
    try:
        chosen = frozenset(operations)
    except TypeError:
        raise ConfigurationError(
            f"operations must be an iterable of operation names, got {operations!r}"
        ) from None
    unknown = sorted(str(op) for op in chosen - frozenset(OPERATIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown operations {unknown}; the L2 pipeline has {list(OPERATIONS)}"
        )
    return chosen


def _check_error(error: _ErrorSpec | None) -> _ErrorSpec | None:
    if error is None or isinstance(error, Exception) or callable(error):
        return error
    raise ConfigurationError(
        f"error must be an exception or a callable returning one, got {error!r}"
    )
