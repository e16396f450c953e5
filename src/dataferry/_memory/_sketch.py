"""A count-min sketch with a doorkeeper: the popularity estimate behind TinyLFU admission."""

from __future__ import annotations

__all__ = ["FrequencySketch"]

_M32 = (1 << 32) - 1
_M64 = (1 << 64) - 1
_MAX_COUNT = 15  # 4-bit counters, as in TinyLFU: popularity above 15 doesn't change decisions
_HALVE = bytes(i >> 1 for i in range(256))  # bytearray.translate table: every counter // 2


def _pow2_at_least(n: int) -> int:
    return 1 << max(n - 1, 1).bit_length()


class FrequencySketch:
    """Estimates how often each key was seen recently, in a few bytes per cached entry.

    Four rows of counters (one byte each, saturating at 15), indexed by four hashes derived
    from ``hash(key)`` by double hashing; the estimate is the smallest of the four counters,
    so collisions can only overestimate. In front of the counters sits a doorkeeper, a small
    Bloom filter: a key's first sighting only sets its doorkeeper bits, so the many keys seen
    once never touch (and pollute) the counters; the doorkeeper adds one to the estimate.

    Ageing: after ``sample_size`` increments (10 per cached entry) every counter is halved and
    the doorkeeper is emptied, so the sketch reflects recent popularity, not all of history.

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
        self.sample_size = 10 * capacity
        # Per row, four counters per entry keeps collisions rare among the keys a sample sees.
        width = _pow2_at_least(max(4 * capacity, 64))
        self._width = width
        self._mask = width - 1
        self._table = bytearray(4 * width)
        # One byte per doorkeeper bit: a byte index is cheaper in Python than bit twiddling.
        door = _pow2_at_least(max(8 * capacity, 64))
        self._door = bytearray(door)
        self._door_mask = door - 1
        self._additions = 0

    def increment(self, key: object) -> None:
        """Count one sighting of ``key``."""
        h = hash(key) & _M64
        h1 = h & _M32
        h2 = (h >> 32) | 1  # odd, so the four rows get four different indexes
        door, dm = self._door, self._door_mask
        d1 = (h1 + 4 * h2) & dm
        d2 = (h1 + 5 * h2) & dm
        if not (door[d1] and door[d2]):
            door[d1] = door[d2] = 1
        else:
            table, mask, width = self._table, self._mask, self._width
            i = h1 & mask
            if table[i] < _MAX_COUNT:
                table[i] += 1
            i = ((h1 + h2) & mask) + width
            if table[i] < _MAX_COUNT:
                table[i] += 1
            i = ((h1 + 2 * h2) & mask) + 2 * width
            if table[i] < _MAX_COUNT:
                table[i] += 1
            i = ((h1 + 3 * h2) & mask) + 3 * width
            if table[i] < _MAX_COUNT:
                table[i] += 1
        self._additions += 1
        if self._additions >= self.sample_size:
            self._age()

    def frequency(self, key: object) -> int:
        """Return the estimated recent count of ``key`` (0 to 16)."""
        h = hash(key) & _M64
        h1 = h & _M32
        h2 = (h >> 32) | 1
        table, mask, width = self._table, self._mask, self._width
        count = min(
            table[h1 & mask],
            table[((h1 + h2) & mask) + width],
            table[((h1 + 2 * h2) & mask) + 2 * width],
            table[((h1 + 3 * h2) & mask) + 3 * width],
        )
        door, dm = self._door, self._door_mask
        if door[(h1 + 4 * h2) & dm] and door[(h1 + 5 * h2) & dm]:
            count += 1
        return count

    def _age(self) -> None:
        # C-speed halving of every counter; the doorkeeper starts over with the new period.
        self._table = self._table.translate(_HALVE)
        self._door = bytearray(len(self._door))
        self._additions //= 2
