"""W-TinyLFU eviction with an adaptive window: the default policy of MemoryCache."""

from __future__ import annotations

import math
import random
import sys
from collections import OrderedDict

from dataferry._memory._sketch import FrequencySketch, GhostFilter

__all__ = ["TinyLfuPolicy"]

_PERCENT_MAIN = 0.99  # the window starts at 1% of the budget
_PERCENT_PROTECTED = 0.80  # of the main area
# Climbing: one decision per sample period of 10 requests per entry. The step (a share of the
# budget) doubles while the window keeps moving the same way and halves when it turns back.
_CLIMB_SAMPLE = 10
_STEP_START = 0.03
_FIRST_STEP_UP = 0.10
_STEP_MIN = 0.005
_STEP_MAX = 0.25
# Ghost evidence decides a period when it counts at least this many misses and one side has
# twice the other's; otherwise the hit-rate comparison does.
_GHOST_MIN = 8
_GHOST_RATIO = 2.0
_WINDOW_SIDE, _MAIN_SIDE = 1, 2  # GhostFilter sides
# A candidate at least this popular is admitted 1 time in 128 even when it loses, so an
# attacker can't pin a victim in the cache by inflating its count with colliding keys.
_FLOOD_FREQUENCY = 6
_SKETCH_START = 1024  # entries the sketch is first sized for...
_SKETCH_START_WEIGHED = 64  # ...or, when only a byte budget is known, a guess it outgrows


