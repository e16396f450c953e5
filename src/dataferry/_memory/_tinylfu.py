"""W-TinyLFU eviction with an adaptive window: the default policy of MemoryCache."""

from __future__ import annotations

import random
import sys
from collections import OrderedDict

from dataferry._memory._sketch import FrequencySketch

__all__ = ["TinyLfuPolicy"]

_PERCENT_MAIN = 0.99  # the window starts at 1% of the budget
_PERCENT_PROTECTED = 0.80  # of the main area
_STEP_PERCENT = 0.0625  # a hill-climbing step moves 6.25% of the budget...
_STEP_DECAY = 0.98  # ...and shrinks while the hit rate stays level
_RESTART_THRESHOLD = 0.05  # a hit-rate change this large restarts with a full step
_COUNT_INSERT = True
_CLIMB_SAMPLE = 10
_INITIAL_STEP = -1  # requests per entry in a hill-climbing sample period
# A candidate at least this popular is admitted 1 time in 128 even when it loses, so an
# attacker can't pin a victim in the cache by inflating its count with colliding keys.
_FLOOD_FREQUENCY = 6
_SKETCH_START = 1024  # entries the sketch is first sized for


class TinyLfuPolicy:
    """Window TinyLFU with hill climbing (``policy="tinylfu"``, the default).

    New keys enter a small LRU *window*. What falls out of the window is a *candidate* for
    the *main* area, a segmented LRU (probation, then protected once read again). When the
    cache is full, the candidate is compared with main's eviction victim by their recent
    popularity (a :class:`~dataferry._memory._sketch.FrequencySketch`) and the less popular
    one goes: one-hit wonders and scans can't flush the popular entries, while the window
    still lets a new key prove itself.

    The window's share of the budget adapts: every sample period (10 requests per entry) the
    policy compares the period's hit rate with the previous one and keeps moving the split in
    the same direction while it helps, reversing when it hurts, in shrinking steps (hill
    climbing, as in Caffeine). Recency-heavy workloads grow the window toward plain LRU,
    frequency-heavy ones shrink it.

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
        "_full",
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
        self._sketch_limit = entries if entries is not None else sys.maxsize
        self._sketch = FrequencySketch(min(_SKETCH_START, self._sketch_limit))
        self._random = random.Random(seed)
        self._samples = 0
        self._sample_hits = 0
        self._previous_rate = 0.0
        self._full = False  # whether anything was evicted yet
        self._step = _INITIAL_STEP * _STEP_PERCENT * maximum

    def __len__(self) -> int:
        return self._count

    @property
    def window_maximum(self) -> int:
        """The window's current share of the budget (it adapts to the workload)."""
        return self._window_max

    def record_insert(self, key: str, weight: int, expires_at: float) -> None:
        """Put a new ``key`` in the window; a replaced value counts as an access."""
        window = self._window
        for region in (window, self._probation, self._protected):
            old = region.get(key)
            if old is not None:
                region[key] = weight
                if region is window:
                    self._window_w += weight - old
                elif region is self._protected:
                    self._protected_w += weight - old
                self.record_access(key)
                return
        if _COUNT_INSERT:
            self._sketch.increment(key)
        self._samples += 1  # a miss, for the hill climber
        self._count += 1
        sketch = self._sketch
        if self._count > sketch.capacity and sketch.capacity < self._sketch_limit:
            sketch.resize(min(2 * self._count, self._sketch_limit))
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
            if victim is not None and self._admit(candidate, victim):
                self.record_remove(victim)
                return victim
            self.record_remove(candidate)
            return candidate
        for region in (probation, self._protected, self._window):
            if region:
                key = next(iter(region))
                self.record_remove(key)
                return key
        raise LookupError("select_victim on an empty policy")

    def clear(self) -> None:
        """Forget every key (the popularity sketch and the window size are kept)."""
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self._window_w = self._protected_w = self._count = 0
        self._candidate = None

    def _admit(self, candidate: str, victim: str) -> bool:
        sketch = self._sketch
        candidate_freq = sketch.frequency(candidate)
        if candidate_freq > sketch.frequency(victim):
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
        if not self._full:
            # Still filling up: the hit rate rises whatever the window does, so a sample
            # would mislead the climber. Start from the first full period.
            self._samples = self._sample_hits = 0
            return
        hit_rate = self._sample_hits / self._samples
        change = hit_rate - self._previous_rate
        amount = self._step if change >= 0 else -self._step
        if abs(change) >= _RESTART_THRESHOLD:
            self._step = _STEP_PERCENT * self._maximum * (1 if amount >= 0 else -1)
        else:
            self._step = _STEP_DECAY * amount
        self._previous_rate = hit_rate
        self._samples = self._sample_hits = 0
        adjustment = int(amount)
        if adjustment > 0:
            self._increase_window(adjustment)
        elif adjustment < 0:
            self._decrease_window(-adjustment)

    def _increase_window(self, amount: int) -> None:
        quota = min(amount, self._protected_max)
        if quota <= 0:
            return
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

    def _decrease_window(self, amount: int) -> None:
        quota = min(amount, self._window_max - 1)
        if quota <= 0:
            return
        self._window_max -= quota
        self._protected_max += quota
        window, probation = self._window, self._probation
        while self._window_w > self._window_max and window:
            key, weight = window.popitem(last=False)
            self._window_w -= weight
            probation[key] = weight
