# GENERATED from tests/_async/test_tags.py by scripts/unasync.py: do not edit.
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
from tests.chaos import sync_until, sync_wait, count_events

NS = "tags"
L1_ONLY = df.EntryOptions(skip_distributed=True)
KEYRING = df.Keyring({"2026-11": os.urandom(32)})


def node(l2_factory: Any, **kwargs: Any) -> df.DataFerry:
    kwargs.setdefault("namespace", NS)
    return df.DataFerry(distributed=l2_factory(), **kwargs)


def within_the_bound(check: Any) -> None:
    """Poll ``check()`` until true: a node without a backplane trusts what it knows of tag and
    clear records for up to a second (then fetches them again), so its L2 reads see another
    node's removal within about that long."""
    sync_until(check, timeout=5)


def encrypted() -> df.Codec:
    return df.Codec(encryptor=df.AesGcmEncryptor(KEYRING))


def test_remove_by_tag_makes_tagged_entries_stale_in_l1_and_l2(l2_factory: Any) -> None:
    with node(l2_factory) as cache, node(l2_factory, memory=None) as reader:
        cache.set("u1", "Ada", tags=["users"])
        cache.set("u2", "Bob", tags=["users", "admins"])
        cache.set("p1", "Widget", tags=["products"])
        cache.set("plain", 1)
        assert reader.get_many(["u1", "u2", "p1", "plain"]) == {
            "u1": "Ada",
            "u2": "Bob",
            "p1": "Widget",
            "plain": 1,
        }
        cache.remove_by_tag("users")
        # This node's L1 dropped them; L2 still holds the bytes, but they are stale.
        assert cache.get("u1", options=L1_ONLY) is None
        assert cache.get("u1") is None
        assert cache.try_get("u2") == (False, None)
        assert cache.get("p1") == "Widget"

        def reader_sees_the_removal() -> bool:
            got = reader.get_many(["u1", "u2", "p1", "plain"])
            return got == {"p1": "Widget", "plain": 1}

        within_the_bound(reader_sees_the_removal)
        assert reader.get("u2") is None
        # Entries tagged after the removal are fresh.
        cache.set("u1", "Ada 2", tags=["users"])
        assert reader.get("u1") == "Ada 2"
        # get_or_set recomputes a removed entry.
        assert reader.get_or_set("u2", lambda: "Bob 2", tags=["users"]) == "Bob 2"
        assert cache.get("u2") == "Bob 2"


def test_a_removed_tag_is_not_served_by_fail_safe(l2_factory: Any) -> None:
    safe = df.EntryOptions(fail_safe=True)
    with node(l2_factory) as cache:
        cache.set("u1", "Ada", tags=["users"], options=safe)
        cache.remove_by_tag("users")

        def broken() -> str:
            raise RuntimeError("database down")

        with pytest.raises(RuntimeError):
            cache.get_or_set("u1", broken, options=safe)
        assert cache.stats().failsafe_activations == 0


def test_tags_are_per_tenant(l2_factory: Any) -> None:
    with node(l2_factory) as cache, node(l2_factory, memory=None) as reader:
        acme, globex = cache.tenant("acme"), cache.tenant("globex")
        acme.set("k", "acme's", tags=["t"])
        globex.set("k", "globex's", tags=["t"])
        cache.set("k", "root's", tags=["t"])
        acme.remove_by_tag("t")
        assert acme.get("k") is None
        assert reader.tenant("acme").get("k") is None  # its first look: fetched now
        assert reader.tenant("globex").get("k") == "globex's"
        assert reader.get("k") == "root's"
        assert globex.get("k", options=L1_ONLY) == "globex's"


def test_other_nodes_l1_drops_tagged_entries_through_the_backplane(redis_url: str) -> None:
    def peer() -> df.DataFerry:
        return df.DataFerry(
            namespace=NS,
            distributed=df.RedisCache.from_url(redis_url),
            backplane=df.RedisBackplane.from_url(redis_url),
        )

    a, b = peer(), peer()
    heard = count_events(b, "backplane_messages")
    with a, b:
        a.set("u1", "Ada", tags=["users"])
        a.set("p1", "Widget", tags=["products"])
        sync_wait(heard(2))
        assert b.get_many(["u1", "p1"]) == {"u1": "Ada", "p1": "Widget"}  # now in b's L1
        a.remove_by_tag("users")
        sync_wait(heard(3))
        assert b.get("u1", options=L1_ONLY) is None
        assert b.get("u1") is None  # and L2 says it's stale too
        assert b.get("p1", options=L1_ONLY) == "Widget"  # only the tag's keys dropped
        a.clear()
        sync_wait(heard(4))
        assert b.get("p1", options=L1_ONLY) is None
        assert b.get("p1") is None


def test_without_a_backplane_other_l1s_keep_values_until_their_ttl(
    l2_factory: Any,
) -> None:
    # The documented bound: like any write, a removal reaches other nodes' L1 through the
    # backplane only; their L2 reads see it at once.
    with node(l2_factory) as a, node(l2_factory) as b:
        a.set("u1", "Ada", tags=["users"])
        assert b.get("u1") == "Ada"
        a.remove_by_tag("users")
        assert b.get("u1", options=L1_ONLY) == "Ada"

        def l2_reads_see_it() -> bool:
            return b.get("u1", options=df.EntryOptions(skip_memory=True)) is None

        within_the_bound(l2_reads_see_it)


