"""Caches from a URL (``from_url``) and from ``DATAFERRY_*`` variables (``from_env``)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

import dataferry as df
from tests.redis_servers import RedisCluster, RedisSentinel


def test_memory_and_sqlite_urls(tmp_path: Path) -> None:
    with df.DataFerry.from_url("memory://?namespace=shop&default_ttl=60") as cache:
        assert cache.namespace == "shop"
        cache.set("k", 1)
        assert cache.get("k") == 1
    path = tmp_path / "l2.sqlite"
    with df.DataFerry.from_url(f"sqlite:///{path}?max_entries=0") as cache:
        cache.set("k", 2)
        assert cache.stats().memory_entries == 0  # max_entries=0: no L1
    with df.DataFerry.from_url(f"sqlite:///{path}", memory=None) as other:
        assert other.get("k") == 2  # the same file


async def test_a_redis_url_with_a_backplane(redis_url: str) -> None:
    url = f"{redis_url}?namespace=fromurl&backplane=true"
    async with df.AsyncDataFerry.from_url(url) as a, df.AsyncDataFerry.from_url(url) as b:
        await a.set("k", 1)
        assert await b.get("k") == 1
        assert a.stats().backplane_sent == 1


def test_cluster_and_sentinel_urls(
    redis_cluster: RedisCluster, redis_sentinel: RedisSentinel
) -> None:
    with df.DataFerry.from_url(f"{redis_cluster.url}?cluster=true&namespace=c") as cache:
        cache.set_many({f"k{i}": i for i in range(20)})
        assert (
            len(
                cache.get_many(
                    [f"k{i}" for i in range(20)], options=df.EntryOptions(skip_memory=True)
                )
            )
            == 20
        )
    nodes = ",".join(f"{host}:{port}" for host, port in redis_sentinel.sentinels)
    url = f"redis+sentinel://{nodes}/{redis_sentinel.service_name}?namespace=s"
    with df.DataFerry.from_url(url) as cache, df.DataFerry.from_url(url, memory=None) as reader:
        cache.set("k", "via sentinel")
        assert reader.get("k") == "via sentinel"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("localhost:6379", "cache URL looks like"),
        ("ftp://host/x", "starts with"),
        ("memory://?default_ttl=-1", "default_ttl"),
        ("memory://?max_entries=lots", "max_entries"),
        ("memory://?backplane=maybe", "backplane"),
        ("memory://?backplane=true", "needs a Redis URL"),
        ("memory://?colour=blue", "unknown setting"),
        ("sqlite://", "needs a path"),
        ("redis+sentinel://h:26379/", "names the service"),
        ("redis+sentinel://h:port/svc", "host:port"),
        ("redis+sentinel://h:26379/svc?cluster=true", "can't go together"),
    ],
)
def test_bad_urls_name_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(df.ConfigurationError, match=says):
        df.DataFerry.from_url(url)


def test_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    environ = {
        "DATAFERRY_URL": f"sqlite:///{tmp_path / 'l2.sqlite'}?namespace=fromurl",
        "DATAFERRY_NAMESPACE": "fromenv",  # wins over the URL's parameter
        "DATAFERRY_DEFAULT_TTL": "30",
        "DATAFERRY_KEYS": f"2026-11:{key}",
    }
    with df.DataFerry.from_env(environ) as cache:
        assert cache.namespace == "fromenv"
        cache.set("secret", "4111")
    raw = df.SQLiteCache(str(tmp_path / "l2.sqlite"))
    stored = raw.get("fromenv:k:secret")
    raw.close()
    assert stored is not None
    assert b"4111" not in stored  # DATAFERRY_KEYS: encrypted
    monkeypatch.setenv("DATAFERRY_NAMESPACE", "osenv")
    monkeypatch.delenv("DATAFERRY_URL", raising=False)
    with df.DataFerry.from_env() as cache:  # os.environ; no URL: L1 only
        assert cache.namespace == "osenv"


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"DATAFERRY_DEFAULT_TTL": "soon"}, "DATAFERRY_DEFAULT_TTL"),
        ({"DATAFERRY_MAX_ENTRIES": "-3"}, "DATAFERRY_MAX_ENTRIES"),
        ({"DATAFERRY_BACKPLANE": "perhaps"}, "DATAFERRY_BACKPLANE"),
        ({"DATAFERRY_URL": "nope"}, "DATAFERRY_URL"),
        ({"DATAFERRY_NAMESPACE": "has space"}, "namespace"),
    ],
)
def test_bad_variables_are_named(environ: dict[str, Any], says: str) -> None:
    with pytest.raises(df.ConfigurationError, match=says):
        df.DataFerry.from_env(environ)


def test_a_bad_keyring_variable() -> None:
    with pytest.raises(df.KeyringError):
        df.DataFerry.from_env({"DATAFERRY_KEYS": "not a keyring"})
