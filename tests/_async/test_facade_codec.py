"""The MemStache pipeline through the facade: encryption, rotation, tenants, per-entry options."""

from __future__ import annotations

import os
from typing import Any

import pytest

import dataferry as df


def keyring(*ids: str) -> df.Keyring:
    return df.Keyring({i: KEYS[i] for i in ids}, primary=ids[0])


KEYS = {name: os.urandom(32) for name in ("2026-10", "2026-11", "2026-12")}


def node(backend: Any, codec: df.Codec | None = None, **kwargs: Any) -> df.AsyncDataFerry:
    return df.AsyncDataFerry(
        memory=None, distributed=backend, codec=codec, namespace="sec", **kwargs
    )


def encrypted(*ids: str, **kwargs: Any) -> df.Codec:
    return df.Codec(encryptor=df.AesGcmEncryptor(keyring(*ids)), **kwargs)


async def test_encrypted_entries_round_trip_and_are_not_plaintext(shared_backend: Any) -> None:
    async with node(shared_backend, encrypted("2026-11")) as cache:
        await cache.set("card", {"pan": "4111111111111111"})
        assert await cache.get("card") == {"pan": "4111111111111111"}
        raw = await shared_backend.aget("sec:k:card")
        assert b"4111111111111111" not in raw


async def test_key_rotation_without_a_flag_day(shared_backend: Any) -> None:
    async with node(shared_backend, encrypted("2026-10")) as old:
        await old.set("a", "written under 2026-10")
    async with node(shared_backend, encrypted("2026-11", "2026-10")) as rotated:
        assert await rotated.get("a") == "written under 2026-10"
        await rotated.set("b", "written under 2026-11")
        assert df.Codec.read_header(await shared_backend.aget("sec:k:b")).key_id == "2026-11"
    async with node(shared_backend, encrypted("2026-11")) as dropped:
        assert await dropped.try_get("a") == (False, None)  # its key id left the ring
        assert await dropped.get("b") == "written under 2026-11"
        assert dropped.stats().decode_errors == 1


async def test_tenant_entries_never_decrypt_for_another_tenant(shared_backend: Any) -> None:
    async with node(shared_backend, encrypted("2026-11")) as cache:
        acme, globex = cache.tenant("acme"), cache.tenant("globex")
        await acme.set("secret", "acme only")
        raw = await shared_backend.aget("sec:t:acme:secret")
        await shared_backend.aset("sec:t:globex:secret", raw, 60)  # an attacker copies it over
        assert await globex.try_get("secret") == (False, None)
        assert await acme.get("secret") == "acme only"
        await shared_backend.aset("sec:k:secret", raw, 60)  # or into the root namespace
        assert await cache.try_get("secret") == (False, None)


async def test_per_entry_options_are_honoured_by_any_reader(shared_backend: Any) -> None:
    writer = df.Codec(
        compressor=df.ZstdCompressor(min_size=16),
        encryptor=df.AesGcmEncryptor(keyring("2026-11")),
    )
    async with node(shared_backend, writer) as cache:
        big = {"text": "lorem ipsum " * 200}
        await cache.set("plain", big, options=df.EntryOptions(encrypt=False, compress=False))
        await cache.set("zipped", big, options=df.EntryOptions(encrypt=False))
        await cache.set("both", big)
    headers = {
        k: df.Codec.read_header(await shared_backend.aget(f"sec:k:{k}"))
        for k in ("plain", "zipped", "both")
    }
    assert (headers["plain"].compressed, headers["plain"].encrypted) == (False, False)
    assert (headers["zipped"].compressed, headers["zipped"].encrypted) == (True, False)
    assert (headers["both"].compressed, headers["both"].encrypted) == (True, True)
    # A reader with no compressor and a different serializer still reads what was written.
    async with node(
        shared_backend, encrypted("2026-11", serializer=df.MsgpackSerializer())
    ) as reader:
        assert await reader.get("plain") == big
        assert await reader.get("zipped") == big
        assert await reader.get("both") == big


async def test_encrypt_true_without_an_encryptor_is_refused(shared_backend: Any) -> None:
    async with node(shared_backend) as cache:
        with pytest.raises(df.ConfigurationError):
            await cache.set("k", 1, options=df.EntryOptions(encrypt=True))
        assert await shared_backend.aget("sec:k:k") is None


async def test_builder_assembles_the_codec(shared_backend: Any) -> None:
    cache = (
        df.AsyncDataFerry.builder()
        .without_memory()
        .with_distributed(shared_backend)
        .with_namespace("sec")
        .with_compression("zstd", min_size=10)
        .with_encryption(keyring("2026-12"))
        .build()
    )
    async with cache:
        await cache.set("k", "x" * 100)
        header = df.Codec.read_header(await shared_backend.aget("sec:k:k"))
        assert header.compressed
        assert header.encrypted
        assert header.key_id == "2026-12"
        assert await cache.get("k") == "x" * 100
    with pytest.raises(df.ConfigurationError):
        df.AsyncDataFerry.builder().with_compression("brotli")
    with pytest.raises(df.ConfigurationError):
        df.AsyncDataFerry.builder().with_codec(df.Codec()).with_compression().build()
