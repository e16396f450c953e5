"""Least recently used eviction."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["LruPolicy"]


class LruPolicy:
    """Evicts the entry read or written longest ago (``policy="lru"``).

    An ``OrderedDict`` in recency order: every operation is one C-level dict operation.
    """

    __slots__ = ("_order",)

    def __init__(self) -> None:
        self._order: OrderedDict[str, None] = OrderedDict()

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
