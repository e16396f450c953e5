"""W-TinyLFU eviction with an adaptive window: the default policy of MemoryCache."""

from __future__ import annotations

import math
import random
import sys
from collections import OrderedDict
from collections.abc import Callable

from dataferry._memory._sketch import FrequencySketch, GhostFilter

__all__ = ["TinyLfuPolicy"]

_PERCENT_PROTECTED = 0.80  # of the main area
# The window sizes the cache chooses from (shares of the budget; the top one leaves main 1%).
_RUNGS = (0.01, 0.20, 1.0)
_LADDER_SAMPLE = 0.25  # requests per entry between two decisions
# The miniature caches: a hash-sampled 1/2**k of the keys, k chosen so that each holds about
# _PROBE_ENTRIES of them (as in SHARDS), but never more than 1/8 of the keys (their cost:
# about 23 bytes per entry at 4,096 entries, none to speak of from 8k entries up, where the
# share shrinks). 1/16 would halve that, but miniatures of 1/16 of a 2,000-entry cache (125
# keys) rank window sizes worse: a zig-zag fell 1.5-3.5 points behind LRU under some hash
# seeds, against at most 1.5 with 1/8 (tests/test_memory_adaptation.py's workload).
# Below _LADDER_MIN entries, miniatures that small can't rank window sizes (measured: a cache
# of 353 entries, 44 sampled keys, ranks them at random): such caches climb instead.
_PROBE_ENTRIES = 512
_PROBE_MIN_SHIFT = 3
_LADDER_MIN = 512
_SAMPLE_BITS_AT = 32  # the hash bits that sample (the sketch indexes with the low ones)
# A rung beats the current one when, over the requests where their miniatures disagree, it
# leads by at least _PROBE_LEAD requests, 3 standard deviations (lead**2 > 9 * disagreements)
# and 0.5% of the requests counted. Measured: 4 standard deviations left a slowly drifting
# workload at the wrong rung for 80,000 requests (drift_zipf at 20%: -1.5 points against LRU,
# -0.8 at 3); 2.5 let recsys chase noise (-1.7 points); 3 changed no other trace beyond noise.
_PROBE_LEAD = 16
_PROBE_Z2 = 9.0
_PROBE_GAP = 0.005
_DECAY_SAMPLES = 16384  # the evidence is halved once it counts this many sampled requests
# Climbing (small caches): one decision per sample period of 10 requests per entry (raising
# it freezes the window where it starts, at 1%). The step (a share of the budget) doubles
# while the window keeps moving the same way and halves when it turns back.
_CLIMB_SAMPLE = 10
_STEP_START = 0.03
_FIRST_STEP_UP = 0.10
_STEP_MIN = 0.005
_STEP_MAX = 0.25
# The ghost vote (climbing only): a period is decided by ghost evidence when it counts at least
# this many misses on recently evicted keys and one side has twice the other's.
_GHOST_MIN = 8
_GHOST_RATIO = 2.0
# A move the ghosts led that cost hits mutes them for 1 period, then 2, 4... up to this many
# (a success resets it): on a loop over more keys than the cache holds, every miss is a key the
# window turned away, yet a bigger window only shrinks main (loop at 50% of its keys: 3.6%
# hits, 28% when they can't repeat a move that hurt, OPT 50%).
_GHOST_MUTE_MAX = 64
# ... when it cost more than this many standard deviations of the sampling noise (as the
# ladder's threshold, _PROBE_Z2). At 1, a sliding working set (each key read ~4 times, then
# never) got 50-75% of LRU's hits on 4 hash seeds of 24 (the window stayed small); at 3,
# 85-90% on all 24, and loop.trace at 40/45/50% of its keys gets 35.7/43.3/45.3% over
# seeds 0-6 (was 31.1/43.6/47.9).
_COST_Z = 3.0
_WINDOW_SIDE, _MAIN_SIDE = 1, 2  # GhostFilter sides
# A candidate at least this popular is admitted 1 time in 128 even when it loses, so an
# attacker can't pin a victim in the cache by inflating its count with colliding keys.
_FLOOD_FREQUENCY = 6
_SKETCH_START = 1024  # entries the sketch is first sized for...
_SKETCH_START_WEIGHED = 64  # ...or, when only a byte budget is known, a guess it outgrows


