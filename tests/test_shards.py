"""Sharding by queue (DJANGO_JOBS['SHARDS']): each shard's keys share a hash tag of their own, every
script call stays in one slot, ids find their shard, workers claim from every shard they serve and
the console adds the shards up. Single-node layouts without SHARDS keep their keys."""

import json
import re
import threading
import time

import pytest
from redis.crc import key_slot

from django_jobs import JobQueue, JobStatus, chain
from django_jobs.checks import check_settings
from django_jobs.conf import InvalidSetting, jobs_settings
from django_jobs.flow import Flow
from django_jobs.queue import RequeueOutcome
from django_jobs.store import execute, shards
from django_jobs.store.scripts import Call
from django_jobs.worker.leases import Leases
from tests.census import assert_census, census
from tests.processes import wait_until
from tests.testapp import jobs as test_jobs

SHARDS = {"mail": ["emails"], "batch": ["reports"]}


@pytest.fixture
def sharded(jobs_settings, prefix, redis_client):
    """The test settings with the queues "emails" and "reports" on shards of their own."""
    jobs_settings.DJANGO_JOBS = {**jobs_settings.DJANGO_JOBS, "SHARDS": SHARDS}
    yield JobQueue()
    # The shards' keys: "{test-x:mail}..." is not under the fixture's "{test-x}" pattern.
    keys = list(redis_client.scan_iter(match=f"{prefix[:-1]}:*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def slots(monkeypatch):
    """Every script call made meanwhile, checked: its keys, and the keys it builds from its
    ``prefix`` argument, share one Redis Cluster slot."""
    seen: list[str] = []
    original, aoriginal = execute.execute, execute.aexecute

    def check(step):
        if not isinstance(step, Call):
            return
        names = [*step.script.args, *([step.script.rest] if step.script.rest else [])]
        prefix = step.args[names.index("prefix")] if "prefix" in names else None
        keys = list(step.keys) + ([f"{prefix}:job:x"] if prefix else [])
        used = {key_slot(key.encode()) for key in keys}
        assert len(used) <= 1, f"{step.script.name} crosses slots: {keys}"
        seen.append(step.script.name)

    def checked(client, step):
        check(step)
        return original(client, step)

    async def achecked(client, step):
        check(step)
        return await aoriginal(client, step)

    monkeypatch.setattr(execute, "execute", checked)
    monkeypatch.setattr(execute, "aexecute", achecked)
    return seen


def test_without_shards_the_keys_are_those_of_before(queue, prefix, redis_client):
    job = queue.enqueue("a.job", [1], queue="emails")

    assert re.fullmatch(r"[0-9a-f]{32}", job.id)
    assert redis_client.exists(f"{prefix}:job:{job.id}")
    assert redis_client.lrange(f"{prefix}:queue:emails:1", 0, -1) == [job.id]
    assert queue.all_keys() == [queue.keys]
    assert shards.shard_prefix("{django_jobs}", "") == "{django_jobs}"


def test_shard_prefixes_put_the_shard_in_the_hash_tag():
    assert shards.shard_prefix("{django_jobs}", "mail") == "{django_jobs:mail}"
    assert shards.shard_prefix("{proj}:jobs", "mail") == "{proj:mail}:jobs"


def test_jobs_of_two_shards_are_stored_under_two_hash_tags(sharded, prefix, redis_client):
    mail = sharded.enqueue("a.job", [1], queue="emails")
    plain = sharded.enqueue("a.job", [2], queue="default")
    mail_prefix = f"{prefix[:-1]}:mail}}"

    assert mail.id.startswith("mail.")
    assert re.fullmatch(r"[0-9a-f]{32}", plain.id)
    assert redis_client.exists(f"{mail_prefix}:job:{mail.id}")
    assert redis_client.lrange(f"{mail_prefix}:queue:emails:1", 0, -1) == [mail.id]
    assert not redis_client.exists(f"{prefix}:job:{mail.id}")
    assert redis_client.lrange(f"{prefix}:queue:default:1", 0, -1) == [plain.id]
    assert redis_client.llen(f"{mail_prefix}:wakeup") == 1
    assert sharded.queue_keys("emails").prefix == mail_prefix
    assert sharded.queue_keys("default").prefix == prefix


def test_every_script_call_stays_in_one_slot_across_a_whole_life(sharded, slots):
    leases = Leases(sharded.prefix)
    done = sharded.enqueue("a.job", [1], queue="emails", priority="high")
    dead = sharded.enqueue("a.job", [2], queue="reports", max_retries=0)
    cancelled = sharded.enqueue("a.job", [3], queue="default", delay=60)
    waiting = chain(test_jobs.add.s(1, 2), test_jobs.add.s(3)).delay()
    claimed = [leases.claim(["emails", "reports", "default"]).job for _ in range(3)]
    assert {j.id for j in claimed} >= {done.id, dead.id}
    for job in claimed:
        if job.id == dead.id:
            assert leases.fail_job(job, "boom") is JobStatus.FAILED
        else:
            leases.complete_job(job, 1)
    assert sharded.cancel_job(cancelled.id) == "cancelled"
    assert sharded.requeue_dead([dead.id]) == [dead.id]
    leases.extend_lease([])
    leases.recover_expired()
    leases.promote_due()
    sharded.stats()
    sharded.page(JobStatus.PENDING)
    sharded.throughput(5)
    sharded.limits()
    sharded.cancel_flow([h.id for h in waiting.steps])
    sharded.purge(JobStatus.PENDING)
    sharded.purge(JobStatus.COMPLETED)
    sharded.delete_jobs([done.id])
    assert {"enqueue", "claim", "ack", "fail", "cancel", "requeue", "stats", "page"} <= set(slots)


def test_lookups_by_id_reach_the_shard_of_the_job(sharded):
    job = sharded.enqueue("a.job", [1], queue="emails")
    other = sharded.enqueue("a.job", [2], queue="reports")

    assert sharded.get_job(job.id).queue == "emails"
    assert set(sharded.get_jobs([job.id, other.id])) == {job.id, other.id}
    assert sharded.watch(job.id) is JobStatus.PENDING
    assert sharded.cancel_job(job.id) == "cancelled"
    assert sharded.get_job(job.id).status is JobStatus.CANCELLED
    assert sharded.cancel_job("mail.nope") == "missing"
    assert [j.id for j in sharded.delete_jobs([job.id, other.id])] == [job.id, other.id]
    assert sharded.get_jobs([job.id, other.id]) == {}


def test_a_job_moved_to_another_shard_is_found_by_its_id(sharded, configure, prefix):
    job = sharded.enqueue("a.job", [1], queue="emails")
    configure(SHARDS={"batch": ["reports"]})  # "emails" back in the default shard
    moved = sharded.build_job("a.job", [2], queue="emails")
    moved.id = job.id.replace("mail.", "gone.")  # an id naming a shard that no longer exists

    sharded.enqueue_many([moved])

    assert sharded.get_job(moved.id).args == [2]
    assert sharded.cancel_job(moved.id) == "cancelled"


def test_a_wait_for_a_job_on_another_shard_than_its_id_names_gets_its_result(sharded):
    # The wait is sent to the shard the id names first: the job is unknown there, so that
    # wait ends at once (its token lives a second) and the next shard's waits for the job.
    job = sharded.build_job("a.job", [2], queue="reports")  # on the "batch" shard
    job.id = "mail." + job.id.partition(".")[2]  # an id naming the "mail" shard
    sharded.enqueue_many([job])
    leases = Leases(sharded.prefix)
    claim = leases.claim(["reports"])
    assert claim.job.id == job.id
    threading.Timer(0.5, leases.complete_job, (claim.job, 7)).start()

    started = time.monotonic()
    assert sharded.wait_for(job.id, timeout=10).result == 7
    assert time.monotonic() - started < 3  # no wait ran its course (5 s) on the wrong shard
    mail = sharded.queue_keys("emails")
    assert _client().pttl(mail.done(job.id)) <= 1000  # the token there goes within a second


def test_a_worker_serving_two_shards_takes_turns_and_keeps_priority_within_each(sharded):
    leases = Leases(sharded.prefix)
    low = sharded.enqueue("a.job", ["low"], queue="emails", priority="low")
    critical = sharded.enqueue("a.job", ["critical"], queue="emails", priority="critical")
    first = sharded.enqueue("a.job", ["r1"], queue="reports")
    second = sharded.enqueue("a.job", ["r2"], queue="reports")

    order = []
    claim = leases.claim(["emails", "reports"])
    while claim.job is not None:
        order.append(claim.job.id)
        _, claim = leases.complete_and_claim(claim.job, None, ["emails", "reports"])

    assert order == [critical.id, first.id, low.id, second.id]
    assert census(sharded, _client()) == {}  # the default shard holds none of them
    for keys, ids in ((sharded.queue_keys("emails"), {low.id, critical.id}),):
        assert set(_client().zrange(keys.completed, 0, -1)) == ids


def _client():
    import redis

    return redis.Redis.from_url(jobs_settings.REDIS_URL, decode_responses=True)


def test_stats_and_pages_add_the_shards_up(sharded):
    sharded.enqueue("a.job", [1], queue="emails", priority="high")
    sharded.enqueue("a.job", [2], queue="reports")
    sharded.enqueue("a.job", [3], queue="default")
    sharded.enqueue("a.job", [4], queue="reports", delay=60)

    stats = sharded.stats()

    assert stats["queues"]["emails"]["high"] == 1
    assert stats["queues"]["reports"]["normal"] == 1
    assert stats["queues"]["default"]["normal"] == 1
    assert stats["states"]["pending"] == 4
    assert stats["states"]["scheduled"] == 1
    assert stats["oldest"]["emails"]["high"] is not None
    page = sharded.page(JobStatus.PENDING, limit=2)
    assert page.total == 4
    assert len(page.jobs) == 2
    rest = sharded.page(JobStatus.PENDING, limit=2, cursor=page.cursor)
    assert {j.args[0] for j in page.jobs + rest.jobs} == {1, 2, 3, 4}
    assert rest.cursor is None
    assert [j.args for j in sharded.list_jobs(JobStatus.PENDING, queue="reports")] == [[2], [4]]


def test_requeue_and_purge_reach_every_shard(sharded):
    leases = Leases(sharded.prefix)
    ids = [sharded.enqueue("a.job", [q], queue=q, max_retries=0).id for q in ("emails", "reports")]
    for _ in ids:
        leases.fail_job(leases.claim(["emails", "reports"]).job, "boom")
    assert sharded.stats()["states"]["failed"] == 2

    assert sorted(sharded.requeue_dead()) == sorted(ids)
    assert sharded.purge(JobStatus.PENDING, queue="reports") == 1
    assert sharded.purge(JobStatus.PENDING) == 1
    assert sharded.stats()["states"]["pending"] == 0


def test_a_requeue_takes_unique_keys_again_on_the_shard_of_each_job(sharded, slots):
    leases, unique = Leases(sharded.prefix), Flow.of(unique_key="nightly")
    dead = {
        q: sharded.enqueue("a.job", [q], queue=q, max_retries=0, flow=unique).id
        for q in ("emails", "reports")
    }
    for _ in dead:
        leases.fail_job(leases.claim(["emails", "reports"]).job, "boom")
    holder = sharded.enqueue("a.job", ["again"], queue="reports", flow=unique)

    by_id = sharded.requeue_dead_outcome(list(dead.values()))
    assert by_id == RequeueOutcome([dead["emails"]], {dead["reports"]: holder.id})
    assert sharded.enqueue("a.job", [1], queue="emails", flow=unique).id == dead["emails"]
    assert sharded.requeue_dead_outcome() == RequeueOutcome([], {dead["reports"]: holder.id})
    assert sharded.get_job(dead["reports"]).status is JobStatus.FAILED
    assert "requeue" in slots


def test_a_workflow_over_queues_of_two_shards_is_refused(sharded):
    with pytest.raises(ValueError, match=r"queues of one shard.*emails in shard 'mail'"):
        chain(test_jobs.add.s(1, 2), test_jobs.add.using(queue="emails").s(3)).delay()
    handle = chain(
        test_jobs.add.using(queue="emails").s(1, 2), test_jobs.add.using(queue="emails").s(3)
    ).delay()
    assert handle.steps[0].id.startswith("mail.")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"mail": ["emails"], "more": ["emails"]}, "puts queue 'emails' in two shards"),
        ({"mail": ["nope"]}, "names 'nope', which is not one of"),
        ({"a.b": ["emails"]}, "has the shard name 'a.b'"),
        ({"mail": []}, "must be a non-empty list"),
        (["emails"], "must be a dict"),
    ],
)
def test_a_bad_layout_is_refused_by_the_check_and_where_it_is_read(configure, value, message):
    configure(SHARDS=value)

    errors = [e for e in check_settings() if e.id == "django_jobs.E016"]
    assert len(errors) == 1
    assert message in errors[0].msg
    with pytest.raises(InvalidSetting, match=re.escape(message)):
        JobQueue().enqueue("a.job", queue="default")


