"""Arguments are checked against the job's parameters where a call is made (``.delay()``,
``.using().delay()``, ``JobQueue.enqueue``, the admin's form, ``SCHEDULES``), before anything
is written; a worker dead-letters a stored call that no longer fits, without retries."""

import asyncio
import inspect
import re

import pytest
from django.core.checks import run_checks
from django.db import transaction
from django.urls import reverse

from django_jobs import JobStatus, job, registry
from django_jobs.job import Job, new_id
from django_jobs.models import ScheduledTask as TaskRow
from django_jobs.serialization import utcnow
from tests.census import assert_census
from tests.test_scheduler_admin import ADD as ADD_URL
from tests.test_scheduler_admin import form_data
from tests.testapp import jobs

ADD = "Job tests.testapp.jobs.add(a, b)"


@pytest.fixture
def scratch_registry():
    """Forget the jobs a test registers."""
    before = set(registry.names())
    yield registry
    for name in set(registry.names()) - before:
        registry.unregister(name)


def keys(redis_client, prefix):
    return list(redis_client.scan_iter(match=f"{prefix}*"))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1,), {}, f"{ADD}: missing a required argument: 'b'."),
        ((1, 2), {"c": 3}, f"{ADD}: got an unexpected keyword argument 'c'."),
        ((1, 2, 3), {}, f"{ADD}: too many positional arguments."),
        ((1,), {"a": 2}, f"{ADD}: multiple values for argument 'a'."),
    ],
)
def test_delay_refuses_arguments_that_do_not_fit_naming_the_job_and_parameter(
    queue, redis_client, prefix, args, kwargs, message
):
    with pytest.raises(TypeError) as refused:
        jobs.add.delay(*args, **kwargs)

    assert str(refused.value) == message
    assert keys(redis_client, prefix) == [], "nothing was written"


def _defaults(a, b=2, /, c=3): ...
def _rest(a, *more): ...
def _keyword_only(a, *, flag): ...
def _keyword_default(a, *, flag=False): ...


@pytest.mark.parametrize(
    ("function", "args", "refused"),
    [
        (_defaults, (1,), False),
        (_defaults, (1, 2, 3), False),
        (_defaults, (), True),
        (_defaults, (1, 2, 3, 4), True),
        (_rest, (1, 2, 3, 4, 5), False),
        (_rest, (), True),
        (_keyword_only, (1,), True),
        (_keyword_default, (1,), False),
        (_keyword_default, (1, 2), True),
    ],
)
def test_positional_arguments_are_checked_as_binding_them_would(
    queue, redis_client, prefix, scratch_registry, function, args, refused
):
    # Positional arguments alone are counted, not bound: the verdict and the message are the
    # ones binding gives, on this Python (3.12 names a missing keyword-only argument so).
    registered = job(name=f"sig.{function.__name__}")(function)
    if not refused:
        assert redis_client.exists(queue.keys.job(registered.delay(*args).id))
        return
    with pytest.raises(TypeError) as binding:
        inspect.signature(function).bind(*args)
    with pytest.raises(TypeError, match=re.escape(str(binding.value))):
        registered.delay(*args)
    assert keys(redis_client, prefix) == []


def test_using_delay_and_adelay_refuse_them_too(queue, redis_client, prefix):
    message = "Job tests.testapp.jobs.sleep(seconds, label=None): missing a required argument: "
    with pytest.raises(TypeError) as refused:
        jobs.sleep.using(priority="high", queue="emails").delay(label="x")
    assert str(refused.value) == message + "'seconds'."

    with pytest.raises(TypeError) as refused:
        asyncio.run(jobs.add.using(priority="low").adelay(b=2))
    assert str(refused.value) == f"{ADD}: missing a required argument: 'a'."
    assert keys(redis_client, prefix) == []


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_call_is_refused_at_once_not_at_commit(
    queue, redis_client, prefix
):
    with transaction.atomic():
        with pytest.raises(TypeError, match="missing a required argument: 'b'"):
            jobs.add.delay(1)
        handle = jobs.add.delay(1, 2)

    assert_census(queue, redis_client, {handle.id: "queue:default:normal"})


def test_enqueue_of_a_registered_name_checks_its_arguments(queue, redis_client, prefix):
    with pytest.raises(TypeError) as refused:
        queue.enqueue("tests.testapp.jobs.add", [1, 2], {"c": 3})
    assert str(refused.value) == f"{ADD}: got an unexpected keyword argument 'c'."

    with pytest.raises(TypeError) as refused:
        asyncio.run(queue.aenqueue("tests.record", []))
    assert str(refused.value) == "Job tests.record(label): missing a required argument: 'label'."
    with pytest.raises(TypeError, match="too many positional arguments"):
        queue.build_job("tests.testapp.jobs.add", [1, 2, 3])
    assert keys(redis_client, prefix) == []


