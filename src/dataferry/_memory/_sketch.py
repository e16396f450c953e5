"""A count-min sketch with a doorkeeper: the popularity estimate behind TinyLFU admission."""

from __future__ import annotations

__all__ = ["FrequencySketch", "GhostFilter"]

_M30 = (1 << 30) - 1  # hash slices of 30 bits: CPython's one-digit ints, its fastest
_MAX_COUNT = 15  # 4-bit counters, as in TinyLFU: popularity above 15 doesn't change decisions
_HALVE = bytes(i >> 1 for i in range(256))  # bytearray.translate table: every counter // 2
_SAMPLE_FACTOR = 10  # sightings per entry between two halvings
# Counters per entry in each row: 4 up to rows of _SMALL_WIDTH, 2 beyond (a small table's
# collisions cost small caches hits, measured on multi2 at 5%; big ones can spare the bytes).
_SMALL_WIDTH = 2048
_WIDTH_FACTOR = 2
# Doorkeeper bits per entry. A false positive lets a newcomer beat an incumbent it only ties
# with, and loops pay for each one with a lost hit: 80 bits keep them under 1% over a period.
_DOOR_BITS_FACTOR = 80
_GHOST_BITS_FACTOR = 32


def _pow2_at_least(n: int) -> int:
    return 1 << max(n - 1, 1).bit_length()


class FrequencySketch:
    """Estimates how often each key was seen recently, in a few bytes per cached entry.

    Four rows of counters (one byte each, saturating at 15), indexed by four hashes derived
    from ``hash(key)`` by double hashing; the estimate is the smallest of the four counters,
    so collisions can only overestimate.

    In front of the counters sits a doorkeeper, a Bloom filter (two bits per key): a key's
    first sighting in a period only sets its doorkeeper bits, later ones count. So the many
    keys seen once never pollute the counters, and the estimate is "sightings beyond the first"
    (the doorkeeper is not added back): a newcomer seen once ties with an incumbent seen once,
    and ties keep the incumbent, which is what protects a cache against scans and loops larger
    than itself.

    Ageing: after ``sample_size`` sightings (10 per entry) every counter is halved and the
    doorkeeper is emptied, so the sketch reflects recent popularity, not all of history.

    Keys are expected to be ``str``, whose ``hash`` is well mixed (SipHash); int keys with
    regular patterns would collide more.
    """

    __slots__ = (
        "_additions",
        "_door",
        "_door_mask",
        "_mask",
        "_table",
        "_width",
        "capacity",
        "sample_size",
    )

    def __init__(self, capacity: int) -> None:
        self._table = bytearray()
        self._door = bytearray()
        self._width = self._mask = self._door_mask = self._additions = 0
        self.capacity = self.sample_size = 0
        self.resize(capacity)

    def resize(self, capacity: int) -> None:
        """Size for about ``capacity`` cached entries, forgetting every count."""
        capacity = max(1, capacity)
        self.capacity = capacity
        self.sample_size = _SAMPLE_FACTOR * capacity
        width = _pow2_at_least(max(min(4 * capacity, _SMALL_WIDTH), _WIDTH_FACTOR * capacity, 64))
        self._width = width
        self._mask = width - 1
        self._table = bytearray(4 * width)
        bits = _pow2_at_least(max(_DOOR_BITS_FACTOR * capacity, 512))
        self._door = bytearray(bits >> 3)
        self._door_mask = bits - 1
        self._additions = 0

    def increment(self, key: object) -> None:
        """Count one sighting of ``key``."""
        self.add(hash(key))

    def add(self, h: int) -> None:
        """Count one sighting of the key whose ``hash()`` is ``h`` (saves hashing twice)."""
        h1 = h & _M30
        h2 = (h >> 30 & _M30) | 1  # odd, so the rows get different indexes
        door, dm = self._door, self._door_mask
        d1 = (h1 ^ h2 << 1) & dm
        d2 = (h1 + (h2 << 2)) & dm
        b1 = 1 << (d1 & 7)
        b2 = 1 << (d2 & 7)
        d1 >>= 3
        d2 >>= 3
        if not (door[d1] & b1 and door[d2] & b2):
            door[d1] |= b1
            door[d2] |= b2
        else:
            # Rows are consecutive blocks of a power-of-two width: "| row * width" places an
            # index (< width) in its row.
            table, mask, width = self._table, self._mask, self._width
            i = h1 & mask
            if table[i] < _MAX_COUNT:
                table[i] += 1
            h1 += h2
            i = h1 & mask | width
            if table[i] < _MAX_COUNT:
                table[i] += 1
            h1 += h2
            i = h1 & mask | width << 1
            if table[i] < _MAX_COUNT:
                table[i] += 1
            h1 += h2
            i = h1 & mask | width * 3
            if table[i] < _MAX_COUNT:
                table[i] += 1
        self._additions += 1
        if self._additions >= self.sample_size:
            self._age()

    def frequency(self, key: object) -> int:
        """Return the estimated recent sightings of ``key`` beyond its first (0 to 15)."""
        return self.estimate(hash(key))

    def estimate(self, h: int) -> int:
        """:meth:`frequency` of the key whose ``hash()`` is ``h``."""
        h1 = h & _M30
        h2 = (h >> 30 & _M30) | 1
        table, mask, width = self._table, self._mask, self._width
        count = table[h1 & mask]
        h1 += h2
        c = table[h1 & mask | width]
        if c < count:
            count = c
        h1 += h2
        c = table[h1 & mask | width << 1]
        if c < count:
            count = c
        h1 += h2
        c = table[h1 & mask | width * 3]
        return c if c < count else count

    def _age(self) -> None:
        # C-speed halving of every counter; the doorkeeper starts over with the new period.
        self._table = self._table.translate(_HALVE)
        self._door = bytearray(len(self._door))
        self._additions //= 2


