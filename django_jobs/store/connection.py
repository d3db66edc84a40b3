"""Redis clients for django-jobs: one sync client per process, one async client per event loop;
and how a process waits for Redis (:class:`Backoff`) and reports an outage (:data:`redis_outage`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_jobs.conf import jobs_settings
from django_jobs.exceptions import RedisUnavailable
from django_jobs.store import topology

# Their home is store/redaction.py; imported from here too, as they always were.
from django_jobs.store.redaction import redact_text as redact_text
from django_jobs.store.redaction import redact_url as redact_url


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


_PONG = (b"PONG", "PONG")


def _not_redis(reply: Any) -> redis.ConnectionError:
    if isinstance(reply, Exception):
        what = f"its replies to the connection's set-up make no sense ({type(reply).__name__})"
    else:
        what = f"it answered PING with {reply!r:.60}"
    return redis.ConnectionError(f"the server there is not Redis: {what}")


def _hello(connection: Any) -> None:
    """What a new connection does first: redis-py's own set-up (``AUTH``, ``SELECT``...), then a
    ``PING``, so that a ``REDIS_URL`` naming a server that is not Redis (an echo, a web server
    that answers in its own protocol, a proxy) is refused as unreachable rather than read as
    nonsense replies. An error reply is Redis speaking: a refused login is raised here, as the
    command would have got it (older redis-py drops the connection on reading it, so the
    command would get only "Connection closed"); for another (an ACL without ``PING``) the
    command that follows gets its own error."""
    try:
        connection.on_connect()
    except redis.RedisError:
        raise
    except Exception as exc:  # redis-py could not read the replies to its own set-up
        raise _not_redis(exc) from exc
    connection.send_command("PING")
    try:
        reply = connection.read_response()
    except redis.ResponseError:
        return
    if reply not in _PONG:
        raise _not_redis(reply)


async def _ahello(connection: Any) -> None:
    """:func:`_hello` for the asyncio client."""
    try:
        await connection.on_connect()
    except redis.RedisError:
        raise
    except Exception as exc:
        raise _not_redis(exc) from exc
    await connection.send_command("PING")
    try:
        reply = await connection.read_response()
    except redis.ResponseError:
        return
    if reply not in _PONG:
        raise _not_redis(reply)


def _from_url(client_class: Any, url: str, **options: float) -> Any:
    hello = _ahello if issubclass(client_class, redis.asyncio.Redis) else _hello
    try:
        client = client_class.from_url(
            url, redis_connect_func=hello, **(options or client_options())
        )
        pool = client.connection_pool
        if _UNIX_TIMEOUT_DROPPED and pool.connection_class is redis.UnixDomainSocketConnection:
            pool.connection_class = _UnixSocketConnection
        return client
    except ValueError as exc:
        # redis-py names what it misread, which may be a piece of a password; the original
        # exception is not chained for the same reason.
        message = redact_text(str(exc), url)
        raise ValueError(f"Cannot read the Redis URL {redact_url(url)}: {message}") from None


def _topology(url: str, **options: float) -> topology.Topology:
    """The cluster or Sentinel deployment ``url`` names (:mod:`.topology`), with the
    time-outs of :func:`client_options` unless the URL sets its own."""
    try:
        return topology.parse(url, options or client_options())
    except ValueError as exc:
        message = redact_text(str(exc), url)
        raise ValueError(f"Cannot read the Redis URL {redact_url(url)}: {message}") from None


def get_redis() -> Any:
    """The shared sync client: a ``redis.Redis`` (also a Sentinel master's) or a
    ``RedisCluster``. With ``CONNECTION`` set, django-redis's own client is reused."""
    global _sync_client
    if _sync_client is None:
        alias = jobs_settings.CONNECTION
        url = connection_url()
        if alias is not None:
            from django_redis import get_redis_connection

            _sync_client = get_redis_connection(alias)
        elif topology.is_topology_url(url):
            _sync_client = topology.sync_client(_topology(url))
        else:
            _sync_client = _from_url(redis.Redis, url)
    return _sync_client


def get_async_redis() -> Any:
    """An async client bound to the running event loop (asyncio connections cannot move loops)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        found = configured_topology()
        if found is not None:
            client = topology.async_client(found)
        else:
            client = _from_url(redis.asyncio.Redis, connection_url())
        _async_clients[loop] = client
    return client


def configured_topology() -> topology.Topology | None:
    """The cluster or Sentinel deployment in use (``None``: one server), by ``REDIS_URL`` or by
    the ``CONNECTION`` cache's client, which the asyncio client then joins with its credentials."""
    if jobs_settings.CONNECTION is not None:
        return topology.from_client(get_redis())
    url = connection_url()
    return _topology(url) if topology.is_topology_url(url) else None


def _version_from(client: Any) -> str:
    if topology.is_cluster_client(client):
        # Every master runs the scripts: the oldest one counts.
        versions = client.info("server", target_nodes=client.PRIMARIES)
        if isinstance(versions, dict) and "redis_version" not in versions:
            found = [v["redis_version"] for v in versions.values()]
        else:
            found = [versions["redis_version"]]
        return min(found, key=lambda v: tuple(int(p) for p in v.split(".")[:2]))
    return str(client.info("server")["redis_version"])


def _version_of(url: str) -> str:
    if not topology.is_topology_url(url):
        with _from_url(redis.Redis, url, socket_connect_timeout=1, socket_timeout=1) as client:
            return str(client.info("server")["redis_version"])
    client = topology.sync_client(_topology(url, socket_connect_timeout=1, socket_timeout=1))
    try:
        return _version_from(client)
    finally:
        client.close()


def server_version(url: str) -> str:
    """The version of the Redis server at ``url`` (of the oldest master of a cluster), asked on
    short-lived connections with short time-outs (system checks must not hang);
    :class:`RedisUnavailable` if it does not answer."""
    try:
        if jobs_settings.CONNECTION is not None and url == connection_url():
            # A cluster or Sentinel cache's LOCATION is no address to connect to: its client is.
            client = get_redis()
            if topology.from_client(client) is not None:
                return _version_from(client)
        return _version_of(url)
    except (redis.RedisError, redis.exceptions.RedisClusterException, ValueError) as exc:
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


#: While Redis does not answer, a process logs the first failure at once, then one line this
#: often (seconds) however often it retries meanwhile, and one line when Redis answers again.
OUTAGE_LOG_EVERY = 60.0


class OutageLog:
    """How a process reports that Redis does not answer: the first failure at once, then one
    line every :data:`OUTAGE_LOG_EVERY` seconds while the outage lasts (not one per retry, nor
    one per loop that retries), and one "Redis answers again after N s" line at the first call
    that works (:mod:`.execute` says so after every call).

    The wait loops of the process report their failures here (:data:`redis_outage`): the
    worker's child and supervisor (``worker/retry.py``), the scheduler and the start-up access
    check. The last line goes to the logger of the first failure. Thread-safe.
    """

    def __init__(
        self, every: float = OUTAGE_LOG_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every = every
        self.clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """No outage (a forked child starts afresh)."""
        self.since: float | None = None  # the clock at the first failure of the outage
        self.logged_at = 0.0
        self.failures = 0
        self._logger: logging.Logger | None = None
        self._who = ""

    def failed(self, logger: logging.Logger, exc: BaseException, who: str = "") -> None:
        """A call failed because Redis did not answer (``exc``); logged at ERROR if it is the
        first failure of an outage or the last line is ``every`` seconds old. ``who`` starts
        the line (``"scheduler: "``)."""
        with self._lock:
            now = self.clock()
            self.failures += 1
            first = self.since is None
            if first:
                self.since, self._logger, self._who = now, logger, who
            elif now - self.logged_at < self.every:
                return
            self.logged_at = now
            lasted, failures = now - (self.since or now), self.failures
        if first:
            logger.error(
                "%sRedis does not answer (%s); waiting for it, with a line every %.0fs while "
                "it lasts",
                who,
                exc,
                self.every,
            )
        else:
            logger.error(
                "%sRedis still does not answer after %.0fs (%d failed attempts): %s",
                who,
                lasted,
                failures,
                exc,
            )

    def answered(self) -> None:
        """A call worked: if an outage was reported, one WARNING line says it is over."""
        if self.since is None:  # the usual case, without the lock
            return
        with self._lock:
            if self.since is None:
                return
            lasted, logger, who = self.clock() - self.since, self._logger, self._who
            self.reset()
        if logger is not None:
            logger.warning("%sRedis answers again after %.1fs", who, lasted)


#: The outage log of this process.
redis_outage = OutageLog()


class _Kept(threading.local):
    """The connection each thread keeps to the shared sync client's server (:func:`kept`)."""

    client: Any = None
    connection: Any = None


_kept = _Kept()


def kept(client: Any) -> Any:
    """The connection this thread keeps to the server of ``client``, ready for a command;
    ``None`` for a client that sends its commands itself (see :func:`_own_connection`).

    A command sent on a connection taken from the pool and given back pays for the pool's
    lock, metrics and events twice, which cost an enqueue more than its own Python. So each
    thread keeps one connection, made as the pool makes its own (its class and options: a
    Sentinel master's asks the sentinels where the master is on connecting), outside the pool:
    a thread that ends takes it along (it is closed when collected), and a forked child or a
    new client starts with a new one. As the pool does with a connection it hands out, one
    that Redis closed (a restart, an idle timeout) or that has unread data is made afresh.
    """
    held = _kept
    if held.client is not client:
        held.client, held.connection = client, _own_connection(client)
    connection = held.connection
    if connection is None:
        return None
    return usable(connection)


def usable(connection: Any) -> Any:
    """``connection`` (one kept out of the pool), connected and with nothing unread: made
    afresh when Redis closed it (a restart, an idle timeout) or it has unread data, as the
    pool checks a connection it hands out. A failure to connect is raised as it is."""
    # redis-py's own test of being connected: connect() asks it too, behind a retry policy
    # whose layers would cost every command.
    if connection._sock is None:
        connection.connect()
        return connection
    try:
        if connection.can_read():
            raise redis.ConnectionError("Connection has data")
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        connection.disconnect()
        connection.connect()
        if connection.can_read():
            raise redis.ConnectionError("Connection not ready") from None
    return connection


def sends_itself(client: Any) -> bool:
    """Whether ``client`` must send its commands itself, on no connection of ours: a cluster
    client routes them by key, a single-connection client holds a lock, and a pool with a
    client-side cache wraps its connections in it."""
    return (
        topology.is_cluster_client(client)
        or getattr(client, "connection", None) is not None
        or getattr(client.connection_pool, "cache", None) is not None
    )


def _own_connection(client: Any) -> Any:
    """A new connection like those of ``client``'s pool; ``None`` when the client sends its
    commands itself (:func:`sends_itself`)."""
    if sends_itself(client):
        return None
    pool = client.connection_pool
    return pool.connection_class(**pool.connection_kwargs)


def _forget_kept() -> None:
    """Every thread's kept connection forgotten (closed as it is collected)."""
    global _kept
    _kept = _Kept()


# A forked child must not share its parent's sockets: it keeps connections of its own.
os.register_at_fork(after_in_child=_forget_kept)


def reset_connections() -> None:
    """Forget cached clients and kept connections, e.g. after the settings changed or in a
    forked child process (which reports its own outages: :data:`redis_outage` starts
    afresh)."""
    global _sync_client
    _sync_client = None
    _async_clients.clear()
    _forget_kept()
    redis_outage.reset()


@receiver(setting_changed)
def _reset_on_settings_change(*, setting: str, **kwargs: Any) -> None:
    # Tests change the Redis URL or the CONNECTION cache with override_settings.
    if setting in ("DJANGO_JOBS", "CACHES"):
        reset_connections()


def pooled(pool: Any, name: str) -> Any:
    """``pool.get_connection()``: redis-py < 5.3 requires the command name, later versions
    warn when it is given."""
    return pool.get_connection(name) if _needs_name(type(pool)) else pool.get_connection()


@functools.cache
def _needs_name(pool_class: type) -> bool:
    # Read once per pool class: an enqueue takes a pooled connection (store/commands.py).
    parameter = inspect.signature(pool_class.get_connection).parameters.get("command_name")
    return parameter is not None and parameter.default is inspect.Parameter.empty


def read_reply(connection: Any) -> Any:
    """The next reply on ``connection``; an error reply as the exception read, so that the
    replies after it (commands sent in the same write) are still read before it is raised."""
    try:
        return connection.read_response()
    except redis.ResponseError as exc:
        return exc
