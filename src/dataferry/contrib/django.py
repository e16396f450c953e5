"""Django cache backend: DataFerry's L1 + L2 behind Django's cache API, sync and async.

Install with ``pip install 'dataferry[django]'``, then in ``settings.py``::

    CACHES = {
        "default": {
            "BACKEND": "dataferry.contrib.django.DataFerryCache",
            "LOCATION": "redis://cache:6379/0?namespace=shop",   # any DataFerry URL
            "TIMEOUT": 300,
            "OPTIONS": {"max_entries": 10_000, "backplane": True},
        }
    }

``LOCATION`` is a URL as :meth:`dataferry.AsyncDataFerry.from_url` reads it: ``memory://``
(L1 only, for one process), ``sqlite:///var/cache/app.sqlite`` (one host),
``redis://host:6379/0`` (``rediss://``, ``unix://``, ``?cluster=true`` for a Cluster),
``redis+sentinel://h1:26379,h2:26379/mymaster``; its query parameters ``namespace``,
``max_entries`` (``0``: no L1), ``backplane=true`` and ``cluster=true`` apply. ``OPTIONS``
(keys are case-insensitive, so Django's ``MAX_ENTRIES`` works too):

================================  ==============================================================
option                            meaning
================================  ==============================================================
``namespace``                     prefix of every storage key (wins over the URL's)
``max_entries``, ``max_bytes``    size of each in-process L1 (``max_entries=0``: no L1)
``serializer``                    ``"pickle"`` (default), ``"json"``, ``"msgpack"`` or a
                                  :class:`~dataferry.Serializer`
``compressor``                    ``"zstd"``, ``"gzip"``, ``"lz4"`` or a
                                  :class:`~dataferry.Compressor`
``keys``                          a :class:`~dataferry.Keyring` or ``"id:base64,id:base64"``
                                  (the first is the primary): entries are encrypted (AES-GCM)
``backplane``                     ``True`` (a RedisBackplane on the LOCATION's Redis) or a
                                  :class:`~dataferry.Backplane`: keeps the L1s of a fleet
                                  coherent
``default_options``,              as the arguments of :class:`~dataferry.AsyncDataFerry` of
``resilience``, ``telemetry``,    the same names
``raise_distributed_errors``,
``max_payload_bytes``,
``distributed_layers``,
``join_timeout``
================================  ==============================================================

An unknown option, or a bad value, raises :class:`~dataferry.ConfigurationError` when Django
builds the backend. ``KEY_PREFIX``, ``VERSION``, ``KEY_FUNCTION`` and ``TIMEOUT`` are Django's
and work as with any backend.

**Values are serialized like every Django backend does**: pickled by default (Django caches
model instances, querysets, responses and template fragments, which only pickle can carry). The
L1 holds the serialized bytes and every read unpickles them, so each caller gets its own copy,
as with Django's own backends (a response that middleware mutates after a cache hit must not
change what the next request gets). Pickle runs whatever the bytes say, so DataFerry only
unpickles *authenticated* entries: with ``keys`` they are encrypted, without them they are
signed with a key derived from ``SECRET_KEY`` (and ``SECRET_KEY_FALLBACKS`` still verify, so
rotating ``SECRET_KEY`` the Django way keeps the cache). An entry planted in Redis by someone
without the key is a miss, never code execution (Django's own Redis backend unpickles whatever
it finds). ``"serializer": "json"`` stores JSON instead: no pickle at all, and plain DataFerry
caches of other services read the entries (``cache.make_key(key)`` is their key); values must
then be JSON types.

**Sync and async methods are native**: ``get``, ``set``... run on a :class:`~dataferry.DataFerry`,
``aget``, ``aset``... on an :class:`~dataferry.AsyncDataFerry` (any event loop, any thread), not
through ``sync_to_async``. Both share the L2; with an L2 each has an L1 of its own, and every
write, delete, clear or tag removal through one reaches the other's L1 at once (an in-process
backplane, chained with the Redis one when ``backplane`` is on), so a value set by sync code is
what async code reads next. Without an L2 (``memory://``) they share one L1. Django builds one
backend object per thread and per alias; all those with the same ``LOCATION`` and ``OPTIONS``
share one pair of caches (one L1, one connection pool), whatever their ``KEY_PREFIX`` or
``VERSION``. :meth:`DataFerryCache.close` (which Django calls after every request) keeps them
open; :func:`shutdown_caches` closes them (at process exit, or between tests).

Semantics, where DataFerry differs from or adds to Django's backends:

- **Several processes**: each one's L1 answers reads without asking the L2. Without a
  backplane, a process may serve a value that another one replaced or deleted until the entry
  leaves its L1 (at the latest when it expires). With more than one process (gunicorn workers,
  several hosts) on Redis, turn ``backplane`` on, or bound the lag with
  ``"default_options": EntryOptions(l1_ttl=5)``, or use no L1 (``max_entries=0``).
- Timeouts: ``None`` keeps a value for 100 years (DataFerry's longest ttl), ``0`` or less
  deletes the key (``add`` then returns whether the key was absent, storing nothing), a float
  is fine. They are seconds from now: no memcached-style absolute timestamps.
- ``add``, ``incr``/``decr`` and ``touch`` are atomic with respect to each other across every
  process sharing the L2: they run under the key's lock in L2 (the same lock as
  ``get_or_set(..., distributed_lock=True)``; L1 only: a lock in the process). A plain ``set``
  or ``delete`` takes no lock: one landing between the check and the write of an ``add`` is
  overwritten by it. A lock lasts at most 5 seconds (a process that dies holding it blocks
  no one for longer). ``incr`` keeps the entry's expiry (as memcached and Redis do) and its
  tags; it costs five L2 round trips where Redis' ``INCR`` costs one (DataFerry's entries are
  envelopes, not Redis integers); ``add`` costs one when the key exists, four when it
  doesn't. While the L2's circuit breaker is open, or the L2 fails, these calls go on without
  the lock (and ``incr`` uses the default timeout if it could not read the expiry).
- ``delete`` reads before it deletes, to return whether the key existed (one more round trip).
- ``clear()`` is DataFerry's O(1) clear of the whole namespace (never ``FLUSHDB``): every
  ``KEY_PREFIX`` and ``VERSION`` sharing the ``LOCATION`` is cleared, as with Django's Redis
  backend.
- ``get_or_set`` is DataFerry's: concurrent callers of a missing key in a process share one
  call of ``default`` (``aget_or_set`` awaits it if it returns an awaitable); the value is then
  stored with ``set`` (not ``add``): a value another process stored meanwhile is replaced.
- Keys are Django's (``make_key`` with ``KEY_PREFIX``, ``VERSION`` and ``KEY_FUNCTION``, then
  ``validate_key``'s warnings); one over DataFerry's 1024 UTF-8 bytes is shortened to its first
  100 characters plus a SHA-256 of the whole key.
- A value whose serialized form is over ``max_payload_bytes`` (default 8 MiB) raises
  :class:`~dataferry.PayloadTooLargeError` and nothing is stored.
- Tags: ``set``, ``add``, ``set_many`` and ``get_or_set`` (and their async twins) take
  ``tags=[...]``; :meth:`DataFerryCache.remove_by_tag` makes every entry carrying a tag a miss
  on every node, in O(1). :func:`invalidate_on_commit` deletes keys (and tags) once the
  current database transaction commits.
- L2 failures (Redis down) never raise unless ``raise_distributed_errors`` is on: reads miss,
  writes land in L1 and are replayed to L2 once it answers.
- :attr:`DataFerryCache.dataferry` and :attr:`DataFerryCache.async_dataferry` are the caches
  underneath, for :meth:`~dataferry.DataFerry.stats`, events and the rest of DataFerry's API
  (their keys are what ``make_key`` returns, their values the serialized bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import pickle
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

try:
    from django.conf import settings as _settings  # type: ignore[import-untyped]
    from django.core.cache import caches as _caches  # type: ignore[import-untyped]
    from django.core.cache.backends.base import (  # type: ignore[import-untyped]
        DEFAULT_TIMEOUT,
        BaseCache,
    )
    from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
    from django.db import transaction  # type: ignore[import-untyped]
    from django.utils.crypto import salted_hmac  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - the tests hide django to check the message
    raise ImportError(
        "dataferry.contrib.django needs Django: pip install 'dataferry[django]'"
    ) from exc

from dataferry._async._facade import AsyncDataFerry
from dataferry._backends import Backplane, DistributedCache
from dataferry._backends._backplane import BackplaneState
from dataferry._codec import (
    AesGcmEncryptor,
    Codec,
    Compressor,
    DecodeError,
    GzipCompressor,
    JsonSerializer,
    Keyring,
    Lz4Compressor,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
    ZstdCompressor,
)
from dataferry._config import from_url_kwargs
from dataferry._errors import ConfigurationError, DistributedCacheError, SerializationError
from dataferry._keys import key_prefix, lock_key
from dataferry._memory import MemoryCache
from dataferry._options import MAX_TTL, EntryOptions
from dataferry._sync._facade import DataFerry

__all__ = [
    "DataFerryCache",
    "ashutdown_caches",
    "invalidate_on_commit",
    "shutdown_caches",
]

logger = logging.getLogger("dataferry")

#: Seconds a lock of ``add``/``incr``/``touch`` lasts at most (a holder that dies blocks no
#: one for longer), and the longest a caller waits for it before going on without it.
LOCK_TTL: Final = 5.0
_POLL_FIRST = 0.001
_POLL_MAX = 0.05
#: DataFerry's longest key, in UTF-8 bytes; longer Django keys are shortened (see _fit).
_MAX_KEY_BYTES = 1024
#: Payloads this process published through the Redis backplane, to skip their echo.
_ECHO_LIMIT = 10_000

#: Options passed as they are to both DataFerry caches.
_PASSED: Final = frozenset(
    {
        "default_options",
        "distributed_layers",
        "join_timeout",
        "max_payload_bytes",
        "raise_distributed_errors",
        "resilience",
        "telemetry",
    }
)
_KNOWN: Final = frozenset(
    {"namespace", "max_entries", "max_bytes", "serializer", "compressor", "keys", "backplane"}
    | _PASSED
)
_SERIALIZERS: Final[dict[str, Callable[[], Serializer]]] = {
    "pickle": PickleSerializer,
    "json": JsonSerializer,
    "msgpack": MsgpackSerializer,
}
_COMPRESSORS: Final[dict[str, Callable[[], Compressor]]] = {
    "zstd": ZstdCompressor,
    "gzip": GzipCompressor,
    "lz4": Lz4Compressor,
}
#: Reads that ask L2 only (the shared truth), for the checks of add/incr/touch.
_L2_ONLY: Final = EntryOptions(skip_memory=True)
_MISSING: Any = object()


# == Serialization =================================================================================


class _Serialized:
    """The codec's serializer here: values reach DataFerry already serialized, as ``bytes``.

    It carries the wire id of the serializer that made the bytes, so an entry says what it
    holds (pickle, JSON...) and DataFerry caches outside Django read it with their own
    serializer; and its ``requires_authentication``, so a codec hands pickled bytes over only
    from entries that authenticated.
    """

    __slots__ = ("id", "requires_authentication")

    def __init__(self, inner: Serializer) -> None:
        self.id = inner.id
        self.requires_authentication = bool(getattr(inner, "requires_authentication", False))

    def dumps(self, value: Any, /) -> bytes:
        if type(value) is not bytes:  # pragma: no cover - the backend only ever stores bytes
            raise SerializationError(f"expected serialized bytes, got {type(value).__name__}")
        return value

    def loads(self, data: bytes, /, type: Any = None) -> Any:
        return bytes(data)

    def __repr__(self) -> str:
        return f"_Serialized(id={self.id})"


class _Values:
    """Turns Django's values into the bytes stored, and back (a fresh object per read)."""

    __slots__ = ("dumps", "loads", "serializer")

    def __init__(self, serializer: Serializer) -> None:
        self.serializer = serializer
        if isinstance(serializer, PickleSerializer):
            protocol = serializer.protocol

            # pickle's own errors, unwrapped: Django's callers (and its tests) expect a
            # PicklingError for an unpicklable value, as every Django backend raises.
            def dumps(value: Any) -> bytes:
                return pickle.dumps(value, protocol)

            self.dumps: Callable[[Any], bytes] = dumps
            self.loads: Callable[[bytes], Any] = pickle.loads
        else:
            self.dumps = serializer.dumps
            self.loads = serializer.loads

    def load(self, stored: Any) -> Any:
        # bytes from this backend; anything else is an entry another DataFerry cache wrote
        # with a serializer this codec reads itself (JSON): already a value.
        return self.loads(stored) if type(stored) is bytes else stored


