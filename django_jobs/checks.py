"""System checks for ``DJANGO_JOBS``: bad values are reported at startup, not in a worker.

The rule and the message of each setting are those of :mod:`django_jobs.conf`, which applies
them where the setting is read too (web servers run no system checks)."""

from __future__ import annotations

import re
from typing import Any

import redis
from django.conf import settings
from django.core import mail
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError, connections

from django_jobs import validation
from django_jobs.conf import DEFAULTS, RULES, Problem, jobs_settings, problem, shape_problems
from django_jobs.exceptions import StoreError
from django_jobs.models import ScheduledTask
from django_jobs.queue import JobQueue
from django_jobs.registry import registry
from django_jobs.scheduling.settings import task_from_setting
from django_jobs.store import shards
from django_jobs.store.connection import (
    configured_topology,
    connection_url,
    redact_url,
    server_version,
)

MIN_REDIS = (6, 2)
# The first redis-py whose cluster client locks its map of the cluster against the threads that
# share it (redis-py pull request 3803). Before it, a thread that reloads the map during a
# failover can break another thread's command: up to 6.0 with "RuntimeError: dictionary changed
# size during iteration", seen in tests/test_cluster_shards.py with redis-py 5.0.
SAFE_CLUSTER_CLIENT = (7, 2)


def _reported(problem: Problem) -> Error:
    return Error(problem.message, hint=problem.hint, id=problem.id)


def _error(msg: str, hint: str, id: int) -> Error:
    return _reported(Problem(id, msg, hint))


@register()
def check_settings(**kwargs: Any) -> list[CheckMessage]:
    """E001-E009 and E011-E015: the shape and values of ``DJANGO_JOBS``, by the rules that
    reading each setting applies too (:func:`django_jobs.conf.problem`)."""
    shape = shape_problems(getattr(settings, "DJANGO_JOBS", {}))
    if any(found.code == 1 for found in shape):  # not a dict: nothing else can be read
        return [_reported(found) for found in shape]
    errors: list[CheckMessage] = [_reported(found) for found in shape]
    conf = jobs_settings.as_dict()
    errors += [_reported(found) for name in RULES if (found := problem(name, conf)) is not None]
    if not errors:
        errors += _check_schedules()
        errors += _check_shared_limits()
    return errors


DEFAULT_NAME = "the default shard"


def _check_shared_limits() -> list[CheckMessage]:
    """E017: with ``SHARDS``, registered jobs on queues of different shards that name the same
    rate, concurrency or unique key: each shard's scripts would count it apart (a script
    touches the keys of one slot), so the limit would hold per shard, not across them."""
    if not jobs_settings.SHARDS:
        return []
    users: dict[tuple[str, str], dict[str, str]] = {}  # (kind, key) -> {shard: a job}
    for job_function in registry:
        flow, queue = job_function.flow, job_function.queue or jobs_settings.DEFAULT_QUEUE
        if flow is None:
            continue
        shard = shards.of_queue(queue)
        for kind, key in (
            ("rate", flow.rate_key if flow.rate else None),
            ("concurrency", flow.concurrency_key if flow.concurrency else None),
            ("unique", flow.unique_key if flow.unique else None),
        ):
            if isinstance(key, str):  # a job's own name is its own; a function is not known
                users.setdefault((kind, key), {}).setdefault(shard, job_function.name)
    return [
        _error(
            f"The {kind} key {key!r} is used by jobs on queues of different shards: "
            f"{', '.join(f'{name} ({shard or DEFAULT_NAME})' for shard, name in found.items())}.",
            "Each shard counts its own limits and unique keys (its scripts touch one Redis "
            "Cluster slot): put these jobs' queues in one shard (DJANGO_JOBS['SHARDS']), or "
            "give them keys of their own.",
            17,
        )
        for (kind, key), found in users.items()
        if len(found) > 1
    ]


def _running_tests() -> bool:
    """Whether Django's test environment is set up (``manage.py test``, pytest-django): its
    ``setup_test_environment()`` gives ``django.core.mail`` an ``outbox``, before the test
    runner runs the system checks."""
    return hasattr(mail, "outbox")


