"""Key validation and storage-key layout.

Storage key = ``{namespace}:k:{key}`` or ``{namespace}:t:{tenant}:{key}``. Namespace and tenant
ids are restricted to ``[A-Za-z0-9_.-]{1,64}`` (no ``:``), so no (tenant, key) pair can produce
the storage key of another pair. The cache's own records live beside them under other markers,
which no storage key can produce: ``{namespace}:lock:...`` (distributed locks),
``{namespace}:tag:k:{tag}`` / ``{namespace}:tag:t:{tenant}:{tag}`` (when a tag was last
removed) and ``{namespace}:clear`` / ``{namespace}:clear:t:{tenant}`` (when the namespace or a
tenant was last cleared, and its key-derivation epoch).
"""

from __future__ import annotations

import re

from dataferry._errors import ConfigurationError, InvalidKeyError, InvalidTenantError

MAX_KEY_BYTES = 1024
_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def check_key(key: object) -> str:
    """Return ``key`` if it is a valid cache key, else raise :class:`InvalidKeyError`."""
    if type(key) is not str:
        if isinstance(key, str):  # a str subclass is fine, store the plain str
            key = str.__str__(key)
        else:
            raise InvalidKeyError(f"cache keys must be str, not {type(key).__name__}")
    assert isinstance(key, str)
    # A str of <= 256 code points is at most 1024 UTF-8 bytes: skip the encode on the hot path.
    n = len(key)
    if n == 0:
        raise InvalidKeyError("cache keys must not be empty")
    if n > MAX_KEY_BYTES // 4:
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidKeyError("cache keys must be valid Unicode (no lone surrogates)") from None
        if size > MAX_KEY_BYTES:
            raise InvalidKeyError(
                f"cache keys must be at most {MAX_KEY_BYTES} UTF-8 bytes, got {size}"
            )
    elif not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidKeyError("cache keys must be valid Unicode (no lone surrogates)") from None
    return key


def check_tenant(value: object) -> str:
    """Return ``value`` if it is a valid tenant id, else raise :class:`InvalidTenantError`."""
    if not isinstance(value, str) or _ID_RE.fullmatch(value) is None:
        raise InvalidTenantError(f"tenant id must match [A-Za-z0-9_.-]{{1,64}}, got {value!r}")
    return value


def check_namespace(value: object) -> str:
    """Return ``value`` if it is a valid namespace, else raise :class:`ConfigurationError`."""
    if not isinstance(value, str) or _ID_RE.fullmatch(value) is None:
        raise ConfigurationError(f"namespace must match [A-Za-z0-9_.-]{{1,64}}, got {value!r}")
    return value


def key_prefix(namespace: str, tenant: str | None) -> str:
    """Return the storage-key prefix for a namespace and optional tenant."""
    if tenant is None:
        return f"{namespace}:k:"
    return f"{namespace}:t:{tenant}:"


def lock_key(namespace: str, storage_key: str) -> str:
    """Return the L2 key of the distributed lock of ``storage_key`` (see the module doc).

    ``{namespace}:k:user:1`` -> ``{namespace}:lock:k:user:1``. A user key with a Redis hash
    tag (``{user}:1``) keeps it, so on a Cluster the lock lives on the slot of its entry.
    """
    return f"{namespace}:lock:{storage_key[len(namespace) + 1 :]}"


def clear_key(namespace: str, tenant: str | None) -> str:
    """Return the L2 key of the clear record of the namespace (``tenant`` None) or a tenant."""
    if tenant is None:
        return f"{namespace}:clear"
    return f"{namespace}:clear:t:{tenant}"


def tag_key(namespace: str, tenant: str | None, tag: str) -> str:
    """Return the L2 key of the removal record of ``tag`` among the entries of a tenant (or not).

    Tags are per tenant: a tenant's ``remove_by_tag`` never touches another tenant's entries.
    """
    if tenant is None:
        return f"{namespace}:tag:k:{tag}"
    return f"{namespace}:tag:t:{tenant}:{tag}"


def clear_scope(namespace: str, name: str) -> tuple[bool, str | None]:
    """Whether ``name`` is a clear record, and whose: ``(True, tenant)`` or ``(False, None)``.

    The namespace's own record gives ``(True, None)``.
    """
    root = f"{namespace}:clear"
    if name == root:
        return True, None
    if name.startswith(root + ":t:"):
        tenant = name[len(root) + 3 :]
        if _ID_RE.fullmatch(tenant) is not None:
            return True, tenant
    return False, None
