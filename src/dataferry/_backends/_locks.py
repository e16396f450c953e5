"""The argument checks of the distributed lock operations, shared by every backend.

A lock is a named, expiring claim held by whoever knows its token: ``aacquire_lock`` takes it
if it is free (or its holder's time ran out), ``arelease_lock`` and ``aextend_lock`` act only
for the token that holds it. The checks run before any I/O, so a misuse raises
:class:`~dataferry.ConfigurationError` at the call and never reaches the store (nor becomes a
:class:`~dataferry.DistributedCacheError`).
"""

from __future__ import annotations

import math

from dataferry._errors import ConfigurationError

__all__ = ["check_lock"]


def check_lock(name: object, token: object, ttl: object = 1.0, /) -> None:
    """Raise :class:`ConfigurationError` unless the lock arguments are usable.

    ``name`` must be a non-empty ``str``, ``token`` non-empty ``bytes`` (the caller's random
    secret: 16 bytes or more from :func:`os.urandom` / :func:`secrets.token_bytes`), ``ttl`` a
    finite number of seconds above 0 (``release`` passes none).
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a lock name is a non-empty str, got {name!r}")
    # bytes only: a bytearray or memoryview could change between the check and the write.
    if type(token) is not bytes or not token:
        raise ConfigurationError(
            f"a lock token is non-empty bytes (e.g. secrets.token_bytes(16)), got "
            f"{type(token).__name__}{' (empty)' if token == b'' else ''}"
        )
    # bool is an int, but True seconds is a bug, not a TTL.
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, (int, float))
        or not math.isfinite(ttl)
        or ttl <= 0
    ):
        raise ConfigurationError(f"a lock ttl is a finite number of seconds > 0, got {ttl!r}")
