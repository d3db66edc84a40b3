"""System checks for ``DJANGO_JOBS``: bad values are reported at startup, not in a worker."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError, connections
from redis.connection import parse_url

from django_jobs import validation
from django_jobs.conf import DEFAULTS, jobs_settings
from django_jobs.exceptions import StoreError
from django_jobs.models import ScheduledTask
from django_jobs.queue import JobQueue
from django_jobs.registry import registry
from django_jobs.scheduling.settings import task_from_setting
from django_jobs.store.connection import connection_url, redact_url, server_version

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
HASH_TAG = re.compile(r"\{[^{}]+\}")
MIN_REDIS = (6, 2)

_POSITIVE_INTS = ("JOB_TTL", "RESULT_TTL", "MAX_LOST", "MAX_PAYLOAD_BYTES")
# Numbers, not only integers: tests compress time with fractions of a second.
_POSITIVE_NUMBERS = ("RETRY_BACKOFF_BASE", "RETRY_BACKOFF_MAX", "DEFAULT_TIMEOUT", "LEASE_TIMEOUT")
_POSITIVE_NUMBERS += ("REDIS_CONNECT_TIMEOUT", "REDIS_SOCKET_TIMEOUT")


def _error(msg: str, hint: str, id: int) -> Error:
    return Error(msg, hint=hint, id=f"django_jobs.E{id:03d}")


@register()
def check_settings(**kwargs: Any) -> list[CheckMessage]:
    """E001-E009 and E011: the shape and values of ``DJANGO_JOBS``."""
    user = getattr(settings, "DJANGO_JOBS", {})
    if not isinstance(user, dict):
        return [_error("DJANGO_JOBS must be a dict.", f"It is a {type(user).__name__}.", 1)]
    errors: list[CheckMessage] = []
    unknown = sorted(map(str, set(user) - set(DEFAULTS)))
    if unknown:
        errors.append(
            _error(
                f"DJANGO_JOBS has unknown keys: {', '.join(unknown)}.",
                f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                2,
            )
        )
    conf = jobs_settings.as_dict()
    for name in (*_POSITIVE_INTS, "MAX_RETRIES", *_POSITIVE_NUMBERS):
        what = f"DJANGO_JOBS['{name}']"
        try:
            if name in _POSITIVE_NUMBERS:
                validation.seconds(conf[name], what, positive=True, timedelta_ok=False)
            else:
                validation.integer(conf[name], what, minimum=0 if name == "MAX_RETRIES" else 1)
        except ValueError as exc:
            errors.append(_error(str(exc), f"The default is {DEFAULTS[name]!r}.", 3))
    prefix = conf["PREFIX"]
    if not isinstance(prefix, str) or not HASH_TAG.match(prefix):
        errors.append(
            _error(
                f"DJANGO_JOBS['PREFIX'] {prefix!r} must start with a Redis hash tag.",
                "Write it in braces, e.g. '{myproject_jobs}', so that all keys of the "
                "namespace share one Redis Cluster slot and the Lua scripts can use them.",
                4,
            )
        )
    queues = conf["QUEUES"]
    if (
        not isinstance(queues, (list, tuple))
        or not queues
        or not all(isinstance(q, str) and QUEUE_NAME.match(q) for q in queues)
        or len(set(queues)) != len(queues)
    ):
        errors.append(
            _error(
                f"DJANGO_JOBS['QUEUES'] must be a non-empty list of distinct queue names, "
                f"not {queues!r}.",
                "Queue names use letters, digits, '_', '.' and '-'.",
                5,
            )
        )
    elif conf["DEFAULT_QUEUE"] not in queues:
        errors.append(
            _error(
                f"DJANGO_JOBS['DEFAULT_QUEUE'] {conf['DEFAULT_QUEUE']!r} is not one of "
                f"DJANGO_JOBS['QUEUES'] {list(queues)!r}.",
                "Add it to QUEUES or pick one of them.",
                6,
            )
        )
    alias = conf["CONNECTION"]
    if alias is not None:
        cache = settings.CACHES.get(alias) if isinstance(alias, str) else None
        if cache is None:
            errors.append(
                _error(
                    f"DJANGO_JOBS['CONNECTION'] {alias!r} is not an alias in CACHES.",
                    "Name a django-redis cache, or set REDIS_URL instead.",
                    7,
                )
            )
        elif not str(cache.get("BACKEND", "")).startswith("django_redis."):
            errors.append(
                _error(
                    f"DJANGO_JOBS['CONNECTION'] {alias!r} is not a django-redis cache.",
                    "Its BACKEND must be django_redis.cache.RedisCache.",
                    8,
                )
            )
    elif not _valid_url(conf["REDIS_URL"]):
        errors.append(
            _error(
                f"DJANGO_JOBS['REDIS_URL'] must be a redis://, rediss:// or unix:// URL, not "
                f"{redact_url(str(conf['REDIS_URL']))!r}.",
                "For example 'redis://127.0.0.1:6379/0'.",
                9,
            )
        )
    if not errors:
        errors += _check_schedules()
    return errors


def _check_schedules() -> list[CheckMessage]:
    """E011: a task of ``DJANGO_JOBS['SCHEDULES']`` that is invalid, names no registered job, or
    whose arguments do not fit the job's parameters."""
    declared = jobs_settings.SCHEDULES
    hint = (
        "Each entry is 'name': {'job': ..., and one of 'interval': seconds, 'cron': '0 2 * * *' "
        "or 'run_at': datetime}; see the README."
    )
    if not isinstance(declared, dict):
        return [
            _error(
                f"DJANGO_JOBS['SCHEDULES'] must be a dict of task name to schedule, not "
                f"{type(declared).__name__}.",
                hint,
                11,
            )
        ]
    errors: list[CheckMessage] = []
    for name, spec in declared.items():
        try:
            task = task_from_setting(name, spec)
        except ValueError as exc:
            errors.append(_error(str(exc), hint, 11))
            continue
        job_function = registry.get(task.job_name)
        if job_function is None:
            errors.append(
                _error(
                    f"DJANGO_JOBS['SCHEDULES'][{name!r}] names the job {task.job_name!r}, which "
                    "is not registered.",
                    f"Registered jobs: {', '.join(registry.names()) or '(none)'}. Jobs are "
                    "registered with @job in the jobs.py module of an installed app.",
                    11,
                )
            )
            continue
        try:
            validation.arguments(task.job_name, job_function.func, task.args, task.kwargs)
        except TypeError as exc:
            errors.append(
                _error(
                    f"DJANGO_JOBS['SCHEDULES'][{name!r}]: {exc}",
                    "Its 'args' and 'kwargs' are the job's arguments: give each parameter "
                    "the job needs, and no other.",
                    11,
                )
            )
    return errors


