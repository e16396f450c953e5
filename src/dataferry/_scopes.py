"""What a process knows of its namespace's invalidation records: tag removals, clears, epochs.

``remove_by_tag(tag)`` and ``clear()`` never touch entries one by one in L2. They write one small
record (see :mod:`dataferry._keys`): the time of the removal or clear and, for a clear with
``erase=True``, a new random *epoch* mixed into the key derivation of the entries it covers. An
entry read from L2 is then judged by its header: created at or before the latest clear of its
namespace or tenant, or before the latest removal of any of its tags, it is stale (a miss; not
served even by fail-safe). So both calls cost O(1) in L2, on a Cluster too.

:class:`Scopes` holds the records this process has seen, so checking an entry is a few dict
lookups. A record is fetched from L2 the first time it is needed (the call waits for it) and then
trusted for ``max_age`` seconds: forever while a backplane is connected (its messages bring
every change at once; a reconnect forgets everything), :data:`STATE_MAX_AGE` without one. An
aged record is fetched again in the background while calls go on with what is known, so
without a backplane an L2 read here may accept an entry another node invalidated for about
``STATE_MAX_AGE`` plus one round trip. During an L2 outage nothing is fetched (a fetch would
cost the call one more timeout, and entries can't be read anyway).

:class:`TagIndex` maps tag records to the L1 keys carrying them, so a tag removal drops
exactly those keys from L1 (no scan).
"""

from __future__ import annotations

import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Container, Iterable, Sequence
from typing import Final, NamedTuple

from dataferry._keys import clear_key, tag_key

__all__ = ["STATE_MAX_AGE", "TAG_RETENTION", "Floor", "Scopes", "TagIndex", "encode_record"]

#: Seconds a record fetched from L2 is trusted without a backplane.
STATE_MAX_AGE: Final = 1.0
#: Seconds a tag's removal record stays in L2. Entries with tags are stored in L2 for at most
#: this long, so no entry can outlive the record that invalidates it.
TAG_RETENTION: Final = 30 * 86_400.0
#: Most records held in process (the least recently learned go first, and are fetched again).
RECORD_LIMIT: Final = 100_000

_TIME = struct.Struct(">d")
#: ``Record.checked`` of a record to fetch again on its next use (in the background).
_NEVER = -1.0


class Record(NamedTuple):
    """One record as this process knows it."""

    at: float
    """When the scope was last invalidated (Unix time; 0.0: never)."""
    epoch: bytes
    """The key-derivation epoch (clear records only; empty: never erased)."""
    checked: float
    """When it was fetched or heard of (monotonic clock)."""


class Floor(NamedTuple):
    """What one read judges its entries by, taken from the records at one moment."""

    at: float
    """The latest clear of the entries' scope: entries created at or before it are stale."""
    kdf: str | None
    """The scope the entries' keys are derived from (see :meth:`Scopes.kdf_scope`)."""


def encode_record(at: float, epoch: bytes = b"") -> bytes:
    """The L2 bytes of a record: the time (8-byte big-endian double), then the epoch."""
    return _TIME.pack(at) + epoch


def _decode_record(data: bytes | None) -> tuple[float, bytes]:
    if data is None or len(data) < _TIME.size:
        return 0.0, b""  # never invalidated (or not a record of ours: ignored)
    (at,) = _TIME.unpack_from(data)
    if at != at or at < 0:  # NaN or negative: not a record of ours
        return 0.0, b""
    return at, bytes(data[_TIME.size :])


