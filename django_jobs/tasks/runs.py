"""One run of a task of Django's task API in a worker, and its ``TaskResult``.

Importing this module never fails without the task API; :func:`resolve_task` says what is
missing when a job of a Django task reaches a worker that cannot run it.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import sys
import types
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from django_jobs import exceptions as jobs_exceptions
from django_jobs.job import Job, JobStatus
from django_jobs.registry import DOTTED_PATH, registry
from django_jobs.tasks import compat

logger = logging.getLogger("django_jobs.tasks")


# In TaskResult.worker_ids, an attempt whose worker was lost (its lease expired) and that left
# no record of which worker it was.
LOST_WORKER = "(lost)"


def task_status(status: JobStatus) -> Any:
    """The ``TaskResultStatus`` of a job's status: PENDING, RETRYING and WAITING (a step of a
    chain waiting for the steps before it) are READY, RUNNING is
    RUNNING, COMPLETED is SUCCESSFUL, FAILED and CANCELLED are FAILED."""
    ready, done = compat.TaskResultStatus.READY, compat.TaskResultStatus.SUCCESSFUL
    return {
        JobStatus.PENDING: ready,
        JobStatus.RETRYING: ready,
        JobStatus.WAITING: ready,
        JobStatus.RUNNING: compat.TaskResultStatus.RUNNING,
        JobStatus.COMPLETED: done,
    }.get(status, compat.TaskResultStatus.FAILED)


def resolve_task(path: str) -> Any:
    """The task of Django's task API at ``path`` (a module path, then an attribute), if a
    django-jobs backend recorded it when it was defined (:meth:`JobRegistry.register_task`).

    Nothing is imported: the task must be defined in a module this process imported already
    (a worker imports each installed app's ``tasks`` module at start-up), and still be at its
    path. Raises ``LookupError`` saying why there is no such task, and nothing else named by
    queue data is ever called.
    """
    try:
        compat.require()
    except ImproperlyConfigured as exc:
        raise LookupError(f"UnknownTask: {exc}") from None
    module_name, _, attribute = path.rpartition(".")
    module = sys.modules.get(module_name)
    # The module's own dict, not getattr: a module __getattr__ (PEP 562) could import or run
    # code for a name that queue data chose.
    found = vars(module).get(attribute) if isinstance(module, types.ModuleType) else None
    func = registry.task_function(path)
    if func is not None and isinstance(found, compat.Task) and found.func is func:
        return found
    if module is None:
        raise LookupError(
            f"UnknownTask: no task {path!r} is registered in this process: its module "
            f"{module_name!r} was not imported at start-up, and a module named by a job "
            "cannot be imported (define tasks in an installed app's tasks module)."
        )
    if isinstance(found, compat.Task):
        raise LookupError(
            f"UnknownTask: {path!r} is a task, but not one defined on a django-jobs backend, "
            "so it is not run."
        )
    raise LookupError(
        f"UnknownTask: {path!r} is a {type(found).__qualname__}, not a task of Django's "
        "task API, so it is not run."
    )


def local_time(value: datetime | None) -> datetime | None:
    """A stored time as Django's own backends give it, like ``timezone.now()``: aware with
    ``USE_TZ``, otherwise naive local time (``TIME_ZONE``)."""
    if value is None or settings.USE_TZ or timezone.is_naive(value):
        return value
    return timezone.make_naive(value, timezone.get_default_timezone())


def stored_run_after(value: Any) -> datetime | None:
    """The task's ``run_after`` as it was given (``meta["run_after"]``, ISO 8601); a naive one
    is made aware (local time) only if ``USE_TZ`` is on now, where Django requires that."""
    if not isinstance(value, str):
        return None
    run_after = datetime.fromisoformat(value)
    if settings.USE_TZ and timezone.is_naive(run_after):
        run_after = timezone.make_aware(run_after, timezone.get_default_timezone())
    return run_after


def task_result(task: Any, job: Job, alias: str) -> Any:
    """The ``TaskResult`` of ``job``, a run of ``task``, as the installed task API defines it."""
    meta = job.meta
    # If the settings changed since it was enqueued, this is the task as it is defined now.
    with contextlib.suppress(compat.InvalidTask, ImproperlyConfigured, TypeError, ValueError):
        task = task.using(
            priority=meta.get("priority"),
            queue_name=job.queue,
            run_after=stored_run_after(meta.get("run_after")),
            backend=meta.get("backend"),
        )
    errors = [
        compat.TaskError(
            exception_class_path=exception_path(str(entry.get("error") or "")),
            traceback=str(entry.get("traceback") or entry.get("error") or ""),
        )
        for entry in job.errors
        if isinstance(entry, dict)
    ]
    if job.status is JobStatus.CANCELLED:
        errors.append(
            compat.TaskError(
                exception_class_path="django_jobs.exceptions.JobCancelled",
                traceback=f"Job {job.id} ({job.name}) was cancelled.",
            )
        )
    return compat.make_task_result(
        task=task,
        id=job.id,
        status=task_status(job.status),
        enqueued_at=local_time(job.created_at),
        started_at=local_time(job.started_at),
        last_attempted_at=local_time(job.started_at),
        finished_at=local_time(job.finished_at) if job.status.is_finished else None,
        args=job.args,
        kwargs=job.kwargs,
        backend=meta.get("backend") or alias,
        errors=errors,
        worker_ids=worker_ids(job),
        _return_value=job.result if job.status is JobStatus.COMPLETED else None,
    )


def worker_ids(job: Job) -> list[str]:
    """One worker id per attempt made (``TaskResult.attempts`` counts them): those of the failed
    attempts, ``LOST_WORKER`` for attempts whose worker was lost, and the running or last one."""
    ids = [str(e.get("worker_id") or "") for e in job.errors if isinstance(e, dict)]
    ids += [LOST_WORKER] * max(job.attempt - 1 - len(ids), 0)
    if job.status in (JobStatus.RUNNING, JobStatus.COMPLETED):
        ids.append(job.worker_id or "")
    return ids


def exception_path(error: str) -> str:
    """The exception class path of a recorded error ``"Type: message"``, without importing.

    Task runs record the full path of their exception (``myapp.errors.Oops``) and builtins by
    name (``ValueError``). Failures that django-jobs itself reports (a timeout, a crashed or
    lost worker) are given as ``django_jobs.exceptions.JobsError``; the traceback says which.
    """
    name = error.split(":", 1)[0].strip()
    if DOTTED_PATH.fullmatch(name):
        return name
    for module in (builtins, jobs_exceptions):
        found = getattr(module, name, None) if name.isidentifier() else None
        if isinstance(found, type) and issubclass(found, BaseException):
            return f"{found.__module__}.{name}"
    return "django_jobs.exceptions.JobsError"


class TaskRun:
    """One attempt of a Django task in a worker process: what
    :func:`~django_jobs.worker.execute.run_job` calls, and the ``TaskResult`` that its context
    and the ``task_started`` and ``task_finished`` signals see."""

    def __init__(self, task: Any, job: Job) -> None:
        self.task = task
        self.result = task_result(task, job, task.backend)
        try:
            self.sender: Any = type(compat.task_backends[self.result.backend])
        except ImproperlyConfigured:
            self.sender = type(task.get_backend())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.task.takes_context:
            context = compat.TaskContext(task_result=self.result)
            return self.task.func(context, *args, **kwargs)
        return self.task.func(*args, **kwargs)

    def started(self) -> None:
        compat.task_started.send(sender=self.sender, task_result=self.result)

    @staticmethod
    def describe(exc: BaseException) -> str:
        """The exception's class as errors record it: its full path, builtins by name."""
        cls = type(exc)
        if cls.__module__ == "builtins":
            return cls.__qualname__
        return f"{cls.__module__}.{cls.__qualname__}"

    @staticmethod
    def normalize(value: Any) -> Any:
        """The return value made JSON as Django's backends do (tuples become lists)."""
        try:
            return compat.normalize_json(value)
        except (TypeError, ValueError):
            return value  # the runner's JSON check names the problem

    def finished(self, outcome: Any) -> None:
        """Send ``task_finished`` for the runner's ``outcome`` (``ok``, ``result``, ``error``,
        ``traceback``); for a failure, call it while the exception is being handled, so that
        receivers (Django's own logger among them) see it."""
        compat.set_field(self.result, "finished_at", timezone.now())
        if outcome.ok:
            compat.set_field(self.result, "status", compat.TaskResultStatus.SUCCESSFUL)
            compat.set_field(self.result, "_return_value", outcome.result)
        else:
            compat.set_field(self.result, "status", compat.TaskResultStatus.FAILED)
            self.result.errors.append(
                compat.TaskError(
                    exception_class_path=exception_path(outcome.error),
                    traceback=outcome.traceback or outcome.error,
                )
            )
        try:
            compat.task_finished.send(sender=self.sender, task_result=self.result)
        except Exception:
            # The attempt's outcome stands: a failing receiver must not make it run again.
            logger.exception("A task_finished receiver failed for task %s", self.result.id)
