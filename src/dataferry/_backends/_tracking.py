"""Redis server-assisted client tracking on the backplane's subscriber connection (BCAST mode).

With ``RedisBackplane(client_tracking=True)`` the subscriber asks the server to report every
change to a key of the namespace, whoever makes it (another service, ``redis-cli``, an expiry,
an eviction, ``FLUSHDB``), on the very connection that holds the backplane's subscription:

1. ``HELLO 2``: the connection speaks RESP2 from here on (redis-py 8 opens RESP3 connections
   by default). In RESP3 the server would send the invalidations as push messages, which
   redis-py's pub/sub reader drops unless a private parser hook is set; in RESP2 they are
   ordinary pub/sub messages on ``__redis__:invalidate``, read like the backplane's own.
2. ``CLIENT ID``, then ``CLIENT TRACKING ON REDIRECT <that id> BCAST PREFIX <ns>:k: PREFIX
   <ns>:t: PREFIX <ns>:tag: PREFIX <ns>:clear``: broadcasting mode, for the prefixes of the
   cache's entries and of its tag and clear records (see :func:`tracked`). The connection
   redirects to itself, which RESP2 allows once it subscribes to ``__redis__:invalidate``.
3. ``SUBSCRIBE <backplane channel> __redis__:invalidate`` (by the caller).

Tracking is a property of that one connection: it ends when the connection does, and all of
it is set up again on each new subscription. A connection that redis-py re-establishes on its
own (a given client's retries) comes back without it: :class:`ConnectWatch` notices, and the
subscriber then treats the subscription as lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from dataferry._errors import ConfigurationError
from dataferry._keys import check_namespace

if TYPE_CHECKING:
    from redis.client import PubSub

__all__ = [
    "CHANNEL",
    "SENDER",
    "ConnectWatch",
    "Tracked",
    "enable",
    "invalidated_keys",
    "is_invalidation",
    "tracked",
]

#: The channel a RESP2 connection receives its (redirected) tracking invalidations on.
CHANNEL = "__redis__:invalidate"
_CHANNEL_BYTES = CHANNEL.encode()

#: The sender id of the backplane messages made from tracking invalidations. A node's
#: :class:`~dataferry._backends._backplane.SenderId` is always 8 bytes, this one 21: no node can
#: mistake one of them for its own message and skip it.
SENDER = b"redis-client-tracking"


class Tracked(NamedTuple):
    """What a namespace's tracking covers, and how a reported key is told apart."""

    prefixes: tuple[str, ...]
    """The ``BCAST PREFIX`` arguments: entries, then tag records, then clear records."""
    tags: str
    """The prefix of the tag records (a key under it is reported as a tag removal)."""
    clears: str
    """The prefix of the clear records (a key under it is reported as a clear)."""


def tracked(channel: str) -> Tracked:
    """The key prefixes to track for a backplane channel named ``"{namespace}:..."``.

    The channel's leading hash tag names the namespace (the cache's backplane accessor names
    its channel ``"{namespace}:dataferry:backplane"``). Tracked, as :mod:`dataferry._keys`
    lays the keys out: the entries (``{ns}:k:...``, a tenant's ``{ns}:t:...``), the tag
    removal records (``{ns}:tag:...``) and the clear records (``{ns}:clear...``), whose
    changes a connected node would otherwise never fetch again. Not the distributed locks
    (``{ns}:lock:...``): they come and go with every locked computation and hold no state
    an L1 depends on.

    Raises:
        ConfigurationError: The channel does not start with a hash tag holding a valid
            namespace.

    """
    end = channel.find("}")
    namespace = channel[1:end] if channel.startswith("{") and end > 1 else None
    try:
        check_namespace(namespace)
    except ConfigurationError:
        raise ConfigurationError(
            "client_tracking needs a backplane channel named after its namespace, as "
            f'"{{namespace}}:...", got {channel!r}'
        ) from None
    assert namespace is not None
    # Distinct prefixes, none the start of another (the server refuses overlapping ones).
    tags, clears = f"{namespace}:tag:", f"{namespace}:clear"
    entries = (f"{namespace}:k:", f"{namespace}:t:")
    return Tracked((*entries, tags, clears), tags, clears)


class ConnectWatch:
    """Set :attr:`reconnected` when redis-py (re)connects the connection it is registered on.

    redis-py keeps connect callbacks as weak references to bound methods: the subscriber keeps
    this object for as long as the subscription lives.
    """

    __slots__ = ("__weakref__", "_connection", "reconnected")

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.reconnected = False
        connection.register_connect_callback(self.on_connect)

    def on_connect(self, connection: Any) -> None:
        """redis-py's connect callback: the connection is a new one, without tracking."""
        self.reconnected = True

    def detach(self) -> None:
        """Deregister from the connection (it goes back to its pool); idempotent."""
        self._connection.deregister_connect_callback(self.on_connect)


def enable(pubsub: PubSub, prefixes: tuple[str, ...]) -> ConnectWatch:
    """Turn BCAST tracking of ``prefixes`` on for ``pubsub``'s connection (before it subscribes).

    Returns the watch that tells whether the connection was replaced since (then without
    tracking). Raises what redis-py raises: ``ResponseError`` when the server refuses (a
    Redis older than 6.0, an ACL without ``CLIENT``), ``ConnectionError`` / ``TimeoutError``.
    """
    # PubSub.execute_command takes a connection from the pool and registers the re-subscribe
    # callback; it only sends, so each reply is read here, on that connection, before the
    # subscription begins (no pub/sub message can be in between).
    pubsub.execute_command("HELLO", "2")  # type: ignore[no-untyped-call]
    connection = pubsub.connection
    assert connection is not None
    connection.read_response()
    # From here on, a new socket under this connection object would be a connection without
    # tracking (a retry inside redis-py): the watch tells the subscriber to start over.
    watch = ConnectWatch(connection)
    connection.send_command("CLIENT", "ID")
    client_id = connection.read_response()
    command: list[Any] = ["CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST"]
    for prefix in prefixes:
        command += ["PREFIX", prefix]
    connection.send_command(*command)
    connection.read_response()
    return watch


def is_invalidation(message: dict[str, Any]) -> bool:
    """Whether a pub/sub ``message`` came on the tracking channel."""
    return bool(message["channel"] == _CHANNEL_BYTES)


def invalidated_keys(data: Any) -> list[str] | None:
    """The keys a tracking invalidation names; ``None`` for a flush (``FLUSHDB``, ``FLUSHALL``).

    Keys that are not UTF-8 are left out: no cache entry has one. Anything else than a list
    (a ``PUBLISH`` to ``__redis__:invalidate`` by someone) names no key.
    """
    if data is None:
        return None
    if not isinstance(data, list):
        return []
    keys = []
    for raw in data:
        if isinstance(raw, bytes):
            try:
                keys.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                continue
    return keys
