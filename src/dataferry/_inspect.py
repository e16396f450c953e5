"""``dataferry inspect``: show what an L2 entry holds (envelope metadata, TTL, and the value).

An operator's view of an encrypted, compressed cache: everything in the envelope header is
shown without keys; the value is decoded only when it needs no key or a keyring is given.
Nothing here prints stored bytes when an entry can't be decoded: reasons are the codec's own
messages (which never hold data) or the class of the exception, never its text.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dataferry._codec import (
    AesGcmEncryptor,
    Codec,
    DecodeError,
    Header,
    Keyring,
    PickleSerializer,
    Serializer,
)
from dataferry._codec._registry import default_compressor, default_serializer
from dataferry._errors import ConfigurationError, DistributedCacheError
from dataferry._options import NOT_GIVEN, NotGiven

__all__ = ["Inspection", "inspect_entry", "read_sqlite_entry", "tenant_of"]


@dataclass
class Inspection:
    """What ``dataferry inspect`` found under one storage key."""

    storage_key: str
    found: bool
    stored_size: int = 0
    ttl_left: float | None = None
    header: Header | None = None
    error: str | None = None
    value_shown: bool = False
    value: Any = None
    value_note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (no key material)."""
        out: dict[str, Any] = {
            "storage_key": self.storage_key,
            "found": self.found,
        }
        if not self.found:
            return out
        out["stored_size"] = self.stored_size
        out["ttl_left"] = self.ttl_left
        if self.header is not None:
            out["envelope"] = self.header.describe()
            out["fresh"] = self.header.logical_expiry > time.time()
        if self.error is not None:
            out["error"] = self.error
        if self.value_shown:
            out["value"] = self.value
        elif self.value_note:
            out["value_note"] = self.value_note
        return out

    def rows(self) -> list[tuple[str, str]]:
        """Return the report as (field, value) rows, the value's JSON as one multi-line cell.

        ``dataferry inspect`` prints them as a table; :meth:`render` as plain text.
        """
        rows = [("key", self.storage_key)]
        if not self.found:
            rows.append(("status", "not found"))
            return rows
        rows.append(("stored size", f"{self.stored_size:,} bytes"))
        ttl = "no expiry" if self.ttl_left is None else f"{self.ttl_left:,.1f} s"
        rows.append(("TTL left", f"{ttl} (physical, in L2)"))
        h = self.header
        if h is None:
            rows.append(("status", f"not a DataFerry envelope ({self.error})"))
            return rows
        now = time.time()
        flags = ", ".join(h.describe()["flags"]) or "none"
        fresh = h.logical_expiry > now
        left = h.logical_expiry - now
        state = f"fresh, {left:,.1f} s left" if fresh else f"stale for {-left:,.1f} s"
        rows += [
            ("format", f"envelope v{h.version}"),
            ("flags", flags),
            ("serializer", h.serializer_name),
            ("compressor", h.compressor_name),
            ("key id", h.key_id or "-"),
            ("integrity", f"{h.integrity}" + ("" if h.key_id else " (not authenticated)")),
            ("created", f"{_when(h.created_at)} ({now - h.created_at:,.1f} s ago)"),
            ("logical expiry", f"{_when(h.logical_expiry)} ({state})"),
            ("tags", ", ".join(h.tags) or "-"),
        ]
        if self.value_shown:
            rows.append(
                ("value", json.dumps(self.value, indent=2, default=repr, ensure_ascii=False))
            )
        elif self.value_note:
            rows.append(("value", f"({self.value_note})"))
        return rows

    def render(self) -> str:
        """Return a human-readable report (:meth:`rows`, one per line)."""
        indent = " " * 17
        return "\n".join(
            f"{name:<17}" + value.replace("\n", "\n" + indent) for name, value in self.rows()
        )