def test_clear_of_the_namespace_covers_its_tenants(l2_factory: Any) -> None:
    with node(l2_factory) as cache, node(l2_factory, memory=None) as reader:
        cache.set("k", 1)
        cache.tenant("acme").set("k", 2)
        cache.clear()
        assert cache.get("k", options=L1_ONLY) is None
        assert reader.get("k") is None
        assert reader.tenant("acme").get("k") is None
        assert cache.tenant("acme").get("k") is None
        cache.set("k", 3)
        assert reader.get("k") == 3
        # Another namespace on the same L2 is untouched.
        with node(l2_factory, namespace="other") as other:
            other.set("k", "kept")
            cache.clear()
            assert other.get("k") == "kept"


def test_clear_of_a_tenant_leaves_the_others(l2_factory: Any) -> None:
    with node(l2_factory) as cache, node(l2_factory, memory=None) as reader:
        cache.tenant("acme").set("k", "acme's")
        cache.tenant("globex").set("k", "globex's")
        cache.set("k", "root's")
        cache.tenant("acme").clear()
        assert cache.tenant("acme").get("k", options=L1_ONLY) is None
        assert reader.tenant("acme").get("k") is None
        assert reader.tenant("globex").get("k") == "globex's"
        assert cache.tenant("globex").get("k", options=L1_ONLY) == "globex's"
        assert reader.get("k") == "root's"
        cache.tenant("acme").set("k", "acme's again")
        assert reader.tenant("acme").get("k") == "acme's again"


def test_clear_never_scans_or_deletes_keys(redis_server: Any) -> None:
    with node(lambda: df.RedisCache.from_url(redis_server.url)) as cache:
        cache.set_many({f"k{i}": i for i in range(50)})
        before = redis_server.info("commandstats")
        cache.clear()
        cache.tenant("acme").clear()
        cache.remove_by_tag("t")
        after = redis_server.info("commandstats")
        for command in ("keys", "scan", "flushdb", "flushall", "del", "unlink"):
            name = f"cmdstat_{command}"
            assert after.get(name) == before.get(name), command
        assert redis_server.execute("DBSIZE") >= 50  # the entries are still there, stale


def test_erase_makes_a_tenants_entries_undecryptable(l2_factory: Any) -> None:
    backend = l2_factory()
    with (
        node(l2_factory, codec=encrypted()) as cache,
        node(l2_factory, codec=encrypted(), memory=None) as reader,
    ):
        acme, globex = cache.tenant("acme"), cache.tenant("globex")
        acme.set("card", "4111-1111")
        globex.set("card", "5500-0000")
        assert reader.tenant("acme").get("card") == "4111-1111"
        acme.clear(erase=True)
        assert acme.get("card") is None

        def reader_sees_the_erasure() -> bool:
            return reader.tenant("acme").get("card") is None

        within_the_bound(reader_sees_the_erasure)
        assert reader.stats().decode_errors == 0  # skipped by the clear, not tried
        assert reader.tenant("globex").get("card") == "5500-0000"
        acme.set("card", "new")
        assert reader.tenant("acme").get("card") == "new"
        old = backend.get(f"{NS}:t:acme:card")
        assert old is not None
    # The old bytes were kept somewhere (a replica, a snapshot): even with the keyring, and
    # with the clear record gone, they no longer decrypt.
    backend.set(f"{NS}:t:acme:card", old, 60)
    backend.delete(f"{NS}:clear:t:acme")
    with node(l2_factory, codec=encrypted(), memory=None) as fresh:
        assert fresh.tenant("acme").get("card") is None
        assert fresh.stats().decode_errors == 1
    backend.close()


def test_erase_needs_an_encrypting_codec(l2_factory: Any) -> None:
    with node(l2_factory) as cache:
        with pytest.raises(df.ConfigurationError, match="encrypt"):
            cache.tenant("acme").clear(erase=True)
        with pytest.raises(df.ConfigurationError):
            cache.clear(erase="yes")  # type: ignore[arg-type]


def test_bad_tags_are_refused(l2_factory: Any) -> None:
    with node(l2_factory) as cache:
        for bad in ("", 3, None, b"users"):
            with pytest.raises(df.ConfigurationError):
                cache.remove_by_tag(bad)  # type: ignore[arg-type]


def test_tags_clear_and_erase_on_a_cluster_and_sentinel(topology_l2_factory: Any) -> None:
    # The records are plain keys spread over the slots (read in one batch grouped per slot).
    make = topology_l2_factory
    with (
        node(make, codec=encrypted()) as cache,
        node(make, codec=encrypted(), memory=None) as reader,
    ):
        keys = {f"item:{i}": i for i in range(30)}
        cache.set_many(keys, tags=["items"])
        cache.tenant("acme").set("card", "4111")
        assert reader.get_many(list(keys)) == keys
        cache.remove_by_tag("items")
        cache.tenant("acme").clear(erase=True)

        def reader_sees_both() -> bool:
            none = reader.get_many(list(keys)) == {}
            return none and reader.tenant("acme").get("card") is None

        within_the_bound(reader_sees_both)
        cache.clear()
        cache.set("after", 1)
        assert reader.get("after") == 1
