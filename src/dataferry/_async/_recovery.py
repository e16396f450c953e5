"""The L2 writer: background L2 writes and the auto-recovery of failed ones, in order per key.

One queue holds every L2 write that the L2 has not taken yet: writes a caller asked to run in
the background, and writes, deletes and compare-and-sets that failed (or were skipped by an
open circuit breaker). It keeps one operation per key, the latest: a newer write or delete of
a key replaces its queued one, and a direct write of a key first takes its queued one out (and
waits for one being written), so an older write never lands after a newer one. A cache-owned
job (a task of the event loop that queued work; a daemon thread for ``DataFerry``) writes the
queue out at once, and, while the L2 fails, tries again every ``recovery_interval`` seconds or
as soon as another L2 call succeeds.

The bound counts writes that carry a value; deletes carry none and are never dropped (a lost
delete lets every node read the value it removed). Past the bound, the oldest queued write
becomes a delete of its key (counted in ``recovery_drops``). A compare-and-set (what
``expire`` writes) is replayed as itself: it still only replaces the bytes it expected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from dataferry._backends import DistributedCache
from dataferry._codec import Codec
from dataferry._core import Versions
from dataferry._events import CacheEvents
from dataferry._synchronization import AsyncOutcome, AsyncWorker

__all__ = ["CAS", "DELETE", "NOT_QUEUED", "SET", "AsyncL2Writer", "Op"]

logger = logging.getLogger("dataferry")

SET = "set"
DELETE = "delete"
CAS = "compare_and_set"

#: What :meth:`AsyncL2Writer.peek` returns for a key with no queued write.
NOT_QUEUED: Any = type("_NotQueued", (), {"__repr__": lambda self: "NOT_QUEUED"})()

created_at = Codec.created_at

#: Keys written per L2 call when the queue is written out.
BATCH = 256
#: Closing gives up on an L2 that failed this many times in a row...
CLOSE_ATTEMPTS = 3
#: ...tried this many seconds apart.
CLOSE_PAUSE = 0.1

Runner = Callable[..., Awaitable[Any]]


class Op:
    """One queued L2 operation (the latest for its key)."""

    __slots__ = ("data", "dead", "expected", "expires", "fresh", "kind", "version")

    def __init__(
        self,
        kind: str,
        data: bytes | None = None,
        ttl: float = 0.0,
        expected: bytes | None = None,
        *,
        fresh: bool = False,
    ) -> None:
        self.kind = kind
        self.data = data
        self.expected = expected
        # A set's TTL keeps running while it waits: replayed, it gets what is left.
        self.expires = time.monotonic() + ttl if kind is SET else 0.0
        # Never tried yet (a background write): its first failure is an L2 error to count.
        self.fresh = fresh
        # Landed, or superseded while in flight by a direct write of its key: never requeued,
        # and never answered from (the L2 holds what it wrote, or something newer).
        self.dead = False
        # The invalidation version when it was queued (see AsyncL2Writer.put).
        self.version = 0


class AsyncL2Writer:
    """The queue of L2 writes not taken yet, and the job that writes it out."""

    __slots__ = (
        "_backend",
        "_backoff",
        "_bound",
        "_closed",
        "_deletes",
        "_end_cooldown",
        "_events",
        "_inflight",
        "_interval",
        "_lock",
        "_note_failure",
        "_pause",
        "_replay",
        "_run",
        "_sets",
        "_versions",
        "_wait_bound",
        "_worker",
        "count",
        "on_written",
    )

    def __init__(
        self,
        backend: DistributedCache,
        events: CacheEvents,
        *,
        run: Runner,
        note_failure: Callable[[str, Exception], None],
        end_cooldown: Callable[[], None],
        pause: Callable[[float], Awaitable[None]],
        bound: int,
        interval: float,
        replay: bool,
        wait_bound: float,
        versions: Versions,
    ) -> None:
        self._backend = backend
        self._events = events
        self._run = run  # the accessor's resilient call: timeout, breaker, layers, backend
        self._note_failure = note_failure
        self._end_cooldown = end_cooldown
        self._pause = pause
        self._bound = bound
        self._interval = interval
        self._replay = replay  # False: only background writes are queued, failures dropped
        self._wait_bound = wait_bound
        self._versions = versions
        self._sets: OrderedDict[str, Op] = OrderedDict()  # sets and compare-and-sets
        self._deletes: OrderedDict[str, Op] = OrderedDict()
        self._inflight: dict[str, tuple[AsyncOutcome, Op]] = {}
        self._lock = threading.Lock()
        self._backoff = False
        self._closed = False
        self._worker = AsyncWorker(self._work)
        #: Queued and in-flight operations: the hot paths test it before anything else.
        self.count = 0
        #: Called with ``(operation, keys, untrusted)`` after queued operations reached the L2
        #: (``untrusted``: the keys whose L1 entry may no longer be what the L2 holds: see
        #: :meth:`_untrusted`), and with ``("superseded", keys, keys)`` for replays dropped as
        #: outdated (see :meth:`_superseded`).
        self.on_written: Callable[[str, list[str], list[str]], Awaitable[None]] | None = None

    # -- called by the accessor ------------------------------------------------------------------

    def put(self, ops: Sequence[tuple[str, Op]], *, background: bool) -> bool:
        """Queue ``ops`` (latest per key wins); False if a background batch has no room."""
        drops = 0
        wake = False
        with self._lock:
            if self._closed:
                return False
            version = self._versions.current()
            for _, op in ops:
                op.version = version
            sets, deletes = self._sets, self._deletes
            if background:
                new = sum(1 for k, op in ops if op.kind is not DELETE and k not in sets)
                if new and len(sets) + new > self._bound:
                    return False  # the caller writes it now: backpressure, not a drop
            elif not self._replay:
                return False
            for skey, op in ops:
                if op.kind is DELETE:
                    sets.pop(skey, None)
                    deletes[skey] = op
                else:
                    deletes.pop(skey, None)
                    sets[skey] = op
            if background:
                wake = True
            else:
                self._backoff = True  # it just failed: the job waits before trying again
            drops = self._trim()
            self._counted()
            if not (self._worker.running and self._worker.alive()):
                self._worker.start()
                wake = False
        if wake:
            self._worker.wake()
        self._dropped(drops)
        return True

    def peek(self, skey: str) -> Any:
        """The bytes this cache last wrote for ``skey`` and the L2 has not taken yet.

        None for a queued delete (or a write whose TTL ran out), :data:`NOT_QUEUED` when
        nothing is queued for the key (or only a compare-and-set, which depends on the L2).
        """
        op = self._sets.get(skey) or self._deletes.get(skey)
        if op is None:
            flight = self._inflight.get(skey)
            if flight is None or flight[1].dead:
                return NOT_QUEUED
            op = flight[1]
        if op.kind is DELETE:
            return None
        if op.kind is CAS:
            return NOT_QUEUED
        return op.data if op.expires > time.monotonic() else None

    async def claim(self, keys: Sequence[str]) -> None:
        """Before a direct write of ``keys``: take their queued ops out, wait for in-flight ones.

        The direct write is newer: it supersedes what is queued (if it fails, it is queued in
        turn), and it must land after any older write of the same key already on its way.
        """
        waits: list[AsyncOutcome] = []
        with self._lock:
            sets, deletes, inflight = self._sets, self._deletes, self._inflight
            for skey in keys:
                if sets.pop(skey, None) is None:
                    deletes.pop(skey, None)
                flight = inflight.get(skey)
                if flight is not None:
                    flight[1].dead = True  # if it fails, it is not requeued: we are newer
                    if flight[0] not in waits:
                        waits.append(flight[0])
            self._counted()
        for outcome in waits:
            if outcome.usable():  # a batch in another event loop can't be awaited here
                await outcome.wait(self._wait_bound)

    def kick(self) -> None:
        """The L2 answered: write the queue out now instead of after the interval."""
        self._backoff = False
        start = False
        with self._lock:
            if self.count and not self._closed:
                start = not (self._worker.running and self._worker.alive())
                if start:
                    self._worker.start()
        if not start:
            self._worker.wake()

    async def aclose(self, timeout: float) -> None:
        """Stop the job, then write the queue out for up to ``timeout`` s; drop what is left.

        An L2 that is down gets CLOSE_ATTEMPTS tries (CLOSE_PAUSE s apart), not the whole
        ``timeout``: closing during an outage shouldn't hold a shutdown for long.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
        await self._worker.stop(timeout)
        failures = 0
        while self.count and failures < CLOSE_ATTEMPTS:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._end_cooldown()  # the breaker may be open: closing is worth one probe
            taken = self._take(job=False)
            if taken is None:  # only another event loop's in-flight batch is left
                break
            if await self._flush(*taken):
                failures = 0
            else:
                failures += 1
                pause = min(self._interval, CLOSE_PAUSE, deadline - time.monotonic())
                await self._pause(max(0.0, pause))
        with self._lock:
            lost = len(self._sets) + len(self._deletes)
            self._sets.clear()
            self._deletes.clear()
            self._counted()
        if lost:
            logger.warning(
                "closing the cache gave up %d queued L2 writes: the L2 did not take them "
                "within close_timeout",
                lost,
            )
            self._dropped(lost)

    # -- the job ----------------------------------------------------------------------------------

    async def _work(self) -> None:
        worker = self._worker
        while not worker.stopping:
            if self._backoff:
                await worker.sleep(self._interval)
                if worker.stopping:
                    return
            taken = self._take(job=True)
            if taken is None:
                return
            self._backoff = not await self._flush(*taken)

    def _take(self, *, job: bool) -> tuple[list[tuple[str, Op]], AsyncOutcome] | None:
        """Take up to BATCH queued ops (deletes first) and mark them in flight."""
        with self._lock:
            batch: list[tuple[str, Op]] = []
            busy: list[tuple[OrderedDict[str, Op], str, Op]] = []
            inflight = self._inflight
            for source in (self._deletes, self._sets):
                while source and len(batch) < BATCH:
                    skey, op = source.popitem(last=False)
                    if skey in inflight:  # an older job's batch still has it: keep the order
                        busy.append((source, skey, op))
                    else:
                        batch.append((skey, op))
            for source, skey, op in busy:
                source[skey] = op
            if not batch:
                if job:
                    self._worker.running = False  # under the lock: a put now starts a job
                return None
            outcome = AsyncOutcome()
            for skey, op in batch:
                inflight[skey] = (outcome, op)
            return batch, outcome

    async def _flush(self, batch: list[tuple[str, Op]], outcome: AsyncOutcome) -> bool:
        """Write one batch; requeue what the L2 did not take. Whether it took everything."""
        left = dict(batch)
        replayed = 0
        ok = True
        try:
            outdated = await self._superseded(batch, left)
            if outdated is None:
                return False  # the L2 can't be read: don't replay blind, try again later
            if outdated:
                with self._lock:
                    # No longer this cache's value: a read of the key must not be answered
                    # from it (peek) while the rest of the batch is written. One that was, in
                    # the round trip of that write, refilled L1 after the drop below.
                    for skey, op in batch:
                        if skey not in left:  # taken out by _superseded: outdated
                            op.dead = True
                if self.on_written is not None:
                    await self._tell("superseded", outdated, outdated)
            todo = [(k, op) for k, op in batch if k in left] if outdated else batch
            for operation, keys, method, args in self._calls(todo):
                try:
                    await self._run(operation, keys, False, method, *args)
                except Exception as exc:
                    if any(left[k].fresh for k in keys):
                        self._note_failure(operation, exc)
                    ok = False
                    break  # the L2 fails: don't spend a timeout per group
                landed = [left.pop(skey) for skey in keys]
                for op in landed:
                    # The L2 holds it now: a read must ask the L2 (another node may write the
                    # key while the other nodes are told), not take this op's bytes for L1.
                    op.dead = True
                replayed += sum(1 for op in landed if not op.fresh)
                if self.on_written is not None:
                    await self._tell(operation, keys, self._untrusted(keys, landed))
        finally:
            self._settle(batch, left, outcome, replayed)
        return ok

    async def _superseded(
        self, batch: list[tuple[str, Op]], left: dict[str, Op]
    ) -> list[str] | None:
        """The replayed writes of ``batch`` that another node has outdated meanwhile.

        They are taken out of ``left`` (done: the L2 holds a newer value than theirs). None
        when the L2 could not be read: nothing is replayed blind (the L2 may be coming back
        at that moment, with a newer entry the check would have seen).

        A write replayed after an outage must not replace a newer entry written by another
        node while this one could not reach the L2: entries carry their creation time, so
        one read of the replayed keys tells. (A write may still slip in between the read and
        the replay: the window is one round trip, not the length of the outage.)
        """
        replays = [k for k, op in batch if op.kind is SET and not op.fresh]
        if not replays:
            return []
        try:
            current = await self._run("get_many", replays, True, self._backend.aget_many, replays)
        except Exception:
            return None
        newer = []
        for skey, data in zip(replays, current, strict=True):
            mine = left[skey].data
            if data is None or mine is None:
                continue
            theirs_at, mine_at = created_at(data), created_at(mine)
            if theirs_at is not None and mine_at is not None and theirs_at > mine_at:
                newer.append(skey)
                del left[skey]
        return newer

    def _untrusted(self, keys: list[str], landed: list[Op]) -> list[str]:
        """The landed keys whose L1 entry may not be what the L2 holds: drop them from L1.

        A replay, written long after its call: the L1 may have taken another value since.
        A first try (a background write) whose key was invalidated while it waited or was in
        flight: another node's write may have landed after it, and a read here may have
        taken this op's bytes for L1 meanwhile (the queue answers reads of its keys).
        """
        fill_ok = self._versions.fill_ok
        return [
            skey
            for skey, op in zip(keys, landed, strict=True)
            if not op.fresh or not fill_ok(skey, op.version)
        ]

    async def _tell(self, operation: str, keys: list[str], untrusted: list[str]) -> None:
        assert self.on_written is not None
        try:
            await self.on_written(operation, keys, untrusted)
        except Exception as exc:  # pragma: no cover - the backplane keeps its own failures
            logger.warning("telling other nodes of replayed L2 writes failed: %r", exc)

    def _calls(
        self, batch: list[tuple[str, Op]]
    ) -> list[tuple[str, list[str], Runner, tuple[Any, ...]]]:
        backend = self._backend
        now = time.monotonic()
        deletes: list[str] = []
        sets: list[tuple[str, bytes, float]] = []
        calls: list[tuple[str, list[str], Runner, tuple[Any, ...]]] = []
        for skey, op in batch:
            if op.kind is CAS:
                calls.append((CAS, [skey], backend.acompare_and_set, (skey, op.expected, op.data)))
            elif op.kind is SET and op.expires > now:
                assert op.data is not None
                sets.append((skey, op.data, op.expires - now))
            else:  # a delete, or a write whose TTL ran out while queued: the old value goes
                deletes.append(skey)
        if len(deletes) == 1:
            calls.insert(0, ("delete", deletes, backend.adelete, (deletes[0],)))
        elif deletes:
            calls.insert(0, ("delete_many", deletes, backend.adelete_many, (deletes,)))
        if len(sets) == 1:
            calls.append(("set", [sets[0][0]], backend.aset, sets[0]))
        elif sets:
            calls.append(("set_many", [k for k, _, _ in sets], backend.aset_many, (sets,)))
        return calls

    def _settle(
        self,
        batch: list[tuple[str, Op]],
        left: dict[str, Op],
        outcome: AsyncOutcome,
        replayed: int,
    ) -> None:
        drops = 0
        with self._lock:
            inflight = self._inflight
            for skey, _ in batch:
                inflight.pop(skey, None)
            sets, deletes = self._sets, self._deletes
            for skey, op in left.items():
                if op.dead or skey in sets or skey in deletes:
                    continue  # a newer op of the key was written or queued meanwhile: it wins
                if not self._replay:
                    drops += 1
                    continue
                op.fresh = False
                target = deletes if op.kind is DELETE else sets
                target[skey] = op
                target.move_to_end(skey, last=False)  # it was first in line: it stays so
            drops += self._trim()
            self._counted()
        outcome.settle(None, None)
        if replayed:
            self._events.recovery_replays += replayed
        self._dropped(drops)

    # -- bookkeeping (under the lock) ------------------------------------------------------------

    def _trim(self) -> int:
        sets, deletes = self._sets, self._deletes
        drops = 0
        while len(sets) > self._bound:
            skey, _ = sets.popitem(last=False)
            deletes[skey] = Op(DELETE)
            drops += 1
        return drops

    def _counted(self) -> None:
        self.count = n = len(self._sets) + len(self._deletes) + len(self._inflight)
        self._events.recovery_pending = n

    def _dropped(self, drops: int) -> None:
        if drops:
            self._events.recovery_drops += drops
            self._events.notify("recovery_drops", count=drops)
