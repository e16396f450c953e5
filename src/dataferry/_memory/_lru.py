"""Least recently used eviction."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

__all__ = ["LruPolicy"]


class LruPolicy:
    """Evicts the entry read or written longest ago (``policy="lru"``): exact LRU.

    An ``OrderedDict`` in recency order: every operation is one C-level dict operation. That
    makes a hit a single atomic step (``move_to_end``, which doesn't release the GIL), so the
    cache calls :attr:`record_hit` on every hit at once, without its lock, instead of
    buffering hits: the order is always exactly the order of use.
    """

    __slots__ = ("_order", "record_hit")

    def __init__(self) -> None:
        self._order: OrderedDict[str, None] = OrderedDict()
        #: Make a key the most recently used; KeyError if it isn't tracked (a hit that raced
        #: the key's removal). The bound C method itself, so a hit costs one C call.
        self.record_hit: Callable[[str], None] = self._order.move_to_end

    def __len__(self) -> int:
        return len(self._order)

    def record_insert(self, key: str, weight: int, expires_at: float) -> None:
        """Make ``key`` the most recently used."""
        order = self._order
        order[key] = None
        order.move_to_end(key)

    def record_access(self, key: str) -> None:
        """Make ``key`` the most recently used."""
        self._order.move_to_end(key)

    def record_remove(self, key: str) -> None:
        """Forget ``key``."""
        self._order.pop(key, None)

    def select_victim(self) -> str:
        """Return (and forget) the least recently used key."""
        return self._order.popitem(last=False)[0]

    def clear(self) -> None:
        """Forget every key."""
        self._order.clear()
