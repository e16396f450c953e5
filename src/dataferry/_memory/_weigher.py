"""The default weigher of a MemoryCache with ``max_bytes``: a bounded deep size estimate.

Rules (one entry = key + value + metadata + the cache's own bookkeeping; the metadata, small
and often shared, counts its own size only, which keeps weighing cheap):

- ``str``, ``bytes``, ``bytearray``, ``int``, ``float``: their own size (``__sizeof__``),
  O(1) whatever their length; inside containers, rounded up to the allocator's 16-byte
  blocks, as small objects really take. ``None``, ``True``/``False``, small ints (-5..256)
  and program state (classes, modules, functions, enum members): 0, since they are shared
  (the slot pointing at them is counted by their container).
- containers (``list``, ``tuple``, ``dict``, ``set``, ``frozenset``, ``deque``, and their
  subclasses) and other objects (what :func:`gc.get_referents` finds: their attributes):
  their own size plus what they hold, walked depth first. Containers, objects, dict keys and
  leaves over 256 bytes are counted once however often they are referenced (cycles too).
- the walk visits at most :data:`WALK_BUDGET` objects. A container whose items were not all
  visited counts the visited ones and extrapolates their average to the rest. List and
  tuple items are sampled at a stride across the whole sequence, so a list whose items grow
  along it is not judged by its head alone; dict and set items are sampled in iteration
  order. So a list of a million rows costs no more than one of a few hundred, and the
  estimate stays close on regular data: on the shapes of ``tests/test_memory_weigher.py``,
  0.95x to 1.25x what ``tracemalloc`` reports, which leaves out the allocator's rounding.

A sample can miss what it did not visit (one huge string among many small dict fields, past
the budget), and count a shared object several times when it sits beyond the sample: when
the caller knows the size of the value's encoded form (the facade passes the length of the
bytes the codec produced), the cache weighs ``max(hint, estimate)`` (see
:func:`entry_weight`), which catches the first case; the second only makes the cache hold
less.
"""

from __future__ import annotations

import gc
import sys
from collections import deque
from collections.abc import Iterable
from enum import Enum
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any

__all__ = ["ENTRY_OVERHEAD", "WALK_BUDGET", "entry_weight", "estimate_size"]

#: Bytes an entry costs in a cache with ``max_bytes`` beyond its key, value and metadata
#: (dict slot, entry tuple, weight, expiry wheel slot, policy bookkeeping): 250 to 337 with
#: tracemalloc on CPython 3.11 depending on the policy and whether it has a ttl (LFU without
#: one the least, W-TinyLFU with one the most), rounded.
ENTRY_OVERHEAD = 300
#: Most objects one estimate visits. Measured on a loaded 2-core VM: 0.1 ms for a list of
#: dict rows, 0.25 ms for a list of dataclass instances (the worst: a call per object), 2 us
#: for a small dict; about what encoding the visited part for L2 costs.
WALK_BUDGET = 256
#: Nesting followed at most (well under the recursion limit); what is deeper is extrapolated
#: from its measured siblings, like unvisited items.
_MAX_DEPTH = 64
#: Leaves larger than this are counted once per walk even when referenced many times (the
#: same blob in several places); smaller ones are not tracked, it would cost more than the
#: few bytes a shared one is overcounted by. (Dict keys are always tracked.)
_TRACKED_LEAF = 256
#: The size assumed for an object that can't tell its own.
_UNSEEN_ITEM = 64

_getsizeof = sys.getsizeof
_get_referents = gc.get_referents
#: What ``sys.getsizeof`` adds to ``__sizeof__`` for objects the garbage collector tracks
#: (containers). ``__sizeof__`` is called directly: it is several times cheaper.
_GC_HEADER = _getsizeof([]) - [].__sizeof__()
# Shared program state reachable from objects (their class, a bound method's function...).
_SHARED = (type, ModuleType, FunctionType, BuiltinFunctionType, MethodType, Enum)
# Not walked: a leaf or a leaf's subclass (its value is in its own size), or program state.
_OPAQUE = (str, bytes, bytearray, int, float, complex, *_SHARED)
_ITERABLES = frozenset({set, frozenset, deque})
_MAPPING, _SEQUENCE, _ITERABLE, _OBJECT = range(4)  # how a container's contents are walked