def _when(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return repr(ts)


def tenant_of(storage_key: str) -> str | None:
    """Return the tenant id of a storage key ``{ns}:t:{tenant}:{key}``, else None."""
    parts = storage_key.split(":", 3)
    if len(parts) == 4 and parts[1] == "t":
        return parts[2]
    return None


def read_sqlite_entry(path: str, storage_key: str) -> tuple[bytes | None, float | None]:
    """Return ``(bytes, ttl_left)`` of ``storage_key`` in a SQLiteCache file, read-only.

    ``(None, None)`` when the key is absent or expired. The file is opened read-only through a
    ``file:...?mode=ro`` URI, so a mistyped path never creates a database (SQLite may add the
    ``-wal``/``-shm`` companions of an existing WAL database, as any reader does).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory.
        DistributedCacheError: The file can't be opened or read as a SQLiteCache database.

    """
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory, not a SQLiteCache file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist")
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise DistributedCacheError(f"SQLite {path!r}: {type(exc).__name__}: {exc}") from exc
    try:
        row = conn.execute(
            "SELECT value, expires_at FROM dataferry_cache WHERE key = ?", (storage_key,)
        ).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            raise DistributedCacheError(
                f"SQLite {path!r} is not a SQLiteCache database (no dataferry_cache table)"
            ) from exc
        raise DistributedCacheError(f"SQLite {path!r}: {type(exc).__name__}: {exc}") from exc
    except sqlite3.Error as exc:  # e.g. "file is not a database"
        raise DistributedCacheError(f"SQLite {path!r}: {type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()
    if row is None:
        return None, None
    value, expires_at = row
    if isinstance(value, str):  # a hand-written row: SQLite's typing is loose
        value = value.encode("utf-8")
    if not isinstance(value, bytes) or not isinstance(expires_at, (int, float)):
        raise DistributedCacheError(f"SQLite {path!r}: the row of this key is not a cache entry")
    left = float(expires_at) - time.time()
    if left <= 0:  # expired rows are invisible to SQLiteCache until they are purged
        return None, None
    return value, left


#: Plain-language reasons for the exceptions a codec reports by class name only.
_CAUSES = {
    "InvalidTag": "authentication failed: wrong key, or the entry was tampered with or moved",
    "JSONDecodeError": "the payload is not valid JSON",
}


def _reason(exc: DecodeError) -> str:
    """Why an entry could not be decoded, without any of its bytes."""
    cause = exc.__cause__
    if isinstance(cause, ConfigurationError):
        # DataFerry's own messages (e.g. "... needs msgpack: pip install 'dataferry[msgpack]'").
        return str(cause)
    text = str(exc)
    name = type(cause).__name__ if cause is not None else ""
    if name and text == name:  # the codec gave only the class: a safe message, but terse
        plain = _CAUSES.get(name)
        return f"{plain} ({name})" if plain else f"the payload could not be read ({name})"
    return text or "unknown error"


def _missing_extra(header: Header) -> str | None:
    """Return what to install if this entry needs an optional library that is missing."""
    try:
        default_serializer(header.serializer_id)
        if header.compressed:
            default_compressor(header.compressor_id)
    except ConfigurationError as exc:
        return str(exc)
    return None


def _reader(header: Header, keyring: Keyring | None) -> Codec:
    """A codec able to read this entry, with only the keys its flags call for.

    JSON is always readable, and the codec builds DataFerry's other serializers and compressors
    when an entry names them, so an optional library is needed only by the entries that use it.
    A plain entry is read by a keyless codec even when a keyring is given (a keyed codec would
    refuse it), so an operator sees what is stored.
    """
    if keyring is None or not (header.encrypted or header.signed):
        return Codec()
    readers: list[Serializer] = []
    if header.serializer_name == "pickle":
        readers.append(PickleSerializer())
    if header.encrypted:
        return Codec(encryptor=AesGcmEncryptor(keyring), serializers=readers)
    return Codec(signing_key=keyring, serializers=readers)


def inspect_entry(
    storage_key: str,
    data: bytes | None,
    *,
    ttl_left: float | None = None,
    keyring: Keyring | None = None,
    show_value: bool = True,
    kdf_scope: str | NotGiven | None = NOT_GIVEN,
) -> Inspection:
    """Describe the entry ``data`` stored under ``storage_key`` (None = not found).

    ``kdf_scope``: what the entry's key is derived from (the tenant and its epochs, see
    ``Scopes.kdf_scope``); default: the tenant of the storage key, as before any epoch.
    """
    if data is None:
        return Inspection(storage_key, found=False)
    result = Inspection(storage_key, found=True, stored_size=len(data), ttl_left=ttl_left)
    try:
        header = Codec.read_header(data)
    except DecodeError as exc:
        result.error = str(exc)
        return result
    result.header = header
    if not show_value:
        result.value_note = "not shown (--no-value)"
        return result
    if keyring is None and (header.encrypted or header.signed):
        kind = "encrypted" if header.encrypted else "signed"
        result.value_note = f"{kind} and no keys given (--keys-env NAME)"
        return result
    if header.serializer_name == "pickle" and not (header.encrypted or header.signed):
        result.value_note = "pickled and not authenticated: never unpickled"
        return result
    missing = _missing_extra(header)
    if missing is not None:
        result.value_note = f"could not decode: {missing}"
        return result
    try:
        scope = tenant_of(storage_key) if isinstance(kdf_scope, NotGiven) else kdf_scope
        decoded = _reader(header, keyring).decode(data, key=storage_key, tenant=scope)
    except DecodeError as exc:
        result.value_note = f"could not decode: {_reason(exc)}"
        return result
    except Exception as exc:  # a configuration the reader refuses; its text may hold data
        result.value_note = f"could not decode: {type(exc).__name__}"
        return result
    result.value_shown = True
    result.value = decoded.value
    return result
