"""django-jobs on a master and a replica watched by three sentinels (tests/cluster.py), through
``redis+sentinel://``: a worker, a scheduler and a producer follow two promotions, one that
demotes a live master (its clients get READONLY and reconnect to the new master) and one after
the master is killed."""

from __future__ import annotations

import asyncio
import time

import pytest

from django_jobs import JobQueue, JobStatus
from django_jobs.checks import check_redis
from django_jobs.exceptions import RedisUnavailable
from tests.cluster import SentinelSet, skip_without_redis_cli
from tests.cluster import wait_until as settle  # through errors of servers changing roles
from tests.processes import FAST, Processes, wait_until
from tests.producer import Producer
from tests.test_cluster import ledger_lines
from tests.testapp import jobs

pytestmark = [
    pytest.mark.cluster,
    skip_without_redis_cli(),
]


def test_a_worker_a_scheduler_and_a_producer_follow_promotions(
    configure, monkeypatch, tmp_path, capsys
):
    deployment = SentinelSet().start()
    prefix = "{sentinel-test}"
    schedules = {"tick": {"job": "tests.record", "interval": 1, "args": ["tick"]}}
    settings = {**FAST, "SCHEDULES": schedules}
    monkeypatch.setenv("REDIS_URL", deployment.url)
    monkeypatch.setenv("JOBS_TEST_LEDGER", str(tmp_path))
    configure(REDIS_URL=deployment.url, PREFIX=prefix, **settings)
    group = Processes(tmp_path, prefix, settings, db=str(tmp_path / "scheduler.sqlite3"))
    producer = Producer(pause=0.02)
    try:
        assert group.run("migrate", "--verbosity", "0").returncode == 0
        group.start("--concurrency", "2")
        group.start("--verbosity", "2", command="runscheduler")
        producer.start()
        queue = JobQueue()

        def flowing(since: int) -> None:
            """Jobs accepted from now on run, and the scheduler ticks again."""
            accepted = len(producer.accepted)
            ticks = ledger_lines(tmp_path).count("tick")
            wait_until(
                lambda: (
                    len(producer.accepted) >= accepted + 20
                    and {label for _, label in producer.accepted[accepted : accepted + 20]}
                    <= set(ledger_lines(tmp_path))
                    and ledger_lines(tmp_path).count("tick") > ticks
                ),
                timeout=30,
                message=f"jobs and ticks after promotion {since}",
            )

        flowing(0)
        first, second = deployment.master, deployment.replica

        # A promotion that demotes a live master: its clients write there until Sentinel
        # turns it into a replica, then get READONLY and go to the new master.
        deployment.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", "mymaster")
        settle(lambda: deployment.master_port() == second.port, 30, message="promotion 1")
        settle(
            lambda: first.client().info("replication").get("master_link_status") == "up",
            30,
            message="the old master to be demoted and replicate the new one",
        )
        flowing(1)

        # A promotion after the master died.
        killed_at = time.monotonic()
        second.kill()
        settle(lambda: deployment.master_port() == first.port, 30, message="promotion 2")
        promoted_at = time.monotonic()
        flowing(2)

        producer.stop()

        def all_ran():
            try:
                return all(
                    queue.stats()["states"][state] == 0
                    for state in ("pending", "running", "retrying")
                )
            except RedisUnavailable:
                return False

        wait_until(all_ran, timeout=30, message="every job to run")
        ran = set(ledger_lines(tmp_path))
        lost = [(t, label) for t, label in producer.accepted if label not in ran]
        with capsys.disabled():
            print(
                f"\nsentinel: {len(producer.accepted)} jobs accepted, {producer.refused} "
                f"enqueues refused during the promotions, {len(lost)} accepted jobs lost"
                + (
                    f", accepted {lost[0][0] - killed_at:.2f}s to {lost[-1][0] - killed_at:.2f}s "
                    "from the kill"
                    if lost
                    else ""
                )
            )
        # Jobs accepted before the kill may be lost: by the old master between the first
        # promotion and its demotion (its clients still write there: docs/deployment.md), or
        # in the replication window. None accepted once the new master answered.
        assert [label for t, label in lost if t > promoted_at] == []
        assert JobQueue().stats()["workers"]["live"] == 1
        assert "Redis refused" not in group.logs(), group.logs()
        handle = jobs.add.delay(2, 2)
        assert handle.result(timeout=10) == 4
        assert handle.refresh().status is JobStatus.COMPLETED
    finally:
        producer.stopping.set()
        group.close()
        deployment.close()


def test_a_django_redis_sentinel_cache_is_reused_and_follows_a_promotion(
    settings, configure, monkeypatch
):
    deployment = SentinelSet().start()
    try:
        settings.CACHES = {
            **settings.CACHES,
            "sentinel": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"redis://{deployment.SERVICE}/0",
                "OPTIONS": {
                    "CLIENT_CLASS": "django_redis.client.SentinelClient",
                    "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                    "CONNECTION_POOL_CLASS": "redis.sentinel.SentinelConnectionPool",
                    "SENTINELS": [(s.host, s.port) for s in deployment.sentinels],
                },
            },
        }
        configure(CONNECTION="sentinel", PREFIX="{sentinel-cache}")
        assert check_redis() == []  # asked through the cache's client, not its LOCATION
        queue = JobQueue()
        first = jobs.add.delay(1, 2)

        async def enqueue():
            return (await jobs.add.adelay(3, 4)).id, (await queue.astats())["states"]["pending"]

        assert asyncio.run(enqueue())[1] == 2

        deployment.master.kill()
        settle(
            lambda: deployment.master_port() == deployment.replica.port,
            30,
            message="the promotion",
        )

        def enqueued():
            try:
                return jobs.add.delay(5, 6)
            except RedisUnavailable:
                return None

        wait_until(enqueued, timeout=30, message="an enqueue after the promotion")
        assert asyncio.run(enqueue())[1] == 4
        assert first.refresh().status is JobStatus.PENDING
    finally:
        deployment.close()