class _Walk:
    """One bounded estimate: the visits left, and the objects already counted.

    ``size`` returns ``None`` for a container whose contents it could not sample (the budget
    or the depth ran out first): its parent then extrapolates from the items it did measure,
    instead of guessing. Leaves met inside a container are measured inline, without a call
    per item: most items are leaves, and this runs on the cache's write path. Containers and
    objects are counted once each, by id; so are dict keys (rows of the same shape share their
    key strings) and large leaves. A small leaf referenced twice counts twice.
    """

    __slots__ = ("budget", "measured", "seen")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.seen: set[int] = set()
        self.measured = 0  # bytes counted so far: a floor when nothing can be extrapolated

    def size(self, obj: Any, depth: int) -> float | None:
        """Bytes held by ``obj`` and what it refers to; ``None`` if not measured.

        The caller has charged the visit of ``obj`` to the budget.
        """
        cls = obj.__class__
        if cls is str or cls is bytes or cls is float:
            own: int = (obj.__sizeof__() + 15) & -16
            if own > _TRACKED_LEAF:
                ident = id(obj)
                if ident in self.seen:
                    return 0
                self.seen.add(ident)
            self.measured += own
            return own
        if obj is None or cls is bool or (cls is int and -5 <= obj <= 256):
            return 0  # singletons, shared by the whole interpreter
        ident = id(obj)
        if ident in self.seen:
            return 0
        self.seen.add(ident)
        # Exact classes first: an isinstance against many classes costs more than the rest.
        if cls is dict:
            kind = _MAPPING
        elif cls is list or cls is tuple:
            kind = _SEQUENCE
        elif cls in _ITERABLES:
            kind = _ITERABLE
        elif isinstance(obj, _OPAQUE):
            if isinstance(obj, _SHARED):
                return 0
            own = (_getsizeof(obj, _UNSEEN_ITEM) + 15) & -16
            self.measured += own
            return own
        elif isinstance(obj, dict):
            kind = _MAPPING
        elif isinstance(obj, (list, tuple)):
            kind = _SEQUENCE
        elif isinstance(obj, (set, frozenset, deque)):
            kind = _ITERABLE
        else:
            kind = _OBJECT
        own = (obj.__sizeof__() + _GC_HEADER + 15) & -16
        self.measured += own
        if kind == _MAPPING:
            held = self._pairs(obj, depth)
        elif kind == _SEQUENCE:
            n = len(obj)
            # A stride across the whole sequence, a step wide enough for the budget left.
            step = -(-n // self.budget) if n > self.budget > 0 else 1
            held = self._items(obj[::step] if step > 1 else obj, n, depth)
        elif kind == _ITERABLE:
            held = self._items(obj, len(obj), depth)
        else:
            refs = [ref for ref in _get_referents(obj) if not isinstance(ref, _SHARED)]
            held = self._items(refs, len(refs), depth)
        return None if held is None else own + held

    def _items(self, items: Iterable[Any], n: int, depth: int) -> float | None:
        if n == 0:
            return 0
        if depth >= _MAX_DEPTH:
            return None
        size = self.size
        seen = self.seen
        depth += 1
        held = 0.0
        counted = 0
        left = self.budget
        leaf_bytes = 0  # leaves measured inline: added to the totals at the end
        for item in items:
            if left <= 0:
                break
            left -= 1  # every item is a visit, singletons included: the walk stays bounded
            cls = item.__class__
            if cls is str or cls is float or cls is bytes or cls is int:
                if cls is not int or not -5 <= item <= 256:
                    own = (item.__sizeof__() + 15) & -16  # allocations are 16-byte aligned
                    if own > _TRACKED_LEAF:
                        ident = id(item)
                        if ident in seen:
                            own = 0
                        else:
                            seen.add(ident)
                    leaf_bytes += own
            elif item is not None and cls is not bool:
                self.budget = left
                got = size(item, depth)
                left = self.budget
                if got is None:  # not sampled: judge it, and the rest, by the others
                    break
                held += got
            counted += 1
        self.budget = left
        self.measured += leaf_bytes
        return self._extrapolate(held + leaf_bytes, counted, n)

    def _pairs(self, mapping: dict[Any, Any], depth: int) -> float | None:
        # As _items, over a dict's keys and values (two visits per item).
        n = len(mapping)
        if n == 0:
            return 0
        if depth >= _MAX_DEPTH:
            return None
        size = self.size
        seen = self.seen
        depth += 1
        held = 0.0
        counted = 0
        left = self.budget
        leaf_bytes = 0
        for key, value in mapping.items():
            if left <= 0:
                break
            left -= 2
            pair = 0.0
            if key.__class__ is str:
                ident = id(key)
                if ident not in seen:
                    seen.add(ident)
                    leaf_bytes += (key.__sizeof__() + 15) & -16
            else:
                self.budget = left
                got = size(key, depth)
                left = self.budget
                if got is None:
                    break
                pair = got
            cls = value.__class__
            if cls is str or cls is float or cls is bytes or cls is int:
                if cls is not int or not -5 <= value <= 256:
                    own = (value.__sizeof__() + 15) & -16
                    if own > _TRACKED_LEAF:
                        ident = id(value)
                        if ident in seen:
                            own = 0
                        else:
                            seen.add(ident)
                    leaf_bytes += own
            elif value is not None and cls is not bool:
                self.budget = left
                got = size(value, depth)
                left = self.budget
                if got is None:
                    break
                pair += got
            held += pair
            counted += 1
        self.budget = left
        self.measured += leaf_bytes
        return self._extrapolate(held + leaf_bytes, counted, n)

    @staticmethod
    def _extrapolate(held: float, counted: int, n: int) -> float | None:
        if counted == n:
            return held
        return held * n / counted if counted else None


def _estimate(value: Any, budget: int) -> int:
    cls = value.__class__
    if cls is str or cls is bytes or cls is int or cls is float:  # O(1), no walk
        return value.__sizeof__()  # type: ignore[no-any-return]
    try:
        walk = _Walk(budget)
        size = walk.size(value, 0)
        # Not measured (nested deeper than the walk goes): what was seen is all we know.
        return round(walk.measured if size is None else size)
    except Exception:  # a broken __sizeof__, a container mutated meanwhile...
        return _getsizeof(value, _UNSEEN_ITEM)


def estimate_size(key: str, value: Any) -> int:
    """Estimate the bytes an entry holds in memory: key, value (deep, bounded), overhead.

    The default weigher of ``MemoryCache(max_bytes=...)``, with the metadata and the size
    hint the cache adds (see :class:`~dataferry.MemoryCache`). ``str`` and ``bytes`` values
    are measured exactly, in O(1); containers and objects are walked, each object counted
    once, up to :data:`WALK_BUDGET` objects, and the rest extrapolated from the average of what
    was visited (list and tuple items are sampled across the whole sequence). So the cost is
    bounded whatever the size of the value (microseconds for a small dict, a fraction of a
    millisecond at most for large containers) and the estimate close on regular data; a value
    whose few huge parts hide where the sample does not look can be underestimated. Shared
    singletons (``None``, booleans, small ints) and program state (classes, modules,
    functions, enum members) count nothing. Pass ``MemoryCache(weigher=...)`` for another
    measure.
    """
    return _getsizeof(key) + _estimate(value, WALK_BUDGET) + ENTRY_OVERHEAD


def entry_weight(key: str, value: Any, meta: object, size_hint: int | None) -> int:
    """The default weight of an entry: :func:`estimate_size`, the size hint, the metadata.

    ``size_hint`` is the length of the value's encoded form, when the caller has it. It is a
    floor, not a replacement, because encoded sizes undercount live objects (a small int is
    2 bytes of JSON and 8 to 36 bytes live; a dict is about 100 bytes live before its first
    key; a compressed payload can be a hundred times smaller than its value), while a bounded
    estimate can miss what its sample skipped: the larger of the two is used. The metadata
    counts its own size (``sys.getsizeof``), not what it refers to.
    """
    size = _estimate(value, WALK_BUDGET)
    if size_hint is not None and size_hint > size:
        size = size_hint
    if meta is not None:
        # Its own size only: a walk would cost more than the value's on small values.
        size += _getsizeof(meta, _UNSEEN_ITEM)
    return _getsizeof(key) + size + ENTRY_OVERHEAD
