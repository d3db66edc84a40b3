"""A task whose tick Redis refuses stops nothing else: against the real Redis and the real
scheduler, a key of one task of the wrong type (its runs index, its tick) makes that task
broken, with the key named; the other runs of its batch are enqueued once and recorded, later
batches run, and the task fires again once the key is mended. Redis not answering, or refusing
every write, is no task's trouble: the whole pass waits, nothing marked broken, nothing lost.
"""

import logging
from datetime import timedelta

import pytest

from django_jobs import JobPriority
from django_jobs.exceptions import RedisUnavailable, StoreError
from django_jobs.models import ScheduledTask as TaskRow
from django_jobs.scheduling import scheduler as scheduler_module
from django_jobs.scheduling.database import DatabaseTaskStore
from django_jobs.scheduling.scheduler import JobScheduler
from django_jobs.scheduling.ticks import fire_run
from tests.census import assert_census, census

pytestmark = pytest.mark.django_db

BROKEN = "is broken and does not run"


def due_tasks(*names):
    """Interval tasks (a minute) due now, as saved in the admin; the time they are due."""
    for name in names:
        TaskRow.objects.create(
            name=name,
            job_name="tests.record",
            schedule_type="interval",
            interval_seconds=60,
            args=[name],
        )
    # A new task is due at its save's whole second: rows saved either side of a second's end
    # would be due a second apart, and the tests name one due time for all.
    due = max(row.next_run for row in TaskRow.objects.all())
    TaskRow.objects.update(next_run=due)
    return due


def runs_of(queue, name):
    """The due times of the jobs enqueued for task ``name``, oldest first."""
    jobs = queue.list_jobs("pending", limit=10_000)
    return sorted(job.scheduled_at for job in jobs if job.args == [name])


def rows():
    return {row.name: row for row in TaskRow.objects.all()}


@pytest.fixture
def scheduler(queue):
    return JobScheduler(DatabaseTaskStore(queue), jobs=queue, sync=False)


def tick_key(queue, name, due):
    return queue.queue_keys("default").tick(name, due.timestamp())


def runs_key(queue, name):
    return queue.queue_keys("default").task_runs(name)


def assert_fired_and_recorded(queue, names, due):
    """Each of ``names`` ran once, at ``due``: one job, its run recorded, its next run set."""
    found = rows()
    for name in names:
        assert runs_of(queue, name) == [due], name
        row = found[name]
        assert (row.last_run, row.run_count, row.next_run) == (
            due,
            1,
            due + timedelta(minutes=1),
        ), name
        assert row.broken_reason is None, name


def test_a_task_whose_runs_index_has_the_wrong_type_is_marked_broken_and_the_others_still_fire(
    scheduler, queue, redis_client, caplog
):
    caplog.set_level(logging.INFO, "django_jobs.scheduler")
    due = due_tasks("alpha", "bravo", "charlie")
    redis_client.set(runs_key(queue, "bravo"), "written by hand")

    fired = scheduler.run_pending(due)

    assert sorted((f.task, f.due, f.enqueued) for f in fired) == [
        ("alpha", due, True),
        ("charlie", due, True),
    ]
    assert_fired_and_recorded(queue, ["alpha", "charlie"], due)
    bravo = rows()["bravo"]
    assert bravo.broken_reason.startswith("its runs cannot be enqueued: Redis refused a command")
    assert f"WRONGTYPE {runs_key(queue, 'bravo')} holds a string, not a zset" in (
        bravo.broken_reason
    )
    assert (bravo.run_count, bravo.last_run, bravo.next_run) == (0, None, None)
    assert bravo.broken_at is not None
    # Refused before anything was written: no job, no tick, the key as it was.
    assert runs_of(queue, "bravo") == []
    assert not redis_client.exists(tick_key(queue, "bravo", due))
    assert redis_client.get(runs_key(queue, "bravo")) == "written by hand"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [f"task bravo {BROKEN}: {bravo.broken_reason}"]
    assert scheduler._outage is None, "the pass worked"


