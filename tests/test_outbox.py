"""Transactional enqueue: ``.delay()`` inside ``transaction.atomic()`` makes a job if and only if
the transaction commits, even when Redis does not answer at the commit."""

import logging
import time

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction

from django_jobs import Cancellation, JobNotFound, JobPriority, JobStatus, chain, group, outbox
from django_jobs.models import OutboxJob
from django_jobs.outbox import move_waiting
from tests.census import assert_census
from tests.processes import Processes
from tests.testapp import jobs

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_job_made_in_a_transaction_is_in_redis_after_the_commit_and_gone_from_the_outbox(
    queue, redis_client
):
    with transaction.atomic():
        User.objects.create(username="ada")
        handle = jobs.add.delay(1, 2)
        assert OutboxJob.objects.filter(job_id=handle.id).exists()
        assert queue.get_job(handle.id) is None, "not in Redis before the commit"

    assert queue.get_job(handle.id).status is JobStatus.PENDING
    assert not OutboxJob.objects.exists()
    assert_census(queue, redis_client, {handle.id: "queue:default:normal"})


def test_after_a_rollback_the_job_never_exists(queue, redis_client):
    with transaction.atomic():
        User.objects.create(username="ada")
        handle = jobs.add.delay(1, 2)
        transaction.set_rollback(True)  # as when the view raises

    assert not User.objects.exists()
    assert not OutboxJob.objects.exists()
    assert queue.get_job(handle.id) is None
    assert_census(queue, redis_client, {})
    with pytest.raises(JobNotFound):
        handle.refresh()


def test_before_the_commit_the_handle_says_waiting_for_commit_and_never_raises(queue):
    with transaction.atomic():
        handle = jobs.add.delay(1, 2)
        assert handle.status is JobStatus.WAITING_FOR_COMMIT
        assert handle.refresh().status is JobStatus.WAITING_FOR_COMMIT
        assert repr(handle).endswith("waiting_for_commit>")
        with pytest.raises(transaction.TransactionManagementError, match="after the commit"):
            handle.result(timeout=1)

    assert handle.refresh().status is JobStatus.PENDING


def test_a_job_cancelled_before_the_commit_never_exists(queue, redis_client):
    with transaction.atomic():
        handle = jobs.add.delay(1, 2)
        assert handle.cancel() is Cancellation.CANCELLED

    assert not OutboxJob.objects.exists()
    assert queue.get_job(handle.id) is None
    assert_census(queue, redis_client, {})


def test_a_commit_while_redis_is_down_keeps_the_job_in_the_outbox_and_a_worker_moves_it(
    private_redis, jobs_settings, prefix, tmp_path, caplog
):
    private_redis.stop()
    with caplog.at_level(logging.WARNING, "django_jobs.outbox"), transaction.atomic():
        User.objects.create(username="ada")
        handle = jobs.record.delay("moved")

    assert User.objects.filter(username="ada").exists(), "the data is saved"
    assert OutboxJob.objects.filter(job_id=handle.id).exists(), "and so is the job"
    assert "waits in the outbox" in caplog.text
    assert handle.refresh().status is JobStatus.WAITING_FOR_COMMIT

    private_redis.start()
    workers = Processes(tmp_path, prefix, db=connection.settings_dict["NAME"])
    try:
        workers.start("--concurrency", "1")
        assert handle.result(timeout=30) == "moved", workers.logs()
    finally:
        workers.close()
    assert not OutboxJob.objects.exists()
    assert (tmp_path / "record.log").read_text().split() == ["moved"]


def test_moving_a_job_that_is_already_in_redis_makes_no_second_job(queue, redis_client):
    with transaction.atomic():
        handle = jobs.add.delay(1, 2)
    # The row is back, as if deleting it after the move had failed.
    OutboxJob.objects.create(
        job_id=handle.id, prefix=queue.prefix, record=handle.job.to_json(), created=0
    )

    assert move_waiting("default") == 1

    assert not OutboxJob.objects.exists()
    assert_census(queue, redis_client, {handle.id: "queue:default:normal"})


def test_a_row_younger_than_the_sweep_delay_is_left_to_the_fast_path(queue):
    with transaction.atomic():
        handle = jobs.add.delay(1, 2)
        # Another process sweeping now cannot see the row; this one can, and leaves it.
        assert move_waiting("default") == 0
        assert OutboxJob.objects.filter(job_id=handle.id).exists()


