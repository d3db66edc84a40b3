"""Django's task API (``django.tasks``, or the django-tasks backport on Django 5.2) on django-jobs:
``@task``, ``.enqueue()`` and ``TaskResult`` through real ``runworker`` processes."""

import asyncio
import importlib
import json
import os
import time
from datetime import timedelta

import django
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from django_jobs import Job, JobPriority, JobStatus, NotJSONSerializable
from django_jobs.tasks import compat
from tests.census import assert_census
from tests.processes import wait_until

if compat.TASKS_API is None:
    pytest.skip("Django's task API is not installed", allow_module_level=True)

from django_jobs.backends import RedisBackend, job_priority
from django_jobs.tasks.runs import resolve_task
from django_jobs.worker.execute import run_job
from tests.testapp import tasks

try:
    from django.tasks import TaskResultStatus, task, task_backends
except ImportError:
    from django_tasks import TaskResultStatus, task, task_backends

READY, RUNNING = TaskResultStatus.READY, TaskResultStatus.RUNNING
SUCCESSFUL, FAILED = TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED


def wait_for_result(result, timeout=15.0):
    """Refresh ``result`` until it is finished, as a caller of the task API would."""

    def finished():
        result.refresh()
        return result.is_finished

    wait_until(finished, timeout=timeout, interval=0.05, message=f"task {result.id} to finish")
    return result


def signals(ledger):
    path = ledger / "signals.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- the API in use, compatibility ----------------------------------------------------------


def test_the_task_api_of_the_installed_django_is_used():
    if django.VERSION >= (6, 0):
        assert compat.TASKS_API == "django.tasks"
        # Even with the backport installed too (as the dev extra does).
        assert compat.Task is importlib.import_module("django.tasks").Task
    else:
        assert compat.TASKS_API == "django_tasks"
        assert compat.Task is importlib.import_module("django_tasks.base").Task
    backend = task_backends["default"]
    assert isinstance(backend, RedisBackend)
    assert backend.supports_defer
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_priority


def test_without_the_task_api_the_backend_says_what_to_install(monkeypatch):
    monkeypatch.setattr(compat, "TASKS_API", None)

    with pytest.raises(ImproperlyConfigured, match=r"django-jobs\[tasks\]"):
        compat.require()
    with pytest.raises(LookupError, match=r"UnknownTask: .*Django 6\.0"):
        resolve_task("tests.testapp.tasks.add")


# -- enqueue and results --------------------------------------------------------------------


def test_enqueue_stores_one_job_and_returns_a_ready_result(queue, redis_client):
    before = timezone.now()

    result = tasks.add.enqueue(2, 3)

    assert result.status == READY
    assert result.backend == "default"
    assert result.task.func is tasks.add.func
    assert (result.args, result.kwargs) == ([2, 3], {})
    assert before <= result.enqueued_at <= timezone.now()
    assert result.started_at is None
    assert result.finished_at is None
    assert result.errors == []
    assert result.worker_ids == []
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value
    job = queue.get_job(result.id)
    assert job.name == "django.tasks:tests.testapp.tasks.add"
    assert job.priority is JobPriority.NORMAL
    assert job.queue == "default"
    assert job.meta == {"priority": 0, "backend": "default"}
    assert_census(queue, redis_client, {result.id: "queue:default:normal"})


def test_result_of_a_task_run_by_a_worker(workers):
    workers.start("--concurrency", "1", "--worker-id", "w")
    result = tasks.add.enqueue(2, 3)

    wait_for_result(result)

    assert result.status == SUCCESSFUL
    assert result.return_value == 5
    assert result.errors == []
    assert result.worker_ids == ["w:0"]
    assert result.attempts == 1
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    again = task_backends["default"].get_result(result.id)
    assert again.return_value == 5
    assert tasks.add.get_result(result.id).status == SUCCESSFUL


def test_async_task_and_async_api(workers):
    workers.start("--concurrency", "1")

    async def scenario():
        result = await tasks.async_add.aenqueue(20, 22)
        assert result.status == READY
        for _ in range(300):
            await result.arefresh()
            if result.is_finished:
                break
            await asyncio.sleep(0.05)
        again = await tasks.async_add.aget_result(result.id)
        return result, again

    result, again = asyncio.run(scenario())

    assert result.status == SUCCESSFUL
    assert result.return_value == 42
    assert again.return_value == 42