class Scopes:
    """The tag and clear records of one namespace, as this process knows them. Thread-safe."""

    __slots__ = ("_lock", "_records", "max_age", "namespace", "refreshing")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        # Ordered for the bound: the oldest record goes (see Versions in _core.py for why not
        # a dict used as a queue).
        self._records: OrderedDict[str, Record] = OrderedDict()
        self._lock = threading.Lock()
        #: Seconds a fetched record is trusted (``inf`` while a backplane is connected).
        self.max_age = STATE_MAX_AGE
        #: A background refresh of aged records is running.
        self.refreshing = False

    # -- names --------------------------------------------------------------------------------

    def clear_names(self, tenant: str | None) -> tuple[str, ...]:
        """The clear records an entry of ``tenant`` (None: the root) is judged by."""
        root = clear_key(self.namespace, None)
        return (root,) if tenant is None else (root, clear_key(self.namespace, tenant))

    def tag_names(self, tenant: str | None, tags: Iterable[str]) -> list[str]:
        """The removal records of ``tags`` among the entries of ``tenant``."""
        return [tag_key(self.namespace, tenant, tag) for tag in tags]

    # -- reading ------------------------------------------------------------------------------

    def missing(self, names: Sequence[str]) -> bool:
        """Whether any of ``names`` is not known, or known for longer than ``max_age``."""
        records = self._records
        oldest = time.monotonic() - self.max_age
        for name in names:
            record = records.get(name)
            if record is None or record.checked < oldest or record.checked == _NEVER:
                return True
        return False

    def unknown(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` never fetched (or forgotten since)."""
        records = self._records
        return [n for n in names if n not in records]

    def aged(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` known for longer than ``max_age`` (to fetch again)."""
        records = self._records
        oldest = time.monotonic() - self.max_age
        return [
            n
            for n in names
            if (r := records.get(n)) is not None and (r.checked < oldest or r.checked == _NEVER)
        ]

    def unseeded(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` fetched and found without an epoch (see :func:`seed_epochs`)."""
        records = self._records
        return [n for n in names if (r := records.get(n)) is not None and not r.epoch]

    def claim_refresh(self) -> bool:
        """Whether the caller may start a background refresh (one at a time)."""
        with self._lock:
            if self.refreshing:
                return False
            self.refreshing = True
            return True

    def latest(self, names: Iterable[str]) -> float:
        """The latest invalidation time among ``names`` (0.0 if none, or none known)."""
        records = self._records
        latest = 0.0
        for name in names:
            record = records.get(name)
            if record is not None and record.at > latest:
                latest = record.at
        return latest

    def record(self, name: str) -> Record:
        """The record ``name`` as known (never invalidated, if not known)."""
        return self._records.get(name) or Record(0.0, b"", _NEVER)

    def floor(self, tenant: str | None, names: Sequence[str] | None = None) -> Floor:
        """The clear time and key-derivation scope of ``tenant``'s entries, read together.

        One look at each record, so a record replaced meanwhile (a clear with a new epoch)
        can't pair an old clear time with a new epoch. ``names``: ``clear_names(tenant)``,
        if the caller has it at hand.
        """
        if names is None:
            names = self.clear_names(tenant)
        records = self._records
        root = records.get(names[0])
        mine = None if tenant is None else records.get(names[1])
        if root is None and mine is None:
            return Floor(0.0, tenant)
        at = max(0.0 if root is None else root.at, 0.0 if mine is None else mine.at)
        return Floor(at, self._kdf(tenant, root, mine))

    def kdf_scope(self, tenant: str | None) -> str | None:
        """What the encryptor derives ``tenant``'s key from: the tenant, and the epochs.

        An encrypting cache gives the namespace and each tenant a random epoch on first use
        (``seed_epochs``); without them (before, or without an L2), exactly ``tenant``.
        ``#`` can't appear in a tenant id.
        """
        return self.floor(tenant).kdf

    @staticmethod
    def _kdf(tenant: str | None, root: Record | None, mine: Record | None) -> str | None:
        root_epoch = b"" if root is None else root.epoch
        epoch = b"" if mine is None else mine.epoch
        if not root_epoch and not epoch:
            return tenant
        return f"{tenant or ''}#{root_epoch.hex()}#{epoch.hex()}"

    # -- learning -----------------------------------------------------------------------------

    def learn(self, name: str, data: bytes | None) -> None:
        """Take the record ``name`` as fetched from L2 (``data`` None: there is none)."""
        at, epoch = _decode_record(data)
        self._put(name, Record(at, epoch, time.monotonic()))

    def note(self, name: str, at: float, epoch: bytes | None = None, *, known: bool = True) -> None:
        """Record an invalidation made here or heard of at ``at`` (never moves back in time).

        ``epoch`` None keeps the known epoch; ``known=False`` marks the record for a fetch on
        its next use (a message said it changed, not what its epoch now is).
        """
        with self._lock:
            old = self._records.get(name)
        if old is not None:
            at = max(at, old.at)
            if epoch is None:
                epoch = old.epoch
        self._put(name, Record(at, epoch or b"", time.monotonic() if known else _NEVER))

    def drop(self, name: str) -> None:
        """Forget the record ``name``: its next use fetches it (and waits for it)."""
        with self._lock:
            self._records.pop(name, None)

    def forget(self) -> None:
        """Trust nothing known so far (invalidations may have been missed): fetch again."""
        with self._lock:
            self._records = OrderedDict()

    def _put(self, name: str, record: Record) -> None:
        with self._lock:
            records = self._records
            records[name] = record
            records.move_to_end(name)
            while len(records) > RECORD_LIMIT:
                records.popitem(last=False)


class TagIndex:
    """Which L1 keys carry which tag record, so a tag removal drops exactly them. Thread-safe.

    Keys that left L1 since are dropped lazily: each time the index doubles in size, it is
    pruned against L1 (``alive``), so it stays within a small multiple of L1's size.
    """

    __slots__ = ("_lock", "_prune_at", "_sets", "_size")

    def __init__(self) -> None:
        self._sets: dict[str, set[str]] = {}
        self._size = 0
        self._prune_at = 1024
        self._lock = threading.Lock()

    def add(self, names: Iterable[str], skey: str, alive: Container[str]) -> None:
        """Note that the L1 entry ``skey`` carries the tag records ``names``."""
        with self._lock:
            sets = self._sets
            for name in names:
                keys = sets.get(name)
                if keys is None:
                    keys = sets[name] = set()
                if skey not in keys:
                    keys.add(skey)
                    self._size += 1
            if self._size > self._prune_at:
                self._prune(alive)

    def pop(self, name: str) -> set[str]:
        """The L1 keys noted for ``name``, forgotten now."""
        with self._lock:
            keys = self._sets.pop(name, set())
            self._size -= len(keys)
            return keys

    def clear(self) -> None:
        """Forget everything (L1 was emptied)."""
        with self._lock:
            self._sets = {}
            self._size = 0

    def __len__(self) -> int:
        return self._size

    def _prune(self, alive: Container[str]) -> None:
        # Lock held: drop the keys no longer in L1, then allow twice what is left.
        size = 0
        for name in list(self._sets):
            keys = {k for k in self._sets[name] if k in alive}
            if keys:
                self._sets[name] = keys
                size += len(keys)
            else:
                del self._sets[name]
        self._size = size
        self._prune_at = max(1024, 2 * size)
