"""django-jobs on a real Redis Cluster (3 masters, 3 replicas, tests/cluster.py): the whole flow
with real worker and scheduler processes, then a master killed while a producer enqueues and
workers work: the replica takes over and everyone resumes by themselves. Today's key layout puts
every key on one slot (the PREFIX's hash tag), so one master holds them all.

Each test that kills a master has a cluster of its own; the others share one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import redis.cluster
from django_redis.client import DefaultClient

from django_jobs import JobQueue, JobStatus
from django_jobs.checks import check_cluster_client, check_redis
from django_jobs.exceptions import JobNotFound, RedisUnavailable
from django_jobs.store import calls, nodes
from django_jobs.store.connection import get_redis
from django_jobs.store.execute import arun, run
from tests.cluster import (
    Cluster,
    PortBlock,
    Server,
    base_config,
    redis_cli_binary,
    skip_without_redis_cli,
)
from tests.cluster import wait_until as settle  # through errors of servers changing roles
from tests.processes import FAST, Processes, wait_until
from tests.producer import Producer
from tests.testapp import jobs

pytestmark = [
    pytest.mark.cluster,
    skip_without_redis_cli(),
]


@pytest.fixture(scope="module")
def shared_cluster():
    cluster = Cluster().start()
    yield cluster
    cluster.close()


def on_cluster(cluster, configure, monkeypatch, tmp_path, **settings):
    """This test's settings on ``cluster``, under a prefix of its own, and a group of
    processes that use the same."""
    prefix = f"{{c-{uuid.uuid4().hex[:10]}}}"
    monkeypatch.setenv("REDIS_URL", cluster.url)
    monkeypatch.setenv("JOBS_TEST_LEDGER", str(tmp_path))
    configure(REDIS_URL=cluster.url, PREFIX=prefix, **FAST, **settings)
    return Processes(tmp_path, prefix, {**FAST, **settings})


def ledger_lines(folder, name="record.log"):
    path = folder / name
    return path.read_text().split() if path.exists() else []


def test_the_whole_flow_runs_on_a_cluster(shared_cluster, configure, monkeypatch, tmp_path):
    schedules = {"tick": {"job": "tests.record", "interval": 1, "args": ["tick"]}}
    group = on_cluster(shared_cluster, configure, monkeypatch, tmp_path, SCHEDULES=schedules)
    queue = JobQueue()
    try:
        # Priorities: enqueued before any worker runs, taken highest first.
        for priority in ("low", "normal", "high", "critical"):
            jobs.record.using(priority=priority).delay(priority)
        dead = jobs.fail.using(max_retries=2).delay("boom")
        assert queue.stats()["states"]["pending"] == 5

        group.start("--concurrency", "1", "--queues", "default")
        wait_until(lambda: len(ledger_lines(tmp_path)) >= 4, message="the four priorities")
        assert ledger_lines(tmp_path)[:4] == ["critical", "high", "normal", "low"]
        delayed = jobs.record.using(delay=1.0).delay("delayed")

        # Retries, the dead-letter queue and a delay, each a script on the cluster.
        assert wait_until(lambda: dead.refresh().status is JobStatus.FAILED, timeout=20)
        assert dead.job.attempt == 3
        assert wait_until(lambda: delayed.refresh().status is JobStatus.COMPLETED)
        assert delayed.job.started_at >= delayed.job.scheduled_at

        # A scheduler's ticks, through the database it shares with nobody here.
        db = tmp_path / "scheduler.sqlite3"
        group.db = str(db)
        assert group.run("migrate", "--verbosity", "0").returncode == 0
        group.start("--verbosity", "2", command="runscheduler")
        wait_until(lambda: "tick" in ledger_lines(tmp_path), timeout=20, message="a tick")

        # The async API, and what the console shows.
        async def enqueue():
            return await jobs.add.adelay(20, 22)

        assert asyncio.run(enqueue()).result(timeout=10) == 42
        stats = queue.stats()
        assert stats["states"]["failed"] == 1
        assert stats["states"]["completed"] >= 6
        assert stats["workers"]["live"] == 1
        assert [w.alive for w in queue.workers()] == [True]
    finally:
        group.close()
    assert "Redis refused" not in group.logs(), group.logs()


def kill_the_master_while_busy(cluster, group, producer, tmp_path, prefix):
    """Kill the master of the prefix's slot once jobs flow; wait for its replica to take over
    and for jobs enqueued afterwards to run. Returns (killed at, the jobs accepted)."""
    master = cluster.master_of(prefix)
    replica = cluster.replica_of(master)
    wait_until(lambda: len(ledger_lines(tmp_path)) >= 30, timeout=30, message="jobs to flow")
    killed_at = time.monotonic()
    master.kill()
    settle(
        lambda: replica.client().execute_command("ROLE")[0] == "master",
        timeout=20,
        message="the replica to take over",
    )
    promoted_at = time.monotonic()
    # Producers and workers resume by themselves: jobs accepted after the promotion run.
    wait_until(
        lambda: len([t for t, _ in producer.accepted if t > promoted_at + 0.5]) >= 20,
        timeout=30,
        message="the producer to resume",
    )
    producer.stop()
    return killed_at, promoted_at


def test_a_master_killed_while_busy_is_replaced_and_everyone_resumes(
    configure, monkeypatch, tmp_path, capsys
):
    cluster = Cluster().start()
    group = on_cluster(cluster, configure, monkeypatch, tmp_path)
    producer = Producer()
    try:
        group.start("--concurrency", "2")
        group.start("--concurrency", "2")
        producer.start()
        killed_at, promoted_at = kill_the_master_while_busy(
            cluster, group, producer, tmp_path, group.prefix
        )
        accepted = [label for _, label in producer.accepted]
        after = [label for t, label in producer.accepted if t > promoted_at]

        def settled():
            ran = set(ledger_lines(tmp_path))
            return set(after) <= ran and len(ran) >= len(accepted) - 100

        wait_until(settled, timeout=60, message="the jobs accepted after the failover to run")
        time.sleep(2 * FAST["LEASE_TIMEOUT"] + 1)  # recovered leases run again meanwhile
        ran = ledger_lines(tmp_path)
        lost = sorted(set(accepted) - set(ran), key=lambda s: int(s[3:]))
        twice = len(ran) - len(set(ran))
        with capsys.disabled():
            print(
                f"\nfailover: {len(accepted)} jobs accepted, {producer.refused} enqueues refused "
                f"while the slot had no master, {len(lost)} accepted jobs lost {lost[:10]}, "
                f"{twice} run twice; the replica took over {promoted_at - killed_at:.1f}s "
                "after the kill"
            )
        # Every job accepted once the replica had taken over ran; those lost, if any, were
        # accepted by the old master in its last moments (asynchronous replication).
        assert set(after) <= set(ran)
        assert len(lost) <= 20, lost
        assert "Redis refused" not in group.logs(), group.logs()
    finally:
        producer.stopping.set()
        group.close()
        cluster.close()


def promoted(cluster, replica, queue):
    """Wait until ``replica`` is a master and the cluster answers ``queue``'s calls again."""
    settle(lambda: replica.client().execute_command("ROLE")[0] == "master", 20, "a promotion")

    def answers():
        try:
            return queue.stats()
        except RedisUnavailable:
            return None

    wait_until(answers, timeout=30, message="the promoted replica to answer")


