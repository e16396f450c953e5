"""Keyring: the encryption keys by id, one of them primary (the seed's IKeyManager).

Key material never appears in a repr, a log line or an exception message: errors name the key
id or the position of the bad entry, never the bytes or the text they came from.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dataferry._errors import KeyringError

__all__ = ["KEY_SIZE", "Keyring", "parse_key_list"]

#: AES-256 keys (and HMAC keys) are exactly this many bytes.
KEY_SIZE = 32

_KEY_ID = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


def _check_id(key_id: object) -> str:
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        # The id is not secret, but a malformed "id" may be a pasted key: show only its type.
        raise KeyringError(
            f"key ids must be 1-255 characters of [A-Za-z0-9_.:-] (got a {type(key_id).__name__})"
        )
    return key_id


def _decode_base64(encoded: str) -> bytes | None:
    """Decode standard or URL-safe base64, padded or not; ``None`` if it isn't base64.

    Returns ``None`` rather than raising so that callers word the error themselves, naming the
    key id or position and never the text (which may be most of a key).
    """
    encoded = encoded.strip()
    if not _BASE64.fullmatch(encoded):
        return None
    normalized = encoded.rstrip("=").replace("-", "+").replace("_", "/")
    normalized += "=" * (-len(normalized) % 4)
    try:
        return base64.b64decode(normalized, validate=True)
    except (binascii.Error, ValueError):
        return None


def _key_bytes(key_id: str, key: object) -> bytes:
    """Return a 32-byte key given as bytes or base64 text; raise without echoing it."""
    if isinstance(key, str):
        raw = _decode_base64(key)
        if raw is None:
            raise KeyringError(f"key {key_id!r} is a str but not base64")
    elif isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
    else:
        raise KeyringError(f"key {key_id!r} must be bytes or base64 str, not {type(key).__name__}")
    if len(raw) != KEY_SIZE:
        raise KeyringError(f"key {key_id!r} is {len(raw)} bytes; AES-256 needs 32")
    return raw


class Keyring:
    """Encryption keys by id: the primary encrypts new writes, the others still decrypt.

    Rotation without a flag day: add a new key and make it primary; entries written under older
    ids keep decrypting while their id stays in the ring; dropping an id turns its entries into
    misses. Immutable and thread-safe; :meth:`rotated` and :meth:`without` return new keyrings.

    Args:
        keys: Key id to key: 32 ``bytes``, or the same as base64 text (standard or URL-safe,
            padded or not; what :meth:`generate_key` returns). Ids are 1-255 characters of
            ``[A-Za-z0-9_.:-]``.
        primary: The id that encrypts new writes; may be omitted when there is a single key.

    Raises:
        KeyringError: No keys, a malformed id, a key that is not base64 or not 32 bytes, or a
            primary that is missing or not in ``keys``.

    Example::

        key = Keyring.generate_key()            # store it in a secret manager
        ring = Keyring({"2026-11": key})        # or DATAFERRY_KEYS="2026-11:<key>"

    """

    __slots__ = ("_keys", "_primary")

    def __init__(
        self,
        keys: Mapping[str, bytes | bytearray | memoryview | str],
        *,
        primary: str | None = None,
    ) -> None:
        if not isinstance(keys, Mapping):
            raise KeyringError("keys must be a mapping of key id to 32-byte key")
        checked: dict[str, bytes] = {}
        for key_id, key in keys.items():
            checked[_check_id(key_id)] = _key_bytes(key_id, key)
        if not checked:
            raise KeyringError("a keyring needs at least one key")
        if primary is None:
            if len(checked) > 1:
                raise KeyringError("primary= is required when a keyring has more than one key")
            primary = next(iter(checked))
        if primary not in checked:
            raise KeyringError(f"primary key id {primary!r} is not in the keyring")
        self._keys = checked
        self._primary = primary

    @staticmethod
    def generate_key() -> str:
        """Return a new random 32-byte key as standard base64 text (from :mod:`secrets`).

        The text goes as it is into ``Keyring({"id": key})``, ``DATAFERRY_KEYS="id:key"`` or a
        key file; the command line equivalent is ``dataferry keygen``.
        """
        return base64.b64encode(secrets.token_bytes(KEY_SIZE)).decode("ascii")

    # -- sources --------------------------------------------------------------------------

    @classmethod
    def from_env(cls, name: str = "DATAFERRY_KEYS") -> Keyring:
        """Read keys from environment variable ``name``: ``id:base64key,id:base64key``.

        The first entry is the primary. Base64 may be standard or URL-safe, padded or not.
        Raises :class:`KeyringError` if the variable is unset, empty or malformed.
        """
        value = os.environ.get(name)
        if value is None:
            raise KeyringError(f"environment variable {name} is not set")
        return cls._from_entries(parse_key_list(value), f"environment variable {name}")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Keyring:
        """Read keys from a file in the :meth:`from_env` format.

        Entries are ``id:base64key``, one per line or comma separated (or both). Blank lines
        and lines starting with ``#`` are ignored. The first entry is the primary. Keep the
        file readable by the service account only. Raises :class:`KeyringError` if the file
        can't be read or is malformed.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyringError(
                f"cannot read key file {os.fspath(path)!r}: {exc.__class__.__name__}"
            ) from None
        lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
        return cls._from_entries(parse_key_list(",".join(lines)), f"key file {os.fspath(path)!r}")

    @classmethod
    def from_azure_key_vault(
        cls,
        vault_url: str,
        secret_name: str,
        *,
        credential: Any = None,
        transport: Any = None,
        max_versions: int = 10,
    ) -> Keyring:
        """Read keys from an Azure Key Vault secret (needs the ``dataferry[azure]`` extra).

        The secret's value is a base64 32-byte key; each enabled secret *version* is a key id,
        and the current version is the primary. Rotate by adding a new version in Key Vault,
        then load a new keyring (and pass it to ``AesGcmEncryptor.set_keyring``). Only the
        ``max_versions`` most recent enabled versions are loaded.

        Args:
            vault_url: e.g. ``https://myvault.vault.azure.net``.
            secret_name: The secret holding the key.
            credential: An Azure token credential (default: ``DefaultAzureCredential()``).
            transport: An ``azure.core`` HTTP transport (default: the SDK's).
            max_versions: How many versions (newest first, the current one included) to load.

        """
        from dataferry._codec._keyvault import load_key_vault_keys

        keys, primary = load_key_vault_keys(
            vault_url,
            secret_name,
            credential=credential,
            transport=transport,
            max_versions=max_versions,
        )
        return cls(keys, primary=primary)

    @classmethod
    def _from_entries(cls, entries: list[tuple[str, bytes]], source: str) -> Keyring:
        if not entries:
            raise KeyringError(f"{source} holds no keys")
        keys: dict[str, bytes] = {}
        for key_id, key in entries:
            if key_id in keys:
                raise KeyringError(f"{source}: key id {key_id!r} appears twice")
            keys[key_id] = key
        return cls(keys, primary=entries[0][0])

    # -- use ------------------------------------------------------------------------------

    @property
    def primary(self) -> str:
        """The id of the key that encrypts new writes."""
        return self._primary

    @property
    def ids(self) -> tuple[str, ...]:
        """Every key id in the ring, in insertion order."""
        return tuple(self._keys)

    def key(self, key_id: str) -> bytes:
        """Return the key for ``key_id``; raise :class:`KeyringError` if it's not in the ring."""
        try:
            return self._keys[key_id]
        except KeyError:
            raise KeyringError(f"key id {key_id!r} is not in the keyring") from None

    def rotated(self, key_id: str, key: bytes | str) -> Keyring:
        """Return a keyring with ``key`` (bytes or base64) added under ``key_id`` as primary."""
        return Keyring({key_id: key, **self._keys}, primary=key_id)

    def without(self, key_id: str) -> Keyring:
        """Return a keyring without ``key_id`` (its entries become misses); not the primary."""
        if key_id == self._primary:
            raise KeyringError(f"cannot drop the primary key id {key_id!r}")
        return Keyring({k: v for k, v in self._keys.items() if k != key_id}, primary=self._primary)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(ids={list(self._keys)!r}, primary={self._primary!r})"

    def __reduce__(self) -> Any:
        # Pickling would copy key material into whatever stores the pickle.
        raise TypeError("Keyring cannot be pickled")

    def __copy__(self) -> Keyring:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Keyring:
        return self


def parse_key_list(text: str) -> list[tuple[str, bytes]]:
    """Parse ``id:base64key,id:base64key`` into ``[(id, key), ...]`` (whitespace ignored).

    Raises :class:`KeyringError` naming the position of a bad entry, never its text.
    """
    entries: list[tuple[str, bytes]] = []
    position = 0
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        position += 1
        key_id, sep, encoded = entry.rpartition(":")  # ids may contain ':', base64 never does
        key_id, encoded = key_id.strip(), encoded.strip()
        if not sep or not key_id:
            raise KeyringError(f"key entry #{position} is not 'id:base64key'")
        if not _KEY_ID.fullmatch(key_id):
            raise KeyringError(
                f"key entry #{position}: the id is not 1-255 characters of [A-Za-z0-9_.:-]"
            )
        key = _decode_base64(encoded)
        if key is None:
            raise KeyringError(f"key entry {key_id!r}: the key is not base64")
        entries.append((key_id, key))
    return entries