def test_an_unreadable_outbox_row_is_logged_and_left_for_the_others(queue, caplog):
    OutboxJob.objects.create(job_id="broken", prefix=queue.prefix, record="{not json", created=0)
    with transaction.atomic():
        handle = jobs.add.delay(1, 2)
    OutboxJob.objects.create(
        job_id=handle.id, prefix=queue.prefix, record=handle.job.to_json(), created=0
    )

    with caplog.at_level(logging.ERROR, "django_jobs.outbox"):
        assert move_waiting("default") == 1

    assert "outbox row broken cannot be read" in caplog.text
    assert list(OutboxJob.objects.values_list("job_id", flat=True)) == ["broken"]


def test_a_row_redis_refuses_stays_and_holds_up_only_its_own_queue(
    queue, redis_client, caplog, monkeypatch
):
    monkeypatch.setattr(outbox, "_refusal_warned", -60.0)  # no other test's warning a minute ago
    broken = queue.keys.queue("emails", JobPriority.NORMAL)
    redis_client.set(broken, "not a list")  # written by hand, say
    with caplog.at_level(logging.WARNING, "django_jobs.outbox"):
        with transaction.atomic():
            refused = jobs.add.using(queue="emails").delay(1, 2)
            others = [jobs.add.delay(i, i) for i in range(3)]
        OutboxJob.objects.filter(job_id__in=[h.id for h in others]).delete()
        for handle in [*others, refused]:  # the rows are back, as if Redis had not answered
            OutboxJob.objects.update_or_create(
                job_id=handle.id,
                defaults={"prefix": queue.prefix, "record": handle.job.to_json(), "created": 0},
            )

        assert move_waiting("default") == 3

    assert f"job {refused.id} tests.testapp.jobs.add: committed, but not stored in Redis" in (
        caplog.text
    )
    assert f"WRONGTYPE {broken} holds a string" in caplog.text
    assert "Redis did not answer" not in caplog.text
    assert "1 outbox row committed but refused by Redis, left in place" in caplog.text
    assert list(OutboxJob.objects.values_list("job_id", flat=True)) == [refused.id]

    redis_client.delete(broken)  # mended
    assert move_waiting("default") == 1
    assert not OutboxJob.objects.exists()
    expected = {h.id: "queue:default:normal" for h in others}
    expected[refused.id] = "queue:emails:normal"
    assert_census(queue, redis_client, expected)


def test_outside_a_transaction_delay_writes_nothing_to_the_database(queue):
    handle = jobs.add.delay(1, 2)

    assert handle.status is JobStatus.PENDING
    assert not OutboxJob.objects.exists()


# -- chains and groups: one outbox row for the whole workflow ------------------------------------


def test_a_chain_made_in_a_transaction_exists_whole_after_the_commit_and_never_after_a_rollback(
    queue, redis_client
):
    with transaction.atomic():
        handle = chain(jobs.add.s(1, 2), jobs.add.s(3)).delay()
        assert OutboxJob.objects.count() == 1, "one row for the whole chain"
        assert queue.get_job(handle.steps[0].id) is None, "not in Redis before the commit"

    first, second = (queue.get_job(step.id) for step in handle.steps)
    assert (first.status, second.status) == (JobStatus.PENDING, JobStatus.WAITING)
    assert not OutboxJob.objects.exists()

    with transaction.atomic():
        rolled_back = group(jobs.add.s(n, n) for n in range(3)).delay()
        transaction.set_rollback(True)
    assert not OutboxJob.objects.exists()
    assert all(queue.get_job(m.id) is None for m in rolled_back.members)


def test_a_workflow_committed_while_redis_is_down_waits_in_the_outbox_and_a_worker_runs_it(
    private_redis, jobs_settings, prefix, tmp_path, caplog
):
    private_redis.stop()
    with caplog.at_level(logging.WARNING, "django_jobs.outbox"), transaction.atomic():
        User.objects.create(username="ada")
        handle = chain(jobs.add.s(1, 2), jobs.add.s(10)).delay()

    assert OutboxJob.objects.count() == 1
    assert "waits in the outbox" in caplog.text

    private_redis.start()
    workers = Processes(tmp_path, prefix, db=connection.settings_dict["NAME"])
    try:
        workers.start("--concurrency", "1")
        # A workflow's handle does not wait for the outbox: wait for the worker's move first.
        deadline = time.monotonic() + 30
        while OutboxJob.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert handle.result(timeout=30) == 13, workers.logs()
    finally:
        workers.close()
    assert not OutboxJob.objects.exists()


def test_moving_a_workflow_row_twice_stores_it_once(queue, redis_client):
    with transaction.atomic():
        handle = group(jobs.add.s(n, 1) for n in range(2)).delay()
        row = OutboxJob.objects.get()
    OutboxJob.objects.create(job_id=row.job_id, prefix=row.prefix, record=row.record, created=0)

    assert move_waiting("default") == 2

    assert not OutboxJob.objects.exists()
    assert_census(queue, redis_client, {m.id: "queue:default:normal" for m in handle.members})
