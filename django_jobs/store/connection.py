"""Redis clients for django-jobs: one sync client per process, one async client per event loop."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_jobs.conf import jobs_settings
from django_jobs.exceptions import RedisUnavailable

# A web request must not hang on an unreachable host; options in the URL take precedence.
CLIENT_OPTIONS = {"socket_connect_timeout": 5}

_sync_client: redis.Redis | None = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
    weakref.WeakKeyDictionary()
)


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = "&".join(
        f"{name}=***" if name == "password" else f"{name}{eq}{value}"
        for name, eq, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    # Built by hand: urlunsplit() would turn unix:///path into unix:/path.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def connection_url() -> str:
    """The URL django-jobs connects to: ``REDIS_URL``, or the ``CONNECTION`` cache's location."""
    alias = jobs_settings.CONNECTION
    if alias is None:
        return str(jobs_settings.REDIS_URL)
    from django.conf import settings

    # With replicas the first location is the primary, as for django-redis.
    location = settings.CACHES[alias]["LOCATION"]
    if isinstance(location, str):
        location = location.split(",")
    return str(location[0]).strip()


def get_redis() -> redis.Redis:
    """The shared sync client. With ``CONNECTION`` set, django-redis's own client is reused."""
    global _sync_client
    if _sync_client is None:
        alias = jobs_settings.CONNECTION
        if alias is not None:
            from django_redis import get_redis_connection

            _sync_client = get_redis_connection(alias)
        else:
            _sync_client = redis.Redis.from_url(connection_url(), **CLIENT_OPTIONS)
    return _sync_client


def get_async_redis() -> redis.asyncio.Redis:
    """An async client bound to the running event loop (asyncio connections cannot move loops)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = redis.asyncio.Redis.from_url(connection_url(), **CLIENT_OPTIONS)
        _async_clients[loop] = client
    return client


def server_version(url: str) -> str:
    """The version of the Redis server at ``url``, asked on a short-lived connection with short
    time-outs (system checks must not hang); :class:`RedisUnavailable` if it does not answer."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            return str(client.info("server")["redis_version"])
    except redis.RedisError as exc:
        raise RedisUnavailable(str(exc)) from exc


class Backoff:
    """Pauses between attempts while a service does not answer: 0.1 s, doubling up to ``limit``.

    Workers and schedulers outlive a Redis (or database) restart this way.
    """

    def __init__(self, limit: float = 5.0) -> None:
        self.limit = limit
        self.reset()

    def reset(self) -> None:
        self.pause = 0.1

    def next(self) -> float:
        pause, self.pause = self.pause, min(self.pause * 2, self.limit)
        return pause


def reset_connections() -> None:
    """Forget cached clients, e.g. after the settings changed or in a forked child process."""
    global _sync_client
    _sync_client = None
    _async_clients.clear()


@receiver(setting_changed)
def _reset_on_settings_change(*, setting: str, **kwargs: Any) -> None:
    # Tests change the Redis URL or the CONNECTION cache with override_settings.
    if setting in ("DJANGO_JOBS", "CACHES"):
        reset_connections()