def prefix_on_another_master(cluster, taken):
    """A prefix whose hash tag's slot belongs to none of the masters in ``taken``."""
    while True:
        prefix = f"{{c-{uuid.uuid4().hex[:10]}}}"
        if cluster.master_of(prefix) not in taken:
            return prefix


def lagging(cluster, replica, prefix):
    """Stop ``replica`` with more data in flight than the sockets between it and its master
    hold: what the master writes next waits in the master's own memory."""
    replica.proc.send_signal(signal.SIGSTOP)
    client = cluster.client()
    client.set(f"{prefix}:ballast", b"x" * 48 * 1024 * 1024)
    client.close()


def test_the_replication_window_and_wait_for_replicas(configure, monkeypatch, tmp_path):
    """Redis replicates asynchronously: a job acknowledged while the replica lags dies with
    its master. With WAIT_FOR_REPLICAS=1, ``delay()`` returns only once the replica has the
    job, and the job survives its master."""
    cluster = Cluster().start()
    try:
        on_cluster(cluster, configure, monkeypatch, tmp_path)
        queue = JobQueue()
        master = cluster.master_of(queue.keys.prefix)
        replica = cluster.replica_of(master)
        lagging(cluster, replica, queue.keys.prefix)
        lost = jobs.record.delay("acknowledged, not replicated")
        master.kill()
        replica.proc.send_signal(signal.SIGCONT)
        promoted(cluster, replica, queue)
        with pytest.raises(JobNotFound):
            lost.refresh()

        configure(
            PREFIX=prefix_on_another_master(cluster, {master, replica}),
            WAIT_FOR_REPLICAS=1,
            WAIT_FOR_REPLICAS_TIMEOUT=30,
        )
        queue = JobQueue()
        master = cluster.master_of(queue.keys.prefix)
        replica = cluster.replica_of(master)
        lagging(cluster, replica, queue.keys.prefix)
        handles = []
        producer = threading.Thread(target=lambda: handles.append(jobs.record.delay("kept")))
        producer.start()
        producer.join(timeout=0.5)
        assert producer.is_alive(), "delay() returned before the replica had the job"
        replica.proc.send_signal(signal.SIGCONT)
        producer.join(timeout=30)
        master.kill()  # as soon as delay() returned
        promoted(cluster, replica, queue)
        assert handles[0].refresh().status is JobStatus.PENDING
    finally:
        for server in cluster.servers:
            if server.alive:
                server.proc.send_signal(signal.SIGCONT)
        cluster.close()