def test_a_worker_process_serving_two_shards_runs_all_their_jobs(
    sharded, workers, redis_client, prefix
):
    workers.settings["SHARDS"] = SHARDS
    workers.start("--concurrency", "1", "--queues", "default,emails,reports")
    handles = [
        test_jobs.add.using(queue=q).delay(i, 1)
        for i, q in enumerate(["default", "emails", "reports"] * 3)
    ]

    assert [h.result(timeout=15) for h in handles] == [i + 1 for i in range(9)]
    # The census of each shard: every job in exactly one place, completed, on its own shard.
    for shard, keys in zip(shards.names(), sharded.all_keys(), strict=True):
        mine = {h.id: "completed" for h in handles if shards.of_id(h.id) == shard}
        assert len(mine) == 3
        assert_census(JobQueue(prefix=keys.prefix), redis_client, mine)
    wait_until(lambda: sharded.stats()["workers"]["live"] == 1)
    assert json.loads(json.dumps(sharded.stats()["states"]))["completed"] == 9


def test_a_limited_job_may_not_leave_the_shard_of_its_queue(sharded):
    from tests.testapp import flow_jobs

    with pytest.raises(ValueError, match="counted on the shard of its queue 'default'"):
        flow_jobs.metered.using(queue="emails").delay("x")
    assert flow_jobs.metered.delay("y").id