def test_a_return_value_is_made_json_as_django_does(workers):
    workers.start("--concurrency", "1")

    result = wait_for_result(tasks.returns_tuple.enqueue())

    assert result.return_value == [1, [2, 3]]


def test_a_return_value_that_is_not_json_fails_without_retries(workers, queue):
    workers.start("--concurrency", "1")

    result = wait_for_result(tasks.returns_set.enqueue())

    assert result.status == FAILED
    assert len(result.errors) == 1, "not retried: it would return the same value"
    assert result.errors[0].exception_class_path == "django_jobs.exceptions.NotJSONSerializable"
    assert "the return value is a builtins.set" in result.errors[0].traceback
    assert queue.get_job(result.id).status is JobStatus.FAILED


def test_unknown_ids_and_jobs_that_are_not_tasks_have_no_result(queue):
    backend = task_backends["default"]
    job = queue.enqueue("tests.record", ["x"])

    for result_id in ["0" * 32, "", "x" * 65, None, job.id]:
        with pytest.raises(compat.TaskResultDoesNotExist):
            backend.get_result(result_id)
    with pytest.raises(compat.TaskResultDoesNotExist):
        asyncio.run(backend.aget_result("0" * 32))


def test_a_result_that_expired_does_not_exist(queue, redis_client):
    result = tasks.add.enqueue(1, 1)
    assert tasks.add.get_result(result.id).status == READY

    # What JOB_TTL does to the record of a finished job.
    redis_client.delete(queue.keys.job(result.id))

    with pytest.raises(compat.TaskResultDoesNotExist, match="unknown, or expired"):
        tasks.add.get_result(result.id)
    with pytest.raises(compat.TaskResultDoesNotExist):
        result.refresh()


def test_a_cancelled_task_is_failed_with_the_cancellation_as_its_error(queue):
    result = tasks.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 2)

    assert queue.cancel_job(result.id) == "cancelled"
    result.refresh()

    assert result.status == FAILED
    assert [e.exception_class_path for e in result.errors] == [
        "django_jobs.exceptions.JobCancelled"
    ]
    assert result.finished_at is not None


# -- priorities, queues, run_after ----------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "level"),
    [
        (-100, JobPriority.LOW),
        (-50, JobPriority.LOW),
        (-49, JobPriority.NORMAL),
        (0, JobPriority.NORMAL),
        (49, JobPriority.NORMAL),
        (50, JobPriority.HIGH),
        (99, JobPriority.HIGH),
        (100, JobPriority.CRITICAL),
    ],
)
def test_django_priorities_map_onto_four_levels_symmetric_around_zero(priority, level):
    assert job_priority(priority) is level


def test_a_worker_takes_tasks_by_priority_then_fifo(workers, ledger, queue, redis_client):
    backlog = [
        ("low-1", -100),
        ("normal-1", 0),
        ("critical-1", 100),
        ("high-1", 50),
        ("low-2", -50),
        ("normal-2", -49),
        ("high-2", 99),
        ("normal-3", 49),
    ]
    results = [tasks.record.using(priority=p).enqueue(label) for label, p in backlog]

    proc = workers.start("--concurrency", "1", "--burst")

    assert proc.wait(timeout=20) == 0
    order = (ledger / "record.log").read_text().split()
    assert order == [
        "critical-1",
        "high-1",
        "high-2",
        "normal-1",
        "normal-2",
        "normal-3",
        "low-1",
        "low-2",
    ]
    assert_census(queue, redis_client, {r.id: "completed" for r in results})
    assert [r.task.priority for r in results] == [p for _, p in backlog]
    done = tasks.record.get_result(results[2].id)
    assert done.task.priority == 100, "the result keeps the priority it was enqueued with"
    assert done.task.queue_name == "emails"


def test_run_after_is_never_early(workers, queue):
    workers.start("--concurrency", "2")
    run_after = timezone.now() + timedelta(seconds=1.5)

    result = tasks.add.using(run_after=run_after).enqueue(1, 2)

    assert queue.get_job(result.id).scheduled_at.timestamp() == pytest.approx(
        run_after.timestamp(), abs=1e-5
    )
    time.sleep(1.0)
    assert tasks.add.get_result(result.id).status == READY
    wait_for_result(result)
    assert result.status == SUCCESSFUL
    assert result.started_at >= run_after
    assert result.task.run_after == run_after