def test_moving_from_one_redis_to_a_cluster_with_redis_cli_import(
    shared_cluster, configure, monkeypatch, tmp_path
):
    """docs/deployment.md's way with a short stop: every key copied into the cluster by
    ``redis-cli --cluster import``; pending, delayed and dead jobs carry over and run there."""
    ports = PortBlock()
    single = Server(
        tmp_path / "single", ports.base, "127.0.0.1", base_config(ports.base, "127.0.0.1")
    )
    try:
        single.start()
        wait_until(single.answers, timeout=10)
        group = on_cluster(shared_cluster, configure, monkeypatch, tmp_path)
        configure(REDIS_URL=f"redis://{single.address}/0")
        pending = jobs.record.delay("pending")
        delayed = jobs.record.using(delay=2).delay("delayed")
        dead = jobs.fail.using(max_retries=0).delay("boom")
        group.settings["REDIS_URL"] = f"redis://{single.address}/0"
        monkeypatch.setenv("REDIS_URL", f"redis://{single.address}/0")
        worker = group.start("--burst", "--queues", "default")
        worker.wait(timeout=30)
        assert dead.refresh().status is JobStatus.FAILED
        pending_again = jobs.record.delay("pending")
        before = JobQueue().stats()["states"]

        copied = subprocess.run(
            [
                *(redis_cli_binary(), "--cluster", "import", shared_cluster.servers[0].address),
                *("--cluster-from", single.address, "--cluster-copy", "--cluster-replace"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert copied.returncode == 0, copied.stdout + copied.stderr

        configure(REDIS_URL=shared_cluster.url)
        assert JobQueue().stats()["states"] == before
        group.settings["REDIS_URL"] = shared_cluster.url
        monkeypatch.setenv("REDIS_URL", shared_cluster.url)
        group.start("--concurrency", "1")
        assert pending_again.result(timeout=10) == "pending"
        assert delayed.result(timeout=10) == "delayed"
        assert pending.refresh().status is JobStatus.COMPLETED
        assert dead.refresh().status is JobStatus.FAILED
        group.close()
    finally:
        single.kill()
        ports.release()


def test_clients_follow_a_slot_moved_to_another_master(
    shared_cluster, configure, monkeypatch, tmp_path
):
    """After a resharding the clients' maps of slots are stale: a blocking wait sent to the old
    owner gets MOVED (the store reads the map again and waits on the new owner) and so does a
    script call (redis-py follows it), with the sync and the asyncio client made before the
    move."""
    group = on_cluster(shared_cluster, configure, monkeypatch, tmp_path)
    refreshed = []
    for name in ("refresh", "arefresh"):
        original = getattr(nodes, name)
        monkeypatch.setattr(
            nodes, name, lambda client, o=original, n=name: refreshed.append(n) or o(client)
        )
    queue = JobQueue()
    before = jobs.add.delay(1, 1)  # the sync client has its map now

    async def move_meanwhile():
        handle = await jobs.add.adelay(2, 2)  # and the asyncio client
        move()
        # A blocking wait alone (a wait for a result sends its watch first, which redis-py
        # routes itself, reading the map again before the wait).
        assert await arun(calls.wait_wakeup(queue.keys, timeout=0.1)) is True
        assert (await queue.astats())["states"]["pending"] == 2
        return handle

    def move():
        source = shared_cluster.master_of(queue.keys.prefix)
        target = next(
            s
            for s in shared_cluster.servers
            if s is not source and s.client().execute_command("ROLE")[0] == "master"
        )
        shared_cluster.move_slot(queue.keys.prefix, target)
        assert shared_cluster.master_of(queue.keys.prefix) is target

    moved_async = asyncio.run(move_meanwhile())
    assert run(calls.wait_wakeup(queue.keys, timeout=0.1)) is True
    assert refreshed == ["arefresh", "refresh"]  # each got MOVED, and read the map again
    after = jobs.add.delay(3, 3)
    assert queue.stats()["states"]["pending"] == 3
    group.start("--concurrency", "1")
    assert before.result(timeout=10) == 2
    assert after.result(timeout=10) == 6
    assert moved_async.result(timeout=10) == 4
    group.close()


class ClusterCacheClient(DefaultClient):
    """A django-redis client whose connection is a ``RedisCluster`` (django-redis has none of
    its own), as a project on a cluster would write one."""

    def connect(self, index: int = 0) -> redis.cluster.RedisCluster:
        return redis.cluster.RedisCluster.from_url(self._server[index])


def test_a_django_redis_cache_whose_client_is_a_cluster_client_is_reused(
    shared_cluster, settings, configure, monkeypatch
):
    settings.CACHES = {
        **settings.CACHES,
        "cluster": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{shared_cluster.servers[1].address}/0",
            "OPTIONS": {"CLIENT_CLASS": "tests.test_cluster.ClusterCacheClient"},
        },
    }
    configure(CONNECTION="cluster", PREFIX=f"{{cache-{uuid.uuid4().hex[:8]}}}")
    assert check_redis() == []
    with monkeypatch.context() as patch:  # W006 reads the cache's client to find a cluster
        patch.setattr(redis, "__version__", "7.1.1")
        assert [m.id for m in check_cluster_client()] == ["django_jobs.W006"]
    queue = JobQueue()
    handle = jobs.add.delay(1, 2)

    async def enqueue():
        await jobs.add.adelay(3, 4)
        return (await queue.astats())["states"]["pending"]

    assert asyncio.run(enqueue()) == 2
    assert handle.refresh().status is JobStatus.PENDING
    assert isinstance(get_redis(), redis.cluster.RedisCluster)


def test_with_wait_for_replicas_an_enqueue_waits_on_the_owning_master(
    shared_cluster, configure, caplog
):
    """The pipeline (EVALSHA, WAIT) goes to the master that owns the job's keys, with the sync
    and the asyncio client: its replica answers, so nothing is logged."""
    configure(
        REDIS_URL=shared_cluster.url,
        PREFIX=f"{{wait-{uuid.uuid4().hex[:8]}}}",
        WAIT_FOR_REPLICAS=1,
        WAIT_FOR_REPLICAS_TIMEOUT=5,
    )
    with caplog.at_level(logging.WARNING, logger="django_jobs"):
        handle = jobs.record.delay("sync")

        async def enqueue():
            return await jobs.record.adelay("async")

        other = asyncio.run(enqueue())
    assert handle.refresh().status is JobStatus.PENDING
    assert other.refresh().status is JobStatus.PENDING
    assert JobQueue().stats()["states"]["pending"] == 2
    assert "replicas acknowledged" not in caplog.text


@pytest.mark.parametrize("api", ["sync", "async"])
def test_fewer_replicas_than_asked_leave_the_job_enqueued_with_a_warning(
    api, jobs_settings, configure, caplog
):
    """On the shared single server (no replica): WAIT returns 0 after its timeout."""
    configure(WAIT_FOR_REPLICAS=1, WAIT_FOR_REPLICAS_TIMEOUT=0.1)
    with caplog.at_level(logging.WARNING, logger="django_jobs"):
        if api == "sync":
            handle = jobs.record.delay("alone")
        else:
            handle = asyncio.run(jobs.record.adelay("alone"))
    assert handle.refresh().status is JobStatus.PENDING
    assert "enqueue: 0 of 1 replicas acknowledged the write within 0.1s" in caplog.text


def test_the_setup_script_uses_a_cluster_url_that_answers(shared_cluster):
    """scripts/redis.sh (example_project/run, .ci/run) asks a redis+cluster:// URL with
    django-jobs' client, rather than starting a private Redis in its place."""
    from tests.test_redis_script import run_script

    env = {**os.environ, "REDIS_URL": shared_cluster.url}
    done = run_script(f'ensure_redis {sys.executable} || exit 1\necho "url=$REDIS_URL"', env)

    assert done.returncode == 0, done.stderr
    assert f"==> Redis: the server at {shared_cluster.url}" in done.stdout
    assert f"url={shared_cluster.url}" in done.stdout
