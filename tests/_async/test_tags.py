"""Tags, clear and erasure: ``remove_by_tag``, ``clear()``, ``tenant(x).clear(erase=True)``.

Nodes are caches with their own L1 and L2 client on one real store, as processes would have;
a node built with ``memory=None`` sees only what L2 says. The sync twin
(tests/_sync/test_tags.py) is generated from this file.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import dataferry as df
from tests.chaos import async_until, async_wait, count_events

NS = "tags"
L1_ONLY = df.EntryOptions(skip_distributed=True)
KEYRING = df.Keyring({"2026-11": os.urandom(32)})


def node(l2_factory: Any, **kwargs: Any) -> df.AsyncDataFerry:
    kwargs.setdefault("namespace", NS)
    return df.AsyncDataFerry(distributed=l2_factory(), **kwargs)


async def within_the_bound(check: Any) -> None:
    """Poll ``check()`` until true: a node without a backplane trusts what it knows of tag and
    clear records for up to a second (then fetches them again), so its L2 reads see another
    node's removal within about that long."""
    await async_until(check, timeout=5)


def encrypted() -> df.Codec:
    return df.Codec(encryptor=df.AesGcmEncryptor(KEYRING))


async def test_remove_by_tag_makes_tagged_entries_stale_in_l1_and_l2(l2_factory: Any) -> None:
    async with node(l2_factory) as cache, node(l2_factory, memory=None) as reader:
        await cache.set("u1", "Ada", tags=["users"])
        await cache.set("u2", "Bob", tags=["users", "admins"])
        await cache.set("p1", "Widget", tags=["products"])
        await cache.set("plain", 1)
        assert await reader.get_many(["u1", "u2", "p1", "plain"]) == {
            "u1": "Ada",
            "u2": "Bob",
            "p1": "Widget",
            "plain": 1,
        }
        await cache.remove_by_tag("users")
        # This node's L1 dropped them; L2 still holds the bytes, but they are stale.
        assert await cache.get("u1", options=L1_ONLY) is None
        assert await cache.get("u1") is None
        assert await cache.try_get("u2") == (False, None)
        assert await cache.get("p1") == "Widget"

        async def reader_sees_the_removal() -> bool:
            got = await reader.get_many(["u1", "u2", "p1", "plain"])
            return got == {"p1": "Widget", "plain": 1}

        await within_the_bound(reader_sees_the_removal)
        assert await reader.get("u2") is None
        # Entries tagged after the removal are fresh.
        await cache.set("u1", "Ada 2", tags=["users"])
        assert await reader.get("u1") == "Ada 2"
        # get_or_set recomputes a removed entry.
        assert await reader.get_or_set("u2", lambda: "Bob 2", tags=["users"]) == "Bob 2"
        assert await cache.get("u2") == "Bob 2"


async def test_a_removed_tag_is_not_served_by_fail_safe(l2_factory: Any) -> None:
    safe = df.EntryOptions(fail_safe=True)
    async with node(l2_factory) as cache:
        await cache.set("u1", "Ada", tags=["users"], options=safe)
        await cache.remove_by_tag("users")

        def broken() -> str:
            raise RuntimeError("database down")

        with pytest.raises(RuntimeError):
            await cache.get_or_set("u1", broken, options=safe)
        assert cache.stats().failsafe_activations == 0


async def test_tags_are_per_tenant(l2_factory: Any) -> None:
    async with node(l2_factory) as cache, node(l2_factory, memory=None) as reader:
        acme, globex = cache.tenant("acme"), cache.tenant("globex")
        await acme.set("k", "acme's", tags=["t"])
        await globex.set("k", "globex's", tags=["t"])
        await cache.set("k", "root's", tags=["t"])
        await acme.remove_by_tag("t")
        assert await acme.get("k") is None
        assert await reader.tenant("acme").get("k") is None  # its first look: fetched now
        assert await reader.tenant("globex").get("k") == "globex's"
        assert await reader.get("k") == "root's"
        assert await globex.get("k", options=L1_ONLY) == "globex's"


async def test_other_nodes_l1_drops_tagged_entries_through_the_backplane(redis_url: str) -> None:
    def peer() -> df.AsyncDataFerry:
        return df.AsyncDataFerry(
            namespace=NS,
            distributed=df.RedisCache.from_url(redis_url),
            backplane=df.RedisBackplane.from_url(redis_url),
        )

    a, b = peer(), peer()
    heard = count_events(b, "backplane_messages")
    async with a, b:
        await a.set("u1", "Ada", tags=["users"])
        await a.set("p1", "Widget", tags=["products"])
        await async_wait(heard(2))
        assert await b.get_many(["u1", "p1"]) == {"u1": "Ada", "p1": "Widget"}  # now in b's L1
        await a.remove_by_tag("users")
        await async_wait(heard(3))
        assert await b.get("u1", options=L1_ONLY) is None
        assert await b.get("u1") is None  # and L2 says it's stale too
        assert await b.get("p1", options=L1_ONLY) == "Widget"  # only the tag's keys dropped
        await a.clear()
        await async_wait(heard(4))
        assert await b.get("p1", options=L1_ONLY) is None
        assert await b.get("p1") is None


async def test_without_a_backplane_other_l1s_keep_values_until_their_ttl(
    l2_factory: Any,
) -> None:
    # The documented bound: like any write, a removal reaches other nodes' L1 through the
    # backplane only; their L2 reads see it at once.
    async with node(l2_factory) as a, node(l2_factory) as b:
        await a.set("u1", "Ada", tags=["users"])
        assert await b.get("u1") == "Ada"
        await a.remove_by_tag("users")
        assert await b.get("u1", options=L1_ONLY) == "Ada"

        async def l2_reads_see_it() -> bool:
            return await b.get("u1", options=df.EntryOptions(skip_memory=True)) is None

        await within_the_bound(l2_reads_see_it)


