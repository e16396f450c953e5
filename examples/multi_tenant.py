r"""A multi-tenant cache, encrypted: tenant isolation, GDPR erasure of one tenant, key rotation.

    python examples/multi_tenant.py               # embedded SQLite L2, a keyring made for the run
    export DATAFERRY_KEYS="$(dataferry keygen --id 2026-11)"
    DATAFERRY_URL=redis://localhost:6379/0 python examples/multi_tenant.py [--json]

A SaaS application caches its customers' data: each tenant (``acme``, ``globex``) gets a view
of one cache, ``cache.tenant("acme")``, with the whole API and keys of its own. Values are
JSON, compressed above 512 bytes, then encrypted with AES-256-GCM under a key that HKDF derives
from the keyring's key and the tenant id, and bound to the entry's storage key. The script
walks through what that gives, printing what each read returns:

1. **Isolation.** Both tenants write ``customer:1``: two entries, each tenant reads its own, the
   root cache neither. The stored bytes hold no plaintext, and the bytes of acme's entry
   copied over globex's (as someone with write access to Redis could) read as a miss.
2. **Key rotation.** The fleet restarts with a keyring whose new primary key encrypts new
   writes (``dataferry keygen --id NEW`` put first in ``DATAFERRY_KEYS``; a running cache can
   switch with ``AesGcmEncryptor.set_keyring``). Entries written under the old key still
   decrypt, as long as its id stays in the ring.
3. **Erasure.** ``acme.clear(erase=True)`` replaces the random epoch acme's keys are derived
   from: every acme entry, in L1 and L2 and wherever a copy of the L2 lies, becomes
   undecryptable at once, even with the keyring (GDPR erasure in O(1), without scanning
   Redis). globex's entries are untouched, and acme can be cached again right away.
4. **Retiring the old key.** Dropped from the ring, the old key id's entries become misses
   (the application recomputes them under the new key).

The keyring comes from ``$DATAFERRY_KEYS`` (``id:base64key,...``, the first is the primary;
``dataferry keygen`` makes one) or, when it is not set, is generated for this run: the script
never holds a key of its own, and never prints one. The L2 is ``$DATAFERRY_URL``
(``redis://...``, ``rediss://...``, ``unix://...`` or ``sqlite:///path``), by default an
embedded SQLite file in a temporary directory. The entries stay in the L2 after the run: look
at one with ``dataferry inspect customer:2 --redis URL --namespace saas --tenant globex
--keys-env DATAFERRY_KEYS`` (acme's ``customer:1`` is still stored, and can't be decrypted).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dataferry as df

NAMESPACE = "saas"
TENANTS = ("acme", "globex")
#: What each tenant caches (personal data: what erasure is for).
CUSTOMERS = {
    "acme": {
        "customer:1": {"name": "Wile E. Coyote", "email": "wile@acme.example", "plan": "pro"},
        "customer:2": {"name": "Road Runner", "email": "beep@acme.example", "plan": "free"},
        "customer:3": {"name": "Marvin", "email": "marvin@acme.example", "plan": "pro"},
    },
    "globex": {
        "customer:1": {"name": "Hank Scorpio", "email": "hank@globex.example", "plan": "team"},
        "customer:2": {"name": "Homer Simpson", "email": "homer@globex.example", "plan": "free"},
    },
}

#: Opens a new connection to the shared L2 (each cache closes its own).
OpenL2 = Callable[[], df.DistributedCache]


def load_keyring(environ: Mapping[str, str]) -> tuple[df.Keyring, str]:
    """The keyring of ``DATAFERRY_KEYS``, or one generated for this run; and where it came from."""
    if environ.get("DATAFERRY_KEYS"):
        return df.Keyring.from_env("DATAFERRY_KEYS"), "DATAFERRY_KEYS"
    return df.Keyring({"demo-1": df.Keyring.generate_key()}), "generated for this run"


def rotate(keyring: df.Keyring) -> df.Keyring:
    """``keyring`` with a new random key as primary, under the first free ``rotated-N`` id."""
    n = 1
    while f"rotated-{n}" in keyring:
        n += 1
    return keyring.rotated(f"rotated-{n}", df.Keyring.generate_key())


def l2_opener(url: str | None, directory: Path) -> tuple[OpenL2, str]:
    """A function opening the L2 at ``url`` (default: SQLite in ``directory``); and its URL."""
    if not url:
        url = f"sqlite:///{directory / 'tenants.sqlite'}"
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        return (lambda: df.SQLiteCache(path)), url
    redis_url = url
    df.RedisCache.from_url(redis_url).close()  # a malformed URL fails here, before any work
    return (lambda: df.RedisCache.from_url(redis_url)), url


def open_node(open_l2: OpenL2, keyring: df.Keyring) -> df.DataFerry:
    """One application node: L1 + the shared L2, entries compressed and encrypted."""
    codec = df.Codec(
        serializer=df.JsonSerializer(),
        compressor=df.GzipCompressor(min_size=512),
        encryptor=df.AesGcmEncryptor(keyring),
    )
    return df.DataFerry(distributed=open_l2(), codec=codec, namespace=NAMESPACE, default_ttl=3600)


def storage_key(tenant: str, key: str) -> str:
    """Where a tenant's entry lies in the L2: ``{namespace}:t:{tenant}:{key}``."""
    return f"{NAMESPACE}:t:{tenant}:{key}"


def read(cache: df.DataFerry, *keys: str) -> dict[str, Any]:
    """The values of ``keys`` as stored in the L2 (L1 skipped): ``None`` for a miss."""
    from_l2 = df.EntryOptions(skip_memory=True)
    return {key: cache.get(key, options=from_l2) for key in keys}