# == The in-process backplane between the sync and the async cache ================================


class _Hub:
    """Delivers one engine's invalidations between its two caches at once, and to the fleet.

    Each cache of the pair has a :class:`_Twin` as its backplane. What one publishes reaches the
    other's ``on_message`` before ``publish`` returns (so a write through the sync cache is
    seen by the async one at once), then goes to the Redis backplane when there is one. What the
    Redis backplane delivers reaches both, except the echo of this process's own payloads.
    Callbacks run one at a time (a reentrant lock: a listener may write to the cache).
    """

    __slots__ = ("_echo", "_lock", "_remote", "_started", "_state", "_twins")

    def __init__(self, remote: Backplane | None) -> None:
        self._remote = remote
        self._lock = threading.RLock()
        self._twins: list[_Twin] = []
        self._started = False
        self._state: BackplaneState | None = None
        self._echo: OrderedDict[bytes, None] = OrderedDict()

    @property
    def remote(self) -> Backplane | None:
        return self._remote

    def join(self, twin: _Twin, channel: str) -> None:
        with self._lock:
            self._twins.append(twin)
            state = self._state
            start = self._remote is not None and not self._started
            self._started = True
        if start:
            assert self._remote is not None
            # Not under the lock: start waits for the first subscription, whose state the
            # remote reports from its own thread.
            self._remote.start(channel, self._received, self._changed)
        elif state is not None:
            twin.on_state(state)

    def leave(self, twin: _Twin) -> bool:
        """Forget ``twin``; return whether it was the last (the remote is then to close)."""
        with self._lock:
            if twin in self._twins:
                self._twins.remove(twin)
            return not self._twins

    def deliver(self, sender: _Twin, payload: bytes) -> None:
        with self._lock:
            for twin in self._twins:
                if twin is not sender:
                    twin.on_message(payload)

    def sending(self, payloads: Iterable[bytes]) -> None:
        with self._lock:
            echo = self._echo
            for payload in payloads:
                echo[payload] = None
            while len(echo) > _ECHO_LIMIT:
                echo.popitem(last=False)

    def unsent(self, payloads: Iterable[bytes]) -> None:
        with self._lock:
            for payload in payloads:
                self._echo.pop(payload, None)

    def _received(self, payload: bytes) -> None:
        with self._lock:
            if payload in self._echo:  # ours, delivered locally when it was published
                del self._echo[payload]
                return
            for twin in self._twins:
                twin.on_message(payload)

    def _changed(self, state: BackplaneState) -> None:
        with self._lock:
            self._state = state
            for twin in self._twins:
                twin.on_state(state)