def test_a_task_can_use_another_queue_of_its_backend(queue):
    result = tasks.add.using(queue_name="emails").enqueue(1, 2)

    assert queue.get_job(result.id).queue == "emails"
    assert result.task.queue_name == "emails"


# -- context, signals -----------------------------------------------------------------------


def test_a_task_that_takes_context_gets_its_result_and_attempt(workers):
    workers.start("--concurrency", "1", "--worker-id", "ctx")

    result = wait_for_result(tasks.with_context.using(priority=7).enqueue("hello"))

    assert result.return_value == {
        "label": "hello",
        "id": result.id,
        "attempt": 1,
        "status": "RUNNING",
        "worker_ids": ["ctx:0"],
        "backend": "default",
        "priority": 7,
    }


def test_task_enqueued_is_sent_in_the_enqueuing_process(jobs_settings):
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append((sender, task_result.id, task_result.status))

    compat.task_enqueued.connect(receiver)
    try:
        result = tasks.add.enqueue(1, 2)
        later = asyncio.run(tasks.add.aenqueue(3, 4))
    finally:
        compat.task_enqueued.disconnect(receiver)

    assert seen == [(RedisBackend, result.id, READY), (RedisBackend, later.id, READY)]


def test_task_started_and_finished_are_sent_in_the_worker_around_each_attempt(workers, ledger):
    workers.start("--concurrency", "1")

    ok = wait_for_result(tasks.add.enqueue(1, 2))
    failed = wait_for_result(tasks.boom.using(backend="once").enqueue("bang"))

    sent = signals(ledger)
    assert [(s["signal"], s["id"], s["status"]) for s in sent] == [
        ("task_started", ok.id, "RUNNING"),
        ("task_finished", ok.id, "SUCCESSFUL"),
        ("task_started", failed.id, "RUNNING"),
        ("task_finished", failed.id, "FAILED"),
    ]
    assert {s["sender"] for s in sent} == {"django_jobs.tasks.backend.RedisBackend"}
    assert all(s["pid"] != os.getpid() for s in sent), "sent in the worker, not here"
    assert sent[1]["handling"] is None
    finished = sent[3]
    # Sent while the exception is handled, with the traceback kept, as Django documents.
    assert finished["handling"] == "Boom"
    assert finished["errors"] == ["tests.testapp.tasks.Boom"]
    assert "raise Boom(message)" in finished["last_traceback"]


# -- errors and retries ---------------------------------------------------------------------


def test_a_failing_task_is_retried_with_the_backoff_of_its_options(workers, queue):
    workers.start("--concurrency", "1", "--worker-id", "r")

    result = wait_for_result(tasks.flaky.enqueue(2), timeout=20)

    assert result.status == SUCCESSFUL
    assert result.return_value == 3, "the third attempt (two retries) succeeded"
    assert result.worker_ids == ["r:0", "r:0", "r:0"]
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"] * 2
    assert result.errors[0].exception_class is ValueError
    assert "ValueError: attempt 1" in result.errors[0].traceback
    assert "ValueError: attempt 2" in result.errors[1].traceback
    job = queue.get_job(result.id)
    assert (job.max_retries, job.retry_backoff_base, job.retry_backoff_max) == (2, 0.3, 1)
    first, second = (e["failed_at"] for e in job.errors)
    # Retry n waits min(0.3 * 2**n, 1.0): 0.6 s, then 1.0 s (DJANGO_JOBS here says 0.1, 0.2).
    assert second - first >= 0.6
    assert job.scheduled_at.timestamp() == pytest.approx(second + 1.0, abs=1e-3)


def test_a_task_that_keeps_failing_ends_failed_with_one_error_per_attempt(
    workers, queue, redis_client
):
    workers.start("--concurrency", "1")

    result = wait_for_result(tasks.boom.enqueue("bang"))

    assert result.status == FAILED
    assert len(result.errors) == 2, "MAX_RETRIES 1 for this task in OPTIONS['TASKS']"
    assert result.errors[0].exception_class is tasks.Boom
    assert "tests.testapp.tasks.Boom: bang" in result.errors[1].traceback
    assert result.attempts == 2
    assert result.finished_at is not None
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value
    assert_census(queue, redis_client, {result.id: "dead"})


def test_a_backend_without_retries(workers, queue):
    workers.start("--concurrency", "1")

    result = wait_for_result(tasks.flaky.using(backend="once").enqueue(1))

    assert result.status == FAILED
    assert result.backend == "once"
    assert len(result.errors) == 1
    # Per-task options belong to the backend that names them; "once" has none for flaky.
    assert queue.get_job(result.id).max_retries == 0


