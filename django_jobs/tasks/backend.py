"""A backend for Django's task API: ``@task``, ``.enqueue()`` and ``TaskResult`` on django-jobs.

``django.tasks`` on Django 6, the ``django-tasks`` backport on Django 5.2 (see
:mod:`django_jobs.tasks.compat`). Each enqueued task becomes one django-jobs job named
``"django.tasks:" + task.module_path``, which ``runworker`` runs like any other job: with strict
priorities, delays, retries, leases and the dead-letter queue.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from django_jobs import validation
from django_jobs.conf import jobs_settings
from django_jobs.job import JOB_ID, Job, JobPriority
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
      ``DJANGO_JOBS["QUEUES"]`` (``check()`` reports one that is not). Without it (or empty),
      ``backend.queues`` is every queue of ``DJANGO_JOBS["QUEUES"]``.
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
    (and one for a cancellation). With ``USE_TZ = False`` every datetime of a result is naive
    local time (``TIME_ZONE``), as Django's own backends give it.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True
    # Workers import the ``tasks`` module of each installed app at start-up (registry.py), so
    # that the tasks defined on this backend are recorded there before any job is run.
    records_tasks = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        queues = params.get("QUEUES")
        if queues is not None and (
            isinstance(queues, (str, bytes)) or not isinstance(queues, Iterable)
        ):
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['QUEUES'] must be a list of queue names, not "
                f"{type(queues).__name__}."
            )
        self._queues: set[str] | None = None
        super().__init__(alias, params)
        # Without QUEUES of its own (or with an empty list, which Django reads as "any queue"),
        # the backend accepts the queues of DJANGO_JOBS.
        if not queues:
            self._queues = None
        self.job_options = self._parse_options(self.options)

    def __repr__(self) -> str:
        return f"<RedisBackend {self.alias}>"

    @property
    def queues(self) -> set[str]:
        """The queues tasks of this backend may use: its ``QUEUES``, or else every queue of
        ``DJANGO_JOBS["QUEUES"]`` (read each time, so that a change of settings applies)."""
        if self._queues is not None:
            return self._queues
        configured = jobs_settings.QUEUES
        # A malformed setting is named by validation.queue_name when a task is checked.
        return set(configured) if isinstance(configured, (list, tuple)) else set()

    @queues.setter
    def queues(self, value: Iterable[str]) -> None:
        # Django's BaseTaskBackend.__init__ sets it from QUEUES.
        self._queues = set(value)

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

        ``run_after`` must be a datetime (Django defines no message for that, and fails on
        anything else with an ``AttributeError``). Then Django's checks, in Django's order and
        with Django's messages (a queue that is not valid for the backend also says which queues
        are). On top of them: the function must be a top-level function of an importable module
        (a worker finds it by its module path), and its queue one of ``DJANGO_JOBS["QUEUES"]``.
        A valid task is recorded in the registry of what workers may run.
        """
        run_after = task.run_after
        if run_after is not None and not isinstance(run_after, datetime):
            raise compat.InvalidTask(
                f"run_after must be a datetime (such as timezone.now() + timedelta(...)), "
                f"not {type(run_after).__name__}."
            )
        try:
            super().validate_task(task)
        except compat.InvalidTask as exc:
            explained = self._explained(task, exc)
            if explained is None:
                raise
            raise explained from None
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

    def _explained(self, task: Any, exc: Exception) -> Exception | None:
        """For Django's refusal of the task's queue: Django's message, then the valid queues."""
        if str(exc) != f"Queue '{task.queue_name}' is not valid for backend.":
            return None
        if self._queues is not None:
            valid = f"TASKS[{self.alias!r}]['QUEUES'] is {sorted(self._queues, key=str)!r}."
        else:
            valid = f"It is not one of DJANGO_JOBS['QUEUES'] {list(jobs_settings.QUEUES)!r}."
        return compat.InvalidTask(f"{exc} {valid}")

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
        due = None
        if run_after is not None:
            # Kept as given (naive with USE_TZ = False), so that result.task == task.
            meta["run_after"] = run_after.isoformat()
            if timezone.is_naive(run_after):  # USE_TZ = False: local time, as timezone.now()
                run_after = timezone.make_aware(run_after, timezone.get_default_timezone())
            if run_after > utcnow():
                due = run_after
        return self.jobs.build_job(
            DJANGO_TASK_PREFIX + task.module_path,
            list(args),
            dict(kwargs),
            priority=job_priority(task.priority),
            queue=task.queue_name,
            scheduled_at=due,
            meta=meta,
            **self.options_for(task),
        )

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Store the task's run in Redis at once (one round trip) and return its result.

        As with every Django task backend, this happens at once, also inside
        ``transaction.atomic()``; use ``transaction.on_commit`` to enqueue after a commit.
        """
        # The job as stored: in the "immediate" testing mode, as its run left it.
        (job,) = self.jobs.enqueue_many([self.build_job(task, args, kwargs)])
        result = task_result(task, job, self.alias)
        compat.task_enqueued.send(type(self), task_result=result)
        return result

    async def aenqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        (job,) = await self.jobs.aenqueue_many([self.build_job(task, args, kwargs)])
        result = task_result(task, job, self.alias)
        await compat.task_enqueued.asend(type(self), task_result=result)
        return result

    # -- results ------------------------------------------------------------------------------

    def get_result(self, result_id: str) -> Any:
        """The task's result as stored now; ``TaskResultDoesNotExist`` if there is no result of
        a task of this backend with this id (unknown, expired, or a job that is not one)."""
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
        if job.meta.get("backend") != self.alias:
            # As with Django's own backends, a backend has only the results of its own tasks.
            raise compat.TaskResultDoesNotExist(
                f"There is no task result {result_id!r} of the task backend {self.alias!r}."
            )
        try:
            task = resolve_task(path)
        except LookupError as exc:
            raise compat.TaskResultDoesNotExist(
                f"Task result {result_id!r} is of a task that cannot be loaded: {exc}"
            ) from None
        return task_result(task, job, self.alias)

    # -- checks -------------------------------------------------------------------------------

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """What ``manage.py check`` reports about this backend: ``django_jobs`` must be an
        installed app (its tasks modules, admin and checks), and every queue of ``QUEUES`` one
        of ``DJANGO_JOBS["QUEUES"]``."""
        messages = list(super().check(**kwargs))
        where = f"TASKS[{self.alias!r}]"
        if not apps.is_installed("django_jobs"):
            messages.append(
                checks.Error(
                    f"{where} uses {type(self).__name__}, but django_jobs is not in "
                    "INSTALLED_APPS.",
                    hint="Add 'django_jobs' to INSTALLED_APPS.",
                    id="django_jobs.tasks.E001",
                )
            )
        # Unchecked (reading the setting would raise), and compared only with a list: a
        # DJANGO_JOBS or QUEUES of another shape is what the settings checks report
        # (django_jobs.E001, E005), and nothing could be found in it.
        configured = jobs_settings.as_dict()["QUEUES"]
        comparable = isinstance(jobs_settings.user_settings, dict) and isinstance(
            configured, (list, tuple)
        )
        if self._queues is not None and comparable:
            missing = sorted((q for q in self._queues if q not in configured), key=str)
            if missing:
                messages.append(
                    checks.Error(
                        f"{where}['QUEUES'] has queues that DJANGO_JOBS['QUEUES'] lacks: "
                        f"{', '.join(map(repr, missing))}.",
                        hint=(
                            "Add them to DJANGO_JOBS['QUEUES'] (workers serve only those), or "
                            f"remove them from {where}['QUEUES']."
                        ),
                        id="django_jobs.tasks.E002",
                    )
                )
        return messages


def _valid_id(result_id: Any) -> bool:
    return isinstance(result_id, str) and JOB_ID.fullmatch(result_id) is not None
