"""Queues sharded over a real Redis Cluster (3 masters, 3 replicas, tests/cluster.py): each
shard's keys live on the master that owns its hash tag's slot, one worker serves queues of
every shard (priorities, a delay, retries, a dead letter requeued, a scheduler's ticks, the
console's stats), and a master killed while busy refuses nothing to the producers of the
other shards while its replica takes over (``DJANGO_JOBS['SHARDS']``, docs/sharding.md)."""

from __future__ import annotations

import time
import uuid

import pytest

from django_jobs import JobQueue, JobStatus
from django_jobs.store import shards
from tests.cluster import Cluster, skip_without_redis_cli
from tests.cluster import wait_until as settle
from tests.processes import FAST, Processes, wait_until
from tests.producer import Producer
from tests.testapp import jobs

pytestmark = [pytest.mark.cluster, skip_without_redis_cli()]

SHARDED = ["q0", "q1", "q2"]


def spread_layout(cluster) -> tuple[str, dict[str, list[str]]]:
    """A prefix, and shards s0, s1, s2 for queues q0, q1, q2 whose hash tags' slots belong to
    three different masters (names are tried until they do)."""
    prefix = f"{{s-{uuid.uuid4().hex[:8]}}}"
    found: dict[int, str] = {}
    n = 0
    while len(found) < 3:
        name = f"s{n}"
        owner = cluster.master_of(shards.shard_prefix(prefix, name)).port
        found.setdefault(owner, name)
        n += 1
    names = list(found.values())
    return prefix, {name: [f"q{i}"] for i, name in enumerate(names)}


def on_cluster(cluster, configure, monkeypatch, tmp_path, django_settings):
    prefix, layout = spread_layout(cluster)
    queues = [*django_settings.DJANGO_JOBS["QUEUES"], *SHARDED]
    settings = {**FAST, "QUEUES": queues, "SHARDS": layout}
    monkeypatch.setenv("REDIS_URL", cluster.url)
    monkeypatch.setenv("JOBS_TEST_LEDGER", str(tmp_path))
    configure(REDIS_URL=cluster.url, PREFIX=prefix, **settings)
    return layout, Processes(tmp_path, prefix, settings)


def ran(folder) -> list[str]:
    path = folder / "record.log"
    return path.read_text().split() if path.exists() else []


@pytest.fixture(scope="module")
def shared_cluster():
    cluster = Cluster().start()
    yield cluster
    cluster.close()


def test_shards_live_on_their_own_masters_and_one_worker_serves_them_all(
    shared_cluster, configure, monkeypatch, tmp_path, settings
):
    layout, group = on_cluster(shared_cluster, configure, monkeypatch, tmp_path, settings)
    queue = JobQueue()
    try:
        handles = {}
        for q in SHARDED:
            for priority in ("low", "critical"):
                label = f"{q}-{priority}"
                handles[label] = jobs.record.using(queue=q, priority=priority).delay(label)
        # Each shard's jobs are on the master that owns its slot, three masters in all.
        masters = {shared_cluster.master_of(shards.shard_prefix(queue.prefix, s)) for s in layout}
        assert len(masters) == 3
        for label, handle in handles.items():
            shard = shards.of_id(handle.id)
            owner = shared_cluster.master_of(shards.shard_prefix(queue.prefix, shard))
            key = queue.shard_keys(shard).job(handle.id)
            assert owner.client().exists(key) == 1, label  # (any other master answers MOVED)
        assert queue.stats()["states"]["pending"] == 6

        group.start("--concurrency", "1")
        wait_until(lambda: len(ran(tmp_path)) == 6, timeout=30, message="every job")
        order = ran(tmp_path)
        for q in SHARDED:  # strict priority within each shard
            assert order.index(f"{q}-critical") < order.index(f"{q}-low"), order

        # A delay, retries and a dead letter, each on another shard's master.
        delayed = jobs.record.using(queue="q1", delay=1.0).delay("q1-delayed")
        dead = jobs.fail.using(queue="q2", max_retries=2).delay("boom")
        assert wait_until(lambda: dead.refresh().status is JobStatus.FAILED, timeout=20)
        assert dead.job.attempt == 3
        assert wait_until(lambda: delayed.refresh().status is JobStatus.COMPLETED)
        assert delayed.job.started_at >= delayed.job.scheduled_at
        assert queue.requeue_dead([dead.id]) == [dead.id]
        assert wait_until(lambda: dead.refresh().status is JobStatus.FAILED, timeout=20)

        # A scheduler's ticks of a task whose job goes to a sharded queue.
        group.db = str(tmp_path / "scheduler.sqlite3")
        group.settings["SCHEDULES"] = {
            "tick": {"job": "tests.record", "interval": 1, "args": ["q0-tick"], "queue": "q0"}
        }
        assert group.run("migrate", "--verbosity", "0").returncode == 0
        group.start("--verbosity", "2", command="runscheduler")
        wait_until(lambda: "q0-tick" in ran(tmp_path), timeout=20, message="a tick")

        # The console adds the shards up; a handle finds its job on its shard's master.
        stats = queue.stats()
        assert stats["states"]["completed"] >= 8
        assert stats["states"]["failed"] == 1
        assert stats["states"]["pending"] == 0
        assert stats["workers"]["live"] == 1
        assert {h.refresh().status for h in handles.values()} == {JobStatus.COMPLETED}
    finally:
        group.close()
    assert "Redis refused" not in group.logs(), group.logs()


