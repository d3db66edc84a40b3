"""Private Redis deployments for the tests that need several servers: a Redis Cluster of 3
masters and 3 replicas, and a master with a replica watched by 3 sentinels, on loopback ports
in 7000-7099, in a temporary folder; started, waited for, killed and removed by the tests.

Ports come in blocks of ten (7000, 7010, ... 7090), each held by a lock file while in use, so
that tests running side by side (pytest -n 2) never share one.

    python -m tests.cluster   # start a cluster, print its URL, stop it on Enter
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import redis
import redis.cluster

from tests import processes
from tests.redis_server import redis_server_binary

FIRST_PORT, LAST_PORT = 7000, 7099
NODE_TIMEOUT_MS = 1000  # how long a master may be silent before its replica takes over
REPLICAS = ("--cluster-replicas", "1", "--cluster-yes")


def skip_without_redis_cli():
    """The mark that skips a test where redis-cli is missing, outside CI (.ci/run sets CI):
    there the test runs, and fails without it."""
    import pytest

    missing = redis_cli_binary() is None and not os.environ.get("CI")
    return pytest.mark.skipif(missing, reason="redis-cli is not installed")


def redis_cli_binary() -> str | None:
    """redis-cli beside redis-server, or on PATH."""
    beside = Path(redis_server_binary()).with_name("redis-cli")
    return str(beside) if beside.exists() else shutil.which("redis-cli")


def wait_until(predicate, timeout: float, message: str, interval: float = 0.05):
    """:func:`tests.processes.wait_until` through the errors of servers changing roles."""
    changing = (redis.RedisError, redis.cluster.RedisClusterException, OSError)
    return processes.wait_until(predicate, timeout, interval, message, ignore=changing)


class PortBlock:
    """Ten ports of 7000-7099 that no other test uses meanwhile (a lock file per block)."""

    def __init__(self) -> None:
        self.base = 0
        self._lock = None
        for base in range(FIRST_PORT, LAST_PORT + 1, 10):
            lock = open(f"{tempfile.gettempdir()}/django-jobs-ports-{base}.lock", "w")  # noqa: SIM115
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                continue
            self.base, self._lock = base, lock
            return
        raise RuntimeError("no free block of ports in 7000-7099")

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


class Server:
    """One redis-server (or sentinel) process on a TCP port, in a folder of its own."""

    def __init__(self, folder: Path, port: int, host: str, config: dict[str, str]) -> None:
        self.port, self.host = port, host
        self.dir = folder / str(port)
        self.dir.mkdir(parents=True)
        self.config = config
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, sentinel: bool = False) -> None:
        lines = [f"{name} {value}" for name, value in self.config.items()]
        conf = self.dir / ("sentinel.conf" if sentinel else "redis.conf")
        conf.write_text("\n".join(lines) + "\n")
        args = [redis_server_binary(), str(conf)] + (["--sentinel"] if sentinel else [])
        self.proc = subprocess.Popen(
            args, cwd=self.dir, stdout=(self.dir / "log").open("a"), stderr=subprocess.STDOUT
        )

    def client(self, **options) -> redis.Redis:
        return redis.Redis(self.host, self.port, decode_responses=True, **options)

    def answers(self) -> bool:
        with contextlib.suppress(redis.RedisError):
            info = self.client(socket_timeout=1).info("server")
            return info["process_id"] == self.proc.pid
        return False

    def kill(self) -> None:
        """SIGKILL: as a crash, or the host's power going."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def base_config(port: int, bind: str) -> dict[str, str]:
    return {
        "port": str(port),
        "bind": bind,
        "protected-mode": "no",
        "save": '""',
        "appendonly": "no",
        "daemonize": "no",
        # A replica's first sync starts at once (Redis 7 waits 5 s for more replicas to come):
        # until it has, the replica has nothing to take over with.
        "repl-diskless-sync-delay": "0",
    }


def replicas_synced(servers) -> bool:
    """Whether every live replica among ``servers`` has its master's data, and streams it."""
    for server in servers:
        if server.alive:
            info = server.client(socket_timeout=1).info("replication")
            if info["role"] == "slave" and (
                info["master_link_status"] != "up" or info.get("master_sync_in_progress")
            ):
                return False
    return True


