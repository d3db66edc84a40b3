"""The key layout: one namespace, one hash tag."""

from redis.crc import key_slot

from django_jobs import JobPriority, JobQueue
from django_jobs.worker.leases import Leases


def test_queue_uses_the_configured_prefix_and_queues(queue, prefix):
    assert queue.prefix == prefix
    assert queue.keys.job("abc") == f"{prefix}:job:abc"
    assert queue.keys.result("abc") == f"{prefix}:result:abc"
    assert queue.keys.queue("emails", JobPriority.HIGH) == f"{prefix}:queue:emails:2"


def test_explicit_prefix_wins_over_the_setting(jobs_settings):
    assert JobQueue("{other}").keys.scheduled == "{other}:scheduled"


def test_every_key_of_a_namespace_shares_its_hash_tag(queue, redis_client):
    queue.enqueue("a.job", user_id=1)
    queue.enqueue("a.job", delay=60)
    queue.enqueue("a.job", max_retries=0)
    Leases(queue.prefix).fail_job(Leases(queue.prefix).dequeue(), "boom")
    queue.enqueue("a.job")
    Leases(queue.prefix).complete_job(Leases(queue.prefix).dequeue(), 1)

    keys = list(redis_client.scan_iter(match=f"{queue.prefix}*"))
    slots = {key_slot(key.encode()) for key in keys}
    assert len(keys) > 5
    assert len(slots) == 1


def test_workers_look_at_every_critical_list_before_any_high_one(queue, prefix):
    lists = queue.keys.queues_high_first(["a", "b"])

    assert lists == [
        f"{prefix}:queue:a:3",
        f"{prefix}:queue:b:3",
        f"{prefix}:queue:a:2",
        f"{prefix}:queue:b:2",
        f"{prefix}:queue:a:1",
        f"{prefix}:queue:b:1",
        f"{prefix}:queue:a:0",
        f"{prefix}:queue:b:0",
    ]


def test_scripts_are_loaded_again_when_the_server_forgot_them(private_redis, queue):
    private_redis.client().script_flush()

    job = queue.enqueue("a.job")

    assert queue.get_job(job.id).name == "a.job"
