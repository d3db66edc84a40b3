"""Redis clients for django-jobs: one sync client per process, one async client per event loop."""

from __future__ import annotations

import asyncio
import re
import weakref
from typing import Any

import redis
import redis.asyncio
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_jobs.conf import jobs_settings
from django_jobs.exceptions import RedisUnavailable


def client_options() -> dict[str, float]:
    """Connect and read timeouts for the clients made from ``REDIS_URL``: a web request must
    not hang on an unreachable or frozen host (redis-py's default is to wait for ever).
    ``redis.Redis.from_url`` lets options in the URL take precedence over these."""
    return {
        "socket_connect_timeout": float(jobs_settings.REDIS_CONNECT_TIMEOUT),
        "socket_timeout": float(jobs_settings.REDIS_SOCKET_TIMEOUT),
    }


_sync_client: redis.Redis | None = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
    weakref.WeakKeyDictionary()
)


# A query parameter that holds a password; its value runs to the next "&", whatever it holds.
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&]*)")
# A user name in front of a password is shown only if it cannot be part of a mangled password.
_PLAIN_USER = re.compile(r"[^/?#]*")


def _split(url: str) -> tuple[str, str, str, str]:
    """``url`` as (scheme with ``://``, userinfo, rest from the host on, query password part).

    Not ``urlsplit``: a password that is not URL-encoded may hold ``/``, ``?``, ``#`` or ``@``,
    which end its netloc early. The userinfo is everything up to the last ``@`` before a
    ``password=`` query parameter (``unix://`` URLs have no host after the ``@``).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    query = _QUERY_PASSWORD.search(rest)
    head, tail = (rest[: query.start()], rest[query.start() :]) if query else (rest, "")
    userinfo, at, host = head.rpartition("@")
    return scheme + sep, userinfo if at else "", host if at else head, tail


def _secrets(url: str) -> list[str]:
    """The passwords in ``url`` (or what may be one), as written."""
    _, userinfo, _, tail = _split(url)
    found = [value for _, value in _QUERY_PASSWORD.findall(tail)]
    user, colon, password = userinfo.partition(":")
    if colon and _PLAIN_USER.fullmatch(user):
        found.append(password)
    elif userinfo and not (not colon and _PLAIN_USER.fullmatch(user) and "@" not in user):
        found.append(userinfo)
    return [secret for secret in found if secret]


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``, also one that is not URL-encoded.

    A user name is kept (``redis://ada:***@host``) unless the userinfo cannot be read
    unambiguously, then all of it goes (``redis://***@host``); ``password=`` query
    parameters become ``password=***``.
    """
    scheme, userinfo, host, tail = _split(url)
    if userinfo:
        user, colon, _ = userinfo.partition(":")
        if colon and _PLAIN_USER.fullmatch(user):
            userinfo = f"{user}:***"
        elif colon or not _PLAIN_USER.fullmatch(user) or "@" in user:
            userinfo = "***"
        host = f"{userinfo}@{host}"
    return scheme + host + _QUERY_PASSWORD.sub(r"\1***", tail)


def redact_text(text: str, url: str) -> str:
    """``text`` (e.g. an error message of redis-py) without the passwords of ``url``.

    redis-py reads a password that is not URL-encoded as part of the host or path, and names
    those in its messages: every piece of the password is taken out too.
    """
    for secret in _secrets(url):
        pieces = {secret, *re.split(r"[:@/?#&]", secret)}
        for piece in sorted(pieces, key=len, reverse=True):
            if len(piece) >= 2:
                text = text.replace(piece, "***")
    return text


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


class _UnixSocketConnection(redis.UnixDomainSocketConnection):
    """redis-py before 5.1 (redis-py#3290) drops ``socket_timeout`` of a unix socket
    connection: its base ``__init__`` resets it, and a frozen Redis then blocks for ever."""

    def __init__(self, path: str = "", socket_timeout: float | None = None, **kwargs: Any):
        super().__init__(path=path, socket_timeout=socket_timeout, **kwargs)
        self.socket_timeout = socket_timeout


_UNIX_TIMEOUT_DROPPED = redis.UnixDomainSocketConnection(socket_timeout=1.0).socket_timeout is None


def _from_url(client_class: Any, url: str, **options: float) -> Any:
    try:
        client = client_class.from_url(url, **(options or client_options()))
        pool = client.connection_pool
        if _UNIX_TIMEOUT_DROPPED and pool.connection_class is redis.UnixDomainSocketConnection:
            pool.connection_class = _UnixSocketConnection
        return client
    except ValueError as exc:
        # redis-py names what it misread, which may be a piece of a password; the original
        # exception is not chained for the same reason.
        message = redact_text(str(exc), url)
        raise ValueError(f"Cannot read the Redis URL {redact_url(url)}: {message}") from None


def get_redis() -> redis.Redis:
    """The shared sync client. With ``CONNECTION`` set, django-redis's own client is reused."""
    global _sync_client
    if _sync_client is None:
        alias = jobs_settings.CONNECTION
        if alias is not None:
            from django_redis import get_redis_connection

            _sync_client = get_redis_connection(alias)
        else:
            _sync_client = _from_url(redis.Redis, connection_url())
    return _sync_client


def get_async_redis() -> redis.asyncio.Redis:
    """An async client bound to the running event loop (asyncio connections cannot move loops)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _from_url(redis.asyncio.Redis, connection_url())
        _async_clients[loop] = client
    return client


def server_version(url: str) -> str:
    """The version of the Redis server at ``url``, asked on a short-lived connection with short
    time-outs (system checks must not hang); :class:`RedisUnavailable` if it does not answer."""
    try:
        client = _from_url(redis.Redis, url, socket_connect_timeout=1, socket_timeout=1)
        with client:
            return str(client.info("server")["redis_version"])
    except (redis.RedisError, ValueError) as exc:
        # redis-py names what it misread (a host, a port), which may be a piece of a password
        # that is not URL-encoded: neither this message nor the chained one may show it.
        exc.args = tuple(redact_text(a, url) if isinstance(a, str) else a for a in exc.args)
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