def _ignore_message(payload: bytes) -> None:
    pass


def _ignore_state(state: BackplaneState) -> None:
    pass


class _Twin:
    """The :class:`~dataferry.Backplane` of one cache of an engine's pair (see :class:`_Hub`)."""

    __slots__ = ("_hub", "on_message", "on_state")

    def __init__(self, hub: _Hub) -> None:
        self._hub = hub
        self.on_message: Callable[[bytes], None] = _ignore_message
        self.on_state: Callable[[BackplaneState], None] = _ignore_state

    def start(
        self,
        channel: str,
        on_message: Callable[[bytes], None],
        on_state: Callable[[BackplaneState], None],
    ) -> None:
        self.on_message = on_message
        self.on_state = on_state
        self._hub.join(self, channel)

    def stop(self) -> None:
        if self._hub.leave(self) and self._hub.remote is not None:
            self._hub.remote.stop()

    async def apublish(self, channel: str, payload: bytes, /) -> None:
        await self.apublish_many(channel, (payload,))

    def publish(self, channel: str, payload: bytes, /) -> None:
        self.publish_many(channel, (payload,))

    async def apublish_many(self, channel: str, payloads: Iterable[bytes], /) -> None:
        hub = self._hub
        batch = list(payloads)
        for payload in batch:
            hub.deliver(self, payload)
        remote = hub.remote
        if remote is None:
            return
        hub.sending(batch)
        try:
            many = getattr(remote, "apublish_many", None)
            if many is not None and len(batch) > 1:
                await many(channel, batch)
            else:
                for payload in batch:
                    await remote.apublish(channel, payload)
        except BaseException:
            hub.unsent(batch)
            raise

    def publish_many(self, channel: str, payloads: Iterable[bytes], /) -> None:
        hub = self._hub
        batch = list(payloads)
        for payload in batch:
            hub.deliver(self, payload)
        remote = hub.remote
        if remote is None:
            return
        hub.sending(batch)
        try:
            many = getattr(remote, "publish_many", None)
            if many is not None and len(batch) > 1:
                many(channel, batch)
            else:
                for payload in batch:
                    remote.publish(channel, payload)
        except BaseException:
            hub.unsent(batch)
            raise

    async def aclose(self) -> None:
        if self._hub.leave(self) and self._hub.remote is not None:
            await self._hub.remote.aclose()

    def close(self) -> None:
        if self._hub.leave(self) and self._hub.remote is not None:
            self._hub.remote.close()


# == Configuration =================================================================================


