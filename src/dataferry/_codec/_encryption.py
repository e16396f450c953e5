"""AES-256-GCM encryption and HMAC-SHA256 signing of envelopes, keyed by a :class:`Keyring`.

Neither the keyring's keys nor the derived keys are used directly for two purposes: every key
that touches data is derived with HKDF-SHA256 from a keyring key and a label naming its use
(and, for encryption, the tenant), so the same keyring may safely serve both, and one tenant's
key says nothing about another's.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dataferry._codec._envelope import MAC_SIZE, NONCE_SIZE
from dataferry._codec._keyring import KEY_SIZE, Keyring
from dataferry._errors import ConfigurationError

__all__ = ["AesGcmEncryptor", "HmacSigner"]

_AEAD_LABEL = b"dataferry/v1/aes-256-gcm"
_MAC_LABEL = b"dataferry/v1/hmac-sha256"
# Derived keys are cached so HKDF runs once per (key id, tenant), not per call. The bound only
# matters for applications with very many tenants; clearing all at once keeps it simple and the
# cost of a refill is one HKDF (~3 us) per live (key id, tenant).
_MAX_CACHED = 4096


def _derive(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(key)


def _random_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


class AesGcmEncryptor:
    """AES-256-GCM with a fresh random 96-bit nonce per write (the default :class:`Encryptor`).

    Writes use the keyring's primary key; reads use the key id recorded in the entry, so
    entries written before a rotation keep decrypting while their id is in the ring. Each
    tenant gets its own data key, derived with HKDF-SHA256 from the keyring key and the tenant
    id, so one tenant's entries never decrypt under another tenant's key. Thread-safe.

    Args:
        keyring: The keys; see :class:`Keyring`.

    """

    __slots__ = ("_nonce_factory", "_state")

    def __init__(self, keyring: Keyring) -> None:
        if not isinstance(keyring, Keyring):
            raise ConfigurationError("AesGcmEncryptor needs a Keyring")
        # The keyring and the keys derived from it are swapped together, as one tuple, so a
        # concurrent reader never caches a key derived from a keyring that is being replaced.
        self._state: tuple[Keyring, dict[tuple[str, str | None], AESGCM]] = (keyring, {})
        # Tests replace this to produce golden vectors; a fixed nonce in production would
        # break GCM, so it is deliberately not a constructor argument.
        self._nonce_factory: Callable[[], bytes] = _random_nonce

    @property
    def keyring(self) -> Keyring:
        """The keyring in use."""
        return self._state[0]

    def set_keyring(self, keyring: Keyring) -> None:
        """Switch to ``keyring`` (e.g. after a rotation); thread-safe, takes effect at once.

        Entries whose key id is no longer in the ring become misses.
        """
        if not isinstance(keyring, Keyring):
            raise ConfigurationError("set_keyring needs a Keyring")
        self._state = (keyring, {})

    def _aead(self, key_id: str, tenant: str | None) -> AESGCM:
        keyring, aeads = self._state
        aead = aeads.get((key_id, tenant))
        if aead is None:
            info = _AEAD_LABEL if tenant is None else _AEAD_LABEL + b"/tenant/" + tenant.encode()
            aead = AESGCM(_derive(keyring.key(key_id), info))
            if len(aeads) >= _MAX_CACHED:
                aeads.clear()
            aeads[(key_id, tenant)] = aead
        return aead

    def begin(self, tenant: str | None, /) -> tuple[str, bytes]:
        """Return the primary key id and a fresh random nonce for a new write."""
        return self._state[0].primary, self._nonce_factory()

    def encrypt(
        self, key_id: str, nonce: bytes, plaintext: bytes, aad: bytes, tenant: str | None, /
    ) -> bytes:
        """Return ciphertext + 16-byte tag for ``plaintext``, authenticating ``aad`` too."""
        return self._aead(key_id, tenant).encrypt(nonce, plaintext, aad)

    def decrypt(
        self, key_id: str, nonce: bytes, ciphertext: bytes, aad: bytes, tenant: str | None, /
    ) -> bytes:
        """Return the plaintext; raise if the key id is unknown or authentication fails."""
        aead = self._state[1].get((key_id, tenant)) or self._aead(key_id, tenant)  # L2-hit path
        return aead.decrypt(nonce, ciphertext, aad)

    def __deepcopy__(self, memo: dict[int, Any]) -> AesGcmEncryptor:
        # Same keyring (immutable, never copied); a cache of its own.
        twin = AesGcmEncryptor(self._state[0])
        twin._nonce_factory = self._nonce_factory
        return twin

    def __repr__(self) -> str:
        return f"AesGcmEncryptor({self._state[0]!r})"


class HmacSigner:
    """HMAC-SHA256 over storage key + header + payload, with the keyring's primary key.

    Used by ``Codec(signing_key=...)`` to authenticate entries that are not encrypted (which is
    what makes :class:`PickleSerializer` safe to read), and by a codec with an encryptor for its
    ``encrypt=False`` entries (:meth:`following` the encryptor's keyring, so a rotation moves
    both). The MAC key is derived with HKDF-SHA256 from the keyring key under its own label, so
    it never equals the key that encrypts. Thread-safe.
    """

    __slots__ = ("_source", "_state")

    def __init__(self, keyring: Keyring) -> None:
        self._source: Any = None  # an object with a .keyring attribute, when following one
        self._state: tuple[Keyring, dict[str, bytes]] = (keyring, {})

    @classmethod
    def following(cls, holder: Any) -> HmacSigner:
        """Return a signer that uses ``holder.keyring`` as it is at each call (an encryptor)."""
        signer = cls(holder.keyring)
        signer._source = holder
        return signer

    def _current(self) -> tuple[Keyring, dict[str, bytes]]:
        state = self._state
        source = self._source
        if source is not None:
            keyring = source.keyring
            if keyring is not state[0]:  # the encryptor switched keyrings: new derived keys
                state = self._state = (keyring, {})
        return state

    @property
    def keyring(self) -> Keyring:
        """The keyring in use."""
        return self._current()[0]

    @property
    def derived(self) -> bool:
        """Whether this signer follows another object's keyring (an encryptor's)."""
        return self._source is not None

    @property
    def key_id(self) -> str:
        """The key id new entries are signed with."""
        return self._current()[0].primary

    def _mac_key(self, key_id: str) -> bytes:
        keyring, macs = self._current()
        mac_key = macs.get(key_id)
        if mac_key is None:
            # Bounded by the keyring's size: the id must be in the ring to get here.
            mac_key = macs[key_id] = _derive(keyring.key(key_id), _MAC_LABEL)
        return mac_key

    def sign(self, key_id: str, storage_key: bytes, data: bytes | memoryview) -> bytes:
        """Return the 32-byte MAC of ``storage_key`` and ``data`` (the header and payload)."""
        # The storage key is length-prefixed so no (key, data) split can collide with another.
        mac = hmac.new(self._mac_key(key_id), len(storage_key).to_bytes(4, "big"), hashlib.sha256)
        mac.update(storage_key)
        mac.update(data)
        return mac.digest()

    def verify(
        self, key_id: str, storage_key: bytes, data: bytes | memoryview, mac: bytes | memoryview
    ) -> bool:
        """Return whether ``mac`` authenticates ``storage_key`` and ``data`` (constant time)."""
        if len(mac) != MAC_SIZE or key_id not in self._current()[0]:
            return False
        return hmac.compare_digest(self.sign(key_id, storage_key, data), bytes(mac))

    def __repr__(self) -> str:
        return f"HmacSigner({self._current()[0]!r})"
