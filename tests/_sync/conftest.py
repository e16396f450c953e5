# GENERATED from tests/_async/conftest.py by scripts/unasync.py: do not edit.
"""Facade fixtures: one cache factory per L2 kind (the sync twin is generated from this)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import dataferry as df

# "glide": GlideCache (Valkey GLIDE) on the same redis-server as "redis".
L2_KINDS = ["memory-only", "sqlite", "redis", "glide"]


def make_backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if kind == "memory-only":
        return None
    if kind == "sqlite":
        return df.SQLiteCache(str(tmp_path / "l2.sqlite"))
    url = request.getfixturevalue("redis_url")
    if kind == "glide":
        return df.GlideCache.from_url(url)
    return df.RedisCache.from_url(url)


@pytest.fixture(params=L2_KINDS)
def l2_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(l2_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The L2 of the test's kind (None for an L1-only cache); shared by every node it builds."""
    return make_backend(l2_kind, request, tmp_path)


@pytest.fixture(params=["sqlite", "redis", "glide"])
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A real L2 that several cache nodes share."""
    return make_backend(str(request.param), request, tmp_path)


@pytest.fixture(params=["redis", "sqlite", "glide"])
def l2_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Builds one L2 client per node, all on the same store (as processes have)."""
    if request.param == "sqlite":
        path = str(tmp_path / "l2.sqlite")
        return lambda: df.SQLiteCache(path)
    url = request.getfixturevalue("redis_url")
    if request.param == "glide":
        return lambda: df.GlideCache.from_url(url)
    return lambda: df.RedisCache.from_url(url)


class L2Client:
    """Builds the L2 of one Redis client on a server a test controls (and may kill or freeze).

    ``"redis"``: RedisCache (redis-py); ``"glide"``: GlideCache (Valkey GLIDE). Both with
    their ``from_url`` defaults (0.25 s timeouts, the default Resilience timeout).
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, url: str, *, cluster: bool = False) -> Any:
        if self.name == "glide":
            return df.GlideCache.from_url(url, cluster=cluster)
        return df.RedisCache.from_url(url, cluster=cluster)

    def backplane(self, url: str, *, cluster: bool = False) -> Any:
        """The backplane on the same client library: GlideBackplane or RedisBackplane."""
        if self.name == "glide":
            return df.GlideBackplane.from_url(url, cluster=cluster)
        return df.RedisBackplane.from_url(url, cluster=cluster)

    def __repr__(self) -> str:
        return self.name


@pytest.fixture(params=["redis", "glide"])
def l2_client(request: pytest.FixtureRequest) -> L2Client:
    """The fault tests' L2 client (they kill, freeze and restart the server under it)."""
    return L2Client(str(request.param))


@pytest.fixture
def redis_l2(l2_client: L2Client, redis_url: str) -> Any:
    """RedisCache or GlideCache on the shared server (for tests whose faults are injected)."""
    return l2_client(redis_url)


# "glide-cluster": GlideCache on the same Cluster (GLIDE has no Sentinel support).
@pytest.fixture(params=["cluster", "sentinel", "glide-cluster"])
def topology_l2_factory(request: pytest.FixtureRequest) -> Any:
    """Builds one L2 client per node on the harness's 3-master Cluster (RedisCache or
    GlideCache), or its Sentinel setup."""
    if request.param == "glide-cluster":
        url = request.getfixturevalue("redis_cluster").url
        return lambda: df.GlideCache.from_url(url, cluster=True)
    if request.param == "cluster":
        url = request.getfixturevalue("redis_cluster").url
        return lambda: df.RedisCache.from_url(url, cluster=True)
    setup = request.getfixturevalue("redis_sentinel")
    return lambda: df.RedisCache.from_sentinel(setup.sentinels, setup.service_name)


@pytest.fixture(params=["redis", "glide"])
def l2_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A real L2 for tests that need one: RedisCache or GlideCache on a harness server."""
    return make_backend(str(request.param), request, tmp_path)


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Any:
    return df.SQLiteCache(str(tmp_path / "l2.sqlite"))


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Run every async facade test on the stdlib event loop and on uvloop."""
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
