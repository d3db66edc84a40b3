"""Which enqueued jobs fit what a test expects, and the messages of ``assert_enqueued`` and
``assert_not_enqueued``: what was expected, and what was enqueued instead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from django_jobs import rules, validation
from django_jobs.catalog import DJANGO_TASK_PREFIX
from django_jobs.job import Job, JobPriority

# Times are stored as epoch seconds with 6 decimals: a delay matches within this.
TOLERANCE = 0.001


def job_name(job: Any) -> str:
    """The name jobs of ``job`` are stored under: of a ``@job`` function, a task of Django's
    task API, or a name as a string."""
    if isinstance(job, str) and job:
        return job
    name = getattr(job, "name", None)
    if isinstance(name, str) and hasattr(job, "delay"):  # a JobFunction
        return name
    path = getattr(job, "module_path", None)
    if isinstance(path, str):  # a django.tasks Task
        return DJANGO_TASK_PREFIX + path
    raise TypeError(
        f"Expected a @job function, a task of Django's task API or a job name, not {job!r}."
    )


def _fits(
    job: Job,
    *,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    queue: str | None,
    priority: JobPriority | None,
    delay: float | None,
    at: datetime | None,
    user_id: str | int | None,
) -> bool:
    if args is not None and job.args != list(args):
        return False
    if kwargs is not None and job.kwargs != dict(kwargs):
        return False
    if queue is not None and job.queue != queue:
        return False
    if priority is not None and job.priority is not priority:
        return False
    if user_id is not None and job.user_id != user_id:
        return False
    due = job.scheduled_at
    if delay is not None:
        waits = 0.0 if due is None or job.created_at is None else (due - job.created_at)
        waits = waits.total_seconds() if isinstance(waits, timedelta) else waits
        if abs(waits - delay) > TOLERANCE:
            return False
    return at is None or (due is not None and abs((due - at).total_seconds()) <= TOLERANCE)


def matching(
    jobs: list[Job],
    job: Any = None,
    *,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: JobPriority | int | str | None = None,
    delay: float | timedelta | None = None,
    at: datetime | None = None,
    user_id: str | int | None = None,
) -> list[Job]:
    """The ``jobs`` that fit: of ``job`` (a ``@job`` function, a Django task or a name; any
    job if ``None``), and of each filter given. ``args`` and ``kwargs`` are compared as JSON
    gives them back (lists, dicts); ``delay`` (seconds or a ``timedelta``; 0 for none) is the
    time from the enqueue to the due time, ``at`` the due time (an aware datetime)."""
    name = None if job is None else job_name(job)
    if isinstance(args, (str, bytes)) or (args is not None and not isinstance(args, Sequence)):
        raise TypeError(f"args must be a list of the job's arguments, not {args!r}.")
    wanted_priority = None if priority is None else JobPriority.parse(priority)
    wanted_delay = None
    if delay is not None:
        wanted_delay = rules.seconds(delay, "delay")
    if at is not None and (not isinstance(at, datetime) or at.utcoffset() is None):
        raise ValueError(f"at must be an aware datetime, not {at!r}.")
    if queue is not None:
        validation.queue_name(queue)
    return [
        found
        for found in jobs
        if (name is None or found.name == name)
        and _fits(
            found,
            args=args,
            kwargs=kwargs,
            queue=queue,
            priority=wanted_priority,
            delay=wanted_delay,
            at=at,
            user_id=user_id,
        )
    ]


def assert_enqueued(
    jobs: list[Job], job: Any = None, *, count: int | None = None, **filters: Any
) -> list[Job]:
    """Raise ``AssertionError`` unless a job that fits (see :func:`matching`) is among
    ``jobs``, or exactly ``count`` of them if given; return the jobs that fit."""
    found = matching(jobs, job, **filters)
    if count is not None:
        rules.integer(count, "count")
    if (count is None and found) or (count is not None and len(found) == count):
        return found
    wanted = "a job" if count is None else f"{count} job{'' if count == 1 else 's'}"
    raise AssertionError(
        f"Expected {wanted} {_described(job, filters)} to have been enqueued; "
        f"{len(found)} enqueued.\n{_report(jobs, job)}"
    )


def assert_not_enqueued(jobs: list[Job], job: Any = None, **filters: Any) -> None:
    """Raise ``AssertionError`` if a job that fits (see :func:`matching`) is among ``jobs``."""
    found = matching(jobs, job, **filters)
    if found:
        lines = "\n".join(f"  {_line(each)}" for each in found)
        raise AssertionError(
            f"Expected no job {_described(job, filters)} to have been enqueued; "
            f"{len(found)} enqueued:\n{lines}"
        )


def _described(job: Any, filters: dict[str, Any]) -> str:
    name = "of any name" if job is None else job_name(job)
    given = ", ".join(f"{key}={value!r}" for key, value in filters.items() if value is not None)
    return f"{name}({given})" if given else name


def _line(job: Job) -> str:
    due = "" if job.scheduled_at is None else f" due {job.scheduled_at.isoformat()}"
    return (
        f"{job.name} args={job.args!r} kwargs={job.kwargs!r} queue={job.queue!r} "
        f"priority={job.priority.name.lower()}{due}"
    )


def _report(jobs: list[Job], job: Any) -> str:
    """What was enqueued (of that name, when there are some), and what waits for a commit."""
    name = None if job is None else job_name(job)
    same = [each for each in jobs if name is None or each.name == name]
    if same:
        shown = "Enqueued" if name is None else f"Enqueued as {name}"
        lines = [f"{shown} ({len(same)}):", *(f"  {_line(each)}" for each in same)]
    elif jobs:
        lines = [f"None as {name}; enqueued ({len(jobs)}):", *(f"  {_line(j)}" for j in jobs)]
    else:
        lines = ["Nothing was enqueued."]
    waiting = _in_outbox(name)
    if waiting:
        lines.append(
            f"{waiting} job{'s wait' if waiting > 1 else ' waits'} in the outbox for the commit "
            "of the transaction that made it (.delay() inside transaction.atomic()): in a "
            "TestCase, run the code under `with self.captureOnCommitCallbacks(execute=True):`."
        )
    return "\n".join(lines)


def _in_outbox(name: str | None) -> int:
    """How many jobs (named ``name``) wait in the outbox table; 0 when it cannot be read (a
    test without database access, tables not made)."""
    try:
        from django_jobs.models import OutboxJob

        with transaction.atomic():  # a savepoint: a failed read leaves the test's transaction be
            rows = list(OutboxJob.objects.values_list("record", flat=True))
        return sum(1 for row in rows if name is None or Job.from_json(row).name == name)
    except Exception:
        return 0