def _options_of(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"OPTIONS must be a dict, got {type(options).__name__}")
    out: dict[str, Any] = {}
    for name, value in options.items():
        if not isinstance(name, str):
            raise ConfigurationError(f"OPTIONS keys are str, got {name!r}")
        lowered = name.lower()
        if lowered not in _KNOWN:
            raise ConfigurationError(
                f"unknown option {name!r} in OPTIONS of DataFerryCache; known: "
                + ", ".join(sorted(_KNOWN))
            )
        out[lowered] = value
    return out


def _count(name: str, value: Any, *, zero: bool) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        low = "0 or more" if zero else "1 or more"
        raise ConfigurationError(f"OPTIONS {name} must be an int, {low}, got {value!r}")
    return value


def _serializer(value: Any) -> Serializer:
    if isinstance(value, str):
        make = _SERIALIZERS.get(value.lower())
        if make is None:
            raise ConfigurationError(
                f"OPTIONS serializer must be one of {sorted(_SERIALIZERS)} or a Serializer, "
                f"got {value!r}"
            )
        return make()
    if isinstance(value, Serializer) and not isinstance(value, type):
        return value
    raise ConfigurationError(f"OPTIONS serializer must be a name or a Serializer, got {value!r}")


def _compressor(value: Any) -> Compressor | None:
    if value is None:
        return None
    if isinstance(value, str):
        make = _COMPRESSORS.get(value.lower())
        if make is None:
            raise ConfigurationError(
                f"OPTIONS compressor must be one of {sorted(_COMPRESSORS)} or a Compressor, "
                f"got {value!r}"
            )
        return make()
    if isinstance(value, Compressor) and not isinstance(value, type):
        return value
    raise ConfigurationError(f"OPTIONS compressor must be a name or a Compressor, got {value!r}")


def _keyring(value: Any) -> Keyring:
    if isinstance(value, Keyring):
        return value
    if not isinstance(value, str):
        raise ConfigurationError(
            f"OPTIONS keys must be a Keyring or 'id:base64key,...', got {type(value).__name__}"
        )
    keys: dict[str, str] = {}
    for entry in value.split(","):
        key_id, sep, key = entry.strip().partition(":")
        if not sep or not key_id or not key:
            # Never echo the text: it holds key material.
            raise ConfigurationError("OPTIONS keys must look like 'id:base64key,id:base64key'")
        keys.setdefault(key_id, key)
    return Keyring(keys, primary=next(iter(keys)))


def _secret_keyring() -> Keyring:
    """A signing keyring derived from ``SECRET_KEY`` (primary) and ``SECRET_KEY_FALLBACKS``."""
    try:
        secrets_ = [_settings.SECRET_KEY, *getattr(_settings, "SECRET_KEY_FALLBACKS", ())]
    except ImproperlyConfigured:
        secrets_ = []
    keys: dict[str, bytes] = {}
    for secret in secrets_:
        if not secret:
            continue
        key = salted_hmac(
            "dataferry.contrib.django.DataFerryCache", "signing key", secret, algorithm="sha256"
        ).digest()
        keys.setdefault("django-" + hashlib.sha256(key).hexdigest()[:16], key)
    if not keys:
        raise ConfigurationError(
            "DataFerryCache pickles values and signs them with a key derived from SECRET_KEY, "
            "which is empty: set SECRET_KEY, give OPTIONS 'keys' (a Keyring), or use "
            "OPTIONS 'serializer': 'json'"
        )
    return Keyring(keys, primary=next(iter(keys)))


def _token(value: Any) -> Hashable:
    """What identifies an option's value among the engines of the process."""
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))  # settings objects live as long as the process
    return (type(value).__name__, value)


def _ident(location: Any, options: Any) -> Hashable:
    """What tells one engine from another: LOCATION, OPTIONS and the secrets keys derive from."""
    try:
        secrets_ = [_settings.SECRET_KEY, *getattr(_settings, "SECRET_KEY_FALLBACKS", ())]
    except ImproperlyConfigured:
        secrets_ = []
    secret = hashlib.sha256(repr(secrets_).encode()).digest()
    if isinstance(options, Mapping):
        return (location, tuple(sorted((str(n), _token(v)) for n, v in options.items())), secret)
    return (location, _token(options), secret)


class _Spec:
    """A backend's LOCATION and OPTIONS, checked; builds the engine they describe."""

    __slots__ = ("kwargs", "location", "max_bytes", "max_entries", "values")

    def __init__(self, location: Any, raw_options: Any) -> None:
        if not isinstance(location, str) or not location:
            raise ConfigurationError(
                "DataFerryCache needs a LOCATION: a DataFerry URL such as "
                "redis://host:6379/0, sqlite:///path or memory://"
            )
        options = _options_of(raw_options)
        # Options first: nothing is built for a configuration that is refused.
        backplane = options.pop("backplane", False)
        given = backplane is not True and backplane is not False  # a Backplane object?
        if given and (not isinstance(backplane, Backplane) or isinstance(backplane, type)):
            raise ConfigurationError(
                f"OPTIONS backplane must be True, False or a Backplane, got {backplane!r}"
            )
        self.max_entries: int | None = None
        if "max_entries" in options:
            self.max_entries = _count("max_entries", options.pop("max_entries"), zero=True)
        self.max_bytes: int | None = None
        max_bytes = options.pop("max_bytes", None)
        if max_bytes is not None:
            self.max_bytes = _count("max_bytes", max_bytes, zero=False)
        serializer = _serializer(options.pop("serializer", "pickle"))
        compressor = _compressor(options.pop("compressor", None))
        keys = options.pop("keys", None)
        encryptor = None if keys is None else AesGcmEncryptor(_keyring(keys))
        signing = None
        if encryptor is None and getattr(serializer, "requires_authentication", False):
            signing = _secret_keyring()
        codec = Codec(
            serializer=_Serialized(serializer),
            compressor=compressor,
            encryptor=encryptor,
            signing_key=signing,
        )
        query = parse_qsl(urlsplit(location).query)
        if given and any(name == "backplane" for name, _ in query):
            raise ConfigurationError("a backplane both in LOCATION and in OPTIONS: give one")
        url = location
        if backplane is True:
            # As a query parameter, so from_url builds it (and refuses a non-Redis URL).
            base, sep, fragment = url.partition("#")
            url = base + ("&" if "?" in base else "?") + "backplane=true" + sep + fragment
        # The URL's settings (and its errors) as from_url has them; OPTIONS win.
        kwargs = from_url_kwargs(url)
        kwargs.pop("default_ttl", None)  # every call gives Django's timeout
        kwargs.pop("memory", None)  # each engine builds its own L1s (see _Engine)
        if self.max_entries is None:
            for name, value in query:
                if name == "max_entries":
                    self.max_entries = int(value)  # checked by from_url_kwargs
        if given:
            kwargs["backplane"] = backplane
        if "namespace" in options:
            kwargs["namespace"] = options.pop("namespace")
        kwargs["codec"] = codec
        kwargs.update(options)  # the _PASSED ones: the caches check them
        self.location = location
        self.kwargs = kwargs
        self.values = _Values(serializer)

    def memory(self) -> MemoryCache | None:
        if self.max_entries == 0:
            return None
        if self.max_entries is None and self.max_bytes is None:
            return MemoryCache()
        return MemoryCache(max_entries=self.max_entries, max_bytes=self.max_bytes)