@register()
def check_prefix(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W003: ``PREFIX`` is the default. Two projects on one Redis that both keep it share one
    namespace: each one's workers take the other's jobs, and fail them as unregistered. Not
    reported under the test runner, whose settings often keep the default on a local Redis."""
    if _running_tests() or check_settings():
        return []
    prefix, default = jobs_settings.PREFIX, DEFAULTS["PREFIX"]
    if prefix != default:
        return []
    return [
        Warning(
            f"DJANGO_JOBS['PREFIX'] is the default, {default!r}: every project on "
            "this Redis that keeps it shares one namespace, and their workers take each "
            "other's jobs.",
            hint="Give this project a prefix of its own, e.g. '{myproject_jobs}' (jobs still "
            "under the old prefix are not moved: let them finish first). If this Redis serves "
            "this project alone, SILENCED_SYSTEM_CHECKS = ['django_jobs.W003'].",
            id="django_jobs.W003",
        )
    ]


def _check_schedules() -> list[CheckMessage]:
    """E011: a task of ``DJANGO_JOBS['SCHEDULES']`` that is invalid, names no registered job, or
    whose arguments do not fit the job's parameters."""
    declared = jobs_settings.SCHEDULES  # a dict: check_settings found nothing wrong
    hint = (
        "Each entry is 'name': {'job': ..., and one of 'interval': seconds, 'cron': '0 2 * * *' "
        "or 'run_at': datetime}; see the README."
    )
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


@register()
def check_mode(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W005: ``MODE`` is a testing mode outside tests, so jobs run in (or wait in the memory
    of) the process that enqueues them, and no worker sees them."""
    if _running_tests() or check_settings() or jobs_settings.MODE == "redis":
        return []
    return [
        Warning(
            f"DJANGO_JOBS['MODE'] is {jobs_settings.MODE!r}: jobs do not go to Redis, no worker "
            "runs them, and their records live in this process's memory.",
            hint="It is meant for tests (django_jobs.testing). Remove it from these settings, "
            "or, on a development machine that runs without Redis on purpose, "
            "SILENCED_SYSTEM_CHECKS = ['django_jobs.W005'].",
            id="django_jobs.W005",
        )
    ]


@register()
def check_redis(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W001: Redis unreachable; E010: Redis older than 6.2. Skipped if the settings are bad,
    and in a testing ``MODE``, where jobs do not go to Redis."""
    if check_settings() or jobs_settings.MODE != "redis":
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
    if _major_minor(version) < MIN_REDIS:
        return [
            _error(
                f"Redis at {redact_url(url)} is version {version}; django-jobs needs 6.2 or newer.",
                "Upgrade the Redis server.",
                10,
            )
        ]
    return []


@register()
def check_cluster_client(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W006: a Redis Cluster used with a redis-py older than 7.2, whose cluster client is not
    safe to share between threads while the cluster fails over. Skipped if the settings are
    bad, and in a testing ``MODE``."""
    if check_settings() or jobs_settings.MODE != "redis":
        return []
    if _major_minor(redis.__version__) >= SAFE_CLUSTER_CLIENT or not _uses_cluster():
        return []
    return [
        Warning(
            f"redis-py {redis.__version__} talks to a Redis Cluster here: before 7.2 its "
            "cluster client does not lock its map of the cluster against the threads that "
            "share it, and while the cluster fails over a command may fail with an error "
            "that is not Redis's (RuntimeError).",
            hint="Install redis-py 7.2 or newer: pip install 'redis[hiredis]>=7.2'.",
            id="django_jobs.W006",
        )
    ]


def _uses_cluster() -> bool:
    """Whether django-jobs' Redis is a cluster: by ``REDIS_URL``, or by the client of the
    ``CONNECTION`` cache (``False`` if it cannot be made: W001 says why)."""
    try:
        found = configured_topology()
    except (redis.RedisError, redis.exceptions.RedisClusterException, ValueError):
        return False
    return found is not None and found.is_cluster


def _major_minor(version: str) -> tuple[int, ...]:
    """``"7.2.14"`` -> ``(7, 2)``: what a version check compares."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


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
    if check_settings() or jobs_settings.MODE != "redis" or check_redis():
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
