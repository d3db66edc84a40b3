"""Leases: a job taken by a worker comes back if the worker is lost, and a stale worker
can never record an outcome."""

import time

from django_jobs import JobStatus
from django_jobs.worker.leases import Leases
from tests.census import assert_census


def take_and_lose(queue, lease=0.05):
    """Take the next job with a short lease and let the lease run out, as a dead worker would."""
    job = Leases(queue.prefix).dequeue(worker_id="lost-worker", lease=lease)
    time.sleep(lease + 0.05)
    return job


def test_expired_lease_brings_the_job_back_at_the_head_of_its_list(queue, redis_client):
    first = queue.enqueue("a.job", ["first"])
    second = queue.enqueue("a.job", ["second"])
    take_and_lose(queue)

    recovered = Leases(queue.prefix).recover_expired()

    assert recovered.requeued == [first.id]
    assert recovered.buried == []
    stored = queue.get_job(first.id)
    assert stored.status is JobStatus.PENDING
    assert stored.lost_count == 1
    assert stored.retry_count == 0, "a lost worker does not use up a retry"
    assert stored.lease_token is None
    assert_census(
        queue, redis_client, {first.id: "queue:default:normal", second.id: "queue:default:normal"}
    )
    assert Leases(queue.prefix).dequeue().id == first.id
    assert queue.stats()["counters"]["recovered"] == 1


def test_a_live_lease_is_not_recovered(queue, redis_client):
    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue(lease=30)

    assert Leases(queue.prefix).recover_expired().requeued == []
    assert_census(queue, redis_client, {job.id: "processing"})


def test_job_whose_worker_was_lost_too_often_is_buried_as_a_poison_pill(
    jobs_settings, queue, redis_client
):
    jobs_settings.DJANGO_JOBS = {**jobs_settings.DJANGO_JOBS, "MAX_LOST": 2}
    job = queue.enqueue("a.job")
    take_and_lose(queue)
    assert Leases(queue.prefix).recover_expired().requeued == [job.id]
    take_and_lose(queue)

    assert Leases(queue.prefix).recover_expired().buried == [job.id]

    stored = queue.get_job(job.id)
    assert stored.status is JobStatus.FAILED
    assert "lost 2 times" in stored.error
    assert stored.errors[-1]["worker_id"] == "lost-worker"
    assert_census(queue, redis_client, {job.id: "dead"})


def test_stale_worker_cannot_complete_a_job_another_worker_has(queue, redis_client):
    job = queue.enqueue("a.job")
    stale = take_and_lose(queue)
    Leases(queue.prefix).recover_expired()
    current = Leases(queue.prefix).dequeue(worker_id="new-worker", lease=30)
    assert current.id == stale.id

    assert Leases(queue.prefix).complete_job(stale, "stale result") is False
    assert Leases(queue.prefix).fail_job(stale, "stale failure") is None
    assert queue.get_job(job.id).status is JobStatus.RUNNING

    assert Leases(queue.prefix).complete_job(current, "fresh result") is True
    # Sent again by its holder (the first reply was lost), it answers as before, changing nothing.
    assert Leases(queue.prefix).complete_job(current, "second completion") is True
    # The stale worker's acknowledgement, late or sent again, still records nothing.
    assert Leases(queue.prefix).complete_job(stale, "stale result") is False
    stored = queue.get_job(job.id)
    assert stored.status is JobStatus.COMPLETED
    assert stored.result == "fresh result"
    assert stored.worker_id == "new-worker"
    assert stored.errors == []
    assert queue.stats()["counters"]["stale_acks"] == 3
    assert_census(queue, redis_client, {job.id: "completed"})


def test_stale_worker_cannot_complete_a_job_that_was_recovered_but_not_taken(queue):
    job = queue.enqueue("a.job")
    stale = take_and_lose(queue)
    Leases(queue.prefix).recover_expired()

    assert Leases(queue.prefix).complete_job(stale, "late") is False
    assert queue.get_job(job.id).status is JobStatus.PENDING


def test_extending_a_lease_moves_its_deadline(queue, redis_client):
    queue.enqueue("a.job")
    queue.enqueue("a.job")
    jobs = [Leases(queue.prefix).dequeue(lease=1), Leases(queue.prefix).dequeue(lease=1)]
    before = time.time()

    state = Leases(queue.prefix).extend_lease(jobs, lease=60)

    assert state.lost == []
    assert state.cancel_requested == []
    for job in jobs:
        assert redis_client.zscore(queue.keys.processing, job.id) >= before + 60


