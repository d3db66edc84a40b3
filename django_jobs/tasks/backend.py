"""A backend for Django's task API: ``@task``, ``.enqueue()`` and ``TaskResult`` on django-jobs.

``django.tasks`` on Django 6, the ``django-tasks`` backport on Django 5.2 (see
:mod:`django_jobs.tasks.compat`). Each enqueued task becomes one django-jobs job named
``"django.tasks:" + task.module_path``, which ``runworker`` runs like any other job: with strict
priorities, delays, retries, leases and the dead-letter queue.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from django_jobs import validation
from django_jobs.job import Job, JobPriority
from django_jobs.queue import JobQueue
from django_jobs.registry import DJANGO_TASK_PREFIX, django_task_path, registry
from django_jobs.serialization import utcnow
from django_jobs.tasks import compat
from django_jobs.tasks.runs import resolve_task, task_result

compat.require()

logger = logging.getLogger("django_jobs.tasks")

# The options a backend's OPTIONS (and each entry of OPTIONS["TASKS"]) may set, and the
# build_job arguments they become.
JOB_OPTIONS = {
    "MAX_RETRIES": "max_retries",
    "RETRY_BACKOFF_BASE": "retry_backoff_base",
    "RETRY_BACKOFF_MAX": "retry_backoff_max",
    "TIMEOUT": "timeout",
}


def job_priority(priority: int) -> JobPriority:
    """Django's task priority (-100 to 100, default 0) as one of the four django-jobs levels.

    Symmetric around 0: -100..-50 is LOW, -49..49 NORMAL, 50..99 HIGH; only the maximum,
    100, is CRITICAL, which workers take before anything else.
    """
    if priority >= compat.TASK_MAX_PRIORITY:
        return JobPriority.CRITICAL
    if priority >= 50:
        return JobPriority.HIGH
    if priority > -50:
        return JobPriority.NORMAL
    return JobPriority.LOW


class RedisBackend(compat.BaseTaskBackend):
    """Run Django tasks with django-jobs: ``runworker`` executes them.

    ``TASKS = {"default": {"BACKEND": "django_jobs.backends.RedisBackend"}}``. Redis, the key
    prefix and the worker come from ``DJANGO_JOBS``.

    - ``QUEUES``: the task queues this backend accepts; each must be one of
      ``DJANGO_JOBS["QUEUES"]``. Without it, every queue of ``DJANGO_JOBS["QUEUES"]`` is accepted.
    - ``priority`` (-100..100) maps onto the four levels of django-jobs, symmetric around 0:
      -100..-50 LOW, -49..49 NORMAL, 50..99 HIGH, 100 CRITICAL.
    - ``run_after`` makes a delayed job: no worker starts it earlier.
    - ``OPTIONS``: ``MAX_RETRIES`` (retries after the first failed attempt),
      ``RETRY_BACKOFF_BASE`` and ``RETRY_BACKOFF_MAX`` (seconds, the n-th retry waits
      ``min(BASE * 2**n, MAX)``) and ``TIMEOUT`` (seconds a run may take); each defaults to
      the ``DJANGO_JOBS`` setting. ``OPTIONS["TASKS"]`` sets them per task, keyed by the task's
      module path: ``{"TASKS": {"shop.tasks.charge": {"MAX_RETRIES": 0}}}``.

    ``get_result`` maps statuses: PENDING and RETRYING are READY, RUNNING is RUNNING, COMPLETED
    is SUCCESSFUL, FAILED and CANCELLED are FAILED. ``errors`` has one entry per failed attempt
    (and one for a cancellation).
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True
    # Workers import the ``tasks`` module of each installed app at start-up (registry.py), so
    # that the tasks defined on this backend are recorded there before any job is run.
    records_tasks = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        # Without QUEUES of its own, the backend accepts the queues of DJANGO_JOBS (read when a
        # task is checked, so that a change of settings applies).
        if "QUEUES" not in params:
            self.queues = set()
        self.job_options = self._parse_options(self.options)

    def __repr__(self) -> str:
        return f"<RedisBackend {self.alias}>"

    @property
    def jobs(self) -> JobQueue:
        return JobQueue()

    # -- configuration ------------------------------------------------------------------------

    def _parse_options(self, options: Any) -> dict[str, Any]:
        where = f"TASKS[{self.alias!r}]['OPTIONS']"
        if not isinstance(options, dict):
            raise ImproperlyConfigured(f"{where} must be a dict, not {type(options).__name__}.")
        parsed = {"": self._job_options(options, where, {"TASKS"})}
        per_task = options.get("TASKS", {})
        if not isinstance(per_task, dict):
            raise ImproperlyConfigured(
                f"{where}['TASKS'] must be a dict of task module paths to options."
            )
        for path, task_options in per_task.items():
            if not isinstance(path, str) or not path:
                raise ImproperlyConfigured(
                    f"{where}['TASKS'] has the key {path!r}; use task module paths."
                )
            task_where = f"{where}['TASKS'][{path!r}]"
            if not isinstance(task_options, dict):
                raise ImproperlyConfigured(f"{task_where} must be a dict.")
            parsed[path] = self._job_options(task_options, task_where, set())
        return parsed

    def _job_options(self, options: dict[str, Any], where: str, also: set[str]) -> dict[str, Any]:
        unknown = set(options) - set(JOB_OPTIONS) - also
        if unknown:
            raise ImproperlyConfigured(
                f"{where} has unknown keys {sorted(unknown)!r}; "
                f"the known ones are {sorted(set(JOB_OPTIONS) | also)!r}."
            )
        values = {JOB_OPTIONS[k]: v for k, v in options.items() if k in JOB_OPTIONS}
        for key, value in options.items():
            what = f"{where}[{key!r}]"
            try:
                if key == "MAX_RETRIES":
                    if value is not None:  # None: the DJANGO_JOBS setting
                        validation.integer(value, what)
                elif key in JOB_OPTIONS:
                    validation.seconds(value, what, positive=True)
            except ValueError as exc:
                raise ImproperlyConfigured(str(exc)) from None
        return values

    def options_for(self, task: Any) -> dict[str, Any]:
        """The django-jobs options of a run of ``task``: the task's own over the backend's."""
        return {**self.job_options[""], **self.job_options.get(task.module_path, {})}

    # -- tasks --------------------------------------------------------------------------------

    def validate_task(self, task: Any) -> None:
        """Refuse, when the task is defined (and again at enqueue), what a worker could not run.

        On top of Django's checks: the function must be a top-level function of an importable
        module (a worker finds it by its module path), and its queue one of
        ``DJANGO_JOBS["QUEUES"]`` (and of this backend's ``QUEUES``, if given). A valid task is
        recorded in the registry of what workers may run.
        """
        if self.queues and task.queue_name not in self.queues:
            raise compat.InvalidTask(
                f"Queue {task.queue_name!r} is not valid for the task backend {self.alias!r}: "
                f"TASKS[{self.alias!r}]['QUEUES'] is {sorted(self.queues)!r}."
            )
        super().validate_task(task)
        func = task.func
        if "." in func.__qualname__ or func.__module__ == "__main__":
            raise compat.InvalidTask(
                f"Task function {func.__module__}.{func.__qualname__} must be a top-level "
                "function of an importable module: a worker finds it by its module path."
            )
        try:
            validation.queue_name(task.queue_name)
        except ValueError as exc:
            raise compat.InvalidTask(str(exc)) from None
        # What a worker may run: it never imports a module named by a job, it looks here.
        registry.register_task(task.module_path, func)

    def _check_reachable(self, task: Any) -> None:
        """A worker looks the task up at its module path (never importing it): that name must
        be this task."""
        module = sys.modules.get(task.func.__module__)
        found = getattr(module, task.func.__qualname__, None)
        if not (isinstance(found, compat.Task) and found.func is task.func):
            raise compat.InvalidTask(
                f"A worker finds a task by its module path, but {task.module_path} is "
                f"{type(found).__qualname__}, not this task. Define the task with @task at the "
                "top level of its module, under the name of its function."
            )

    def build_job(self, task: Any, args: Any, kwargs: Any) -> Job:
        """Check the task and its arguments and return the job ``enqueue`` stores."""
        self.validate_task(task)
        self._check_reachable(task)
        run_after = task.run_after
        meta: dict[str, Any] = {"priority": task.priority, "backend": self.alias}
        if run_after is not None:
            if timezone.is_naive(run_after):  # USE_TZ = False: a local time
                run_after = timezone.make_aware(run_after)
            meta["run_after"] = run_after.isoformat()
            if run_after <= utcnow():
                run_after = None
        return self.jobs.build_job(
            DJANGO_TASK_PREFIX + task.module_path,
            list(args),
            dict(kwargs),
            priority=job_priority(task.priority),
            queue=task.queue_name,
            scheduled_at=run_after,
            meta=meta,
            **self.options_for(task),
        )

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Store the task's run in Redis at once (one round trip) and return its result.

        As with every Django task backend, this happens at once, also inside
        ``transaction.atomic()``; use ``transaction.on_commit`` to enqueue after a commit.
        """
        job = self.build_job(task, args, kwargs)
        self.jobs.enqueue_many([job])
        result = task_result(task, job, self.alias)
        compat.task_enqueued.send(type(self), task_result=result)
        return result

    async def aenqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        job = self.build_job(task, args, kwargs)
        await self.jobs.aenqueue_many([job])
        result = task_result(task, job, self.alias)
        await compat.task_enqueued.asend(type(self), task_result=result)
        return result

    # -- results ------------------------------------------------------------------------------

    def get_result(self, result_id: str) -> Any:
        """The task's result as stored now; ``TaskResultDoesNotExist`` if unknown or expired."""
        job = self.jobs.get_job(result_id) if _valid_id(result_id) else None
        return self._result_of(result_id, job)

    async def aget_result(self, result_id: str) -> Any:
        job = await self.jobs.aget_job(result_id) if _valid_id(result_id) else None
        return self._result_of(result_id, job)

    def _result_of(self, result_id: str, job: Job | None) -> Any:
        path = None if job is None else django_task_path(job.name)
        if job is None or path is None:
            raise compat.TaskResultDoesNotExist(
                f"There is no task result {result_id!r} (unknown, or expired)."
            )
        try:
            task = resolve_task(path)
        except LookupError as exc:
            raise compat.TaskResultDoesNotExist(
                f"Task result {result_id!r} is of a task that cannot be loaded: {exc}"
            ) from None
        return task_result(task, job, self.alias)


def _valid_id(result_id: Any) -> bool:
    return isinstance(result_id, str) and 0 < len(result_id) <= 64