async def test_clear_of_the_namespace_covers_its_tenants(l2_factory: Any) -> None:
    async with node(l2_factory) as cache, node(l2_factory, memory=None) as reader:
        await cache.set("k", 1)
        await cache.tenant("acme").set("k", 2)
        await cache.clear()
        assert await cache.get("k", options=L1_ONLY) is None
        assert await reader.get("k") is None
        assert await reader.tenant("acme").get("k") is None
        assert await cache.tenant("acme").get("k") is None
        await cache.set("k", 3)
        assert await reader.get("k") == 3
        # Another namespace on the same L2 is untouched.
        async with node(l2_factory, namespace="other") as other:
            await other.set("k", "kept")
            await cache.clear()
            assert await other.get("k") == "kept"


async def test_clear_of_a_tenant_leaves_the_others(l2_factory: Any) -> None:
    async with node(l2_factory) as cache, node(l2_factory, memory=None) as reader:
        await cache.tenant("acme").set("k", "acme's")
        await cache.tenant("globex").set("k", "globex's")
        await cache.set("k", "root's")
        await cache.tenant("acme").clear()
        assert await cache.tenant("acme").get("k", options=L1_ONLY) is None
        assert await reader.tenant("acme").get("k") is None
        assert await reader.tenant("globex").get("k") == "globex's"
        assert await cache.tenant("globex").get("k", options=L1_ONLY) == "globex's"
        assert await reader.get("k") == "root's"
        await cache.tenant("acme").set("k", "acme's again")
        assert await reader.tenant("acme").get("k") == "acme's again"


async def test_clear_never_scans_or_deletes_keys(redis_server: Any) -> None:
    async with node(lambda: df.RedisCache.from_url(redis_server.url)) as cache:
        await cache.set_many({f"k{i}": i for i in range(50)})
        before = redis_server.info("commandstats")
        await cache.clear()
        await cache.tenant("acme").clear()
        await cache.remove_by_tag("t")
        after = redis_server.info("commandstats")
        for command in ("keys", "scan", "flushdb", "flushall", "del", "unlink"):
            name = f"cmdstat_{command}"
            assert after.get(name) == before.get(name), command
        assert redis_server.execute("DBSIZE") >= 50  # the entries are still there, stale


async def test_erase_makes_a_tenants_entries_undecryptable(l2_factory: Any) -> None:
    backend = l2_factory()
    async with (
        node(l2_factory, codec=encrypted()) as cache,
        node(l2_factory, codec=encrypted(), memory=None) as reader,
    ):
        acme, globex = cache.tenant("acme"), cache.tenant("globex")
        await acme.set("card", "4111-1111")
        await globex.set("card", "5500-0000")
        assert await reader.tenant("acme").get("card") == "4111-1111"
        await acme.clear(erase=True)
        assert await acme.get("card") is None

        async def reader_sees_the_erasure() -> bool:
            return await reader.tenant("acme").get("card") is None

        await within_the_bound(reader_sees_the_erasure)
        assert reader.stats().decode_errors == 0  # skipped by the clear, not tried
        assert await reader.tenant("globex").get("card") == "5500-0000"
        await acme.set("card", "new")
        assert await reader.tenant("acme").get("card") == "new"
        old = await backend.aget(f"{NS}:t:acme:card")
        assert old is not None
    # The old bytes were kept somewhere (a replica, a snapshot): even with the keyring, and
    # with the clear record gone, they no longer decrypt.
    await backend.aset(f"{NS}:t:acme:card", old, 60)
    await backend.adelete(f"{NS}:clear:t:acme")
    async with node(l2_factory, codec=encrypted(), memory=None) as fresh:
        assert await fresh.tenant("acme").get("card") is None
        assert fresh.stats().decode_errors == 1
    await backend.aclose()


async def test_erase_needs_an_encrypting_codec(l2_factory: Any) -> None:
    async with node(l2_factory) as cache:
        with pytest.raises(df.ConfigurationError, match="encrypt"):
            await cache.tenant("acme").clear(erase=True)
        with pytest.raises(df.ConfigurationError):
            await cache.clear(erase="yes")  # type: ignore[arg-type]


async def test_bad_tags_are_refused(l2_factory: Any) -> None:
    async with node(l2_factory) as cache:
        for bad in ("", 3, None, b"users"):
            with pytest.raises(df.ConfigurationError):
                await cache.remove_by_tag(bad)  # type: ignore[arg-type]


async def test_tags_clear_and_erase_on_a_cluster_and_sentinel(topology_l2_factory: Any) -> None:
    # The records are plain keys spread over the slots (read in one batch grouped per slot).
    make = topology_l2_factory
    async with (
        node(make, codec=encrypted()) as cache,
        node(make, codec=encrypted(), memory=None) as reader,
    ):
        keys = {f"item:{i}": i for i in range(30)}
        await cache.set_many(keys, tags=["items"])
        await cache.tenant("acme").set("card", "4111")
        assert await reader.get_many(list(keys)) == keys
        await cache.remove_by_tag("items")
        await cache.tenant("acme").clear(erase=True)

        async def reader_sees_both() -> bool:
            none = await reader.get_many(list(keys)) == {}
            return none and await reader.tenant("acme").get("card") is None

        await within_the_bound(reader_sees_both)
        await cache.clear()
        await cache.set("after", 1)
        assert await reader.get("after") == 1
