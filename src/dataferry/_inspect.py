"""``dataferry inspect``: show what an L2 entry holds (envelope metadata, TTL, and the value).

An operator's view of an encrypted, compressed cache: everything in the envelope header is
shown without keys; the value is decoded only when it needs no key or a keyring is given.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dataferry._codec import (
    AesGcmEncryptor,
    Codec,
    DecodeError,
    Header,
    Keyring,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
)

__all__ = ["Inspection", "inspect_entry", "tenant_of"]


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

    def render(self) -> str:
        """Return a human-readable report."""
        lines = [f"key              {self.storage_key}"]
        if not self.found:
            lines.append("status           not found")
            return "\n".join(lines)
        lines.append(f"stored size      {self.stored_size:,} bytes")
        ttl = "no expiry" if self.ttl_left is None else f"{self.ttl_left:,.1f} s"
        lines.append(f"TTL left         {ttl} (physical, in L2)")
        h = self.header
        if h is None:
            lines.append(f"status           not a DataFerry envelope ({self.error})")
            return "\n".join(lines)
        now = time.time()
        flags = ", ".join(h.describe()["flags"]) or "none"
        fresh = h.logical_expiry > now
        left = h.logical_expiry - now
        state = f"fresh, {left:,.1f} s left" if fresh else f"stale for {-left:,.1f} s"
        lines += [
            f"format           envelope v{h.version}",
            f"flags            {flags}",
            f"serializer       {h.serializer_name}",
            f"compressor       {h.compressor_name}",
            f"key id           {h.key_id or '-'}",
            f"created          {_when(h.created_at)} ({now - h.created_at:,.1f} s ago)",
            f"logical expiry   {_when(h.logical_expiry)} ({state})",
            f"tags             {', '.join(h.tags) or '-'}",
        ]
        if self.value_shown:
            text = json.dumps(self.value, indent=2, default=repr, ensure_ascii=False)
            lines.append("value            " + text.replace("\n", "\n                 "))
        elif self.value_note:
            lines.append(f"value            ({self.value_note})")
        return "\n".join(lines)


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


def _reader(header: Header, keyring: Keyring | None) -> Codec:
    """A codec able to read this entry: every serializer and, with a keyring, its keys."""
    readers: list[Serializer] = [MsgpackSerializer()]
    if keyring is None:
        return Codec(serializers=readers)
    if header.serializer_name == "pickle":
        readers.append(PickleSerializer())
    return Codec(
        encryptor=AesGcmEncryptor(keyring),
        signing_key=keyring if header.signed else None,
        serializers=readers,
    )


def inspect_entry(
    storage_key: str,
    data: bytes | None,
    *,
    ttl_left: float | None = None,
    keyring: Keyring | None = None,
    show_value: bool = True,
) -> Inspection:
    """Describe the entry ``data`` stored under ``storage_key`` (None = not found)."""
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
    if (header.encrypted or header.signed) and keyring is None:
        result.value_note = "encrypted or signed: pass --keys-env NAME to decode"
        return result
    if header.serializer_name == "pickle" and keyring is None:
        result.value_note = "pickled: only decoded with the keyring that authenticates it"
        return result
    try:
        decoded = _reader(header, keyring).decode(
            data, key=storage_key, tenant=tenant_of(storage_key)
        )
    except DecodeError as exc:
        result.value_note = f"could not decode: {exc}"
        return result
    except Exception as exc:  # a configuration the reader refuses (e.g. pickle without keys)
        result.value_note = f"could not decode: {type(exc).__name__}"
        return result
    result.value_shown = True
    result.value = decoded.value
    return result
