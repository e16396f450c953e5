"""The contract of a layer in a cache's L2 pipeline (timeouts, retries, telemetry, chaos).

Every L2 call of a cache goes through one accessor, which passes it down a chain of layers
before it reaches the backend: ``layers[0]`` is outermost. A layer gets the operation name,
the storage keys involved and ``call``, the rest of the chain, and returns what ``call``
returns (or raises :class:`~dataferry.DistributedCacheError`). It can time the call, retry it,
refuse it, delay it or make it fail, without the facade knowing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["DistributedLayer", "OPERATIONS"]

T = TypeVar("T")

#: The operation names a layer sees.
OPERATIONS = (
    "get",
    "get_many",
    "set",
    "set_many",
    "delete",
    "delete_many",
    "compare_and_set",
    "acquire_lock",
    "release_lock",
)


@runtime_checkable
class DistributedLayer(Protocol):
    """A layer of the L2 pipeline: async (:meth:`arun`) and sync (:meth:`run`) halves.

    ``operation`` is one of :data:`OPERATIONS`; ``keys`` are the storage keys it touches.
    Raise :class:`~dataferry.DistributedCacheError` to fail the call (the cache counts it and
    answers from L1 and the factory); any other exception is treated the same way.
    """

    async def arun(
        self, operation: str, keys: Sequence[str], call: Callable[[], Awaitable[Any]], /
    ) -> Any:
        """Run the async call ``call()`` (the rest of the chain) for ``operation``."""
        ...

    def run(self, operation: str, keys: Sequence[str], call: Callable[[], Any], /) -> Any:
        """Run the sync call ``call()`` (the rest of the chain) for ``operation``."""
        ...
