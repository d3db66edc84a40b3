"""The ``DJANGO_JOBS`` settings dict: its defaults, the rule of each setting, and attribute access
to it, read lazily so ``override_settings`` works.

Each setting is checked where it is used: the first read of a bad value raises
:class:`InvalidSetting` (an ``ImproperlyConfigured``) naming the setting, the value and the
fix. Web servers such as gunicorn and uWSGI run no system checks, so a mistake is named at the
first ``.delay()`` instead of surfacing later as a puzzling error. The system checks
(:mod:`django_jobs.checks`) report the same :class:`Problem` of each setting, with the same
words: one rule and one message each.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.connection import parse_url

from django_jobs import rules
from django_jobs.store import topology
from django_jobs.store.redaction import redact_text, redact_url

DEFAULTS: dict[str, Any] = {
    # Connection: a Redis URL, or the alias of a django-redis cache whose client is reused.
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "CONNECTION": None,
    # Seconds to wait for a TCP connection and for a reply (blocking waits get their block time
    # on top), so that nothing hangs on a frozen Redis; options in REDIS_URL take precedence.
    "REDIS_CONNECT_TIMEOUT": 5,
    "REDIS_SOCKET_TIMEOUT": 10,
    # Microseconds a sync thread polls for a reply before it sleeps on the socket: a wake-up
    # from that sleep costs a virtual machine more than Redis spends on an enqueue (see
    # django_jobs.store.spin). 0: never poll.
    "REPLY_SPIN_MICROSECONDS": 100,
    # After each enqueue, wait until this many replicas have the job (Redis's WAIT, pipelined
    # with the enqueue: one round trip), at most WAIT_FOR_REPLICAS_TIMEOUT seconds. 0: do not
    # wait (replication is asynchronous: a master lost right after an enqueue may lose the job).
    "WAIT_FOR_REPLICAS": 0,
    "WAIT_FOR_REPLICAS_TIMEOUT": 1,
    # Call the scripts as Redis functions (FCALL; Redis 7+, loaded once as one library) where
    # the server takes them; False: always as scripts (EVALSHA), e.g. behind a proxy that
    # passes EVALSHA but not FCALL.
    "REDIS_FUNCTIONS": True,
    # Every key starts with this; the braces are a Redis Cluster hash tag. Two projects on one
    # Redis need two prefixes: with the same one, their workers take each other's jobs.
    "PREFIX": "{django_jobs}",
    "QUEUES": ["default"],
    "DEFAULT_QUEUE": "default",
    # Seconds.
    "JOB_TTL": 7 * 24 * 3600,
    "RESULT_TTL": 24 * 3600,
    "MAX_RETRIES": 3,
    "RETRY_BACKOFF_BASE": 60,
    "RETRY_BACKOFF_MAX": 3600,
    "DEFAULT_TIMEOUT": 300,
    "LEASE_TIMEOUT": 60,
    # A job whose worker died this many times goes to the dead-letter queue (poison pill).
    "MAX_LOST": 3,
    # Bytes of JSON a job's args, kwargs and meta may take together: more is refused at enqueue,
    # and a larger record found in Redis is dead-lettered unrun. Pass big data by reference.
    "MAX_PAYLOAD_BYTES": 1024 * 1024,
    # .delay() inside transaction.atomic() enqueues when the transaction commits.
    "ENQUEUE_ON_COMMIT": True,
    # Periodic tasks declared in code, by name: written into the ScheduledTask table when a
    # scheduler starts (see django_jobs.scheduling.settings.task_from_setting for the keys of each).
    "SCHEDULES": {},
    # The bearer token that lets a scraper read the metrics view (django_jobs.metrics.views);
    # None: only logged-in users with the django_jobs.view_job permission may.
    "METRICS_TOKEN": None,
    # Where enqueued jobs go: "redis" (to Redis, for workers), or, in tests, "immediate" (run at
    # once in the calling process) or "capture" (recorded, run by drain()): see
    # django_jobs.testing.
    "MODE": "redis",
    # Flow control per queue, shared by every worker: {"emails": {"rate": "50/s",
    # "concurrency": 4}} lets the jobs of queue "emails" start at most 50 times a second and
    # run at most 4 at once (see django_jobs.flow).
    "QUEUE_LIMITS": {},
    # Sharding by queue for Redis Cluster: shard name -> its queues, e.g. {"mail": ["emails"]}.
    # Each shard's keys share a hash tag of their own ({django_jobs:mail}), so shards may live on
    # different masters; unlisted queues stay in the default shard, under PREFIX as it is (see
    # django_jobs.store.shards and docs/sharding.md).
    "SHARDS": {},
}

#: The values of ``DJANGO_JOBS['MODE']``.
MODES = ("redis", "immediate", "capture")

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
HASH_TAG = re.compile(r"\{[^{}]+\}")
#: A shard's name (``SHARDS``): it goes into a hash tag and into job ids, before a "." (an id
#: of 20 + 1 + 32 characters fits the 64 bytes a worker's shared memory keeps of it).
SHARD_NAME = re.compile(r"^[A-Za-z0-9_-]{1,20}$")

# Counts, with their least value.
_COUNTS = {"JOB_TTL": 1, "RESULT_TTL": 1, "MAX_LOST": 1, "MAX_PAYLOAD_BYTES": 1, "MAX_RETRIES": 0}
_COUNTS["WAIT_FOR_REPLICAS"] = 0
_COUNTS["REPLY_SPIN_MICROSECONDS"] = 0
# Counts with a greatest value: polling is for replies that are about to come.
_MAXIMA = {"REPLY_SPIN_MICROSECONDS": 10_000}
# Numbers of seconds, not only integers: tests compress time with fractions of a second.
_SECONDS = ("RETRY_BACKOFF_BASE", "RETRY_BACKOFF_MAX", "DEFAULT_TIMEOUT", "LEASE_TIMEOUT")
_SECONDS += ("REDIS_CONNECT_TIMEOUT", "REDIS_SOCKET_TIMEOUT", "WAIT_FOR_REPLICAS_TIMEOUT")


class InvalidSetting(ImproperlyConfigured, ValueError):
    """A ``DJANGO_JOBS`` setting with a bad value, raised where it is read. A ``ValueError``
    too, as the errors of a bad value read later (an unreadable ``REDIS_URL``) always were."""


@dataclass(frozen=True)
class Problem:
    """What is wrong with the settings: the system check ``django_jobs.E<code>`` reports it,
    and reading the setting raises it (:meth:`error`)."""

    code: int
    message: str
    hint: str

    @property
    def id(self) -> str:
        return f"django_jobs.E{self.code:03d}"

    def error(self) -> InvalidSetting:
        return InvalidSetting(f"{self.message} {self.hint}")


def shape_problems(user: Any) -> list[Problem]:
    """E001 (``DJANGO_JOBS`` is not a dict) or E002 (it has keys that are no setting: a typo
    that would leave the default in force)."""
    if not isinstance(user, dict):
        return [Problem(1, "DJANGO_JOBS must be a dict.", f"It is a {type(user).__name__}.")]
    unknown = sorted(map(str, set(user) - set(DEFAULTS)))
    if unknown:
        return [
            Problem(
                2,
                f"DJANGO_JOBS has unknown keys: {', '.join(unknown)}.",
                f"Known keys: {', '.join(sorted(DEFAULTS))}.",
            )
        ]
    return []


def _number(name: str, value: Any, conf: Mapping[str, Any]) -> Problem | None:
    what = f"DJANGO_JOBS['{name}']"
    try:
        if name in _SECONDS:
            rules.seconds(value, what, positive=True, timedelta_ok=False)
        else:
            rules.integer(value, what, minimum=_COUNTS[name], maximum=_MAXIMA.get(name))
    except ValueError as exc:
        return Problem(3, str(exc), f"The default is {DEFAULTS[name]!r}.")
    return None


def _prefix(name: str, value: Any, conf: Mapping[str, Any]) -> Problem | None:
    if isinstance(value, str) and HASH_TAG.match(value):
        return None
    return Problem(
        4,
        f"DJANGO_JOBS['PREFIX'] {value!r} must start with a Redis hash tag.",
        "Write it in braces, e.g. '{myproject_jobs}', so that all keys of the namespace share "
        "one Redis Cluster slot and the Lua scripts can use them.",
    )


def _queues(name: str, value: Any, conf: Mapping[str, Any]) -> Problem | None:
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(q, str) and QUEUE_NAME.match(q) for q in value)
        and len(set(value)) == len(value)
    ):
        return None
    return Problem(
        5,
        f"DJANGO_JOBS['QUEUES'] must be a non-empty list of distinct queue names, not {value!r}.",
        "Queue names use letters, digits, '_', '.' and '-'.",
    )


def _default_queue(name: str, value: Any, conf: Mapping[str, Any]) -> Problem | None:
    queues = conf["QUEUES"]
    if _queues("QUEUES", queues, conf) is not None or value in queues:
        return None  # a bad QUEUES is a problem of its own
    return Problem(
        6,
        f"DJANGO_JOBS['DEFAULT_QUEUE'] {value!r} is not one of DJANGO_JOBS['QUEUES'] "
        f"{list(queues)!r}.",
        "Add it to QUEUES or pick one of them.",
    )


def _connection(name: str, value: Any, conf: Mapping[str, Any]) -> Problem | None:
    if value is None:
        return None
    cache = settings.CACHES.get(value) if isinstance(value, str) else None
    if cache is None:
        return Problem(
            7,
            f"DJANGO_JOBS['CONNECTION'] {value!r} is not an alias in CACHES.",
            "Name a django-redis cache, or set REDIS_URL instead.",
        )
    if not str(cache.get("BACKEND", "")).startswith("django_redis."):
        return Problem(
            8,
            f"DJANGO_JOBS['CONNECTION'] {value!r} is not a django-redis cache.",
            "Its BACKEND must be django_redis.cache.RedisCache.",
        )
    return None


def _redis_url(name: str, value: Any, conf: Mapping[str, Any]) -> Problem | None:
    if conf["CONNECTION"] is not None:
        return None  # not used
    hint = (
        "For example 'redis://127.0.0.1:6379/0', 'redis+cluster://10.0.0.1:6379,10.0.0.2:6379' "
        "or 'redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0'."
    )
    if isinstance(value, str) and topology.is_topology_url(value):
        try:
            topology.parse(value)
            return None
        except ValueError as exc:
            return Problem(
                9,
                f"DJANGO_JOBS['REDIS_URL'] {redact_url(value)!r} cannot be read: "
                f"{redact_text(str(exc), value)}.",
                hint,
            )
    if isinstance(value, str) and value.split("://", 1)[0] in ("redis", "rediss", "unix"):
        try:
            parse_url(value)
            return None
        except ValueError:
            pass
    return Problem(
        9,
        "DJANGO_JOBS['REDIS_URL'] must be a redis://, rediss:// or unix:// URL (or a "
        f"redis+cluster:// or redis+sentinel:// one), not {redact_url(str(value))!r}.",
        hint,
    )


def _schedules(name: str, value: Any, conf: Mapping[str, Any]) -> Problem | None:
    # Each entry is checked where it is read, by scheduling.settings.task_from_setting.
    if isinstance(value, dict):
        return None
    return Problem(
        11,
        "DJANGO_JOBS['SCHEDULES'] must be a dict of task name to schedule, not "
        f"{type(value).__name__}.",
        "Each entry is 'name': {'job': ..., and one of 'interval': seconds, 'cron': "
        "'0 2 * * *' or 'run_at': datetime}; see the README.",
    )


def _flag(name: str, value: Any, conf: Mapping[str, Any]) -> Problem | None:
    if isinstance(value, bool):
        return None
    return Problem(
        12,
        f"DJANGO_JOBS['{name}'] must be True or False, not {value!r}.",
        f"The default is {DEFAULTS[name]!r}.",
    )


def _metrics_token(name: str, value: Any, conf: Mapping[str, Any]) -> Problem | None:
    if value is None or (
        isinstance(value, str) and len(value) >= 16 and not any(c.isspace() for c in value)
    ):
        return None
    # A secret is not echoed into logs and error pages: only what is wrong with it.
    if not isinstance(value, str):
        wrong = f"it is a {type(value).__name__}"
    elif len(value) < 16:
        wrong = f"it has {len(value)}"
    else:
        wrong = "it contains whitespace"
    return Problem(
        13,
        "DJANGO_JOBS['METRICS_TOKEN'] must be None or a string of at least 16 characters "
        f"without whitespace; {wrong}.",
        "Make one with python -c 'import secrets; print(secrets.token_urlsafe(32))'.",
    )


def _mode(name: str, value: Any, conf: Mapping[str, Any]) -> Problem | None:
    if value in MODES:
        return None
    return Problem(
        14,
        f"DJANGO_JOBS['MODE'] must be one of {', '.join(map(repr, MODES))}, not {value!r}.",
        "'redis' (the default) sends jobs to Redis for workers; 'immediate' and 'capture' are "
        "for tests (see django_jobs.testing).",
    )


def _queue_limits(name: str, value: Any, conf: Mapping[str, Any]) -> Problem | None:
    hint = "For example {'emails': {'rate': '50/s', 'concurrency': 4}}."
    if not isinstance(value, dict):
        return Problem(15, f"DJANGO_JOBS['QUEUE_LIMITS'] must be a dict, not {value!r}.", hint)
    queues = conf["QUEUES"] if isinstance(conf["QUEUES"], list) else []
    for queue, limits in value.items():
        what = f"DJANGO_JOBS['QUEUE_LIMITS'][{queue!r}]"
        if queue not in queues:
            return Problem(15, f"{what}: {queue!r} is not one of DJANGO_JOBS['QUEUES'].", hint)
        if not isinstance(limits, dict) or not limits or set(limits) - {"rate", "concurrency"}:
            return Problem(
                15, f"{what} must be a dict with 'rate' and/or 'concurrency', not {limits!r}.", hint
            )
        try:
            if "rate" in limits:
                rules.rate(limits["rate"], f"{what}['rate']")
            if "concurrency" in limits:
                rules.integer(limits["concurrency"], f"{what}['concurrency']", minimum=1)
        except ValueError as exc:
            return Problem(15, str(exc), hint)
    return None


def _shards(name: str, value: Any, conf: Mapping[str, Any]) -> Problem | None:
    hint = (
        "For example {'mail': ['emails', 'newsletters']}: shard name -> its queues; the queues "
        "no shard lists stay in the default shard."
    )
    wrong = _shards_problem(value, conf["QUEUES"] if isinstance(conf["QUEUES"], list) else [])
    return None if wrong is None else Problem(16, f"DJANGO_JOBS['SHARDS'] {wrong}.", hint)


def _shards_problem(value: Any, queues: list[str]) -> str | None:
    if not isinstance(value, dict):
        return f"must be a dict of shard name -> list of queues, not {value!r}"
    owner: dict[str, str] = {}
    for shard, listed in value.items():
        if not isinstance(shard, str) or not SHARD_NAME.match(shard):
            return (
                f"has the shard name {shard!r}: use 1 to 20 letters, digits, '_' or '-' (the "
                "name goes into the hash tag of the shard's keys and into its job ids, which "
                "the worker keeps in 64 bytes)"
            )
        if not isinstance(listed, (list, tuple)) or not listed:
            return f"[{shard!r}] must be a non-empty list of queues, not {listed!r}"
        for queue in listed:
            if queue not in queues:
                return f"[{shard!r}] names {queue!r}, which is not one of DJANGO_JOBS['QUEUES']"
            if queue in owner:
                return (
                    f"puts queue {queue!r} in two shards, {owner[queue]!r} and {shard!r}: the "
                    "jobs of a queue live in one shard"
                )
            owner[queue] = shard
    return None


_Rule = Callable[[str, Any, Mapping[str, Any]], "Problem | None"]
RULES: dict[str, _Rule] = {
    "REDIS_URL": _redis_url,
    "CONNECTION": _connection,
    "PREFIX": _prefix,
    "QUEUES": _queues,
    "DEFAULT_QUEUE": _default_queue,
    "ENQUEUE_ON_COMMIT": _flag,
    "REDIS_FUNCTIONS": _flag,
    "SCHEDULES": _schedules,
    "METRICS_TOKEN": _metrics_token,
    "MODE": _mode,
    "QUEUE_LIMITS": _queue_limits,
    "SHARDS": _shards,
    **dict.fromkeys((*_COUNTS, *_SECONDS), _number),
}


def problem(name: str, conf: Mapping[str, Any]) -> Problem | None:
    """What is wrong with setting ``name`` in the merged settings ``conf``, or ``None``."""
    return RULES[name](name, conf[name], conf)


class JobsSettings:
    """Attribute access to ``settings.DJANGO_JOBS`` merged over :data:`DEFAULTS`.

    A setting is checked by its rule (:func:`problem`) the first time it is read, and
    :class:`InvalidSetting` raised if it is bad. The merge and the checked values are cached
    and dropped whenever Django reports a settings change, which is what
    ``override_settings`` does in tests.
    """

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None
        self._checked: dict[str, Any] = {}

    @property
    def user_settings(self) -> Any:
        return getattr(settings, "DJANGO_JOBS", {})

    def as_dict(self) -> dict[str, Any]:
        """The merged settings, unchecked (the system checks look at them as they are)."""
        if self._cache is None:
            user = self.user_settings
            merged = dict(DEFAULTS)
            if isinstance(user, dict):
                merged.update(user)
            self._cache = merged
        return self._cache

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"DJANGO_JOBS has no setting {name!r}")
        checked = self._checked
        if name in checked:
            return checked[name]
        if not checked:  # the first read since the settings changed
            for found in shape_problems(self.user_settings):
                raise found.error()
        conf = self.as_dict()
        found = problem(name, conf)
        if found is not None:
            raise found.error()
        checked[name] = conf[name]
        # Kept as an attribute too: later reads skip __getattr__ (an enqueue reads several).
        self.__dict__[name] = conf[name]
        return conf[name]

    def reload(self) -> None:
        self._cache = None
        self._checked = {}
        for name in DEFAULTS:
            self.__dict__.pop(name, None)


jobs_settings = JobsSettings()


@receiver(setting_changed)
def _reload_jobs_settings(*, setting: str, **kwargs: Any) -> None:
    # CONNECTION is checked against CACHES.
    if setting in ("DJANGO_JOBS", "CACHES"):
        jobs_settings.reload()
