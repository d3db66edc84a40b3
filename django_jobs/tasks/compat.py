"""Every import that depends on the Django version, in one place.

Django's task API lives in ``django.tasks`` from Django 6.0 on; for Django 5.2 the
``django-tasks`` backport (import name ``django_tasks``) provides the same API. ``django.tasks``
is preferred whenever it exists, even if the backport is installed too.

Importing this module never fails: ``TASKS_API`` is ``None`` when neither is available, and
:func:`require` raises ``ImproperlyConfigured`` saying what to install.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "DEFAULT_TASK_PRIORITY",
    "TASKS_API",
    "TASK_MAX_PRIORITY",
    "TASK_MIN_PRIORITY",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "make_task_result",
    "normalize_json",
    "require",
    "set_field",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]

TASKS_API: str | None
try:
    from django.tasks import task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import (
        DEFAULT_TASK_PRIORITY,
        TASK_MAX_PRIORITY,
        TASK_MIN_PRIORITY,
        Task,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    TASKS_API = "django.tasks"
except ImportError:
    try:
        from django_tasks import task_backends  # type: ignore[no-redef]
        from django_tasks.backends.base import BaseTaskBackend  # type: ignore[no-redef]
        from django_tasks.base import (  # type: ignore[no-redef]
            DEFAULT_TASK_PRIORITY,
            TASK_MAX_PRIORITY,
            TASK_MIN_PRIORITY,
            Task,
            TaskContext,
            TaskError,
            TaskResult,
            TaskResultStatus,
        )
        from django_tasks.exceptions import (  # type: ignore[no-redef]
            InvalidTaskError as InvalidTask,
        )
        from django_tasks.exceptions import TaskResultDoesNotExist  # type: ignore[no-redef]
        from django_tasks.signals import (  # type: ignore[no-redef]
            task_enqueued,
            task_finished,
            task_started,
        )
        from django_tasks.utils import normalize_json  # type: ignore[no-redef]

        TASKS_API = "django_tasks"
    except ImportError:
        TASKS_API = None

MISSING = (
    "django_jobs.tasks.backend.RedisBackend needs Django's task API: Django 6.0 or newer "
    "(django.tasks), or on Django 5.2 the django-tasks backport: "
    "pip install 'django-jobs[tasks]'."
)


def require() -> None:
    """Raise ``ImproperlyConfigured`` unless Django's task API can be imported."""
    if TASKS_API is None:
        raise ImproperlyConfigured(MISSING)


def make_task_result(**values: Any) -> Any:
    """A ``TaskResult`` from the values the installed API's ``TaskResult`` accepts.

    ``_return_value`` (not an ``__init__`` argument in any version) is set afterwards; any
    value that this version's ``TaskResult`` has no field for is left out.
    """
    accepted = {f.name for f in dataclasses.fields(TaskResult) if f.init}
    return_value = values.pop("_return_value", None)
    result = TaskResult(**{k: v for k, v in values.items() if k in accepted})
    object.__setattr__(result, "_return_value", return_value)
    return result


def set_field(instance: Any, name: str, value: Any) -> None:
    """Set a field of a frozen ``TaskResult`` (as Django's own backends do)."""
    object.__setattr__(instance, name, value)