def test_a_ready_list_of_the_wrong_type_breaks_the_tasks_of_that_list_and_stores_nothing(
    scheduler, queue, redis_client, monkeypatch
):
    monkeypatch.setattr(scheduler_module, "RELOAD_EVERY", 0.0)  # broken tasks: tried every pass
    due = due_tasks("alpha", "bravo")
    TaskRow.objects.filter(name="bravo").update(priority=JobPriority.HIGH)
    ready = queue.keys.queue("default", JobPriority.HIGH)
    redis_client.set(ready, "written by hand")

    (fired,) = scheduler.run_pending(due)

    assert (fired.task, fired.enqueued) == ("alpha", True)
    assert f"WRONGTYPE {ready} holds a string, not a list" in rows()["bravo"].broken_reason
    # Refused before anything was written: no tick claimed, no record stored on no list.
    assert not redis_client.exists(tick_key(queue, "bravo", due))
    redis_client.delete(ready)  # mended (the census reads every list)
    alpha = {fired.job_id: "queue:default:normal"}
    assert_census(queue, redis_client, alpha)
    assert_fired_and_recorded(queue, ["alpha"], due)

    (mended,) = scheduler.run_pending(due + timedelta(seconds=1))

    assert (mended.task, mended.enqueued) == ("bravo", True)
    assert rows()["bravo"].broken_reason is None
    # Ready now, or delayed the second until its due time.
    place = census(queue, redis_client)[mended.job_id]
    assert place in (["queue:default:high"], ["scheduled"])
    assert_census(queue, redis_client, {**alpha, mended.job_id: place[0]})


def test_a_tick_key_of_the_wrong_type_breaks_its_task_only(scheduler, queue, redis_client):
    due = due_tasks("alpha", "bravo")
    redis_client.rpush(tick_key(queue, "alpha", due), "not a tick")

    (fired,) = scheduler.run_pending(due)

    assert (fired.task, fired.enqueued) == ("bravo", True)
    assert_fired_and_recorded(queue, ["bravo"], due)
    alpha = rows()["alpha"]
    assert f"{tick_key(queue, 'alpha', due)} holds a list, not a string" in alpha.broken_reason
    assert runs_of(queue, "alpha") == []
    assert redis_client.lrange(tick_key(queue, "alpha", due), 0, -1) == ["not a tick"]


def test_the_tasks_of_later_batches_still_fire(scheduler, queue, redis_client, monkeypatch):
    monkeypatch.setattr(scheduler_module, "BATCH", 2)
    names = ["a-broken", "b", "c", "d", "e"]  # taken by name: the broken one comes first
    due = due_tasks(*names)
    redis_client.hset(runs_key(queue, "a-broken"), "not", "a zset")

    fired = scheduler.run_pending(due)

    assert sorted(f.task for f in fired) == names[1:]
    assert_fired_and_recorded(queue, names[1:], due)
    assert "holds a hash, not a zset" in rows()["a-broken"].broken_reason
    assert runs_of(queue, "a-broken") == []


def test_a_refused_task_is_tried_again_said_once_and_sound_again_once_its_key_is_mended(
    scheduler, queue, redis_client, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, "django_jobs.scheduler")
    monkeypatch.setattr(scheduler_module, "RELOAD_EVERY", 0.0)  # broken tasks: tried every pass
    due = due_tasks("ping", "pong")
    redis_client.set(runs_key(queue, "pong"), "written by hand")

    scheduler.run_pending(due)
    # Tried again (its next run computed from then: at once, it never ran), refused again.
    again = scheduler.run_pending(due + timedelta(seconds=1))
    assert again == []
    reason = rows()["pong"].broken_reason
    assert "holds a string, not a zset" in reason
    assert caplog.text.count(f"task pong {BROKEN}") == 1, "said once"
    assert "no longer broken" not in caplog.text

    redis_client.delete(runs_key(queue, "pong"))
    mended = scheduler.run_pending(due + timedelta(seconds=2))

    assert [(f.task, f.due, f.enqueued) for f in mended] == [
        ("pong", due + timedelta(seconds=2), True)
    ]
    pong = rows()["pong"]
    assert (pong.broken_reason, pong.broken_at) == (None, None)
    assert (pong.run_count, pong.last_run) == (1, due + timedelta(seconds=2))
    assert pong.next_run == due + timedelta(seconds=62)
    assert runs_of(queue, "pong") == [due + timedelta(seconds=2)]
    assert queue.task_runs("pong")[0].scheduled_at == due + timedelta(seconds=2)
    assert "task pong is no longer broken: its runs are enqueued again" in caplog.text
    assert_fired_and_recorded(queue, ["ping"], due)