def show(values: Mapping[str, Any]) -> str:
    """``customer:1 Wile E. Coyote, customer:2 miss``: a line of the report."""
    return ", ".join(f"{k} {'miss' if v is None else v['name']}" for k, v in values.items())


def demo(open_l2: OpenL2, keyring: df.Keyring, say: Callable[[str], None]) -> dict[str, Any]:
    """Walk through isolation, rotation, erasure and retirement; return what each read gave."""
    found: dict[str, Any] = {"old_primary": keyring.primary}
    raw = open_l2()  # the L2 as someone with access to Redis sees it: bytes
    try:
        # 1. Isolation: one key, two tenants, two entries.
        say("1. tenant isolation")
        with open_node(open_l2, keyring) as node:
            views = {t: node.tenant(t) for t in TENANTS}
            for tenant, view in views.items():
                view.set("customer:1", CUSTOMERS[tenant]["customer:1"])
            seen = {t: view.get("customer:1") for t, view in views.items()}
            seen["root"] = node.get("customer:1")
            for who, value in seen.items():
                say(f"   {who:<7} {show({'customer:1': value})}")
            stored = raw.get(storage_key("acme", "customer:1")) or b""
            plaintext = b"Coyote" in stored or b"wile@" in stored
            say(f"   acme's entry in the L2: {len(stored)} bytes, plaintext visible: {plaintext}")
            # Copy acme's entry over globex's: bound to its tenant and key, it doesn't decrypt.
            raw.set(storage_key("globex", "customer:1"), stored, 3600)
            swapped = read(views["globex"], "customer:1")["customer:1"]
            say(f"   acme's bytes copied over globex's: {show({'customer:1': swapped})} for globex")
            views["globex"].set("customer:1", CUSTOMERS["globex"]["customer:1"])  # repaired
            found["isolation"] = {
                "reads": seen,
                "plaintext_in_l2": plaintext,
                "swapped_read": swapped,
                "decode_errors": node.stats().decode_errors,
            }

        # 2. Rotation: the fleet restarts with a new primary key; old entries still decrypt.
        rotated = rotate(keyring)
        found["new_primary"] = rotated.primary
        say(f"2. key rotation: new primary {rotated.primary!r}, {keyring.primary!r} kept")
        with open_node(open_l2, rotated) as node:
            # A new node: its L1 is empty, so these come from the L2 (and stay in its L1).
            old = {t: node.tenant(t).get("customer:1") for t in TENANTS}
            for tenant, value in old.items():
                say(f"   {tenant:<7} {show({'customer:1': value})} (under {keyring.primary!r})")
            for tenant in TENANTS:
                node.tenant(tenant).set("customer:2", CUSTOMERS[tenant]["customer:2"])
            say(f"   customer:2 written for both tenants, under {rotated.primary!r}")
            found["rotation"] = {"old_entries": old}

            # 3. Erasure: acme leaves; its entries can't be decrypted any more, anywhere.
            say("3. erasure of acme: acme.clear(erase=True)")
            acme = node.tenant("acme")
            acme.clear(erase=True)
            here = {t: read(node.tenant(t), "customer:1", "customer:2") for t in TENANTS}
            # Through L1 too: the erasure dropped acme's entries from this node's L1.
            here["acme_with_l1"] = {k: acme.get(k) for k in ("customer:1", "customer:2")}
        with open_node(open_l2, rotated) as other:  # another node: reads the L2 only
            there = {t: read(other.tenant(t), "customer:1", "customer:2") for t in TENANTS}
            # The tenant can use the cache again at once (keys from the new epoch).
            other.tenant("acme").set("customer:3", CUSTOMERS["acme"]["customer:3"])
            again = read(other.tenant("acme"), "customer:3")["customer:3"]
        for who, values in here.items():
            say(f"   {who.replace('_with_l1', ', L1 too'):<13} {show(values)}")
        for who, values in there.items():
            say(f"   {who:<13} {show(values)} (another node)")
        still = {
            k: raw.get(storage_key("acme", k)) is not None for k in ("customer:1", "customer:2")
        }
        say(f"   acme's erased entries still in the L2, undecryptable: {all(still.values())}")
        say(f"   acme after the erasure: {show({'customer:3': again})}")
        found["erasure"] = {
            "same_node": here,
            "other_node": there,
            "erased_bytes_still_stored": still,
            "written_after": again,
        }

        # 4. Retiring the old key: its entries become misses, the new key's stay.
        retired = rotated.without(keyring.primary)
        say(f"4. retiring {keyring.primary!r}: keyring {list(retired.ids)}")
        with open_node(open_l2, retired) as node:
            after = read(node.tenant("globex"), "customer:1", "customer:2")
        say(f"   globex  {show(after)}")
        found["retirement"] = {"globex": after}
    finally:
        raw.close()
    return found


def main(argv: list[str] | None = None) -> int:
    """Run the walk-through on ``$DATAFERRY_URL`` with ``$DATAFERRY_KEYS`` (or defaults)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print what was read as JSON")
    args = parser.parse_args(argv)
    # DataFerry logs undecodable entries to the "dataferry" logger (keys hashed): step 1 has one.
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    keyring, source = load_keyring(os.environ)
    with tempfile.TemporaryDirectory(prefix="dataferry-tenants-") as tmp:
        open_l2, url = l2_opener(os.environ.get("DATAFERRY_URL"), Path(tmp))
        say = (lambda _: None) if args.json else print
        say(f"L2 {url}; keyring {source}: ids {list(keyring.ids)}, primary {keyring.primary!r}")
        found = demo(open_l2, keyring, say)
    if args.json:
        print(json.dumps({"l2": url, **found}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