def test_a_worker_runs_only_task_objects_named_by_a_marked_job(workers, queue):
    workers.start("--concurrency", "1")
    names = {
        "django.tasks:os.getcwd": "is a builtin_function_or_method, not a task",
        "django.tasks:tests.testapp.tasks.Boom": "is a type, not a task",
        "django.tasks:tests.no_such_module.f": "cannot be imported",
        "django.tasks:../etc": "no job named",
    }
    jobs = {name: queue.enqueue(name, max_retries=0) for name in names}

    for name, reason in names.items():
        job = queue.wait_for(jobs[name].id, timeout=10)
        assert job.status is JobStatus.FAILED
        assert reason in job.error


# -- refused where they are made ------------------------------------------------------------


def module_level(a):
    return a


def not_a_task_at_its_path():
    return 1


class Holder:
    @staticmethod
    def method():
        return 1


def test_invalid_tasks_are_refused_when_they_are_defined(settings):
    def nested():
        return 1

    with pytest.raises(compat.InvalidTask, match="module level"):
        task(nested)
    with pytest.raises(compat.InvalidTask, match="top-level function"):
        task(Holder.method)
    with pytest.raises(compat.InvalidTask, match=r"Queue 'reports' is not valid .*'default'"):
        task(queue_name="reports")(module_level)
    with pytest.raises(compat.InvalidTask, match="priority"):
        task(priority=101)(module_level)
    with pytest.raises(compat.InvalidTask, match=r"not one of DJANGO_JOBS\['QUEUES'\]"):
        task(backend="once", queue_name="nowhere")(module_level)
    with pytest.raises(compat.InvalidTask, match="aware"):
        tasks.add.using(run_after=timezone.now().replace(tzinfo=None))
    assert task(backend="once", queue_name="reports")(module_level).queue_name == "reports"


def test_invalid_enqueues_are_refused_before_anything_is_written(queue, redis_client):
    with pytest.raises(NotJSONSerializable, match=r"args\[1\] is a builtins.set"):
        tasks.add.enqueue(1, {2})
    with pytest.raises(NotJSONSerializable, match=r"kwargs\['b'\]\[0\]"):
        tasks.add.enqueue(a=1, b=[object()])
    # The worker finds a task by its module path: that name must be the task.
    with pytest.raises(compat.InvalidTask, match="not_a_task_at_its_path is function"):
        task(not_a_task_at_its_path).enqueue()
    assert list(redis_client.scan_iter(match=f"{queue.prefix}*")) == []


def test_bad_options_are_refused_when_the_backend_is_made(settings):
    base = {"BACKEND": "django_jobs.backends.RedisBackend"}
    settings.TASKS = {
        **settings.TASKS,
        "typo": {**base, "OPTIONS": {"MAX_RETRYS": 1}},
        "negative": {**base, "OPTIONS": {"MAX_RETRIES": -1}},
        "backoff": {**base, "OPTIONS": {"TASKS": {"a.b": {"RETRY_BACKOFF_BASE": 0}}}},
    }

    with pytest.raises(ImproperlyConfigured, match=r"unknown keys \['MAX_RETRYS'\]"):
        task_backends["typo"]
    with pytest.raises(ImproperlyConfigured, match="MAX_RETRIES'] must be an integer >= 0"):
        task_backends["negative"]
    with pytest.raises(ImproperlyConfigured, match=r"\['a.b'\]\['RETRY_BACKOFF_BASE'\]"):
        task_backends["backoff"]


def test_a_job_function_cannot_take_the_task_marker(settings):
    from django_jobs import job

    with pytest.raises(ValueError, match="marks tasks of Django's task API"):
        job(name="django.tasks:x.y")(module_level)


# -- the runner, in this process ------------------------------------------------------------


def test_run_job_resolves_a_marked_name_to_its_task_and_nothing_else(db):
    with asyncio.Runner() as loop:
        ran = run_job(Job(id="a", name="django.tasks:tests.testapp.tasks.add", args=[1, 2]), loop)
        refused = run_job(
            Job(id="b", name="django.tasks:tests.test_tasks_backend.module_level", args=[1]), loop
        )

    assert (ran.ok, ran.result) == (True, 3)
    assert not refused.ok
    assert "UnknownTask: 'tests.test_tasks_backend.module_level' is a function" in refused.error