def test_the_admin_says_what_redis_refused_and_what_to_mend(
    scheduler, queue, redis_client, admin_client
):
    due = due_tasks("ping")
    redis_client.set(runs_key(queue, "ping"), "written by hand")
    scheduler.run_pending(due)
    pk = TaskRow.objects.get().pk

    page = admin_client.get(f"/admin/django_jobs/scheduledtask/{pk}/change/").content.decode()
    listing = admin_client.get("/admin/django_jobs/scheduledtask/?broken=yes").content.decode()

    assert "This task is broken and does not run" in page
    assert f"{runs_key(queue, 'ping')} holds a string, not a zset" in page
    assert "Mend or delete the Redis key it names: it is tried again within 30 s." in page
    assert "Correct its schedule" not in page
    assert ">Broken: does not run</strong>" in listing
    # Its recent runs cannot be read either: the page says what Redis refused, not that it
    # does not answer.
    assert "Redis refused a command: WRONGTYPE" in page
    assert "Redis does not answer" not in page


def test_run_now_of_a_task_with_a_bad_key_raises_naming_it_and_enqueues_nothing(
    scheduler, queue, redis_client
):
    due = due_tasks("ping")
    redis_client.set(runs_key(queue, "ping"), "written by hand")
    task = TaskRow.objects.get().to_task()

    with pytest.raises(StoreError, match="holds a string, not a zset"):
        fire_run(queue, task, due)

    assert runs_of(queue, "ping") == []
    assert not redis_client.exists(tick_key(queue, "ping", due))


# -- Redis not answering, or refusing every call -----------------------------------------------


def test_when_redis_does_not_answer_the_whole_pass_waits_and_no_task_is_broken(
    private_redis, queue
):
    scheduler = JobScheduler(DatabaseTaskStore(queue), jobs=queue, sync=False)
    due = due_tasks("alpha", "bravo")
    private_redis.stop()

    with pytest.raises(RedisUnavailable):
        scheduler.run_pending(due)

    for row in rows().values():
        assert (row.broken_reason, row.run_count, row.next_run) == (None, 0, due), row.name
    private_redis.start()
    fired = scheduler.run_pending(due + timedelta(seconds=1))
    assert sorted(f.task for f in fired) == ["alpha", "bravo"]
    assert_fired_and_recorded(queue, ["alpha", "bravo"], due)


def test_when_redis_refuses_every_write_the_whole_pass_waits_and_no_task_is_broken(
    private_redis, queue
):
    scheduler = JobScheduler(DatabaseTaskStore(queue), jobs=queue, sync=False)
    due = due_tasks("alpha", "bravo")
    server = private_redis.client()
    server.config_set("maxmemory", 1)  # out of memory: every write is refused

    try:
        with pytest.raises(StoreError, match="maxmemory"):
            scheduler.run_pending(due)
    finally:
        server.config_set("maxmemory", 0)

    for row in rows().values():
        assert (row.broken_reason, row.run_count, row.next_run) == (None, 0, due), row.name
    fired = scheduler.run_pending(due + timedelta(seconds=1))
    assert sorted(f.task for f in fired) == ["alpha", "bravo"]
    assert_fired_and_recorded(queue, ["alpha", "bravo"], due)