class GhostFilter:
    """Which side of the cache lately evicted a key: approximate, bounded, O(1).

    For each of two sides, remembers the last ``span // 2`` to ``span`` keys that side
    evicted, in Bloom filters (two bits per key, ``_GHOST_BITS_FACTOR`` bits per key: about
    0.5% false positives) of two generations: when a side's current generation has taken
    ``span // 2`` keys it becomes the previous one and the oldest is dropped. A key is never
    forgotten within its span; rarely, one that was never added is reported.

    False positives must stay rare: they come mostly from the side that evicts most, so they
    would vote for it.
    """

    __slots__ = ("_added", "_current", "_generation", "_mask", "_previous")

    def __init__(self, span: int) -> None:
        self._generation = max(1, span // 2)
        bits = _pow2_at_least(max(_GHOST_BITS_FACTOR * self._generation, 512))
        self._mask = bits - 1
        size = bits >> 3
        # Index 1 and 2 are the sides (0 unused, so a side is its own index).
        self._current = [bytearray(), bytearray(size), bytearray(size)]
        self._previous = [bytearray(), bytearray(size), bytearray(size)]
        self._added = [0, 0, 0]

    def add(self, key: object, side: int) -> None:
        """Remember that ``side`` (1 or 2) evicted ``key``."""
        if self._added[side] >= self._generation:
            self._previous[side] = self._current[side]
            self._current[side] = bytearray(len(self._previous[side]))
            self._added[side] = 0
        self._added[side] += 1
        h = hash(key)
        h1, mask, bits = h & _M30, self._mask, self._current[side]
        d = h1 & mask
        bits[d >> 3] |= 1 << (d & 7)
        d = (h1 + ((h >> 30 & _M30) | 1)) & mask
        bits[d >> 3] |= 1 << (d & 7)

    def side(self, key: object) -> int:
        """Return the side (1 or 2) that lately evicted ``key``, else 0."""
        h = hash(key)
        h1, mask = h & _M30, self._mask
        d1 = h1 & mask
        d2 = (h1 + ((h >> 30 & _M30) | 1)) & mask
        b1, b2 = 1 << (d1 & 7), 1 << (d2 & 7)
        d1 >>= 3
        d2 >>= 3
        current, previous = self._current, self._previous
        bits = current[1]
        if bits[d1] & b1 and bits[d2] & b2:
            return 1
        bits = previous[1]
        if bits[d1] & b1 and bits[d2] & b2:
            return 1
        bits = current[2]
        if bits[d1] & b1 and bits[d2] & b2:
            return 2
        bits = previous[2]
        if bits[d1] & b1 and bits[d2] & b2:
            return 2
        return 0
