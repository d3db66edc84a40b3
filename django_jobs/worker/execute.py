"""Running one job in a worker child: look it up among the registered jobs (or Django's tasks),
call it, and describe what came of it. Nothing named by queue data is run otherwise."""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections

from django_jobs import validation
from django_jobs.exceptions import NotJSONSerializable
from django_jobs.job import Job, JobStatus
from django_jobs.registry import django_task_path, registry
from django_jobs.serialization import check_json

logger = logging.getLogger("django_jobs.worker")


@dataclass
class Outcome:
    """What one attempt of a job came to, as the child saw it."""

    ok: bool
    result: Any = None
    error: str = ""
    traceback: str = ""
    retry: bool = True


def failure(error: str, tb: str = "", *, retry: bool = True) -> Outcome:
    return Outcome(False, error=error, traceback=tb, retry=retry)


def unregistered(name: str) -> Outcome:
    return failure(f"UnregisteredJob: no job named {name!r} is registered in this worker.")


def unbound(problem: TypeError) -> Outcome:
    """The arguments do not fit the function's parameters, e.g. a deploy changed them after the
    job was enqueued. Each retry would fail the same way: straight to the dead-letter queue."""
    return failure(
        f"TypeError: {problem} The job was enqueued with arguments its code does not take "
        "now; it is not retried.",
        retry=False,
    )


class _Plain:
    """What :func:`run_job` does around a registered job: nothing (a Django task's hooks are
    :class:`django_jobs.tasks.backend.TaskRun`)."""

    @staticmethod
    def started() -> None:
        pass

    @staticmethod
    def describe(exc: BaseException) -> str:
        return type(exc).__qualname__

    @staticmethod
    def normalize(value: Any) -> Any:
        return value

    @staticmethod
    def finished(outcome: Outcome) -> None:
        pass


def run_job(job: Job, loop: asyncio.Runner) -> Outcome:
    """Run one registered job, or task of Django's task API, and describe its outcome.

    A Django task's ``TaskResult`` (for its context and signals) is made from ``job``.
    """
    name, args, kwargs = job.name, job.args, job.kwargs
    job_function = registry.get(name)
    hooks: Any = _Plain
    if job_function is not None:
        func = job_function.func
        try:
            validation.arguments(name, func, args, kwargs)
        except TypeError as exc:
            return unbound(exc)
    elif (path := django_task_path(name)) is not None:
        try:
            # Imported here: Django's task API is optional, and only its jobs need it.
            from django_jobs.tasks.runs import TaskRun, resolve_task

            # Looked up among the tasks defined at start-up: nothing named here is imported.
            task = resolve_task(path)
        except LookupError as exc:
            return failure(str(exc))
        try:
            # A task that takes_context gets the context as its first argument from TaskRun.
            validation.arguments(path, task.func, args, kwargs, skip_first=task.takes_context)
        except TypeError as exc:
            return unbound(exc)
        try:
            func = hooks = TaskRun(task, job)
        except Exception as exc:
            # Its TaskResult is made from the record's meta, which anyone may have written.
            return failure(f"unreadable record: {type(exc).__qualname__}: {exc}", retry=False)
    else:
        return unregistered(name)
    # As Django does around a request: no connection outlives its CONN_MAX_AGE or an error.
    close_old_connections()
    try:
        hooks.started()
        result = func(*args, **kwargs)
        if inspect.isawaitable(result):
            result = loop.run(_awaited(result))
    except BaseException as exc:  # a job calling sys.exit() must not end the process
        outcome = failure(f"{hooks.describe(exc)}: {exc}", traceback.format_exc())
        hooks.finished(outcome)  # while the exception is handled: receivers see it
        return outcome
    finally:
        close_old_connections()
    try:
        result = hooks.normalize(result)
        check_json(result, "the return value")
    except NotJSONSerializable as exc:
        # Running it again would return the same value: straight to the dead-letter queue.
        outcome = failure(f"NotJSONSerializable: {exc}", retry=False)
        hooks.finished(outcome)
        return outcome
    outcome = Outcome(True, result)
    hooks.finished(outcome)
    return outcome


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def log_finished(job: Job, outcome: str, seconds: float, detail: str = "") -> None:
    """The one log line at the end of every attempt, wherever it ended."""
    logger.info(
        "job %s %s attempt %d %s after %.3fs%s",
        job.id,
        job.name,
        job.attempt,
        outcome,
        seconds,
        f": {detail}" if detail else "",
    )


def failed_outcome(status: JobStatus | None) -> str:
    if status is None:
        return "failed (its lease was lost, so the outcome was not recorded)"
    if status is JobStatus.RETRYING:
        return "failed (to be retried)"
    return "failed (moved to the dead-letter queue)"


def log_completed(job: Job, seconds: float, acked: bool) -> None:
    detail = "" if acked else "but its lease was lost, so the outcome was not recorded"
    log_finished(job, "completed", seconds, detail)