def test_a_master_killed_refuses_only_its_shard_and_its_replica_takes_over(
    configure, monkeypatch, tmp_path, capsys, settings
):
    cluster = Cluster().start()
    layout, group = on_cluster(cluster, configure, monkeypatch, tmp_path, settings)
    queue = JobQueue()
    master_of = {s: cluster.master_of(shards.shard_prefix(queue.prefix, s)) for s in layout}
    default_master = cluster.master_of(queue.prefix)  # the workers' heartbeats live there
    victim = next(s for s in layout if master_of[s] is not default_master)
    other = next(s for s in layout if s != victim)
    (victim_queue,), (other_queue,) = layout[victim], layout[other]
    producers = {q: Producer(queue=q) for q in (victim_queue, other_queue)}
    try:
        # A worker for each shard's queue, and one that serves both.
        group.start("--concurrency", "1", "--queues", victim_queue)
        group.start("--concurrency", "1", "--queues", other_queue)
        group.start("--concurrency", "1", "--queues", f"{victim_queue},{other_queue}")
        for producer in producers.values():
            producer.start()
        wait_until(lambda: len(ran(tmp_path)) >= 40, timeout=30, message="jobs to flow")
        replica = cluster.replica_of(master_of[victim])
        master_of[victim].kill()
        killed_at = time.monotonic()
        settle(
            lambda: replica.client().execute_command("ROLE")[0] == "master",
            timeout=20,
            message="the replica to take over",
        )
        promoted_at = time.monotonic()
        ran_by_promotion = set(ran(tmp_path))
        # While the victim's slot had no master, the other shard took jobs and ran them.
        during = [
            label
            for t, label in producers[other_queue].accepted
            if killed_at + 0.2 < t < promoted_at - 0.2
        ]
        assert producers[other_queue].refused == 0
        assert len(during) >= 10, during
        # Its worker usually runs them at once too, but not always: its cluster client may
        # pause while it reads the cluster's map again (reported below, not asserted).
        wait_until(
            lambda: len([t for t, _ in producers[victim_queue].accepted if t > promoted_at]) >= 20,
            timeout=30,
            message="the producer to resume on the promoted shard",
        )
        for producer in producers.values():
            producer.stop()
        accepted = [label for p in producers.values() for _, label in p.accepted]
        after = [label for t, label in producers[victim_queue].accepted if t > promoted_at]
        wait_until(
            lambda: set(after) <= set(ran(tmp_path)),
            timeout=60,
            message="the victim shard's jobs accepted after the promotion to run",
        )
        time.sleep(2 * FAST["LEASE_TIMEOUT"] + 1)  # recovered leases run again meanwhile
        done = ran(tmp_path)
        lost = sorted(set(accepted) - set(done))
        with capsys.disabled():
            print(
                f"\nsharded failover: {len(accepted)} jobs accepted, "
                f"{producers[victim_queue].refused} refused on the failed-over shard and "
                f"{producers[other_queue].refused} on the other while its slot had no master; "
                f"{len(set(during) & ran_by_promotion)} of the other shard's {len(during)} jobs "
                f"accepted meanwhile ran before the promotion; {len(lost)} accepted jobs lost "
                f"{lost[:10]}, {len(done) - len(set(done))} run twice; the replica took over "
                f"{promoted_at - killed_at:.1f}s after the kill"
            )
        assert not [label for label in lost if label.startswith(other_queue)]
        assert len(lost) <= 20, lost
    finally:
        for producer in producers.values():
            producer.stopping.set()
        group.close()
        cluster.close()