def test_a_limit_key_shared_by_jobs_of_two_shards_is_reported(sharded):
    from django_jobs import job
    from django_jobs.registry import registry

    @job(name="tests.shard_a", queue="emails", concurrency=1, concurrency_key="api")
    def shard_a():
        pass

    @job(name="tests.shard_b", queue="reports", concurrency=1, concurrency_key="api")
    def shard_b():
        pass

    try:
        # Other tests' modules register limited jobs too: this test's key only.
        errors = [e for e in check_settings() if e.id == "django_jobs.E017" and "'api'" in e.msg]
    finally:
        registry.unregister("tests.shard_a")
        registry.unregister("tests.shard_b")
    assert len(errors) == 1
    assert "concurrency key 'api'" in errors[0].msg
    assert "tests.shard_a (mail), tests.shard_b (batch)" in errors[0].msg


def test_move_queue_moves_the_pending_jobs_a_queue_left_behind(
    queue, configure, prefix, redis_client
):
    from io import StringIO

    from django.core.management import call_command

    ready = [queue.enqueue("a.job", [i], queue="emails", priority="high") for i in range(3)]
    later = queue.enqueue("a.job", ["later"], queue="emails", delay=60)
    other = queue.enqueue("a.job", ["stays"], queue="default")
    configure(SHARDS={"mail": ["emails"]})
    out = StringIO()
    try:
        call_command("jobs", "move-queue", "emails", "--noinput", stdout=out)
        mail = queue.queue_keys("emails")

        assert "Moved 4 jobs of queue 'emails' to shard 'mail'." in out.getvalue()
        assert redis_client.lrange(mail.queue("emails", ready[0].priority), 0, -1) == [
            j.id for j in ready
        ]
        assert redis_client.zrange(mail.scheduled, 0, -1) == [later.id]
        assert redis_client.lrange(queue.keys.queue("emails", ready[0].priority), 0, -1) == []
        assert redis_client.zrange(queue.keys.scheduled, 0, -1) == []
        assert queue.get_job(later.id).status is JobStatus.PENDING  # found by its old id
        assert queue.get_job(other.id).queue == "default"
        assert Leases(queue.prefix).claim(["emails"]).job.id == ready[0].id
        call_command("jobs", "move-queue", "emails", "--noinput", stdout=(out := StringIO()))
        assert "No pending job of queue 'emails' waits outside shard 'mail'." in out.getvalue()
    finally:
        keys = list(redis_client.scan_iter(match=f"{prefix[:-1]}:*", count=1000))
        if keys:
            redis_client.delete(*keys)