def test_extending_a_lease_that_was_lost_reports_it(queue, redis_client):
    queue.enqueue("a.job")
    stale = take_and_lose(queue)
    Leases(queue.prefix).recover_expired()

    state = Leases(queue.prefix).extend_lease([stale], lease=60)

    assert state.lost == [stale.id]
    assert_census(queue, redis_client, {stale.id: "queue:default:normal"})


def test_recovery_is_safe_when_run_by_many_workers_at_once(queue, redis_client):
    from concurrent.futures import ThreadPoolExecutor

    ids = [queue.enqueue("a.job", [i]).id for i in range(50)]
    for _ in ids:
        Leases(queue.prefix).dequeue(lease=0.05)
    time.sleep(0.1)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: Leases(queue.prefix).recover_expired(), range(4)))

    requeued = [i for r in results for i in r.requeued]
    assert sorted(requeued) == sorted(ids)
    assert_census(queue, redis_client, dict.fromkeys(ids, "queue:default:normal"))


def test_a_late_worker_that_finishes_its_job_is_not_counted_as_lost(queue, redis_client):
    job = queue.enqueue("a.job")
    late = take_and_lose(queue)  # its worker froze: the lease ran out while the job ran
    Leases(queue.prefix).recover_expired()
    assert queue.get_job(job.id).lost_count == 1

    assert Leases(queue.prefix).complete_job(late, "late result") is False

    stored = queue.get_job(job.id)
    assert stored.lost_count == 0, "it finished: the job did not kill its worker"
    assert (stored.late_count, stored.attempt) == (1, 2), "it ran, and will run once more"
    assert stored.status is JobStatus.PENDING
    assert stored.result is None, "a stale worker never records a result"
    assert_census(queue, redis_client, {job.id: "queue:default:normal"})


def test_a_late_failure_is_uncounted_too_but_a_crash_the_supervisor_records_is_not(queue):
    first, second = queue.enqueue("a.job"), queue.enqueue("a.job")
    leases = Leases(queue.prefix)
    late = take_and_lose(queue)
    crashed = take_and_lose(queue)
    leases.recover_expired()

    assert leases.fail_job(late, "ValueError: late") is None
    assert leases.fail_job(crashed, "WorkerCrashed", finished=False) is None

    assert (queue.get_job(first.id).lost_count, queue.get_job(first.id).late_count) == (0, 1)
    assert (queue.get_job(second.id).lost_count, queue.get_job(second.id).late_count) == (1, 0)


def test_a_claim_sent_again_after_its_reply_was_lost_takes_up_the_same_job(queue, redis_client):
    first, second = queue.enqueue("a.job", ["first"]), queue.enqueue("a.job", ["second"])
    leases = Leases(queue.prefix)
    options = leases.claim_options("w", 30)
    sent = leases.claim(options=options)  # its reply, say, never arrived

    again = leases.claim(options=options, resend=True)

    assert again.job.id == sent.job.id == first.id
    assert again.job.lease_token == sent.job.lease_token
    assert_census(queue, redis_client, {first.id: "processing", second.id: "queue:default:normal"})
    # A resend whose first send never arrived claims as usual.
    fresh = leases.claim(options=leases.claim_options("w", 30), resend=True)
    assert fresh.job.id == second.id


def test_a_completion_and_claim_sent_again_records_once_and_takes_up_the_same_job(
    queue, redis_client
):
    first, second = queue.enqueue("a.job", ["first"]), queue.enqueue("a.job", ["second"])
    leases = Leases(queue.prefix)
    running = leases.dequeue(worker_id="w", lease=30)
    options = leases.claim_options("w", 30)
    acked, claim = leases.complete_and_claim(running, "done", options=options)

    acked_again, claim_again = leases.complete_and_claim(
        running, "done", options=options, resend=True
    )

    assert acked is acked_again is True
    assert claim.job.id == claim_again.job.id == second.id
    assert queue.stats()["counters"].get("stale_acks", 0) == 0
    assert queue.get_job(first.id).result == "done"
    assert_census(queue, redis_client, {first.id: "completed", second.id: "processing"})


def test_a_failure_sent_again_answers_as_the_first_send_did(queue):
    queue.enqueue("a.job", max_retries=1)
    leases = Leases(queue.prefix)
    running = leases.dequeue(worker_id="w", lease=30)

    assert leases.fail_job(running, "ValueError: once") is JobStatus.RETRYING
    assert leases.fail_job(running, "ValueError: once") is JobStatus.RETRYING

    stored = queue.get_job(running.id)
    assert stored.retry_count == 1
    assert len(stored.errors) == 1
    assert queue.stats()["counters"].get("stale_acks", 0) == 0


