"""Caches configured by a URL or by environment variables (``from_url``, ``from_env``).

URL forms (the L2 is the scheme; the cache's settings are query parameters)::

    memory://?namespace=shop                       L1 only
    sqlite:///var/cache/shop.sqlite?default_ttl=60 embedded L2 (a file; sqlite:///:memory: too)
    redis://host:6379/0?namespace=shop             Redis (rediss:// for TLS, unix:///socket)
    redis://host:7000/0?cluster=true               a Redis Cluster (any node)
    redis+sentinel://h1:26379,h2:26379/mymaster?db=0   Sentinel (service name as the path)

Settings, as query parameters or (``from_env``) environment variables:

=================  ========================  ===============================================
parameter          variable                  meaning
=================  ========================  ===============================================
(the URL)          ``DATAFERRY_URL``         the L2, as above (default ``memory://``)
``namespace``      ``DATAFERRY_NAMESPACE``   namespace of every key
``default_ttl``    ``DATAFERRY_DEFAULT_TTL`` seconds an entry stays fresh by default
``max_entries``    ``DATAFERRY_MAX_ENTRIES`` L1 size in entries (``0``: no L1)
``backplane``      ``DATAFERRY_BACKPLANE``   ``true``: a RedisBackplane on the same Redis
``cluster``        ``DATAFERRY_CLUSTER``     ``true``: the Redis URL is a Cluster node
(none)             ``DATAFERRY_KEYS``        a keyring (``id:base64,...``): encrypt entries
=================  ========================  ===============================================

Other query parameters of a Redis URL (``db``, ``password``...) go to redis-py. Environment
variables win over the URL's parameters; keyword arguments win over both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from dataferry._errors import ConfigurationError

__all__ = ["ENV", "from_env_kwargs", "from_url_kwargs"]

#: The environment variable of each setting.
ENV = {
    "namespace": "DATAFERRY_NAMESPACE",
    "default_ttl": "DATAFERRY_DEFAULT_TTL",
    "max_entries": "DATAFERRY_MAX_ENTRIES",
    "backplane": "DATAFERRY_BACKPLANE",
    "cluster": "DATAFERRY_CLUSTER",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(value: str, where: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"{where} must be true or false, got {value!r}")


def _seconds(value: str, where: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigurationError(f"{where} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"{where} must be a number of seconds > 0, got {value!r}")
    return seconds


def _entries(value: str, where: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise ConfigurationError(f"{where} must be a whole number, got {value!r}") from None
    if count < 0:
        raise ConfigurationError(f"{where} must be 0 (no L1) or more, got {value!r}")
    return count


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "namespace": lambda value, where: value,
    "default_ttl": _seconds,
    "max_entries": _entries,
    "backplane": _flag,
    "cluster": _flag,
}


def from_url_kwargs(
    url: str, overrides: Mapping[str, tuple[str, str]] | None = None
) -> dict[str, Any]:
    """The cache's constructor arguments for ``url`` (see the module doc).

    ``overrides``: settings by name, each with the name of where it came from (for errors),
    e.g. from environment variables; they win over the URL's parameters.

    Raises:
        ConfigurationError: An unknown scheme, a malformed URL or a bad setting (named).

    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            "a cache URL looks like redis://host:6379/0, sqlite:///path or memory://"
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigurationError("the cache URL is not a valid URL") from None
    scheme = parts.scheme.lower()
    settings: dict[str, Any] = {}
    passthrough: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _PARSERS:
            settings[name] = _PARSERS[name](value, f"the URL's {name}")
        else:
            passthrough.append((name, value))
    for name, (value, where) in (overrides or {}).items():
        settings[name] = _PARSERS[name](value, where)
    kwargs: dict[str, Any] = {}
    if "namespace" in settings:
        kwargs["namespace"] = settings["namespace"]
    if "default_ttl" in settings:
        kwargs["default_ttl"] = settings["default_ttl"]
    if "max_entries" in settings:
        from dataferry._memory import MemoryCache

        count = settings["max_entries"]
        kwargs["memory"] = None if count == 0 else MemoryCache(max_entries=count)
    redis_only = [n for n in ("backplane", "cluster") if settings.get(n)]
    if scheme in ("memory", "sqlite"):
        if passthrough:
            unknown = ", ".join(sorted({n for n, _ in passthrough}))
            raise ConfigurationError(f"unknown setting(s) in the cache URL: {unknown}")
        if redis_only:
            raise ConfigurationError(f"{redis_only[0]}=true needs a Redis URL, not {scheme}://")
        if scheme == "sqlite":
            from dataferry._backends import SQLiteCache

            path = parts.path if not parts.netloc else parts.netloc + parts.path
            if path.startswith("/") and path[1:].startswith(":memory:"):
                path = path[1:]
            if not path:
                raise ConfigurationError("a sqlite URL needs a path: sqlite:///path/to/file")
            kwargs["distributed"] = SQLiteCache(path)
        return kwargs
    if scheme in ("redis", "rediss", "unix"):
        from dataferry._backends import RedisBackplane, RedisCache

        redis_url = urlunsplit(parts._replace(query=urlencode(passthrough)))
        cluster = bool(settings.get("cluster"))
        kwargs["distributed"] = RedisCache.from_url(redis_url, cluster=cluster)
        if settings.get("backplane"):
            kwargs["backplane"] = RedisBackplane.from_url(redis_url, cluster=cluster)
        return kwargs
    if scheme == "redis+sentinel":
        from dataferry._backends import RedisBackplane, RedisCache

        if settings.get("cluster"):
            raise ConfigurationError("cluster=true and redis+sentinel:// can't go together")
        service = parts.path.strip("/")
        if not service:
            raise ConfigurationError(
                "a redis+sentinel URL names the service: redis+sentinel://host:26379/mymaster"
            )
        sentinels = [_host_port(node) for node in parts.netloc.split(",") if node]
        if not sentinels:
            raise ConfigurationError("a redis+sentinel URL needs at least one host:port")
        options: dict[str, Any] = {}
        for name, value in passthrough:
            if name == "db":
                options["db"] = _entries(value, "the URL's db")
            elif name == "password":
                options["password"] = value
            else:
                raise ConfigurationError(f"unknown setting in the cache URL: {name}")
        kwargs["distributed"] = RedisCache.from_sentinel(sentinels, service, **options)
        if settings.get("backplane"):
            kwargs["backplane"] = RedisBackplane.from_sentinel(sentinels, service, **options)
        return kwargs
    raise ConfigurationError(
        "a cache URL starts with memory://, sqlite://, redis://, rediss://, unix:// or "
        f"redis+sentinel:// (got {scheme}://)"
    )