# == The engine: what every backend object with the same configuration shares ======================


class _Engine:
    """A sync and an async cache over one L2, coherent with each other (see :class:`_Hub`)."""

    __slots__ = (
        "aio",
        "aio_down",
        "closed",
        "l2",
        "local_lock",
        "memory",
        "namespace",
        "prefix",
        "sync",
        "sync_down",
        "values",
    )

    def __init__(self, spec: _Spec) -> None:
        kwargs = dict(spec.kwargs)
        l2: DistributedCache | None = kwargs.get("distributed")
        hub = _Hub(kwargs.pop("backplane", None))
        if l2 is None:
            # L1 only: it is the store, so both caches share it (each has no L2 to refill a
            # second L1 from); the hub still carries tag removals between their tag indexes.
            shared = spec.memory()
            sync_memory, aio_memory = shared, shared
        else:
            # An L1 each: the hub drops from one what the other changed, and a write's own
            # L1 keeps its value (a shared L1 would lose it to the twin's invalidation).
            sync_memory, aio_memory = spec.memory(), spec.memory()
        self.memory = sync_memory if l2 is None else None
        self.l2 = l2
        self.values = spec.values
        self.local_lock = threading.Lock()
        self.closed = False
        self.sync_down = False
        self.aio_down = False
        try:
            sync = DataFerry(memory=sync_memory, backplane=_Twin(hub), **kwargs)
        except BaseException:
            # A refused option: release what from_url built (nothing connected yet).
            if l2 is not None:
                l2.close()
            if hub.remote is not None:
                hub.remote.close()
            raise
        try:
            aio = AsyncDataFerry(memory=aio_memory, backplane=_Twin(hub), **kwargs)
        except BaseException:  # pragma: no cover - the sync cache accepted the same arguments
            sync.close()
            raise
        self.sync = sync
        self.aio = aio
        self.namespace = sync.namespace
        self.prefix = key_prefix(self.namespace, None)
        sync.subscribe(self._sync_event)
        aio.subscribe(self._aio_event)

    def _sync_event(self, name: str, attributes: dict[str, Any]) -> None:
        if name == "circuit_state":
            self.sync_down = attributes.get("state") == "open"

    def _aio_event(self, name: str, attributes: dict[str, Any]) -> None:
        if name == "circuit_state":
            self.aio_down = attributes.get("state") == "open"

    # -- the locks of add / incr / touch ----------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Hold the lock of ``key`` (a DataFerry key) while the block runs."""
        l2 = self.l2
        if l2 is None:
            with self.local_lock:
                yield
            return
        if self.sync_down:  # the L2 is skipped anyway: don't wait on it for a lock
            yield
            return
        # The lock get_or_set(..., distributed_lock=True) takes for the same entry.
        name = lock_key(self.namespace, self.prefix + key)
        token = secrets.token_bytes(16)
        held = False
        deadline = time.monotonic() + LOCK_TTL
        pause = _POLL_FIRST
        try:
            while True:
                held = l2.acquire_lock(name, token, LOCK_TTL)
                if held or time.monotonic() >= deadline:
                    break
                time.sleep(pause)
                pause = min(pause * 2, _POLL_MAX)
        except DistributedCacheError:
            held = False  # the L2 failed: what follows fails over as any call does
        try:
            yield
        finally:
            if held:
                with contextlib.suppress(DistributedCacheError):
                    l2.release_lock(name, token)

    @contextlib.asynccontextmanager
    async def alocked(self, key: str) -> AsyncIterator[None]:
        """Async :meth:`locked`."""
        l2 = self.l2
        if l2 is None:
            # Shared with the sync cache's threads: never block the event loop on it.
            pause = _POLL_FIRST
            while not self.local_lock.acquire(blocking=False):
                await asyncio.sleep(pause)
                pause = min(pause * 2, _POLL_MAX)
            try:
                yield
            finally:
                self.local_lock.release()
            return
        if self.aio_down:
            yield
            return
        # The lock get_or_set(..., distributed_lock=True) takes for the same entry.
        name = lock_key(self.namespace, self.prefix + key)
        token = secrets.token_bytes(16)
        held = False
        deadline = time.monotonic() + LOCK_TTL
        pause = _POLL_FIRST
        try:
            while True:
                held = await l2.aacquire_lock(name, token, LOCK_TTL)
                if held or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(pause)
                pause = min(pause * 2, _POLL_MAX)
        except DistributedCacheError:
            held = False
        try:
            yield
        finally:
            if held:
                with contextlib.suppress(DistributedCacheError):
                    await l2.arelease_lock(name, token)

    # -- what add / incr / touch keep of an entry: its expiry and tags ---------------------------

    def entry_info(self, key: str) -> tuple[float, tuple[str, ...]] | None:
        """The logical expiry and the tags of the entry of ``key``, or None if unknown."""
        skey = self.prefix + key
        l2 = self.l2
        if l2 is None:
            return self._memory_info(skey)
        try:
            data = l2.get(skey)
        except DistributedCacheError:
            return None
        return _header_info(data)

    async def aentry_info(self, key: str) -> tuple[float, tuple[str, ...]] | None:
        """Async :meth:`entry_info`."""
        skey = self.prefix + key
        l2 = self.l2
        if l2 is None:
            return self._memory_info(skey)
        try:
            data = await l2.aget(skey)
        except DistributedCacheError:
            return None
        return _header_info(data)

    def _memory_info(self, skey: str) -> tuple[float, tuple[str, ...]] | None:
        memory = self.memory
        entry = None if memory is None else memory.get_entry(skey)
        if entry is None:
            return None
        meta = entry[1]
        expiry = getattr(meta, "logical_expiry", None)
        if not isinstance(expiry, float):  # pragma: no cover - every entry here has its meta
            return None
        return expiry, tuple(getattr(meta, "tags", ()))

    # -- closing -----------------------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        # The sync cache first: the async one then closes the Redis backplane (if any) with
        # its asyncio clients, in a loop of its own.
        self.sync.close()
        _run(self.aio.aclose)

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        await asyncio.to_thread(self.sync.close)
        await self.aio.aclose()