def test_a_batch_is_leased_from_the_highest_list_only_and_only_when_it_is_deep(queue, redis_client):
    normal = [queue.enqueue("a.job", [i]) for i in range(5)]
    high = [queue.enqueue("a.job", [i], priority="high") for i in range(2)]
    leases = Leases(queue.prefix)

    shallow = leases.claim(options=leases.claim_options("w", 30, batch=3))
    deep = leases.claim(options=leases.claim_options("w", 30, batch=3))

    # Two HIGH jobs: after the first, fewer than a batch are left there, so it comes alone and
    # the other is taken next, before any NORMAL job.
    assert (shallow.job.id, shallow.more) == (high[0].id, ())
    assert (deep.job.id, deep.more) == (high[1].id, ())
    batch = leases.claim(options=leases.claim_options("w", 30, batch=3))
    assert [batch.job.id, *(j.id for j in batch.more)] == [j.id for j in normal[:3]]
    tokens = {batch.job.lease_token, *(j.lease_token for j in batch.more)}
    assert len(tokens) == 3, "each job of a batch has a lease token of its own"
    assert all(len(t) == 32 for t in tokens)
    assert_census(
        queue,
        redis_client,
        {
            **{j.id: "processing" for j in high + normal[:3]},
            **{j.id: "queue:default:normal" for j in normal[3:]},
        },
    )


def test_a_job_lost_before_is_leased_alone_never_in_a_batch(queue, redis_client):
    jobs = [queue.enqueue("a.job", [i]) for i in range(8)]
    leases = Leases(queue.prefix)
    # A dead worker's batch: the first three jobs, recovered with a loss each.
    leases.claim(options=leases.claim_options("lost-worker", 0.05, batch=3))
    time.sleep(0.1)
    assert sorted(leases.recover_expired().requeued) == sorted(j.id for j in jobs[:3])
    recovered = [j.id for j in queue.list_jobs("pending", limit=3)]

    firsts = [leases.claim(options=leases.claim_options("w", 30, batch=3)) for _ in range(3)]
    batch = leases.claim(options=leases.claim_options("w", 30, batch=3))

    # Each lost job comes alone, and no batch follows it; the next claim takes a batch again.
    assert [(c.job.id, c.job.lost_count, c.more) for c in firsts] == [
        (job_id, 1, ()) for job_id in recovered
    ]
    assert [batch.job.id, *(j.id for j in batch.more)] == [j.id for j in jobs[3:6]]
    assert_census(
        queue,
        redis_client,
        {
            **{j.id: "processing" for j in jobs[:6]},
            **{j.id: "queue:default:normal" for j in jobs[6:]},
        },
    )


def test_a_batch_ends_before_a_job_lost_before(queue, redis_client):
    jobs = [queue.enqueue("a.job", [i]) for i in range(6)]
    leases = Leases(queue.prefix)
    held = leases.claim(options=leases.claim_options("w", 30, batch=3))  # jobs 0 to 2
    take_and_lose(queue)  # job 3, back at the head of the list with a loss counted
    Leases(queue.prefix).recover_expired()
    for job in reversed(held.more):  # the held batch's unstarted jobs given back, ahead of it
        assert leases.release_job(job) == "released"

    batch = leases.claim(options=leases.claim_options("w", 30, batch=3))
    after = leases.claim(options=leases.claim_options("w", 30, batch=3))

    assert [batch.job.id, *(j.id for j in batch.more)] == [jobs[1].id, jobs[2].id]
    assert (after.job.id, after.job.lost_count, after.more) == (jobs[3].id, 1, ())
    assert_census(
        queue,
        redis_client,
        {
            **{j.id: "processing" for j in jobs[:4]},
            **{j.id: "queue:default:normal" for j in jobs[4:]},
        },
    )


def test_a_batch_claim_sent_again_takes_up_the_same_jobs_in_order(queue, redis_client):
    jobs = [queue.enqueue("a.job", [i]) for i in range(6)]
    leases = Leases(queue.prefix)
    options = leases.claim_options("w", 30, batch=4)
    sent = leases.claim(options=options)  # its reply, say, never arrived

    again = leases.claim(options=options, resend=True)

    assert [again.job.id, *(j.id for j in again.more)] == [j.id for j in jobs[:4]]
    assert [j.lease_token for j in again.more] == [j.lease_token for j in sent.more]
    # The jobs of the batch are acknowledged together, and the next claim takes what is left.
    acked, claim = leases.complete_many_and_claim(
        [(again.job, 0), *((j, 1) for j in again.more)], options=leases.claim_options("w", 30)
    )
    assert acked == [True] * 4
    assert claim.job.id == jobs[4].id
    assert_census(
        queue,
        redis_client,
        {
            **{j.id: "completed" for j in jobs[:4]},
            jobs[4].id: "processing",
            jobs[5].id: "queue:default:normal",
        },
    )
