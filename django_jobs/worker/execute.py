"""Running one job in a worker child: look it up among the registered jobs (or Django's tasks),
call it, and describe what came of it. Nothing named by queue data is run otherwise.

Also the one place where the outcome of an attempt becomes a log line and a signal
(:mod:`django_jobs.signals`), wherever it was recorded: in the child that ran the job, or in the
supervisor for a job whose process was killed or died."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

from django.dispatch import Signal

from django_jobs import context as job_context
from django_jobs import signals, tracing, validation
from django_jobs.context import JobContext, Recorder
from django_jobs.exceptions import NotJSONSerializable
from django_jobs.job import Job, JobStatus
from django_jobs.registry import django_task_path, registry
from django_jobs.serialization import check_json, utcnow
from django_jobs.store.connection import connection_url, redact_url
from django_jobs.worker import metrics
from django_jobs.worker.database import close_old_connections
from django_jobs.worker.leases import Failure, Leases

logger = logging.getLogger("django_jobs.worker")


@dataclass
class Outcome:
    """What one attempt of a job came to, as the child saw it."""

    ok: bool
    result: Any = None
    error: str = ""
    traceback: str = ""
    retry: bool = True
    # What the job raised (for the log's traceback and the job_failed receivers).
    exception: BaseException | None = None


def failure(
    error: str, tb: str = "", *, retry: bool = True, exception: BaseException | None = None
) -> Outcome:
    return Outcome(False, error=error, traceback=tb, retry=retry, exception=exception)


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


def run_job(
    job: Job,
    loop: asyncio.Runner,
    *,
    own_connections: bool = True,
    recorder: Recorder | None = None,
) -> Outcome:
    """Run one registered job, or task of Django's task API, and describe its outcome.

    A Django task's ``TaskResult`` (for its context and signals) is made from ``job``. The run
    is traced (:mod:`django_jobs.tracing`) and timed (:mod:`django_jobs.worker.metrics`). An
    ``async def`` job runs to its end on ``loop``, which must not be running.
    ``own_connections=False`` leaves the database connections alone: a job run in the
    caller's process (:mod:`django_jobs.testing`) shares them, perhaps inside its transaction.
    The job's context (:func:`django_jobs.current_job`) writes its progress through
    ``recorder`` (default: ``Leases()``); its last report is written before this returns.
    """
    started = time.monotonic()
    context = JobContext(job, Leases() if recorder is None else recorder)
    token = job_context.enter(context)
    try:
        with tracing.run_span(job) as span:
            outcome = _run(job, loop, context, own_connections)
            tracing.finish(span, outcome.ok, outcome.error, outcome.exception)
    finally:
        job_context.leave(token)
        context.finish()
    metrics.observe(job, time.monotonic() - started)
    return outcome


async def arun_job(job: Job, context: JobContext) -> Outcome:
    """:func:`run_job` for an ``async def`` job, on the running event loop, side by side with
    others (see :func:`async_names`).

    When the task running it is cancelled (a timeout, a cancellation, a lost lease) the
    ``CancelledError`` is raised, not described: whoever cancelled it records why.
    ``context`` is the job's (:func:`django_jobs.current_job`) in its task only, so that jobs
    side by side each see theirs; the caller writes its last progress
    (:meth:`~django_jobs.context.JobContext.afinish`) outside the job's timeout.
    """
    started = time.monotonic()
    token = job_context.enter(context)
    try:
        with tracing.run_span(job) as span:
            call = _prepare(job, context)
            if isinstance(call, Outcome):
                outcome = call
            else:
                try:
                    call.hooks.started()
                    result = call.func(*job.args, **job.kwargs)
                    if inspect.isawaitable(result):
                        result = await result
                except asyncio.CancelledError as exc:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise
                    outcome = _raised(call, exc)  # the job's own, not a request to stop it
                except BaseException as exc:  # a job calling sys.exit() must not end the process
                    outcome = _raised(call, exc)
                else:
                    outcome = _returned(call, result)
            tracing.finish(span, outcome.ok, outcome.error, outcome.exception)
    finally:
        job_context.leave(token)
        metrics.observe(job, time.monotonic() - started)
    return outcome


def async_names() -> frozenset[str]:
    """The names of the registered ``async def`` jobs: a worker process runs these side by side
    on its event loop, and every other job (sync jobs, Django's tasks) on its own."""
    found = set()
    for name in registry.names():
        job_function = registry.get(name)
        if job_function is not None and job_function.is_async:
            found.add(name)
    return frozenset(found)


@dataclass
class _Call:
    """A job made ready to call: its function and what runs around it."""

    func: Any
    hooks: Any


def _prepare(job: Job, context: JobContext) -> _Call | Outcome:
    """Find what ``job`` names among the registered jobs and Django's tasks, and check its
    arguments; the outcome instead when it cannot be run. A job that ``takes_context`` gets
    ``context`` as its first argument."""
    name, args, kwargs = job.name, job.args, job.kwargs
    job_function = registry.get(name)
    if job_function is not None:
        takes_context = job_function.takes_context
        try:
            validation.arguments(name, job_function.func, args, kwargs, skip_first=takes_context)
        except TypeError as exc:
            return unbound(exc)
        func = job_function.func
        return _Call(functools.partial(func, context) if takes_context else func, _Plain)
    path = django_task_path(name)
    if path is None:
        return unregistered(name)
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
        run = TaskRun(task, job)
    except Exception as exc:
        # Its TaskResult is made from the record's meta, which anyone may have written.
        return failure(f"unreadable record: {type(exc).__qualname__}: {exc}", retry=False)
    return _Call(run, run)


def _raised(call: _Call, exc: BaseException) -> Outcome:
    """The outcome of a job that raised ``exc`` (call it while ``exc`` is being handled)."""
    outcome = failure(f"{call.hooks.describe(exc)}: {exc}", traceback.format_exc(), exception=exc)
    call.hooks.finished(outcome)  # while the exception is handled: receivers see it
    return outcome


def _returned(call: _Call, result: Any) -> Outcome:
    """The outcome of a job that returned ``result``: it must be JSON."""
    try:
        result = call.hooks.normalize(result)
        check_json(result, "the return value")
    except NotJSONSerializable as exc:
        # Running it again would return the same value: straight to the dead-letter queue.
        outcome = failure(f"NotJSONSerializable: {exc}", retry=False, exception=exc)
        call.hooks.finished(outcome)
        return outcome
    outcome = Outcome(True, result)
    call.hooks.finished(outcome)
    return outcome


def _run(job: Job, loop: asyncio.Runner, context: JobContext, own_connections: bool) -> Outcome:
    call = _prepare(job, context)
    if isinstance(call, Outcome):
        return call
    # As Django does around a request: no connection outlives its CONN_MAX_AGE or an error.
    if own_connections:
        close_old_connections()
    try:
        call.hooks.started()
        result = call.func(*job.args, **job.kwargs)
        if inspect.isawaitable(result):
            result = loop.run(_awaited(result, context))
    except BaseException as exc:  # a job calling sys.exit() must not end the process
        return _raised(call, exc)
    finally:
        if own_connections:
            close_old_connections()
    return _returned(call, result)


async def _awaited(awaitable: Any, context: JobContext) -> Any:
    # The loop's task runs in the loop's context, not this thread's: the job's is set there.
    token = job_context.enter(context)
    try:
        return await awaitable
    finally:
        job_context.leave(token)


def log_started(job: Job) -> None:
    """The log line as an attempt starts (a worker's process, its event loop, a testing mode)."""
    logger.info("job %s %s attempt %d started", job.id, job.name, job.attempt)


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


def report_given_back(job: Job, outcome: str, why: str, seconds: float | None = None) -> None:
    """Log what came of giving ``job`` back (``Leases.release_job``'s ``outcome``; ``why``
    says why it went back) and send ``job_cancelled`` when it was cancelled instead (its
    cancellation was requested meanwhile). ``seconds``: how long it ran, ``None`` if it had not
    started. A lease lost to another worker leaves nothing to say of a job that had not."""
    ran = 0.0 if seconds is None else seconds
    if outcome == "cancelled":
        log_finished(job, "cancelled", ran, f"{why}, and its cancellation was requested")
        notify(signals.job_cancelled, job, seconds=ran)
    elif outcome == "released" and seconds is None:
        logger.info("job %s %s: %s; back to the head of its queue", job.id, job.name, why)
    elif outcome == "released":
        log_finished(job, "stopped", ran, f"{why}; back to the head of its queue")
    elif seconds is not None:
        log_finished(job, "abandoned", ran, "its lease was lost to another worker")


def log_failed(
    job: Job,
    failed: Failure,
    seconds: float,
    error: str,
    tb: str = "",
    exception: BaseException | None = None,
) -> None:
    """The one log line of a failed attempt, by what came of it.

    To the dead-letter queue: ERROR, with the traceback (error trackers that read the log, such
    as Sentry's logging integration, report it). To be retried: WARNING, with the attempt
    (``attempt 2 of 4``) and when the retry is due. Not recorded because the lease was lost
    (another worker has the job): INFO.
    """
    detail = error.split("\n", 1)[0]
    if failed.status is None:
        lost = "failed (its lease was lost, so the outcome was not recorded)"
        log_finished(job, lost, seconds, detail)
        return
    # Attempts lost with a dead worker (or run again after a late one) do not use up retries:
    # they count on both sides.
    extra = job.lost_count + job.late_count
    attempt = f"attempt {job.attempt} of {job.max_retries + 1 + extra}"
    if failed.status is JobStatus.RETRYING:
        due = failed.due or utcnow()
        logger.warning(
            "job %s %s %s failed after %.3fs; retry due at %s (in %.0fs): %s",
            job.id,
            job.name,
            attempt,
            seconds,
            due.isoformat(timespec="seconds"),
            max((due - utcnow()).total_seconds(), 0.0),
            detail,
        )
        return
    if exception is None and tb:
        detail = f"{detail}\n{tb.rstrip()}"
    logger.error(
        "job %s %s %s failed after %.3fs; moved to the dead-letter queue: %s",
        job.id,
        job.name,
        attempt,
        seconds,
        detail,
        exc_info=exception,
    )


def log_completed(job: Job, seconds: float, acked: bool) -> None:
    detail = "" if acked else "but its lease was lost, so the outcome was not recorded"
    log_finished(job, "completed", seconds, detail)


def log_serving(worker_id: str, queues: list[str], concurrency: int, prefix: str) -> None:
    """The worker's start-up line: what it serves, on which Redis (without its password),
    under which prefix, and which jobs it can run."""
    names = registry.names()
    logger.info(
        "worker %s serving %s with %d processes; Redis %s, prefix %s; %d registered jobs: %s",
        worker_id,
        ", ".join(queues),
        concurrency,
        redact_url(connection_url()),
        prefix,
        len(names),
        ", ".join(names) or "(none)",
    )


_NAMES = {
    signals.job_started: "job_started",
    signals.job_succeeded: "job_succeeded",
    signals.job_failed: "job_failed",
    signals.job_dead: "job_dead",
    signals.job_cancelled: "job_cancelled",
}


def notify(signal: Signal, job: Job, **arguments: Any) -> None:
    """Send ``signal`` about ``job`` (sender: its registered job, or ``None``).

    A receiver that raises is logged with its traceback, and the worker goes on: an error
    tracker that is down, or a bug in a receiver, must not stop jobs from being run and
    recorded. Django's own log of it goes to ``django.dispatch``, which a worker may not show.
    """
    if not signal.receivers:  # none connected: nothing to look up (two signals per job)
        return
    name = _NAMES.get(signal, "a signal")
    try:
        responses = signal.send_robust(registry.get(job.name), job=job, **arguments)
    except Exception:  # e.g. an async receiver that cannot be run here
        logger.exception("job %s %s: sending %s failed; the worker goes on", job.id, job.name, name)
        return
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.error(
                "job %s %s: the %s receiver %s raised %s: %s; the worker goes on",
                job.id,
                job.name,
                name,
                _qualified(receiver),
                type(response).__name__,
                response,
                exc_info=response,
            )


def _qualified(receiver: Any) -> str:
    name = getattr(receiver, "__qualname__", None)
    return f"{receiver.__module__}.{name}" if name else repr(receiver)


def notify_failed(
    job: Job,
    failed: Failure,
    seconds: float,
    error: str,
    tb: str = "",
    exception: BaseException | None = None,
) -> None:
    """``job_failed``, and ``job_dead`` when the job went to the dead-letter queue; nothing
    when the failure was not recorded (the lease was lost)."""
    if failed.status is None:
        return
    dead = failed.status is JobStatus.FAILED
    notify(
        signals.job_failed,
        job,
        error=error,
        traceback=tb,
        exception=exception,
        will_retry=not dead,
        due=failed.due,
        seconds=seconds,
    )
    if dead:
        notify(signals.job_dead, job, error=error, traceback=tb, exception=exception)