def _header_info(data: bytes | None) -> tuple[float, tuple[str, ...]] | None:
    if data is None:
        return None
    try:
        header = Codec.read_header(data)
    except DecodeError:
        return None
    return header.logical_expiry, header.tags


def _run(close: Callable[[], Awaitable[None]]) -> None:
    """Run ``close()`` to completion from sync code, in a thread of its own if a loop runs here."""

    async def main() -> None:
        await close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(main())
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # pragma: no cover - closing failed
            errors.append(exc)

    thread = threading.Thread(target=target, name="dataferry-django-close")
    thread.start()
    thread.join()
    if errors:  # pragma: no cover - closing failed
        raise errors[0]


_engines: dict[Hashable, _Engine] = {}
_engines_lock = threading.Lock()


def _engine_for(location: Any, options: Any) -> _Engine:
    """The open engine of this configuration, built (and its configuration checked) if none."""
    ident = _ident(location, options)
    with _engines_lock:
        engine = _engines.get(ident)
        if engine is None or engine.closed:
            # Only a new configuration is parsed: Django builds a backend object per thread.
            engine = _engines[ident] = _Engine(_Spec(location, options))
        return engine


def shutdown_caches() -> None:
    """Close every cache this process opened for :class:`DataFerryCache` backends.

    Pending L2 writes are flushed and connections released. For process shutdown, and for
    tests that change ``CACHES``; a backend used afterwards opens its caches again.
    """
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.close()


async def ashutdown_caches() -> None:
    """Async :func:`shutdown_caches` (closes the async caches in the running loop)."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        await engine.aclose()


# == The backend ===================================================================================


def _fit(made: Any) -> str:
    """Django's key as a DataFerry key: a str of at most 1024 UTF-8 bytes."""
    key: str = made if type(made) is str else str(made)
    if len(key) <= _MAX_KEY_BYTES // 4:
        return key
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        size = _MAX_KEY_BYTES + 1
    if size <= _MAX_KEY_BYTES:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    head = key[:100].encode("utf-8", "ignore").decode("utf-8")
    return f"{head}#sha256:{digest}"


def _tag_list(tags: Iterable[str] | None) -> list[str] | None:
    return None if tags is None else list(tags)