def test_the_metrics_add_the_shards_up(sharded, configure):
    from tests.test_metrics import ADD, TOKEN, scrape_view

    configure(METRICS_TOKEN=TOKEN)
    leases = Leases(sharded.prefix)
    sharded.enqueue_many([sharded.build_job(ADD, [1, 1], queue=q) for q in ("default", "emails")])
    for _ in range(2):
        leases.complete_job(leases.claim(["default", "emails"]).job, 2)
    sharded.enqueue(ADD, [2, 2], queue="reports")

    found = scrape_view()

    enqueued = {k[1]: v for k, v in found.items() if k[0] == "django_jobs_enqueued_total"}
    assert enqueued == {
        (("name", ADD), ("queue", "default")): 1,
        (("name", ADD), ("queue", "emails")): 1,
        (("name", ADD), ("queue", "reports")): 1,
    }
    assert sum(v for k, v in found.items() if k[0] == "django_jobs_succeeded_total") == 2
    normal = (("priority", "normal"), ("queue", "reports"))
    assert found[("django_jobs_pending_jobs", normal)] == 1


def test_an_idle_worker_blocks_on_the_wake_up_list_of_every_shard_it_serves(
    sharded, workers, redis_client
):
    workers.settings["SHARDS"] = SHARDS
    workers.start("--concurrency", "1", "--queues", "emails,reports")
    wait_until(lambda: sharded.stats()["workers"]["live"] == 1)
    batch = sharded.queue_keys("reports")

    handle = test_jobs.add.using(queue="reports").delay(1, 2)

    # The token the enqueue pushed onto its shard's list is taken by a blocking BLPOP there
    # (claims never pop wake-up lists), and the job runs.
    wait_until(lambda: redis_client.llen(batch.wakeup) == 0)
    assert handle.result(timeout=15) == 3


def test_a_claim_sent_again_over_two_shards_gets_the_job_the_first_send_leased(sharded):
    leases = Leases(sharded.prefix)
    job = sharded.enqueue("a.job", [1], queue="reports")
    options = leases.claim_options("w", 30)

    first = leases.claim(["emails", "reports"], options=options)
    again = leases.claim(["emails", "reports"], options=options, resend=True)

    assert first.job.id == job.id
    assert again.job.id == job.id
    assert again.job.lease_token == first.job.lease_token
