"""Django's task contract on ``RedisBackend``, to the letter: the behaviours Django's own
``tests/tasks`` expect of a backend (and the messages its base backend gives), checked against
Redis in this process, on Django 6 (``django.tasks``) and Django 5.2 (the django-tasks backport).

Where Django defines the refusal, ``RedisBackend`` must refuse the same way: each mistake is
made once on Django's own ``DummyBackend`` and once on ours, and the messages compared.
"""

import asyncio
import dataclasses
import pickle
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from django_jobs import JobStatus
from django_jobs.tasks import compat

if compat.TASKS_API is None:
    pytest.skip("Django's task API is not installed", allow_module_level=True)

from django_jobs.tasks.runs import LOST_WORKER
from django_jobs.worker.execute import run_job
from django_jobs.worker.leases import Leases
from tests.census import assert_census
from tests.testapp import jobs, tasks

try:
    from django.tasks import TaskResultStatus, task, task_backends
    from django.tasks.checks import check_tasks
    from django.tasks.exceptions import TaskResultMismatch
except ImportError:
    from django_tasks import TaskResultStatus, task, task_backends
    from django_tasks.checks import check_tasks
    from django_tasks.exceptions import TaskResultMismatch

READY, RUNNING = TaskResultStatus.READY, TaskResultStatus.RUNNING
SUCCESSFUL, FAILED = TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED
REDIS_BACKEND = "django_jobs.backends.RedisBackend"
# Django's own backend that keeps results in memory, from the installed task API.
DUMMY_BACKEND = f"{compat.TASKS_API}.backends.dummy.DummyBackend"
LOCAL = "America/New_York"  # far from UTC, so that a UTC time passed off as local shows


def no_context(a):
    return a


# Tasks this module runs in this process, as a worker would (run_job resolves them here).
@task
def noop():
    return None


@task
def exits():
    raise SystemExit("This task failed due to SystemExit")


@pytest.fixture
def dummy(jobs_settings):
    """A ``"dummy"`` backend of Django's own beside ours, with the same QUEUES as "default"."""
    jobs_settings.TASKS = {
        **jobs_settings.TASKS,
        "dummy": {"BACKEND": DUMMY_BACKEND, "QUEUES": ["default", "emails"]},
    }
    return task_backends["dummy"]


@pytest.fixture
def local_time(jobs_settings):
    """``USE_TZ = False`` with a ``TIME_ZONE`` hours away from UTC."""
    jobs_settings.USE_TZ = False
    jobs_settings.TIME_ZONE = LOCAL
    return ZoneInfo(LOCAL)


@pytest.fixture
def finished():
    """The ``TaskResult`` of each ``task_finished`` sent in this process."""
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append(task_result)

    compat.task_finished.connect(receiver)
    yield seen
    compat.task_finished.disconnect(receiver)


def run_here(queue, result):
    """Claim the job of ``result`` and run it in this process, as a worker's child does."""
    job = Leases(queue.prefix).dequeue(worker_id="w")
    assert job.id == result.id
    with asyncio.Runner() as loop:
        return job, run_job(job, loop)


def refusal(make):
    with pytest.raises(compat.InvalidTask) as info:
        make()
    return str(info.value)


def naive_local(value, zone):
    """``value`` (aware) as the naive local time Django gives with ``USE_TZ = False``."""
    return value.astimezone(zone).replace(tzinfo=None)


# -- refusals: Django's messages ------------------------------------------------------------


@pytest.mark.parametrize(
    ("mistake", "change"),
    [
        ("priority above the maximum", {"priority": 101}),
        ("priority below the minimum", {"priority": -101}),
        ("priority that is not whole", {"priority": 3.1}),
        ("naive run_after with USE_TZ", {"run_after": datetime.now()}),
        ("bad priority and bad queue: priority first", {"priority": 101, "queue_name": "x"}),
    ],
)
def test_a_bad_priority_or_run_after_is_refused_with_djangos_message(dummy, mistake, change):
    theirs = refusal(lambda: tasks.add.using(backend="dummy", **change))

    ours = refusal(lambda: tasks.add.using(**change))

    assert ours == theirs, mistake


@pytest.mark.parametrize(
    "define",
    [
        pytest.param(lambda backend: task(backend=backend)(any), id="builtin"),
        pytest.param(
            lambda backend: task(backend=backend)((lambda: lambda: 1)()), id="nested function"
        ),
        pytest.param(
            lambda backend: task(backend=backend, takes_context=True)(no_context),
            id="takes_context without a context argument",
        ),
    ],
)
def test_a_task_function_django_refuses_is_refused_with_djangos_message(dummy, define):
    assert refusal(lambda: define("default")) == refusal(lambda: define("dummy"))


