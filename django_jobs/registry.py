"""``@job``: registering job functions by name, and enqueueing them with ``.delay()``.

A worker runs only functions registered here, looked up by the name stored in the job, and
tasks of Django's task API defined on a django-jobs backend, which the backend records here as
they are defined (see :func:`django_task_path`). Both are found by importing each installed
app's ``jobs`` (and ``tasks``) module at start-up; nothing is ever imported by a name taken from
queue data.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils.module_loading import autodiscover_modules, import_string

from django_jobs import validation
from django_jobs.conf import jobs_settings
from django_jobs.handle import JobHandle
from django_jobs.job import JobPriority
from django_jobs.queue import JobQueue

P = ParamSpec("P")
R = TypeVar("R")

# Jobs enqueued through Django's task API (django_jobs.backends.RedisBackend) are named with
# this marker, then the module path of the task; the runner runs it only if a django-jobs
# backend recorded a task of that path when it was defined (JobRegistry.register_task).
DJANGO_TASK_PREFIX = "django.tasks:"
DOTTED_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def django_task_path(name: str) -> str | None:
    """The module path of the Django task that a job of this name runs, or ``None``."""
    if not name.startswith(DJANGO_TASK_PREFIX):
        return None
    path = name[len(DJANGO_TASK_PREFIX) :]
    return path if DOTTED_PATH.fullmatch(path) else None


class JobRegistry:
    """Job functions by name."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobFunction[..., Any]] = {}
        # Module path -> function of each django.tasks Task defined on a django-jobs backend.
        self._tasks: dict[str, Callable[..., Any]] = {}

    def register(self, job_function: JobFunction[..., Any]) -> None:
        """Add a job function; a second, different function under the same name is an error."""
        if job_function.name.startswith(DJANGO_TASK_PREFIX):
            raise ValueError(
                f"The job name {job_function.name!r} starts with {DJANGO_TASK_PREFIX!r}, which "
                "marks tasks of Django's task API; pass @job(name=...) to choose another."
            )
        existing = self._jobs.get(job_function.name)
        if existing is not None and _origin(existing.func) != _origin(job_function.func):
            raise ValueError(
                f"The job name {job_function.name!r} is already registered by "
                f"{_origin(existing.func)}; {_origin(job_function.func)} cannot use it too. "
                "Pass @job(name=...) to give one of them another name."
            )
        self._jobs[job_function.name] = job_function

    def unregister(self, name: str) -> None:
        self._jobs.pop(name, None)

    def get(self, name: str) -> JobFunction[..., Any] | None:
        return self._jobs.get(name)

    def names(self) -> list[str]:
        return sorted(self._jobs)

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def __iter__(self) -> Any:
        return iter(list(self._jobs.values()))

    def register_task(self, module_path: str, func: Callable[..., Any]) -> None:
        """Record a task of Django's task API, defined on a django-jobs backend, as runnable.

        The backend calls this when a task is defined; a worker runs a job named
        ``"django.tasks:" + module_path`` only if it finds the task recorded here.
        """
        self._tasks[module_path] = func  # the latest definition, e.g. after a reload

    def task_function(self, module_path: str) -> Callable[..., Any] | None:
        """The function of the task recorded under ``module_path``, or ``None``."""
        return self._tasks.get(module_path)

    def autodiscover(self) -> None:
        """Import the ``jobs`` module of every installed app, which registers its jobs, and,
        when a django-jobs backend is among Django's ``TASKS``, its ``tasks`` module too."""
        autodiscover_modules("jobs")
        if _uses_task_backend():
            autodiscover_modules("tasks")


def _uses_task_backend() -> bool:
    """Whether ``settings.TASKS`` names a backend of django-jobs (whose tasks workers run)."""
    backends = getattr(settings, "TASKS", None)
    if not isinstance(backends, dict):
        return False
    for config in backends.values():
        path = config.get("BACKEND") if isinstance(config, dict) else None
        try:
            backend = import_string(path) if isinstance(path, str) else None
        except (ImportError, ImproperlyConfigured):
            continue  # Django's own check of TASKS, or the backend, reports it
        if getattr(backend, "records_tasks", False):
            return True
    return False


