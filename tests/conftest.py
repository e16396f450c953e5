"""Shared pytest fixtures, one section per concern."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from tests.redis_servers import (
    RedisBinaryNotFoundError,
    RedisCluster,
    RedisSentinel,
    RedisServer,
    RedisStartError,
)

# == Real Redis servers (tests/redis_servers.py) ================================================
#
# redis_server     function  a fresh server of its own (kill / freeze / restart it at will)
# redis_shared     session   one server shared by the session; use it through redis_url
# redis_url        function  URL of redis_shared, flushed (and revived) before the test
# redis_cluster    function  the session's 3-master Cluster, healthy and flushed
# redis_sentinel   function  the session's Sentinel setup, stable and flushed
#
# Faults on shared setups are repaired before the next test, but a test that fails a Sentinel
# over should build its own RedisSentinel (see tests/test_backend_faults.py). A missing
# redis-server binary fails the tests that need one: they never skip.

_T = TypeVar("_T")


def pytest_configure(config: pytest.Config) -> None:
    # valkey-glide (GlideCache) puts deprecated alias modules in sys.modules (glide.exceptions,
    # glide.config...) that warn on any attribute access: hypothesis reads __file__ of every
    # loaded module, which filterwarnings=error would turn into a failure of unrelated tests.
    config.addinivalue_line(
        "filterwarnings", r"ignore:Importing from 'glide\..*' is deprecated:DeprecationWarning"
    )


def _start(make: Callable[[], _T]) -> _T:
    try:
        return make()
    except (RedisBinaryNotFoundError, RedisStartError) as exc:
        pytest.fail(f"cannot start Redis for this test: {exc}", pytrace=False)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = _start(lambda: RedisServer().start())
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_shared() -> Iterator[RedisServer]:
    server = _start(lambda: RedisServer(name="shared").start())
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_shared: RedisServer) -> str:
    redis_shared.ensure_running()
    redis_shared.flushall()
    return f"{redis_shared.url}/0"


@pytest.fixture(scope="session")
def _redis_cluster_session() -> Iterator[RedisCluster]:
    cluster = _start(lambda: RedisCluster().start())
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def redis_cluster(_redis_cluster_session: RedisCluster) -> RedisCluster:
    _redis_cluster_session.ensure_healthy()
    _redis_cluster_session.flush()
    return _redis_cluster_session


@pytest.fixture(scope="session")
def _redis_sentinel_session() -> Iterator[RedisSentinel]:
    setup = _start(lambda: RedisSentinel().start())
    try:
        yield setup
    finally:
        setup.close()


@pytest.fixture
def redis_sentinel(_redis_sentinel_session: RedisSentinel) -> RedisSentinel:
    for server in [*_redis_sentinel_session.servers, *_redis_sentinel_session.sentinel_servers]:
        server.ensure_running()
    _redis_sentinel_session.wait_stable()
    _redis_sentinel_session.flush()
    return _redis_sentinel_session