def test_a_queue_the_backend_lacks_is_refused_with_djangos_message_then_the_valid_ones(dummy):
    theirs = refusal(lambda: tasks.add.using(backend="dummy", queue_name="reports"))
    assert theirs == "Queue 'reports' is not valid for backend."

    explicit = refusal(lambda: tasks.add.using(queue_name="reports"))
    from_settings = refusal(lambda: tasks.add.using(backend="once", queue_name="nowhere"))

    assert explicit == f"{theirs} TASKS['default']['QUEUES'] is ['default', 'emails']."
    assert from_settings == (
        "Queue 'nowhere' is not valid for backend. It is not one of DJANGO_JOBS['QUEUES'] "
        "['default', 'emails', 'reports']."
    )


def test_a_run_after_that_is_not_a_datetime_is_refused_by_name(jobs_settings):
    message = refusal(lambda: tasks.add.using(run_after=timedelta(minutes=5)))

    assert message.startswith("run_after must be a datetime")
    assert message.endswith("not timedelta.")


def test_enqueue_checks_the_task_again_against_the_settings_of_now(queue, configure, redis_client):
    reports = tasks.add.using(backend="once", queue_name="reports")
    configure(QUEUES=["default", "emails"])

    for enqueue in (reports.enqueue, lambda: asyncio.run(reports.aenqueue())):
        with pytest.raises(compat.InvalidTask, match=r"^Queue 'reports' is not valid for backend"):
            enqueue()
    assert list(redis_client.scan_iter(match=f"{queue.prefix}*")) == []


# -- check() and queues ---------------------------------------------------------------------


def test_backend_queues_are_the_queues_of_django_jobs_when_the_backend_names_none(configure):
    explicit, implicit = task_backends["default"], task_backends["once"]

    assert explicit.queues == {"default", "emails"}
    assert implicit.queues == {"default", "emails", "reports"}
    configure(QUEUES=["default", "bulk"])
    assert implicit.queues == {"default", "bulk"}, "the settings of now"
    assert explicit.queues == {"default", "emails"}


def test_an_empty_queues_list_means_the_queues_of_django_jobs(settings):
    settings.TASKS = {**settings.TASKS, "empty": {"BACKEND": REDIS_BACKEND, "QUEUES": []}}

    assert task_backends["empty"].queues == {"default", "emails", "reports"}


def test_queues_given_as_a_string_are_refused_when_the_backend_is_made(settings):
    settings.TASKS = {**settings.TASKS, "typo": {"BACKEND": REDIS_BACKEND, "QUEUES": "emails"}}

    with pytest.raises(ImproperlyConfigured, match=r"\['QUEUES'\] must be a list .* not str"):
        task_backends["typo"]


def test_check_is_quiet_for_a_good_configuration(settings):
    assert task_backends["default"].check() == []
    assert task_backends["once"].check() == []


def test_check_reports_backend_queues_that_django_jobs_lacks(settings):
    settings.TASKS = {
        **settings.TASKS,
        "extra": {"BACKEND": REDIS_BACKEND, "QUEUES": ["default", "nowhere", "elsewhere"]},
    }

    (error,) = task_backends["extra"].check()
    reported = [m for m in check_tasks() if m.id and m.id.startswith("django_jobs.tasks")]

    assert error.id == "django_jobs.tasks.E002"
    assert error.level == checks.ERROR
    assert "TASKS['extra']['QUEUES']" in error.msg
    assert "'elsewhere', 'nowhere'" in error.msg
    assert "DJANGO_JOBS['QUEUES']" in error.hint
    assert reported == [error]
    assert check_tasks in checks.registry.registry.get_checks(), "manage.py check runs it"


def test_check_compares_backend_queues_only_with_a_list_of_queues(settings):
    settings.TASKS = {**settings.TASKS, "extra": {"BACKEND": REDIS_BACKEND, "QUEUES": ["x"]}}

    for broken in ("redis://127.0.0.1:6379/0", {**settings.DJANGO_JOBS, "QUEUES": "default"}):
        settings.DJANGO_JOBS = broken
        assert task_backends["extra"].check() == [], "the settings checks name the mistake"


def test_check_reports_django_jobs_missing_from_installed_apps(settings):
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "django_jobs"]

    messages = task_backends["default"].check()

    assert [m.id for m in messages] == ["django_jobs.tasks.E001"]
    assert "django_jobs is not in INSTALLED_APPS" in messages[0].msg
    assert messages[0].hint == "Add 'django_jobs' to INSTALLED_APPS."