registry = JobRegistry()


def _origin(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


class JobFunction(Generic[P, R]):
    """A registered job. Call it to run it inline; ``.delay()`` to run it on a worker."""

    def __init__(
        self,
        func: Callable[P, R],
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: JobPriority | int | str = JobPriority.NORMAL,
        max_retries: int | None = None,
        timeout: float | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"@job decorates a function, not {func!r}.")
        # Bad options fail here, at import, rather than at each .delay().
        if queue is not None:
            validation.queue_name(queue)
        if max_retries is not None:
            validation.integer(max_retries, "max_retries")
        if timeout is not None:
            validation.seconds(timeout, "timeout", positive=True)
        self.func = func
        self.name = name or _origin(func)
        self.queue = queue
        self.priority = JobPriority.parse(priority)
        self.max_retries = max_retries
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(func)
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"<JobFunction {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def using(
        self,
        *,
        priority: JobPriority | int | str | None = None,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        user_id: str | int | None = None,
        jobs: JobQueue | None = None,
    ) -> JobCall[P, R]:
        """This job with options for one call: ``send.using(priority="high").delay(pk)``."""
        options = {
            "priority": priority,
            "queue": queue,
            "delay": delay,
            "at": at,
            "max_retries": max_retries,
            "timeout": timeout,
            "user_id": user_id,
        }
        return JobCall(self, {k: v for k, v in options.items() if v is not None}, jobs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        """Enqueue a run of this job with these arguments; return its handle at once.

        Inside ``transaction.atomic()`` the job is enqueued when the transaction commits (and
        never if it rolls back), unless ``DJANGO_JOBS['ENQUEUE_ON_COMMIT']`` is off.
        """
        return JobCall(self, {}, None).delay(*args, **kwargs)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        """:meth:`delay` for async code: enqueues at once with the asyncio client."""
        return await JobCall(self, {}, None).adelay(*args, **kwargs)


class JobCall(Generic[P, R]):
    """A job function with per-call options; made by :meth:`JobFunction.using`."""

    def __init__(
        self, job_function: JobFunction[P, R], options: dict[str, Any], jobs: JobQueue | None
    ) -> None:
        self.job_function = job_function
        self.options = options
        self.jobs = jobs or JobQueue()

    def _build(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        fn, options = self.job_function, self.options
        return self.jobs.build_job(
            fn.name,
            args,
            kwargs,
            priority=options.get("priority", fn.priority),
            queue=options.get("queue", fn.queue),
            delay=options.get("delay"),
            scheduled_at=options.get("at"),
            max_retries=options.get("max_retries", fn.max_retries),
            timeout=options.get("timeout", fn.timeout),
            user_id=options.get("user_id"),
        )

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        job = self._build(args, kwargs)
        connection = transaction.get_connection(DEFAULT_DB_ALIAS)
        if jobs_settings.ENQUEUE_ON_COMMIT and connection.in_atomic_block:
            transaction.on_commit(lambda: self.jobs.enqueue_many([job]))
        else:
            self.jobs.enqueue_many([job])
        return JobHandle(job, self.jobs)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        job = self._build(args, kwargs)
        await self.jobs.aenqueue_many([job])
        return JobHandle(job, self.jobs)


@overload
def job(func: Callable[P, R], /) -> JobFunction[P, R]: ...


@overload
def job(
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: JobPriority | int | str = JobPriority.NORMAL,
    max_retries: int | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...


def job(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Register a function as a job, bare (``@job``) or with options (``@job(queue=...)``).

    Options: ``name`` (default: module path and function name), ``queue``, ``priority``,
    ``max_retries`` and ``timeout`` (default: the ``DJANGO_JOBS`` settings). A bad option
    raises ``ValueError`` here, with the message an enqueue would give
    (:mod:`django_jobs.validation`).
    """
    unknown = set(options) - {"name", "queue", "priority", "max_retries", "timeout"}
    if unknown:
        raise TypeError(f"@job got unknown options: {', '.join(sorted(unknown))}.")

    def register(func: Callable[P, R]) -> JobFunction[P, R]:
        job_function = JobFunction(func, **options)
        registry.register(job_function)
        return job_function

    return register if func is None else register(func)