def test_a_name_not_registered_here_is_enqueued_with_any_arguments(queue, redis_client):
    """Another code base's workers may run it; they check it when they run it."""
    job = queue.enqueue("billing.jobs.charge", [1, 2, 3], {"x": 4})

    assert queue.get_job(job.id).args == [1, 2, 3]


def test_annotations_and_keyword_only_parameters(queue, scratch_registry):
    @job(name="tests.typed")
    def typed(order_id: int, *, amount: float = 0.0, **options: str) -> str:
        return ""

    with pytest.raises(TypeError) as refused:
        typed.delay()
    assert str(refused.value) == (
        "Job tests.typed(order_id, *, amount=0.0, **options): "
        "missing a required argument: 'order_id'."
    )
    assert queue.get_job(typed.delay(1, amount=2.5, note="x").id).kwargs == {
        "amount": 2.5,
        "note": "x",
    }


# -- the admin and SCHEDULES -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_form_refuses_arguments_that_do_not_fit_the_job(admin_client, jobs_settings):
    response = admin_client.post(reverse(ADD_URL), form_data(args="[]", kwargs='{"x": 1}'))

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.non_field_errors() == [
        "Job tests.record(label): missing a required argument: 'label'."
    ]
    assert not TaskRow.objects.exists()
    response = admin_client.post(reverse(ADD_URL), form_data(args='["a"]'))
    assert response.status_code == 302
    assert TaskRow.objects.get().args == ["a"]


@pytest.mark.django_db
def test_a_schedules_entry_whose_arguments_do_not_fit_fails_the_system_check(settings):
    settings.DJANGO_JOBS = {
        **settings.DJANGO_JOBS,
        "SCHEDULES": {
            "good": {"job": "tests.record", "interval": 60, "args": ["x"]},
            "bad": {"job": "tests.record", "interval": 60, "kwargs": {"name": "x"}},
        },
    }

    messages = [m for m in run_checks() if m.id == "django_jobs.E011"]

    assert [m.msg for m in messages] == [
        "DJANGO_JOBS['SCHEDULES']['bad']: Job tests.record(label): missing a required argument: "
        "'label'."
    ]
    assert "'args' and 'kwargs' are the job's arguments" in messages[0].hint


# -- the worker ------------------------------------------------------------------------------------


def stored_before_a_deploy(queue, name, args, kwargs=None, **fields):
    """A job as an older release stored it, when the function took other parameters."""
    job = Job(
        id=new_id(),
        name=name,
        args=args,
        kwargs=kwargs or {},
        created_at=utcnow(),
        max_retries=3,
        **fields,
    )
    queue.enqueue_many([job])
    return job.id


def test_a_worker_dead_letters_a_call_that_no_longer_fits_without_retrying(
    workers, queue, redis_client
):
    stale = stored_before_a_deploy(queue, "tests.testapp.jobs.add", [1, 2, 3])
    task = stored_before_a_deploy(
        queue, "django.tasks:tests.testapp.tasks.with_context", [], meta={"backend": "default"}
    )
    fits = stored_before_a_deploy(
        queue, "django.tasks:tests.testapp.tasks.with_context", ["ok"], meta={"backend": "default"}
    )

    proc = workers.start("--concurrency", "1", "--burst")

    assert proc.wait(timeout=30) == 0, workers.logs()
    failed = queue.get_job(stale)
    assert (failed.status, failed.retry_count) == (JobStatus.FAILED, 0)
    assert [e["error"] for e in failed.errors] == [
        f"TypeError: {ADD}: too many positional arguments. The job was enqueued with arguments "
        "its code does not take now; it is not retried."
    ]
    failed_task = queue.get_job(task)
    assert (failed_task.status, len(failed_task.errors)) == (JobStatus.FAILED, 1)
    assert failed_task.errors[0]["error"].startswith(
        "TypeError: Job tests.testapp.tasks.with_context(label): missing a required argument: "
        "'label'."
    ), "a Django task's context parameter is filled by the worker, not by the arguments"
    assert queue.get_job(fits).status is JobStatus.COMPLETED
    assert_census(queue, redis_client, {stale: "dead", task: "dead", fits: "completed"})