# -- results: the same result from enqueue, get_result and refresh ---------------------------


@pytest.mark.parametrize(
    "using",
    [
        {},
        {"priority": 60},
        {"queue_name": "emails"},
        {"backend": "once", "queue_name": "reports"},
        {"run_after": "past"},
        {"run_after": "future"},
    ],
)
def test_a_result_is_the_same_from_enqueue_get_result_and_refresh(queue, using):
    when = {"past": timezone.now() - timedelta(minutes=1)}
    when["future"] = timezone.now() + timedelta(hours=1)
    if "run_after" in using:
        using = {"run_after": when[using["run_after"]]}
    defined = tasks.add.using(**using)

    result = defined.enqueue(2, b=3)
    fetched = defined.get_result(result.id)
    before = dataclasses.asdict(result)
    result.refresh()

    assert result.task == defined
    assert fetched == result
    assert dataclasses.asdict(result) == before
    assert (result.args, result.kwargs) == ([2], {"b": 3})


def test_an_async_result_is_the_same_from_aenqueue_aget_result_and_arefresh(queue):
    async def scenario():
        result = await tasks.async_add.aenqueue(1, 2)
        fetched = await tasks.async_add.aget_result(result.id)
        before = dataclasses.asdict(result)
        await result.arefresh()
        return result, fetched, before

    result, fetched, before = asyncio.run(scenario())

    assert result.task == tasks.async_add
    assert fetched == result
    assert dataclasses.asdict(result) == before


@pytest.mark.skipif(
    "__reduce__" not in vars(compat.Task), reason="tasks pickle from Django 6 on (Task.__reduce__)"
)
def test_a_result_pickles(queue):
    result = tasks.add.using(priority=7).enqueue(1, 2)

    assert pickle.loads(pickle.dumps(result)) == result


# -- get_result: only results of this backend's tasks ---------------------------------------


def test_get_result_of_a_job_that_is_not_a_task_of_the_backend_does_not_exist(queue):
    plain = queue.enqueue(jobs.add.name, [1, 2])
    # Named like a task, but not enqueued through a task backend.
    unmarked = queue.enqueue("django.tasks:tests.testapp.tasks.add", [1, 2])
    other = tasks.add.using(backend="once").enqueue(1, 2)
    backend = task_backends["default"]

    for result_id in [plain.id, unmarked.id, other.id, "a b", "é", "x" * 65]:
        with pytest.raises(compat.TaskResultDoesNotExist):
            backend.get_result(result_id)
        with pytest.raises(compat.TaskResultDoesNotExist):
            asyncio.run(backend.aget_result(result_id))
    assert task_backends["once"].get_result(other.id).backend == "once"
    assert tasks.add.using(backend="once").get_result(other.id) == other


def test_get_result_of_another_tasks_result_is_a_mismatch(queue):
    result = tasks.record.enqueue("x")

    with pytest.raises(TaskResultMismatch):
        tasks.add.get_result(result.id)


# -- USE_TZ = False: naive local times, as Django's backends give -------------------------------


def test_without_use_tz_a_naive_run_after_is_kept_and_means_local_time(queue, local_time):
    run_after = timezone.now() + timedelta(hours=1)
    assert timezone.is_naive(run_after)
    delayed = tasks.add.using(run_after=run_after)

    result = delayed.enqueue(1, 2)

    assert result.task == delayed
    assert tasks.add.get_result(result.id).task == delayed
    assert tasks.add.get_result(result.id) == result
    due = queue.get_job(result.id).scheduled_at
    assert due.timestamp() == pytest.approx(run_after.replace(tzinfo=local_time).timestamp())
    assert timezone.is_naive(result.enqueued_at)
    now = naive_local(datetime.now(UTC), local_time)
    assert now - timedelta(minutes=1) < result.enqueued_at <= now


def test_without_use_tz_every_time_of_a_result_is_naive_local_time(queue, local_time, finished, db):
    result = tasks.add.enqueue(1, 2)
    job, outcome = run_here(queue, result)
    running = tasks.add.get_result(result.id)
    Leases(queue.prefix).complete_job(job, outcome.result)
    done = tasks.add.get_result(result.id)

    assert running.status == RUNNING
    assert running.started_at == naive_local(job.started_at, local_time)
    assert running.last_attempted_at == running.started_at
    (in_worker,) = finished
    assert done.status == SUCCESSFUL
    assert done.finished_at == naive_local(queue.get_job(result.id).finished_at, local_time)
    for each in (running, in_worker, done):
        times = [each.enqueued_at, each.started_at, each.last_attempted_at, each.finished_at]
        assert all(timezone.is_naive(t) for t in times if t is not None)
        assert each.enqueued_at == result.enqueued_at
    assert in_worker.started_at == running.started_at
    assert running.started_at <= in_worker.finished_at <= naive_local(datetime.now(UTC), local_time)


