"""Tag removal and clears: one record in L2 each, L1 by index or prefix, and the backplane.

See :mod:`dataferry._scopes` for the records and how entries are judged by them. This module
does the I/O: :func:`ensure` fetches the records a read needs, :func:`remove_by_tag` and
:func:`clear` write them and tell the other nodes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dataferry._async._backplane import Action
from dataferry._errors import ConfigurationError, DistributedCacheError
from dataferry._keys import clear_key, tag_key
from dataferry._options import MAX_TTL
from dataferry._resolve import Resolved
from dataferry._scopes import TAG_RETENTION, encode_record

if TYPE_CHECKING:
    from dataferry._async._facade import AsyncDataFerry

__all__ = ["clear", "ensure", "remove_by_tag", "seed_epochs"]

#: Bytes of a new key-derivation epoch (``clear(erase=True)``).
EPOCH_BYTES = 16


async def ensure(cache: AsyncDataFerry, names: Sequence[str]) -> None:
    """Make sure the records ``names`` are known (see :mod:`dataferry._scopes`).

    The unknown ones are fetched now (one round trip), the aged ones in the background.
    """
    scopes = cache._core.scopes
    l2 = cache._l2
    if l2 is None:
        return
    if l2.down:
        # An outage: entries can't be read either, and a fetch would cost this call one
        # more timeout. What is known stands; the first call after it ends fetches again.
        return
    unknown = scopes.unknown(names)
    if unknown:
        await _fetch(cache, unknown)
    aged = scopes.aged(names)
    if aged and scopes.claim_refresh():
        try:
            cache._runtime.background(_refresh, cache, aged)
        except Exception:  # the cache is closing: nothing more to read
            scopes.refreshing = False


async def _fetch(cache: AsyncDataFerry, names: list[str]) -> None:
    scopes = cache._core.scopes
    l2 = cache._l2
    if l2 is None:
        return
    try:
        blobs = await l2.get_many(names, raise_errors=True)
    except DistributedCacheError:
        return  # counted by the accessor; asked again once L2 answers
    for name, data in zip(names, blobs, strict=True):
        scopes.learn(name, data)


async def _refresh(cache: AsyncDataFerry, names: list[str]) -> None:
    try:
        await _fetch(cache, names)
    finally:
        cache._core.scopes.refreshing = False


async def seed_epochs(cache: AsyncDataFerry, names: list[str]) -> None:
    """Give the scopes ``names`` (clear records found without an epoch) a random epoch.

    An encrypting cache derives every entry's key from its scope's epoch, so that
    ``clear(erase=True)``, which replaces the epoch, leaves no way back to the old keys, not
    even for the holder of the keyring: the first epoch must be random too. Two nodes may seed
    at once; the last write wins, and the other learns it from the backplane (a ``CLEAR`` of
    version 0: "the epoch changed") or when the record ages. Entries encrypted under the
    losing epoch meanwhile are misses, never wrong values.
    """
    scopes = cache._core.scopes
    for name in names:
        record = scopes.record(name)
        epoch = os.urandom(EPOCH_BYTES)
        scopes.note(name, record.at, epoch)
        await _write(cache, name, encode_record(record.at, epoch), MAX_TTL, None)
        if cache._bp is not None:
            await cache._bp.publish(Action.CLEAR, (name,), version=0)


async def remove_by_tag(cache: AsyncDataFerry, tag: str, opts: Resolved) -> None:
    """Make every entry of ``cache``'s tenant carrying ``tag`` stale (see the facade)."""
    core = cache._core
    name = tag_key(core.namespace, cache._tenant, tag)
    core.scopes.note(name, time.time())
    core.drop_tag(name)
    at = core.scopes.latest((name,))
    await _write(cache, name, encode_record(at), TAG_RETENTION, opts)
    if cache._bp is not None:
        await cache._bp.publish(Action.TAG, (name,), version=int(at * 1e6))


async def clear(cache: AsyncDataFerry, erase: bool, opts: Resolved) -> None:
    """Make every entry of the scope of ``cache`` stale (``erase``: undecryptable too)."""
    core = cache._core
    if erase and not core.codec.encrypts:
        raise ConfigurationError(
            "clear(erase=True) makes entries undecryptable by changing their encryption keys; "
            "this cache's codec doesn't encrypt (use clear() or a Codec with an encryptor)"
        )
    tenant = cache._tenant
    name = clear_key(core.namespace, tenant)
    scopes = core.scopes
    if not erase and not opts.skip_distributed:
        await _fetch(cache, [name])  # the record keeps its epoch: know it before rewriting it
    scopes.note(name, time.time(), os.urandom(EPOCH_BYTES) if erase else None)
    core.drop_scope(tenant)
    at = scopes.latest((name,))
    record = scopes.record(name)
    await _write(cache, name, encode_record(at, record.epoch), MAX_TTL, opts)
    if cache._bp is not None:
        await cache._bp.publish(Action.CLEAR, (name,), version=int(at * 1e6))


async def _write(
    cache: AsyncDataFerry, name: str, data: bytes, ttl: float, opts: Resolved | None
) -> None:
    l2 = cache._l2
    if l2 is None:
        return
    if opts is None:  # the cache's own bookkeeping: failures are queued, never raised
        await l2.set(name, data, ttl)
    elif not opts.skip_distributed:
        await l2.set(
            name,
            data,
            ttl,
            raise_errors=opts.raise_distributed_errors,
            background=opts.background_distributed_writes,
        )