class TinyLfuPolicy:
    """Window TinyLFU with hill climbing (``policy="tinylfu"``, the default).

    New keys enter a small LRU *window*. What falls out of the window is a *candidate* for
    the *main* area, a segmented LRU (probation, then protected once read again). When the
    cache is full, the candidate is compared with main's eviction victim by their recent
    popularity (a :class:`~dataferry._memory._sketch.FrequencySketch`) and the less popular
    one goes: one-hit wonders and scans can't flush the popular entries, while the window
    still lets a new key prove itself.

    The window's share of the budget adapts by hill climbing, as in Caffeine. It starts at 1%;
    once the cache is full, every sample period (10 requests per entry) moves the split between
    window and main. The step (a share of the budget) doubles while the split keeps moving the
    same way, up to 25% per period, and halves when it turns back, so a recency-heavy workload
    reaches an LRU-like split within a few periods and a stable one settles where the hit rate
    peaks. Which way to move:

    - normally, like Caffeine: keep going while the period's hit rate is at least the previous
      period's, turn back when it fell;
    - unless the misses say clearly which side is short of room (as ARC's ghost lists do): the
      policy remembers the keys it recently turned away from the window (rejected candidates)
      and from main (admission victims), about a cache's worth of each in small Bloom filters.
      A miss on a key the window lost votes for a bigger window, one main lost for a bigger
      main. This is immune to the workload changing phase mid-period, which fools a hit-rate
      comparison, and it finds the way out of flat stretches where the hit rate barely moves;
    - the first move, with no earlier period to compare with, goes where hits are denser: a
      10% step toward recency if the window earns more hits per slot than main, else a
      gentle step toward frequency.

    Args:
        maximum: The budget, in the weight the cache passes (entries, or bytes with
            ``max_bytes``).
        entries: Most entries the cache holds (``max_entries``), if known: caps the sketch,
            which starts small and grows with the number of entries (as in Caffeine), so a
            generous limit costs nothing until it is used.
        seed: Seed of the rare random admission (deterministic by default).

    """

    __slots__ = (
        "_candidate",
        "_count",
        "_direction",
        "_full",
        "_ghosts",
        "_main_ghost_hits",
        "_maximum",
        "_previous_rate",
        "_probation",
        "_protected",
        "_protected_max",
        "_protected_w",
        "_random",
        "_sample_hits",
        "_samples",
        "_sketch",
        "_sketch_limit",
        "_step",
        "_window",
        "_window_ghost_hits",
        "_window_hits",
        "_window_max",
        "_window_w",
    )

    def __init__(self, maximum: int, *, entries: int | None = None, seed: int = 0) -> None:
        if maximum < 1:
            raise ValueError("maximum must be at least 1")
        self._maximum = maximum
        self._window_max = max(1, maximum - int(maximum * _PERCENT_MAIN))
        self._protected_max = int((maximum - self._window_max) * _PERCENT_PROTECTED)
        # Each region maps key -> weight, least recently used first.
        self._window: OrderedDict[str, int] = OrderedDict()
        self._probation: OrderedDict[str, int] = OrderedDict()
        self._protected: OrderedDict[str, int] = OrderedDict()
        self._window_w = 0
        self._protected_w = 0  # probation's weight is never needed
        self._count = 0
        self._candidate: str | None = None  # last key moved from the window into probation
        # Sized in entries. Unknown with a byte budget: start small, grow with the count.
        self._sketch_limit = entries if entries is not None else sys.maxsize
        start = min(_SKETCH_START, entries) if entries is not None else _SKETCH_START_WEIGHED
        self._sketch = FrequencySketch(start)
        self._random = random.Random(seed)
        self._samples = 0
        self._sample_hits = 0
        self._window_hits = 0  # hits in the window this period
        # Keys recently evicted, by side, and this period's misses on them.
        self._ghosts = GhostFilter(self._sketch.capacity)
        self._window_ghost_hits = 0
        self._main_ghost_hits = 0
        self._previous_rate = -1.0  # no sample yet
        self._direction = 1  # +1 grows the window, -1 shrinks it
        self._full = False  # whether anything was evicted yet
        self._step = _STEP_START

    def __len__(self) -> int:
        return self._count

    @property
    def window_maximum(self) -> int:
        """The window's current share of the budget (it adapts to the workload)."""
        return self._window_max

    def record_insert(self, key: str, weight: int, expires_at: float) -> None:
        """Put a new ``key`` in the window; a replaced value counts as an access."""
        window = self._window
        if key in window or key in self._probation or key in self._protected:
            self._reweigh(key, weight)
            self.record_access(key)
            return
        self._sketch.increment(key)
        self._samples += 1  # a miss, for the hill climber
        lost_by = self._ghosts.side(key)
        if lost_by == _WINDOW_SIDE:
            self._window_ghost_hits += 1
        elif lost_by == _MAIN_SIDE:
            self._main_ghost_hits += 1
        self._count += 1
        sketch = self._sketch
        if self._count > sketch.capacity and sketch.capacity < self._sketch_limit:
            sketch.resize(min(2 * self._count, self._sketch_limit))
            self._ghosts = GhostFilter(sketch.capacity)
        window[key] = weight
        self._window_w += weight
        if self._window_w > self._window_max:
            self._evict_from_window()
        if self._samples >= _CLIMB_SAMPLE * self._sketch.capacity:
            self._climb()

    def record_access(self, key: str) -> None:
        """Count a hit on ``key`` and refresh its recency (a probation hit is promoted)."""
        self._sketch.increment(key)
        self._sample_hits += 1
        self._samples += 1
        protected = self._protected
        if key in protected:
            protected.move_to_end(key)
        elif key in self._window:
            self._window.move_to_end(key)
            self._window_hits += 1
        else:
            weight = self._probation.pop(key)
            if weight > self._protected_max:  # too heavy to protect: stays in probation
                self._probation[key] = weight
            else:
                protected[key] = weight
                self._protected_w += weight
                if self._protected_w > self._protected_max:
                    self._demote_protected()
        if self._samples >= _CLIMB_SAMPLE * self._sketch.capacity:
            self._climb()

    def record_remove(self, key: str) -> None:
        """Forget ``key``."""
        if key == self._candidate:
            self._candidate = None
        weight = self._probation.pop(key, None)
        if weight is None:
            weight = self._protected.pop(key, None)
            if weight is not None:
                self._protected_w -= weight
            else:
                weight = self._window.pop(key, None)
                if weight is None:
                    return
                self._window_w -= weight
        self._count -= 1

    def select_victim(self) -> str:
        """Return (and forget) the loser of candidate vs victim, else main's LRU entry."""
        self._full = True
        probation = self._probation
        candidate, self._candidate = self._candidate, None
        if candidate is not None and candidate in probation:
            victim: str | None = next(iter(probation))
            if victim == candidate:  # probation holds nothing older: compare with protected
                victim = next(iter(self._protected), None)
            popularity = self._sketch.frequency(candidate)
            if victim is not None and self._admit(popularity, victim):
                self.record_remove(victim)
                self._ghosts.add(victim, _MAIN_SIDE)
                return victim
            self.record_remove(candidate)
            if popularity == 0:
                # It left the window before it could show any popularity: if it comes back,
                # the window was too short. (A candidate with a history that lost to a more
                # popular victim says nothing about the window, only that main is full.)
                self._ghosts.add(candidate, _WINDOW_SIDE)
            return candidate
        for region in (probation, self._protected, self._window):
            if region:
                key = next(iter(region))
                self.record_remove(key)
                self._ghosts.add(key, _WINDOW_SIDE if region is self._window else _MAIN_SIDE)
                return key
        raise LookupError("select_victim on an empty policy")

    def clear(self) -> None:
        """Forget every key (the popularity sketch and the window size are kept)."""
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self._window_w = self._protected_w = self._count = 0
        self._candidate = None

    def _reweigh(self, key: str, weight: int) -> None:
        for region in (self._window, self._probation, self._protected):
            old = region.get(key)
            if old is not None:
                region[key] = weight
                if region is self._window:
                    self._window_w += weight - old
                elif region is self._protected:
                    self._protected_w += weight - old
                return

    def _admit(self, candidate_freq: int, victim: str) -> bool:
        if candidate_freq == 0:  # the common case (one-hit wonders): nothing can be lower
            return False
        if candidate_freq > self._sketch.frequency(victim):
            return True
        return candidate_freq >= _FLOOD_FREQUENCY and self._random.getrandbits(7) == 0

    def _evict_from_window(self) -> None:
        # Overflow moves to probation's MRU end, where it waits to be judged as a candidate.
        window, probation = self._window, self._probation
        while self._window_w > self._window_max and window:
            key, weight = window.popitem(last=False)
            self._window_w -= weight
            probation[key] = weight
            self._candidate = key

    def _demote_protected(self) -> None:
        protected, probation = self._protected, self._probation
        while self._protected_w > self._protected_max and protected:
            key, weight = protected.popitem(last=False)
            self._protected_w -= weight
            probation[key] = weight

    def _climb(self) -> None:
        requests = self._samples
        hit_rate = self._sample_hits / requests
        window_hits = self._window_hits
        main_hits = self._sample_hits - window_hits
        self._samples = self._sample_hits = self._window_hits = 0
        window_lost, main_lost = self._window_ghost_hits, self._main_ghost_hits
        self._window_ghost_hits = self._main_ghost_hits = 0
        if not self._full:
            # Still filling up: the hit rate rises whatever the window does, so a sample
            # would mislead the climber. Start from the first full period.
            return
        previous, self._previous_rate = self._previous_rate, hit_rate
        if previous < 0:
            # First full period, nothing to compare with yet: aim the first move by where the
            # hits land. A window that earns more hits per slot than the main area means
            # recency pays, so grow it boldly; otherwise lean toward frequency, gently.
            window_density = window_hits / self._window_max
            main_density = main_hits / max(1, self._maximum - self._window_max)
            if window_density > main_density:
                self._direction, self._step = 1, _FIRST_STEP_UP
                self._increase_window(int(self._step * self._maximum) or 1)
            else:
                self._direction, self._step = -1, _STEP_START
            return
        # A change smaller than the sampling noise of two periods' hit rates is no signal.
        noise = math.sqrt(2 * hit_rate * (1 - hit_rate) / requests)
        if window_lost + main_lost >= _GHOST_MIN and (
            window_lost > _GHOST_RATIO * main_lost or main_lost > _GHOST_RATIO * window_lost
        ):
            direction = 1 if window_lost > main_lost else -1
            faster = direction == self._direction
        elif hit_rate - previous > noise:  # the last move helped: go on, faster
            direction, faster = self._direction, True
        elif previous - hit_rate > noise:  # it hurt: turn back
            direction, faster = -self._direction, False
        else:  # a plateau: settle, with smaller steps the same way
            direction, faster = self._direction, False
        if direction != self._direction:
            self._direction = direction
        if faster:
            self._step = min(_STEP_MAX, self._step * 2)
        else:
            self._step = max(_STEP_MIN, self._step / 2)
        adjustment = int(self._step * self._maximum) or 1
        if self._direction > 0:
            moved = self._increase_window(adjustment)
        else:
            moved = self._decrease_window(adjustment)
        if not moved:  # at the end of its range: pushing harder means nothing
            self._step = _STEP_START

    def _increase_window(self, amount: int) -> int:
        quota = min(amount, self._protected_max)
        if quota <= 0:
            return 0
        requested = quota
        self._protected_max -= quota
        self._window_max += quota
        self._demote_protected()
        # Main's least recently used entries join the window, up to the quota's weight.
        window, probation, protected = self._window, self._probation, self._protected
        while quota > 0:
            source = probation if probation else protected
            if not source:
                break
            key = next(iter(source))
            weight = source[key]
            if weight > quota:
                break
            quota -= weight
            del source[key]
            if source is protected:
                self._protected_w -= weight
            if key == self._candidate:
                self._candidate = None
            window[key] = weight
            self._window_w += weight
        # Whatever could not move stays with the main area.
        self._protected_max += quota
        self._window_max -= quota
        return requested - quota

    def _decrease_window(self, amount: int) -> int:
        quota = min(amount, self._window_max - 1)
        if quota <= 0:
            return 0
        self._window_max -= quota
        self._protected_max += quota
        window, probation = self._window, self._probation
        while self._window_w > self._window_max and window:
            key, weight = window.popitem(last=False)
            self._window_w -= weight
            probation[key] = weight
        return quota