# -- a run in a worker: results and logs as Django's backends give -----------------------------


def test_enqueue_is_logged_as_djangos_backends_log_it(queue, caplog):
    with caplog.at_level("DEBUG", logger=compat.TASKS_API):
        result = noop.enqueue()

    (record,) = [r for r in caplog.records if r.name == compat.TASKS_API]
    assert "enqueued" in record.getMessage()
    assert result.id in record.getMessage()


def test_a_run_is_logged_as_djangos_backends_log_it(queue, finished, caplog, db):
    ok, failing = noop.enqueue(), exits.enqueue()

    with caplog.at_level("DEBUG", logger=compat.TASKS_API):
        run_here(queue, ok)
        run_here(queue, failing)

    logged = [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records]
    assert [(level, info is not None) for level, _, info in logged] == [
        ("INFO", False),
        ("INFO", False),
        ("INFO", False),
        ("ERROR", True),
    ]
    assert [m.rsplit(" ", 1)[-1] for _, m, _ in logged] == [
        "state=RUNNING",
        "state=SUCCESSFUL",
        "state=RUNNING",
        "state=FAILED",
    ]
    assert all(ok.id in m for _, m, _ in logged[:2])
    assert all(failing.id in m for _, m, _ in logged[2:])
    assert not any("NoneType" in m for _, m, _ in logged)


def test_a_task_that_exits_fails_with_systemexit_as_its_error(queue, finished, db):
    result = exits.enqueue()

    _, outcome = run_here(queue, result)

    assert not outcome.ok
    (run,) = finished
    assert run.status == FAILED
    assert run.is_finished
    with pytest.raises(ValueError, match="Task failed"):
        _ = run.return_value
    assert run.errors[0].exception_class is SystemExit
    assert run.errors[0].traceback.endswith("SystemExit: This task failed due to SystemExit\n")
    assert run.enqueued_at <= run.started_at <= run.finished_at


def test_a_return_value_that_is_not_json_fails_with_a_type_error(queue, finished, db):
    result = tasks.returns_set.enqueue()

    run_here(queue, result)

    (run,) = finished
    assert run.status == FAILED
    assert issubclass(run.errors[0].exception_class, TypeError)


# -- requeue: a fresh run -------------------------------------------------------------------


def test_a_requeued_task_starts_afresh_and_keeps_the_history_of_its_attempts(queue, redis_client):
    result = tasks.boom.using(backend="once").enqueue("bang")
    leases = Leases(queue.prefix)
    first = leases.dequeue(worker_id="w1")
    with pytest.raises(TimeoutError):
        queue.wait_for(result.id, timeout=0.05)  # a waiter: the failure is pushed to it
    assert leases.fail_job(first, "tests.testapp.tasks.Boom: bang") is JobStatus.FAILED
    assert redis_client.exists(queue.keys.done(result.id))

    assert queue.requeue_dead([result.id]) == [result.id]

    job = queue.get_job(result.id)
    assert job.status is JobStatus.PENDING
    assert (job.started_at, job.finished_at, job.worker_id) == (None, None, None)
    assert (job.error, job.traceback, job.lease_token) == (None, None, None)
    assert [e["worker_id"] for e in job.errors] == ["w1"], "the history of attempts is kept"
    assert not redis_client.exists(queue.keys.done(result.id)), "no stale outcome for waiters"
    assert not redis_client.hexists(queue.keys.job(result.id), "watched")
    result.refresh()
    assert result.status == READY
    assert (result.started_at, result.last_attempted_at, result.finished_at) == (None,) * 3
    assert result.worker_ids == ["w1"]
    assert [e.exception_class_path for e in result.errors] == ["tests.testapp.tasks.Boom"]

    second = leases.dequeue(worker_id="w2")
    result.refresh()
    assert result.status == RUNNING
    assert result.started_at == second.started_at > first.started_at
    assert result.worker_ids == ["w1", "w2"]
    assert leases.complete_job(second, "fine")
    assert queue.wait_for(result.id, timeout=5).status is JobStatus.COMPLETED
    result.refresh()
    assert (result.status, result.return_value, result.attempts) == (SUCCESSFUL, "fine", 2)
    assert LOST_WORKER not in result.worker_ids
    assert_census(queue, redis_client, {result.id: "completed"})