class DataFerryCache(BaseCache):  # type: ignore[misc]
    """Django's cache API on DataFerry: ``BACKEND = "dataferry.contrib.django.DataFerryCache"``.

    Configured by ``LOCATION`` (a DataFerry URL) and ``OPTIONS`` (see the module doc). Django
    builds it; every method of Django's cache API is here, sync and async, plus ``tags=`` on
    writes, :meth:`remove_by_tag` and the underlying caches.

    Raises:
        ConfigurationError: A missing or bad ``LOCATION``, an unknown option or a bad value.

    """

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self._location = server
        self._options = params.get("OPTIONS")
        self._engine_ref = _engine_for(server, self._options)
        self._values = self._engine_ref.values

    # -- plumbing ---------------------------------------------------------------------------------

    @property
    def _engine(self) -> _Engine:
        engine = self._engine_ref
        if engine.closed:  # shut down: open the caches again
            engine = self._engine_ref = _engine_for(self._location, self._options)
        return engine

    def _key(self, key: Any, version: int | None) -> str:
        return _fit(self.make_and_validate_key(key, version=version))

    def _ttl(self, timeout: Any) -> float:
        """Seconds to keep a value for ``timeout`` (Django's); 0.0: don't keep it."""
        seconds = self.get_backend_timeout(timeout)
        if seconds is None:
            return MAX_TTL
        return min(seconds, MAX_TTL)

    def _fresh(self) -> EntryOptions | None:
        """Options of the reads that add, incr and touch decide on: the L2, if any."""
        return None if self._engine.l2 is None else _L2_ONLY

    @property
    def dataferry(self) -> DataFerry:
        """The sync :class:`~dataferry.DataFerry` under this backend (shared, don't close it)."""
        return self._engine.sync

    @property
    def async_dataferry(self) -> AsyncDataFerry:
        """The :class:`~dataferry.AsyncDataFerry` under this backend (shared, don't close it)."""
        return self._engine.aio

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> float | None:
        """Seconds from now that ``timeout`` means: None for never, 0.0 for "don't store".

        ``DEFAULT_TIMEOUT`` is the backend's ``TIMEOUT``; ``None`` never expires; zero or
        less expires at once (nothing is stored).
        """
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        return max(0.0, float(timeout))

    # -- reads ------------------------------------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Return the value of ``key``, or ``default`` if it is missing or expired."""
        stored = self._engine.sync.get(self._key(key, version), _MISSING)
        return default if stored is _MISSING else self._values.load(stored)

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Async :meth:`get`."""
        stored = await self._engine.aio.get(self._key(key, version), _MISSING)
        return default if stored is _MISSING else self._values.load(stored)

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """Return ``{key: value}`` for the keys found (L1 first, then one L2 round trip)."""
        names = {self._key(k, version): k for k in keys}
        found = self._engine.sync.get_many(list(names))
        load = self._values.load
        return {names[n]: load(v) for n, v in found.items()}

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """Async :meth:`get_many`."""
        names = {self._key(k, version): k for k in keys}
        found = await self._engine.aio.get_many(list(names))
        load = self._values.load
        return {names[n]: load(v) for n, v in found.items()}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        """Return whether ``key`` holds a value that has not expired."""
        return self._engine.sync.exists(self._key(key, version))

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        """Async :meth:`has_key`."""
        return await self._engine.aio.exists(self._key(key, version))

    def get_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> Any:
        """Return the value of ``key``; if missing, store ``default`` (or what it returns).

        Concurrent callers of a missing key in this process share one call of ``default``.
        A ``timeout`` of zero or less returns the value without storing it.
        """
        name = self._key(key, version)
        ttl = self._ttl(timeout)
        engine = self._engine
        values = self._values
        if ttl <= 0:
            stored = engine.sync.get(name, _MISSING)
            if stored is not _MISSING:
                return values.load(stored)
            return default() if callable(default) else default

        def factory() -> bytes:
            return values.dumps(default() if callable(default) else default)

        return values.load(engine.sync.get_or_set(name, factory, ttl=ttl, tags=_tag_list(tags)))

    async def aget_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> Any:
        """Async :meth:`get_or_set`; ``default`` may also return an awaitable (awaited)."""
        name = self._key(key, version)
        ttl = self._ttl(timeout)
        engine = self._engine
        values = self._values

        async def compute() -> Any:
            value = default() if callable(default) else default
            if inspect.isawaitable(value):
                value = await value
            return value

        if ttl <= 0:
            stored = await engine.aio.get(name, _MISSING)
            if stored is not _MISSING:
                return values.load(stored)
            return await compute()

        async def factory() -> bytes:
            return values.dumps(await compute())

        stored = await engine.aio.get_or_set(name, factory, ttl=ttl, tags=_tag_list(tags))
        return values.load(stored)

    # -- writes -----------------------------------------------------------------------------------

    def set(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Store ``value`` under ``key`` for ``timeout`` seconds (zero or less: delete it)."""
        name = self._key(key, version)
        data = self._values.dumps(value)
        ttl = self._ttl(timeout)
        if ttl <= 0:
            self._engine.sync.remove(name)
        else:
            self._engine.sync.set(name, data, ttl=ttl, tags=_tag_list(tags))

    async def aset(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Async :meth:`set`."""
        name = self._key(key, version)
        data = self._values.dumps(value)
        ttl = self._ttl(timeout)
        if ttl <= 0:
            await self._engine.aio.remove(name)
        else:
            await self._engine.aio.set(name, data, ttl=ttl, tags=_tag_list(tags))

    def add(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> bool:
        """Store ``value`` if ``key`` holds none; return whether it did.

        Atomic with respect to other ``add``, ``incr`` and ``touch`` calls on every process
        sharing the L2 (see the module doc). A ``timeout`` of zero or less stores nothing and
        returns whether the key was absent.
        """
        name = self._key(key, version)
        data = self._values.dumps(value)
        ttl = self._ttl(timeout)
        engine = self._engine
        fresh = self._fresh()
        if engine.sync.exists(name, options=fresh):  # no lock needed to see it is there
            return False
        with engine.locked(name):
            if engine.sync.exists(name, options=fresh):
                return False
            if ttl > 0:
                engine.sync.set(name, data, ttl=ttl, tags=_tag_list(tags))
            return True

    async def aadd(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> bool:
        """Async :meth:`add`."""
        name = self._key(key, version)
        data = self._values.dumps(value)
        ttl = self._ttl(timeout)
        engine = self._engine
        fresh = self._fresh()
        if await engine.aio.exists(name, options=fresh):
            return False
        async with engine.alocked(name):
            if await engine.aio.exists(name, options=fresh):
                return False
            if ttl > 0:
                await engine.aio.set(name, data, ttl=ttl, tags=_tag_list(tags))
            return True

    def set_many(
        self,
        data: Mapping[Any, Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> list[Any]:
        """Store every ``{key: value}`` (one L2 round trip); return ``[]`` (no key fails)."""
        if not data:
            return []
        dumps = self._values.dumps
        items = {self._key(k, version): dumps(v) for k, v in data.items()}
        ttl = self._ttl(timeout)
        if ttl <= 0:
            self._engine.sync.remove_many(list(items))
        else:
            self._engine.sync.set_many(items, ttl=ttl, tags=_tag_list(tags))
        return []

    async def aset_many(
        self,
        data: Mapping[Any, Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> list[Any]:
        """Async :meth:`set_many`."""
        if not data:
            return []
        dumps = self._values.dumps
        items = {self._key(k, version): dumps(v) for k, v in data.items()}
        ttl = self._ttl(timeout)
        if ttl <= 0:
            await self._engine.aio.remove_many(list(items))
        else:
            await self._engine.aio.set_many(items, ttl=ttl, tags=_tag_list(tags))
        return []

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Make ``key`` expire ``timeout`` seconds from now; return whether it exists.

        A ``timeout`` of zero or less deletes it. The value is written again (with its tags)
        under the key's lock, as ``add`` and ``incr`` are.
        """
        name = self._key(key, version)
        ttl = self._ttl(timeout)
        engine = self._engine
        with engine.locked(name):
            found, stored = engine.sync.try_get(name, options=self._fresh())
            if not found:
                return False
            if ttl <= 0:
                engine.sync.remove(name)
                return True
            info = engine.entry_info(name)
            tags = None if info is None else list(info[1])
            engine.sync.set(name, stored, ttl=ttl, tags=tags)
            return True

    async def atouch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Async :meth:`touch`."""
        name = self._key(key, version)
        ttl = self._ttl(timeout)
        engine = self._engine
        async with engine.alocked(name):
            found, stored = await engine.aio.try_get(name, options=self._fresh())
            if not found:
                return False
            if ttl <= 0:
                await engine.aio.remove(name)
                return True
            info = await engine.aentry_info(name)
            tags = None if info is None else list(info[1])
            await engine.aio.set(name, stored, ttl=ttl, tags=tags)
            return True

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """Add ``delta`` to the value of ``key`` and return it; ValueError if it is missing.

        Atomic across processes (under the key's lock in L2); keeps the key's expiry.
        """
        name = self._key(key, version)
        engine = self._engine
        values = self._values
        with engine.locked(name):
            found, stored = engine.sync.try_get(name, options=self._fresh())
            if not found:
                raise ValueError(f"Key '{key}' not found")
            new = values.load(stored) + delta
            data = values.dumps(new)
            ttl, tags = self._kept(engine.entry_info(name))
            if ttl <= 0:  # expired meanwhile
                raise ValueError(f"Key '{key}' not found")
            engine.sync.set(name, data, ttl=ttl, tags=tags)
            return new

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """Async :meth:`incr`."""
        name = self._key(key, version)
        engine = self._engine
        values = self._values
        async with engine.alocked(name):
            found, stored = await engine.aio.try_get(name, options=self._fresh())
            if not found:
                raise ValueError(f"Key '{key}' not found")
            new = values.load(stored) + delta
            data = values.dumps(new)
            ttl, tags = self._kept(await engine.aentry_info(name))
            if ttl <= 0:
                raise ValueError(f"Key '{key}' not found")
            await engine.aio.set(name, data, ttl=ttl, tags=tags)
            return new

    def _kept(self, info: tuple[float, tuple[str, ...]] | None) -> tuple[float, list[str] | None]:
        """The ttl and tags an entry keeps when rewritten (the default timeout if unknown)."""
        if info is None:
            ttl = self._ttl(DEFAULT_TIMEOUT)
            return (ttl if ttl > 0 else MAX_TTL), None
        expiry, tags = info
        return min(expiry - time.time(), MAX_TTL), (list(tags) or None)

    def delete(self, key: Any, version: int | None = None) -> bool:
        """Delete ``key``; return whether it held a value."""
        name = self._key(key, version)
        sync = self._engine.sync
        existed = sync.exists(name)
        sync.remove(name)
        return existed

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        """Async :meth:`delete`."""
        name = self._key(key, version)
        aio = self._engine.aio
        existed = await aio.exists(name)
        await aio.remove(name)
        return existed

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Delete every key (one L2 round trip)."""
        names = [self._key(k, version) for k in keys]
        if names:
            self._engine.sync.remove_many(names)

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Async :meth:`delete_many`."""
        names = [self._key(k, version) for k in keys]
        if names:
            await self._engine.aio.remove_many(names)

    def clear(self) -> None:
        """Make every entry of the namespace a miss, on every node, in O(1) (no FLUSHDB)."""
        self._engine.sync.clear()

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        await self._engine.aio.clear()

    def remove_by_tag(self, tag: str) -> None:
        """Make every entry carrying ``tag`` a miss, on every node, in O(1)."""
        self._engine.sync.remove_by_tag(tag)

    async def aremove_by_tag(self, tag: str) -> None:
        """Async :meth:`remove_by_tag`."""
        await self._engine.aio.remove_by_tag(tag)

    def close(self, **kwargs: Any) -> None:
        """Do nothing: Django calls it after each request, and the caches are shared.

        :func:`shutdown_caches` closes them.
        """

    async def aclose(self, **kwargs: Any) -> None:
        """Do nothing (see :meth:`close`)."""

    def __repr__(self) -> str:
        return f"DataFerryCache({self._location!r})"


# == Invalidation after a commit ===================================================================


def invalidate_on_commit(
    *keys: Any,
    cache: str = "default",
    version: int | None = None,
    tags: Iterable[str] = (),
    using: str | None = None,
    robust: bool = False,
) -> None:
    """Delete ``keys`` (and remove ``tags``) from a cache once the transaction commits.

    Call it where the database rows the keys cache are changed: until the transaction on
    ``using`` commits, readers keep getting the cached values (other connections still see the
    old rows), and if it rolls back nothing is invalidated. Outside a transaction it acts at
    once (Django's ``transaction.on_commit``). ``robust=True`` logs an invalidation that raises
    instead of letting it stop the callbacks after it.

    Args:
        keys: Django cache keys (``make_key`` with the cache's prefix and ``version`` applies).
        cache: The alias in ``CACHES``.
        version: The keys' version (default: the cache's ``VERSION``).
        tags: Tags to remove (the cache must be a :class:`DataFerryCache`).
        using: The database alias (default: the default database).
        robust: As ``transaction.on_commit``'s.

    Raises:
        ConfigurationError: ``tags`` given for a cache that is not a DataFerryCache, or a tag
            that is not a str.

    """
    backend = _caches[cache]
    tag_list = [tags] if isinstance(tags, str) else list(tags)
    for tag in tag_list:
        if not isinstance(tag, str) or not tag:
            raise ConfigurationError(f"tags must be non-empty str, got {tag!r}")
    if tag_list and not isinstance(backend, DataFerryCache):
        raise ConfigurationError(
            f"cache {cache!r} is a {type(backend).__name__}: only a DataFerryCache removes tags"
        )
    key_list = list(keys)

    def invalidate() -> None:
        if key_list:
            backend.delete_many(key_list, version=version)
        for tag in tag_list:
            backend.remove_by_tag(tag)

    transaction.on_commit(invalidate, using=using, robust=robust)
