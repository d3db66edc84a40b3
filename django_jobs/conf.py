"""The ``DJANGO_JOBS`` settings dict, read lazily so ``override_settings`` works."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # Connection: a Redis URL, or the alias of a django-redis cache whose client is reused.
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "CONNECTION": None,
    # Seconds to wait for a TCP connection and for a reply (blocking waits get their block time
    # on top), so that nothing hangs on a frozen Redis; options in REDIS_URL take precedence.
    "REDIS_CONNECT_TIMEOUT": 5,
    "REDIS_SOCKET_TIMEOUT": 10,
    # Every key starts with this; the braces are a Redis Cluster hash tag.
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
}


class JobsSettings:
    """Attribute access to ``settings.DJANGO_JOBS`` merged over :data:`DEFAULTS`.

    The merge is cached and dropped whenever Django reports a settings change, which is what
    ``override_settings`` does in tests.
    """

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    @property
    def user_settings(self) -> Any:
        return getattr(settings, "DJANGO_JOBS", {})

    def as_dict(self) -> dict[str, Any]:
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
        return self.as_dict()[name]

    def reload(self) -> None:
        self._cache = None


jobs_settings = JobsSettings()


@receiver(setting_changed)
def _reload_jobs_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == "DJANGO_JOBS":
        jobs_settings.reload()
