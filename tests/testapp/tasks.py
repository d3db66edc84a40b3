"""Tasks of Django's task API that the tests run on django-jobs workers (tests/settings.py TASKS).

The signal receivers at the end write what they saw to the ledger folder, outside Redis: in a
worker, ``task_started`` and ``task_finished`` are sent in the process that runs the task.
"""

import asyncio
import json
import os
import sys

from django.dispatch import receiver

from django_jobs import current_job
from django_jobs.tasks.compat import task_finished, task_started
from tests.testapp.jobs import append_to_ledger

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task


class Boom(Exception):
    """An exception of the test app's own, to see its full path in TaskResult.errors."""


@task
def add(a, b):
    return a + b


@task(queue_name="emails")
def record(label):
    return append_to_ledger(label)


@task
async def async_add(a, b):
    await asyncio.sleep(0.01)
    return a + b


@task
def count_with_progress(total):
    """Reports its progress through django-jobs: Django's TaskContext has no place for it."""
    for step in range(1, total + 1):
        current_job().progress(step, total, "task step")
    return total


@task(takes_context=True)
def with_context(context, label):
    result = context.task_result
    return {
        "label": label,
        "id": result.id,
        "attempt": context.attempt,
        "status": str(result.status),
        "worker_ids": result.worker_ids,
        "backend": result.backend,
        "priority": result.task.priority,
    }


@task(takes_context=True)
def flaky(context, failures):
    """Fails its first ``failures`` attempts, then returns the attempt number."""
    if context.attempt <= failures:
        raise ValueError(f"attempt {context.attempt}")
    return context.attempt


@task
def boom(message):
    raise Boom(message)


@task
def returns_tuple():
    return (1, (2, 3))


@task
def returns_set():
    return {1, 2}


def _write_signal(name, sender, task_result):
    if "JOBS_TEST_LEDGER" not in os.environ or not task_result.task.module_path.startswith(
        __name__
    ):
        return
    handled = sys.exc_info()[0]
    entry = {
        "signal": name,
        "sender": f"{sender.__module__}.{sender.__qualname__}",
        "id": task_result.id,
        "status": str(task_result.status),
        "attempts": task_result.attempts,
        "pid": os.getpid(),
        "handling": handled.__name__ if handled else None,
        "errors": [e.exception_class_path for e in task_result.errors],
        "last_traceback": task_result.errors[-1].traceback if task_result.errors else "",
    }
    append_to_ledger(json.dumps(entry), "signals.log")


@receiver(task_started)
def _on_started(sender, task_result, **kwargs):
    _write_signal("task_started", sender, task_result)


@receiver(task_finished)
def _on_finished(sender, task_result, **kwargs):
    _write_signal("task_finished", sender, task_result)