def _host_port(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ConfigurationError(f"a sentinel address is host:port, got {node!r}") from None
    if not host or not 0 < number < 65536:
        raise ConfigurationError(f"a sentinel address is host:port, got {node!r}")
    return host, number


def from_env_kwargs(environ: Mapping[str, str]) -> dict[str, Any]:
    """The cache's constructor arguments from ``DATAFERRY_*`` variables in ``environ``.

    Raises:
        ConfigurationError: A bad variable (named); KeyringError for a bad ``DATAFERRY_KEYS``.

    """
    url = environ.get("DATAFERRY_URL", "memory://") or "memory://"
    overrides = {
        name: (environ[variable], variable)
        for name, variable in ENV.items()
        if environ.get(variable, "") != ""
    }
    try:
        kwargs = from_url_kwargs(url, overrides)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} (DATAFERRY_URL or DATAFERRY_* settings)") from None
    keys = environ.get("DATAFERRY_KEYS")
    if keys:
        from dataferry._codec import AesGcmEncryptor, Codec, Keyring
        from dataferry._codec._keyring import parse_key_list

        keyring = Keyring._from_entries(parse_key_list(keys), "environment variable DATAFERRY_KEYS")
        kwargs["codec"] = Codec(encryptor=AesGcmEncryptor(keyring))
    return kwargs
