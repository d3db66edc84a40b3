"""The registry: what this process may run. Job functions by name, and tasks of Django's task
API by module path.

A worker runs only functions registered here, looked up by the name stored in the job, and
tasks of Django's task API defined on a django-jobs backend, which the backend records here as
they are defined (see :func:`django_task_path`). Both are found by importing each installed
app's ``jobs`` (and ``tasks``) module at start-up; nothing is ever imported by a name taken from
queue data.

It lives apart from ``@job`` (:mod:`django_jobs.registry`, which re-exports it) so that
:class:`~django_jobs.queue.JobQueue`, which ``@job`` builds on, can check the arguments of a
registered job too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import autodiscover_modules, import_string

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


def origin(func: Callable[..., Any]) -> str:
    """Where a function is defined: ``module.qualname`` (the default name of a job)."""
    return f"{func.__module__}.{func.__qualname__}"


class RegisteredJob(Protocol):
    """What the registry needs of a job: :class:`django_jobs.registry.JobFunction` is one."""

    name: str
    func: Callable[..., Any]


class JobRegistry:
    """Job functions by name (the :class:`~django_jobs.registry.JobFunction` of each)."""

    def __init__(self) -> None:
        # Typed Any: the JobFunctions are defined above this module (registry.py imports it).
        self._jobs: dict[str, Any] = {}
        # Module path -> function of each django.tasks Task defined on a django-jobs backend.
        self._tasks: dict[str, Callable[..., Any]] = {}

    def register(self, job_function: RegisteredJob) -> None:
        """Add a job function; a second, different function under the same name is an error."""
        if job_function.name.startswith(DJANGO_TASK_PREFIX):
            raise ValueError(
                f"The job name {job_function.name!r} starts with {DJANGO_TASK_PREFIX!r}, which "
                "marks tasks of Django's task API; pass @job(name=...) to choose another."
            )
        existing = self._jobs.get(job_function.name)
        if existing is not None and origin(existing.func) != origin(job_function.func):
            raise ValueError(
                f"The job name {job_function.name!r} is already registered by "
                f"{origin(existing.func)}; {origin(job_function.func)} cannot use it too. "
                "Pass @job(name=...) to give one of them another name."
            )
        self._jobs[job_function.name] = job_function

    def unregister(self, name: str) -> None:
        self._jobs.pop(name, None)

    def get(self, name: str) -> Any:
        """The :class:`~django_jobs.registry.JobFunction` registered as ``name``, or ``None``."""
        return self._jobs.get(name)

    def names(self) -> list[str]:
        return sorted(self._jobs)

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def __iter__(self) -> Iterator[Any]:
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
