"""Azure Key Vault as a key source: secret versions are key ids, the current one is primary."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone
from typing import Any

from dataferry._errors import ConfigurationError, KeyringError

__all__ = ["load_key_vault_keys"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _decode(secret_name: str, version: str, value: str | None) -> bytes:
    try:
        return base64.b64decode((value or "").strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(
            f"Key Vault secret {secret_name!r} version {version!r} is not a base64 key"
        ) from None


def load_key_vault_keys(
    vault_url: str,
    secret_name: str,
    *,
    credential: Any = None,
    transport: Any = None,
    max_versions: int = 10,
) -> tuple[dict[str, bytes], str]:
    """Return ``({version: key}, current_version)`` read from a Key Vault secret.

    Raises :class:`~dataferry.ConfigurationError` if the ``azure`` extra is not installed and
    :class:`~dataferry.KeyringError` if Key Vault can't be read or holds a malformed value.
    """
    if max_versions < 1:
        raise ConfigurationError("max_versions must be at least 1")
    try:
        from azure.core.exceptions import AzureError
        from azure.keyvault.secrets import SecretClient
    except ImportError as exc:  # pragma: no cover - the test environment has the extra
        raise ConfigurationError(
            "Azure Key Vault keys need the azure extra: pip install 'dataferry[azure]'"
        ) from exc
    if credential is None:  # pragma: no cover - needs a real Azure identity
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    options: dict[str, Any] = {}
    if transport is not None:
        options["transport"] = transport
    client = SecretClient(vault_url, credential, **options)
    try:
        with client:
            current = client.get_secret(secret_name)
            primary = current.properties.version
            if not primary:  # pragma: no cover - Key Vault always names the version
                raise KeyringError(f"Key Vault secret {secret_name!r} has no version")
            keys = {primary: _decode(secret_name, primary, current.value)}
            older = sorted(
                (
                    (p.created_on or _EPOCH, p.version)
                    for p in client.list_properties_of_secret_versions(secret_name)
                    if p.enabled and p.version and p.version != primary
                ),
                reverse=True,
            )
            for _, version in older[: max_versions - 1]:
                secret = client.get_secret(secret_name, version)
                keys[version] = _decode(secret_name, version, secret.value)
    except AzureError as exc:
        # Azure's messages describe the HTTP failure; they never hold the secret value.
        raise KeyringError(
            f"cannot read secret {secret_name!r} from Key Vault {vault_url}: "
            f"{exc.__class__.__name__}"
        ) from exc
    return keys, primary