def _split(maximum: int, window: int) -> tuple[int, int]:
    """The (window, protected) maxima of a budget whose window is about ``window``."""
    w = min(max(1, window), max(1, maximum - max(1, maximum // 100)))
    return w, int((maximum - w) * _PERCENT_PROTECTED)


class _Miniature:
    """A small W-TinyLFU with a fixed window, over key hashes, for a sample of the keys.

    The same structure as :class:`TinyLfuPolicy` (window LRU, then a segmented LRU main area
    behind the admission filter), ranking by the real cache's sketch, which counts every
    request. It only answers whether each request it is shown would have hit.
    """

    __slots__ = (
        "_estimate",
        "_maximum",
        "_probation",
        "_protected",
        "_protected_max",
        "_protected_w",
        "_weight",
        "_window",
        "_window_max",
        "_window_w",
    )

    def __init__(self, maximum: int, window: float, estimate: Callable[[int], int]) -> None:
        self._maximum = maximum
        self._window_max, self._protected_max = _split(maximum, int(window * maximum))
        self._window: OrderedDict[int, int] = OrderedDict()
        self._probation: OrderedDict[int, int] = OrderedDict()
        self._protected: OrderedDict[int, int] = OrderedDict()
        self._window_w = self._protected_w = self._weight = 0
        self._estimate = estimate

    def request(self, h: int, weight: int) -> bool:
        """Serve a request for the key whose hash is ``h``; return whether it hit."""
        protected = self._protected
        if h in protected:
            protected.move_to_end(h)
            return True
        window = self._window
        if h in window:
            window.move_to_end(h)
            return True
        probation = self._probation
        old = probation.pop(h, None)
        if old is not None:
            if old > self._protected_max:
                probation[h] = old
                return True
            protected[h] = old
            self._protected_w += old
            while self._protected_w > self._protected_max:
                key, w = protected.popitem(last=False)
                self._protected_w -= w
                probation[key] = w
            return True
        window[h] = weight
        self._window_w += weight
        self._weight += weight
        estimate = self._estimate
        while self._window_w > self._window_max:
            candidate, w = window.popitem(last=False)
            self._window_w -= w
            probation[candidate] = w
            while self._weight > self._maximum:
                victim = next(iter(probation))
                if victim == candidate:
                    victim = next(iter(protected), candidate)
                freq = estimate(candidate) if victim != candidate else 0
                if freq and freq > estimate(victim):
                    if victim in probation:
                        self._weight -= probation.pop(victim)
                    else:
                        w = protected.pop(victim)
                        self._protected_w -= w
                        self._weight -= w
                else:
                    self._weight -= probation.pop(candidate)
                    break
        return False


class TinyLfuPolicy:
    """Window TinyLFU with an adaptive window (``policy="tinylfu"``, the default).

    New keys enter a small LRU *window*. What falls out of the window is a *candidate* for
    the *main* area, a segmented LRU (probation, then protected once read again). When the
    cache is full, the candidate is compared with main's eviction victim by their recent
    popularity (a :class:`~dataferry._memory._sketch.FrequencySketch`) and the less popular
    one goes: one-hit wonders and scans can't flush the popular entries, while the window
    still lets a new key prove itself.

    How big the window should be depends on the workload: 1% of the budget when popularity is
    what predicts the next requests, most of it when recency does (loops, zig-zags, sessions,
    a working set that drifts), somewhere between for many real traces. The policy chooses
    from a ladder of window sizes (1%, 20% and 99% of the budget) by *miniature simulation*:

    - one miniature W-TinyLFU per rung, each fed the requests for a hash-sampled 1/2**k of
      the keys with 1/2**k of the budget (as SHARDS does for LRU), which scales the workload
      and the cache down together; each holds about 512 sampled keys, at most 1/8 of the
      cache's entries, and ranks by the real sketch;
    - for every sampled request, which miniatures hit: a histogram of the 8 hit patterns,
      halved once it counts 16384 requests (about what a 1-point difference needs to stand
      out), so older evidence fades;
    - every quarter of a budget's worth of requests (once the cache is full), each rung is
      compared with the current one on the requests where their miniatures disagree, a paired
      comparison that a workload changing phase affects on both sides alike; the window moves
      to the rung with the clearest lead, if it leads by 3 standard deviations, 16 requests
      and 0.5% of the requests counted. Ties go to the larger window: a loop slightly larger
      than a mid-size window makes that one worse than a small one, yet the largest best.

    Caches under 512 entries can't afford miniatures big enough to rank window sizes (one
    holding 1/8 of 353 entries, 44 keys, ranks them at random), so they climb instead, as
    Caffeine does: every sample period (10 requests per entry) the window moves by a step that
    doubles while the hit rate keeps improving and halves when it turns back; the first move
    goes where hits are denser per slot, and a ghost vote (keys lately turned away by the
    window or by main, in small Bloom filters: a miss on one says which side was short of
    room, as ARC's ghost lists do) overrides the hit rate when it is clear, which crosses
    stretches where growing the window first costs hits. Ghosts can mislead (on a loop larger
    than the cache every miss is a key the window lost, yet a bigger window only shrinks main),
    so a move they led that clearly cost hits mutes them for 1, 2, 4... periods, and no move
    that clearly cost hits is repeated. A cache with a byte budget switches to the ladder once
    it holds 512 entries.

    The window starts at 1%, as Caffeine's does. Moving it reshapes the split at once (main
    stays 80% protected): a smaller window hands its oldest entries to probation, a bigger
    one takes main's least recently used entries (kept in their order, behind its own).

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
        "_ghost_backoff",
        "_ghost_led",
        "_ghost_mute",
        "_ghosts",
        "_main_ghost_hits",
        "_maximum",
        "_minis",
        "_patterns",
        "_period",
        "_previous_rate",
        "_probation",
        "_probe_mask",
        "_protected",
        "_protected_max",
        "_protected_w",
        "_random",
        "_rung",
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
        self._rung = 0
        self._window_max, self._protected_max = _split(maximum, int(_RUNGS[0] * maximum))
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
        self._full = False  # whether anything was evicted yet
        self._samples = 0  # requests since the last decision
        self._period = 0.0  # ...and between two decisions
        # The ladder (see the class docstring): miniatures, none for a cache that climbs.
        self._probe_mask = 0
        self._minis: list[_Miniature] = []
        self._patterns: list[int] = []  # sampled requests by which miniatures hit (bit i: rung i)
        # Climbing: this period's hits (and those in the window), the last period's hit rate.
        self._sample_hits = self._window_hits = 0
        self._previous_rate = -1.0  # no sample yet
        self._direction = 1  # +1 grows the window, -1 shrinks it
        self._step = _STEP_START
        # Keys recently evicted, by side, and this period's misses on them (climbing only).
        self._ghosts: GhostFilter | None = None
        self._window_ghost_hits = self._main_ghost_hits = 0
        self._ghost_led = False  # whether the ghosts decided the last move
        self._ghost_mute = 0  # periods left without a ghost vote
        self._ghost_backoff = 1  # the next mute's length
        self._reset_probe(entries if entries is not None else start)

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
        h = hash(key)
        sketch = self._sketch
        sketch.add(h)
        if not h >> _SAMPLE_BITS_AT & self._probe_mask and self._minis:
            self._probe(h, weight)
        ghosts = self._ghosts
        if ghosts is not None:
            lost_by = ghosts.side(key)
            if lost_by == _WINDOW_SIDE:
                self._window_ghost_hits += 1
            elif lost_by == _MAIN_SIDE:
                self._main_ghost_hits += 1
        self._count += 1
        if self._count > sketch.capacity and sketch.capacity < self._sketch_limit:
            sketch.resize(min(2 * self._count, self._sketch_limit))
            self._reset_probe(self._sketch_limit if self._sketch_limit < sys.maxsize else 0)
        window[key] = weight
        self._window_w += weight
        if self._window_w > self._window_max:
            self._evict_from_window()
        self._samples += 1
        if self._samples >= self._period:
            self._adapt()

    def record_access(self, key: str) -> None:
        """Count a hit on ``key`` and refresh its recency (a probation hit is promoted)."""
        h = hash(key)
        self._sketch.add(h)
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
        if not h >> _SAMPLE_BITS_AT & self._probe_mask and self._minis:
            self._probe(h, self._weight_of(key))
        self._sample_hits += 1
        self._samples += 1
        if self._samples >= self._period:
            self._adapt()

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
        ghosts = self._ghosts
        candidate, self._candidate = self._candidate, None
        if candidate is not None and candidate in probation:
            victim: str | None = next(iter(probation))
            if victim == candidate:  # probation holds nothing older: compare with protected
                victim = next(iter(self._protected), None)
            popularity = self._sketch.frequency(candidate)
            if victim is not None and self._admit(popularity, victim):
                self.record_remove(victim)
                if ghosts is not None:
                    ghosts.add(victim, _MAIN_SIDE)
                return victim
            self.record_remove(candidate)
            if popularity == 0 and ghosts is not None:
                # It left the window before it could show any popularity: if it comes back,
                # the window was too short. (A candidate with a history that lost to a more
                # popular victim says nothing about the window, only that main is full.)
                ghosts.add(candidate, _WINDOW_SIDE)
            return candidate
        for region in (probation, self._protected, self._window):
            if region:
                key = next(iter(region))
                self.record_remove(key)
                if ghosts is not None:
                    ghosts.add(key, _WINDOW_SIDE if region is self._window else _MAIN_SIDE)
                return key
        raise LookupError("select_victim on an empty policy")

    def clear(self) -> None:
        """Forget every key (the sketch, the miniatures and the window size are kept)."""
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

    def _weight_of(self, key: str) -> int:
        weight = self._protected.get(key)
        if weight is None:
            weight = self._window.get(key)
            if weight is None:
                weight = self._probation.get(key, 1)
        return weight

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

    # -- adaptation -------------------------------------------------------------------------

    def _reset_probe(self, entries: int) -> None:
        """Size the miniatures for about ``entries`` entries (0: as many as the cache holds)."""
        entries = entries or max(self._count, self._sketch.capacity)
        if entries < _LADDER_MIN:  # too small for miniatures: climb
            self._period = _CLIMB_SAMPLE * self._sketch.capacity
            self._ghosts = GhostFilter(self._sketch.capacity)
            return
        self._ghosts = None
        self._period = _LADDER_SAMPLE * self._sketch.capacity
        shift = max(_PROBE_MIN_SHIFT, (entries // _PROBE_ENTRIES).bit_length() - 1)
        if self._minis and self._probe_mask == (1 << shift) - 1:
            return  # sampled as before: keep what the miniatures learnt
        self._probe_mask = (1 << shift) - 1
        maximum = max(1, self._maximum >> shift)
        estimate = self._sketch.estimate
        self._minis = [_Miniature(maximum, share, estimate) for share in _RUNGS]
        self._patterns = [0] * (1 << len(_RUNGS))
        # The nearest rung to where the window is (it may have climbed while the cache was
        # small, with a byte budget).
        self._rung = min(
            range(len(_RUNGS)), key=lambda i: abs(_RUNGS[i] * self._maximum - self._window_max)
        )

    def _probe(self, h: int, weight: int) -> None:
        pattern = 0
        bit = 1
        for mini in self._minis:
            if mini.request(h, weight):
                pattern |= bit
            bit <<= 1
        self._patterns[pattern] += 1

    def _adapt(self) -> None:
        hits, window_hits, requests = self._sample_hits, self._window_hits, self._samples
        self._samples = self._sample_hits = self._window_hits = 0
        if not self._full:  # while filling up, every window size hits the same
            self._window_ghost_hits = self._main_ghost_hits = 0
            return
        if self._minis:
            self._decide()
        else:
            self._climb(hits, window_hits, requests)

    def _decide(self) -> None:
        patterns = self._patterns
        here = 1 << self._rung
        counted = sum(patterns)
        best, best_lead = -1, 0
        for rung in range(len(_RUNGS)):
            there = 1 << rung
            wins = losses = 0
            for pattern, n in enumerate(patterns):
                if pattern & there:
                    if not pattern & here:
                        wins += n
                elif pattern & here:
                    losses += n
            lead = wins - losses
            if (
                lead >= best_lead  # ties: the larger window
                and lead >= _PROBE_LEAD
                and lead * lead > _PROBE_Z2 * (wins + losses)
                and lead > _PROBE_GAP * counted
            ):
                best, best_lead = rung, lead
        if best >= 0:
            self._move_to(best)
        if counted >= _DECAY_SAMPLES:
            for i, n in enumerate(patterns):
                patterns[i] = n >> 1

    def _climb(self, hits: int, window_hits: int, requests: int) -> None:
        # Caffeine's hill climbing, on the hit rates of successive periods.
        hit_rate = hits / requests
        previous, self._previous_rate = self._previous_rate, hit_rate
        if previous < 0:
            self._window_ghost_hits = self._main_ghost_hits = 0
            # First full period, nothing to compare with yet: aim the first move by where the
            # hits land. A window that earns more hits per slot than the main area means
            # recency pays, so grow it boldly; otherwise lean toward frequency, gently.
            window_density = window_hits / self._window_max
            main_density = (hits - window_hits) / max(1, self._maximum - self._window_max)
            if window_density > main_density:
                self._direction, self._step = 1, _FIRST_STEP_UP
                self._resize(self._window_max + (int(self._step * self._maximum) or 1))
            else:
                self._direction, self._step = -1, _STEP_START
            return
        # A change smaller than the sampling noise of two periods' hit rates is no signal,
        # unless the misses say clearly which side is short of room (as ARC's ghost lists
        # do): a miss on a key the window lost votes for a bigger window, one main lost for a
        # bigger main. That crosses stretches where growing the window first costs hits.
        noise = math.sqrt(2 * hit_rate * (1 - hit_rate) / requests)
        window_lost, main_lost = self._window_ghost_hits, self._main_ghost_hits
        self._window_ghost_hits = self._main_ghost_hits = 0
        improved, hurt = hit_rate - previous > noise, previous - hit_rate > noise
        # Whether the last move clearly cost hits: short periods' hit rates swing by a few
        # standard deviations on recency workloads, and taking those swings for the ghosts'
        # fault kept the window small on a sliding working set.
        cost = previous - hit_rate > _COST_Z * noise
        if self._ghost_led and cost:  # the ghosts were wrong: stop listening, a while
            self._ghost_mute = self._ghost_backoff
            self._ghost_backoff = min(_GHOST_MUTE_MAX, 2 * self._ghost_backoff)
        elif self._ghost_led and improved:
            self._ghost_backoff = 1
        ghost = 0
        if self._ghost_mute:
            self._ghost_mute -= 1
        elif window_lost + main_lost >= _GHOST_MIN and (
            window_lost > _GHOST_RATIO * main_lost or main_lost > _GHOST_RATIO * window_lost
        ):
            ghost = 1 if window_lost > main_lost else -1
        if cost and ghost == self._direction:
            ghost = 0  # never repeat a move that cost hits, whoever led it
        self._ghost_led = bool(ghost)
        if ghost:
            direction, faster = ghost, ghost == self._direction
        elif improved:  # the last move helped: go on, faster
            direction, faster = self._direction, True
        elif hurt:  # it hurt: turn back
            direction, faster = -self._direction, False
        else:  # a plateau: settle, with smaller steps the same way
            direction, faster = self._direction, False
        self._direction = direction
        if faster:
            self._step = min(_STEP_MAX, self._step * 2)
        else:
            self._step = max(_STEP_MIN, self._step / 2)
        step = (int(self._step * self._maximum) or 1) * direction
        if not self._resize(self._window_max + step):  # at the end of its range
            self._step = _STEP_START

    def _move_to(self, rung: int) -> None:
        self._rung = rung
        self._resize(int(_RUNGS[rung] * self._maximum))

    def _resize(self, window: int) -> bool:
        """Give the window about ``window`` of the budget, main the rest; False if no change."""
        window_max, protected_max = _split(self._maximum, window)
        if window_max == self._window_max:
            return False
        self._window_max, self._protected_max = window_max, protected_max
        self._demote_protected()
        window_od, probation, protected = self._window, self._probation, self._protected
        if self._window_w > window_max:  # a smaller window: its oldest entries go to probation
            while self._window_w > window_max and window_od:
                key, weight = window_od.popitem(last=False)
                self._window_w -= weight
                probation[key] = weight
            return True
        # A bigger window: main's least recently used entries join it while they fit, at its
        # old end (they are older than what the window holds), in the order they had.
        moved: list[tuple[str, int]] = []
        room = window_max - self._window_w
        while True:
            source = probation if probation else protected
            if not source:
                break
            key = next(iter(source))
            weight = source[key]
            if weight > room:
                break
            room -= weight
            del source[key]
            if source is protected:
                self._protected_w -= weight
            if key == self._candidate:
                self._candidate = None
            moved.append((key, weight))
        for key, weight in reversed(moved):
            window_od[key] = weight
            window_od.move_to_end(key, last=False)
        self._window_w = window_max - room
        return True