class Cluster:
    """``redis-server --cluster-enabled yes`` x6 and ``redis-cli --cluster create ...
    --cluster-replicas 1``: 3 masters, each with a replica.

    ``host`` is the address the nodes listen on and announce (loopback by default; the many
    hosts test gives a bridge's address that its network namespaces reach).
    """

    def __init__(
        self, host: str = "127.0.0.1", masters: int = 3, ports: PortBlock | None = None
    ) -> None:
        self.ports = ports or PortBlock()
        self.host = host
        self.folder = Path(tempfile.mkdtemp(prefix="django-jobs-cluster-"))
        self.servers: list[Server] = []
        for port in range(self.ports.base, self.ports.base + masters * 2):
            config = base_config(port, host if host == "127.0.0.1" else f"{host} 127.0.0.1")
            config.update(
                {
                    "cluster-enabled": "yes",
                    "cluster-config-file": "nodes.conf",
                    "cluster-node-timeout": str(NODE_TIMEOUT_MS),
                    "cluster-announce-ip": host,
                    # Failover as soon as the master is silent, whatever the replica's lag.
                    "cluster-replica-validity-factor": "0",
                }
            )
            self.servers.append(Server(self.folder, port, host, config))

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(s.address for s in self.servers[:3])

    def start(self) -> Cluster:
        for server in self.servers:
            server.start()
        for server in self.servers:
            wait_until(server.answers, 10, f"redis-server {server.address}")
        cli = redis_cli_binary()
        assert cli, "redis-cli not found"
        created = subprocess.run(
            [cli, "--cluster", "create", *(s.address for s in self.servers), *REPLICAS],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says ``cluster_state:ok`` and agrees on the owner of each
        slot (a client started now gets one map, whichever node it asks)."""

        def settled() -> bool:
            maps = set()
            for server in self.servers:
                if not server.alive:
                    continue
                client = server.client(socket_timeout=1)
                if client.cluster("info")["cluster_state"] != "ok":
                    return False
                slots = client.execute_command("CLUSTER", "SLOTS")
                maps.add(tuple(sorted((s[0], s[1], s[2][1]) for s in slots)))
            return len(maps) == 1

        wait_until(settled, timeout, "the cluster to be ok and agree on its slots")
        wait_until(lambda: replicas_synced(self.servers), timeout, "the replicas to sync")

    def client(self) -> redis.cluster.RedisCluster:
        return redis.cluster.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(s.host, s.port) for s in self.servers],
            decode_responses=True,
        )

    def server(self, port: int) -> Server:
        return next(s for s in self.servers if s.port == port)

    def master_of(self, key: str) -> Server:
        """The server that owns ``key``'s slot now, as the live nodes see it."""
        for server in self.servers:
            if server.alive and server.client().execute_command("ROLE")[0] == "master":
                slot = server.client().cluster("keyslot", key)
                for start, end, owner, *_ in server.client().execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return self.server(int(owner[1]))
        raise AssertionError(f"no master owns {key}")

    def move_slot(self, key: str, target: Server) -> None:
        """Move the slot of ``key``, with its keys, to the master ``target`` (a resharding)."""
        source = self.master_of(key)
        slot = int(source.client().cluster("keyslot", key))
        source_id = source.client().execute_command("CLUSTER", "MYID")
        target_id = target.client().execute_command("CLUSTER", "MYID")
        target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := source.client().execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            source.client().execute_command(
                "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys
            )
        for server in self.servers:
            if server.alive and server.client().execute_command("ROLE")[0] == "master":
                server.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_ok()

    def replica_of(self, master: Server) -> Server:
        info = master.client().info("replication")
        return self.server(int(info["slave0"]["port"]))

    def close(self) -> None:
        for server in self.servers:
            server.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.ports.release()


class SentinelSet:
    """A master, its replica and three sentinels watching them as ``mymaster``."""

    SERVICE = "mymaster"

    def __init__(self) -> None:
        self.ports = PortBlock()
        base = self.ports.base
        self.folder = Path(tempfile.mkdtemp(prefix="django-jobs-sentinel-"))
        self.master = Server(self.folder, base, "127.0.0.1", base_config(base, "127.0.0.1"))
        replica = base_config(base + 1, "127.0.0.1")
        replica["replicaof"] = f"127.0.0.1 {base}"
        self.replica = Server(self.folder, base + 1, "127.0.0.1", replica)
        self.sentinels = []
        for port in range(base + 2, base + 5):
            config = {
                "port": str(port),
                "bind": "127.0.0.1",
                "daemonize": "no",
                "sentinel monitor": f"{self.SERVICE} 127.0.0.1 {base} 2",
                "sentinel down-after-milliseconds": f"{self.SERVICE} 1000",
                "sentinel failover-timeout": f"{self.SERVICE} 5000",
                "sentinel parallel-syncs": f"{self.SERVICE} 1",
            }
            self.sentinels.append(Server(self.folder, port, "127.0.0.1", config))

    @property
    def url(self) -> str:
        hosts = ",".join(s.address for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica.start()
        for server in (self.master, self.replica):
            wait_until(server.answers, 10, f"redis-server {server.address}")
        wait_until(lambda: replicas_synced([self.replica]), 15, "the replica to sync")
        for sentinel in self.sentinels:
            sentinel.start(sentinel=True)
        wait_until(lambda: self.master_port() == self.master.port, 15, "the sentinels")

        def all_know() -> bool:
            return all(
                int(s.client().sentinel_master(self.SERVICE)["num-other-sentinels"]) == 2
                and int(s.client().sentinel_master(self.SERVICE)["num-slaves"]) == 1
                for s in self.sentinels
            )

        wait_until(all_know, 20, "the sentinels to know each other and the replica")
        return self

    def master_port(self) -> int:
        for sentinel in self.sentinels:
            if sentinel.alive:
                with contextlib.suppress(redis.RedisError):
                    return int(sentinel.client().sentinel_get_master_addr_by_name(self.SERVICE)[1])
        return 0

    def close(self) -> None:
        for server in (*self.sentinels, self.master, self.replica):
            server.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.ports.release()


if __name__ == "__main__":
    cluster = Cluster().start()
    try:
        input(f"{cluster.url}  (Enter stops it) ")
    finally:
        cluster.close()
    os._exit(0)