def _valid_url(url: Any) -> bool:
    if not isinstance(url, str) or url.split("://", 1)[0] not in ("redis", "rediss", "unix"):
        return False
    try:
        parse_url(url)
    except ValueError:
        return False
    return True


@register()
def check_redis(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W001: Redis unreachable; E010: Redis older than 6.2. Skipped if the settings are bad."""
    if check_settings():
        return []
    url = connection_url()
    try:
        version = server_version(url)
    except (StoreError, ValueError) as exc:
        return [
            Warning(
                f"Redis at {redact_url(url)} does not answer: {exc}",
                hint="Start redis-server or fix DJANGO_JOBS['REDIS_URL']; jobs cannot be "
                "enqueued or run until it answers.",
                id="django_jobs.W001",
            )
        ]
    found = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if found < MIN_REDIS:
        return [
            _error(
                f"Redis at {redact_url(url)} is version {version}; django-jobs needs 6.2 or newer.",
                "Upgrade the Redis server.",
                10,
            )
        ]
    return []


@register(Tags.database)
def check_scheduled_tasks(
    app_configs: Any = None, databases: list[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W002: a ``ScheduledTask`` in the database names a job that is not registered.

    A database check, like Django's own: ``migrate`` and ``check --database default`` run it.
    Skipped for a database without the table (before ``migrate``) or that cannot be read.
    """
    found: list[tuple[str, str]] = []
    for alias in databases or []:
        connection = connections[alias]
        try:
            with connection.cursor() as cursor:
                tables = connection.introspection.table_names(cursor)
            if ScheduledTask._meta.db_table in tables:
                found += ScheduledTask.objects.using(alias).values_list("name", "job_name")
        except DatabaseError:
            continue
    return [
        Warning(
            f"Scheduled task {name!r} names the job {job_name!r}, which is not registered; its "
            "runs will fail.",
            hint=f"Choose a registered job in the admin, or register {job_name!r} with @job. "
            f"Registered jobs: {', '.join(registry.names()) or '(none)'}.",
            obj=name,
            id="django_jobs.W002",
        )
        for name, job_name in sorted(set(found))
        if job_name not in registry
    ]


@register("django_jobs", deploy=True)
def check_unserved_queues(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W004: a queue has ready jobs but no live worker serves it; they wait until one does.

    A deployment check (``manage.py check --deploy``, or ``--deploy --tag django_jobs`` for
    this one alone): it reports what Redis holds at the moment, not the settings. Commands run
    the other checks each time they start, ``runworker`` too, just before it becomes the
    worker that was missing; they neither report this nor ask Redis for it. Nothing is reported
    when the settings are bad or Redis does not answer (W001 says so).
    """
    if check_settings() or check_redis():
        return []
    try:
        unserved = JobQueue().stats()["unserved"]
    except StoreError:
        return []
    return [
        Warning(
            f"Queue {queue!r} has {count} ready job{'' if count == 1 else 's'} but no live "
            "worker serves it: they wait until one does.",
            hint=f"Start a worker that serves it: manage.py runworker (every queue of "
            f"DJANGO_JOBS['QUEUES']) or runworker --queues {queue}. JobQueue().workers() "
            "lists the live workers and their queues.",
            obj=queue,
            id="django_jobs.W004",
        )
        for queue, count in sorted(unserved.items())
    ]
