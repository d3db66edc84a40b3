"""Throughput as shards spread over the masters of a Redis Cluster (DJANGO_JOBS['SHARDS']).

    python3 bench/shards.py                         # 1, 2 and 3 masters, 6 queues on 6 shards
    python3 bench/shards.py --masters 3 --jobs 3000 --workers 3 --concurrency 1

Run it with a Python that has django-jobs installed (``pip install -e .``) and ``redis-server``
7+ on the ``PATH``. For each number of masters it starts that many private redis-servers in
cluster mode on 127.0.0.1 (ports from ``--port``, 7100 by default, each in a temporary
directory, persistence off), gives the slots of the six shards' hash tags to the masters in turn
(shard i on master i mod N; the other slots to the first), enqueues ``--jobs`` no-op jobs per
queue, starts ``--workers`` ``runworker`` processes (each serving its share of the queues, or all
of them with ``--serve all``) and times the drain. It reports the jobs/s of the whole cluster,
the jobs each master held, and the CPU each redis-server used (from ``/proc/<pid>/stat``) per
job and as a share of the drain's wall time.

The cluster client: until django-jobs picks one from its settings, the bench's processes (this
one and the workers, through ``--worker``) swap django-jobs' Redis clients for redis-py's
``RedisCluster`` (:func:`use_cluster_client`), in these processes only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

QUEUES = [f"q{i}" for i in range(6)]
SHARDS = {f"s{i}": [queue] for i, queue in enumerate(QUEUES)}
PREFIX = "{bench}"
TICKS = os.sysconf("SC_CLK_TCK")


def settings(nodes: str) -> dict[str, Any]:
    return {
        "REDIS_URL": f"redis://{nodes.split(',')[0]}/0",
        "PREFIX": PREFIX,
        "QUEUES": ["default", *QUEUES],
        "SHARDS": SHARDS,
    }


# -- the cluster --------------------------------------------------------------------------------


class Cluster:
    """``masters`` private redis-servers in cluster mode, shard i's slot on master i mod N."""

    def __init__(self, masters: int, port: int) -> None:
        self.ports = [port + i for i in range(masters)]
        self.dir = Path(tempfile.mkdtemp(prefix="django-jobs-bench-cluster-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def nodes(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def client(self, port: int) -> Any:
        import redis

        return redis.Redis(port=port, decode_responses=True)

    def start(self) -> None:
        from redis.crc import key_slot

        from django_jobs.store.shards import shard_prefix

        for port in self.ports:
            folder = self.dir / str(port)
            folder.mkdir()
            self.procs.append(
                subprocess.Popen(
                    [
                        *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
                        *("--save", "", "--appendonly", "no", "--cluster-enabled", "yes"),
                        *("--dir", str(folder)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            self._wait(lambda p=port: self.client(p).ping())
        owner = {
            key_slot(shard_prefix(PREFIX, shard).encode()): i % len(self.ports)
            for i, shard in enumerate(SHARDS)
        }
        mine: list[list[int]] = [[] for _ in self.ports]
        for slot in range(16384):
            mine[owner.get(slot, 0)].append(slot)
        for port, slots in zip(self.ports, mine, strict=True):
            client = self.client(port)
            for start in range(0, len(slots), 2000):
                client.execute_command("CLUSTER ADDSLOTS", *slots[start : start + 2000])
            for other in self.ports:
                client.execute_command("CLUSTER MEET", "127.0.0.1", other)
        for port in self.ports:
            self._wait(lambda p=port: self.client(p).cluster("INFO")["cluster_state"] == "ok")

    @staticmethod
    def _wait(ready: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except Exception:  # not up yet
                pass
            time.sleep(0.05)
        raise SystemExit("the cluster did not come up")

    def cpu_seconds(self) -> list[float]:
        """User + system CPU of each redis-server so far."""
        found = []
        for proc in self.procs:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            found.append((int(fields[11]) + int(fields[12])) / TICKS)
        return found

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


# -- the client ---------------------------------------------------------------------------------


def use_cluster_client(nodes: str) -> None:
    """Make django-jobs talk to the cluster at ``nodes`` with redis-py's ``RedisCluster`` in this
    process (and the processes it forks): its clients, and its blocking commands, which go as
    plain commands (a cluster client has no single connection pool)."""
    import redis.asyncio.cluster
    import redis.cluster

    from django_jobs.store import connection, execute

    startup = [redis.cluster.ClusterNode(*n.split(":")) for n in nodes.split(",")]
    clients: dict[Any, Any] = {}

    def get_redis() -> Any:
        key = ("sync", os.getpid())
        if key not in clients:
            clients[key] = redis.cluster.RedisCluster(startup_nodes=startup, socket_timeout=30)
        return clients[key]

    def get_async_redis() -> Any:
        import asyncio

        key = ("async", os.getpid(), id(asyncio.get_running_loop()))
        if key not in clients:
            nodes_ = [redis.asyncio.cluster.ClusterNode(n.host, n.port) for n in startup]
            clients[key] = redis.asyncio.cluster.RedisCluster(
                startup_nodes=nodes_, socket_timeout=30
            )
        return clients[key]

    def send_blocking(client: Any, step: Any) -> Any:
        return client.execute_command(*step.args)

    connection.get_redis = execute.get_redis = get_redis  # type: ignore[assignment]
    connection.get_async_redis = execute.get_async_redis = get_async_redis  # type: ignore[assignment]
    execute._send_blocking = send_blocking  # type: ignore[assignment]
    execute._asend_blocking = send_blocking  # type: ignore[assignment]


def configure(nodes: str) -> None:
    import django
    from django.conf import settings as django_settings

    django_settings.configure(
        SECRET_KEY="bench",
        USE_TZ=True,
        INSTALLED_APPS=["django_jobs", "benchapp"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        DJANGO_JOBS=settings(nodes),
        LOGGING_CONFIG=None,
    )
    django.setup()
    use_cluster_client(nodes)


def worker_main(nodes: str, argv: list[str]) -> None:
    """``--worker``: a ``runworker`` with the cluster client (started by :func:`measure`)."""
    configure(nodes)
    from django.core.management import call_command

    call_command("runworker", *argv)


# -- one measure --------------------------------------------------------------------------------


def measure(masters: int, args: argparse.Namespace) -> dict[str, Any]:
    cluster = Cluster(masters, args.port)
    try:
        cluster.start()
        from benchapp.jobs import noop

        from django_jobs import JobQueue

        configure_once(cluster.nodes)
        jobs = JobQueue()
        for queue in QUEUES:
            built = [jobs.build_job(noop.name, [i], queue=queue) for i in range(args.jobs)]
            for start in range(0, len(built), 1000):
                jobs.enqueue_many(built[start : start + 1000])
        held = [cluster.client(p).dbsize() for p in cluster.ports]
        total = args.jobs * len(QUEUES)
        served = [QUEUES[i :: args.workers] for i in range(args.workers)]
        if args.serve == "all":
            served = [QUEUES] * args.workers
        procs = [
            subprocess.Popen(
                [
                    *(sys.executable, __file__, "--worker", cluster.nodes, "--", "--burst"),
                    *("--queues", ",".join(qs), "--concurrency", str(args.concurrency)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for qs in served
        ]
        # The rate and the servers' CPU between 10% and 90% of the drain: without the workers'
        # start-up and the tail where some workers have run out of jobs.
        window = sample(jobs, cluster, total, procs)
        (t0, n0, cpu0), (t1, n1, cpu1) = window
        wall = t1 - t0
        cpu = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
        done = n1 - n0
        completed = jobs.stats()["states"]["completed"]
        commands: dict[str, int] = {}
        for port in cluster.ports:
            for name, stat in cluster.client(port).info("commandstats").items():
                name = name.removeprefix("cmdstat_")
                commands[name] = commands.get(name, 0) + int(stat["calls"])
        return {
            "masters": masters,
            "jobs": total,
            "completed": completed,
            "seconds": round(wall, 2),
            "jobs_per_s": round(done / wall),
            "jobs_per_s_per_master": round(done / wall / masters),
            "keys_per_master": held,
            "redis_cpu_s": [round(c, 2) for c in cpu],
            "redis_cpu_share": [round(c / wall, 2) for c in cpu],
            "redis_us_per_job": round(sum(cpu) / done * 1e6, 1) if done else None,
            "commands_per_job": {
                name: round(calls / completed, 2)
                for name, calls in sorted(commands.items())
                if calls >= completed / 20
            },
        }
    finally:
        cluster.stop()


_configured: list[str] = []


def configure_once(nodes: str) -> None:
    """Django is set up once per process; later measures only point the client elsewhere."""
    if not _configured:
        configure(nodes)
    else:
        from django.test.utils import override_settings

        override_settings(DJANGO_JOBS=settings(nodes)).enable()
        use_cluster_client(nodes)
    _configured.append(nodes)


def sample(jobs: Any, cluster: Cluster, total: int, procs: list[Any]) -> list[Any]:
    """(time, jobs completed, CPU of each server) when 10% and 90% of ``total`` are done."""
    from django_jobs.job import JobStatus

    marks: list[Any] = []
    targets = [total // 10, total * 9 // 10]
    while targets:
        done = jobs.page(JobStatus.COMPLETED, limit=1).total
        if done >= targets[0]:
            marks.append((time.perf_counter(), done, cluster.cpu_seconds()))
            targets.pop(0)
        elif all(proc.poll() is not None for proc in procs):
            raise SystemExit(f"the workers ended with {done} of {total} jobs done")
        time.sleep(0.1)
    for proc in procs:
        proc.wait(timeout=600)
    return marks


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2], sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masters", default="1,2,3", help="Numbers of masters to try.")
    parser.add_argument("--jobs", type=int, default=2000, help="Jobs per queue (6 queues).")
    parser.add_argument("--workers", type=int, default=3, help="runworker processes.")
    parser.add_argument("--concurrency", type=int, default=1, help="Processes per worker.")
    parser.add_argument("--serve", choices=("split", "all"), default="split")
    parser.add_argument("--port", type=int, default=7100, help="The first master's port.")
    parser.add_argument("--reps", type=int, default=3, help="Runs of each, alternated.")
    args = parser.parse_args()
    runs: dict[int, list[dict[str, Any]]] = {}
    for _ in range(args.reps):
        for masters in (int(n) for n in args.masters.split(",")):
            found = measure(masters, args)
            runs.setdefault(masters, []).append(found)
            print(json.dumps(found), flush=True)
    print("masters  jobs/s (median)  per master  Redis CPU per master (share of a core)  us/job")
    for masters, found in runs.items():
        rate = statistics.median(r["jobs_per_s"] for r in found)
        share = [statistics.median(r["redis_cpu_share"][i] for r in found) for i in range(masters)]
        cost = statistics.median(r["redis_us_per_job"] for r in found)
        print(f"{masters:7}  {rate:15.0f}  {rate / masters:10.0f}  {share!s:38}  {cost:6.0f}")


if __name__ == "__main__":
    main()
