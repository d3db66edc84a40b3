"""Redis errors turned into django-jobs exceptions (:class:`RedisUnavailable`,
:class:`RedisAccessDenied`, :class:`StoreError`), with the password taken out of their text:
the one place where that happens."""

from __future__ import annotations

import re

import redis
from redis.exceptions import RedisClusterException

from django_jobs.exceptions import RedisAccessDenied, RedisUnavailable, StoreError
from django_jobs.store import nodes
from django_jobs.store.connection import connection_url, redact_text, redact_url

# Refusals of this client as such: a wrong or missing password or an unknown user (redis-py
# reads WRONGPASS and NOAUTH as AuthenticationError, a ConnectionError), or an ACL user without
# a permission (NOPERM). Some come as plain errors: inside a script Redis 7.0 names "the user
# executing the script", and a client that did not log in and sends a long command (older
# redis-py sends no HELLO first) gets "Protocol error: unauthenticated multibulk length".
_DENIED = (
    redis.AuthenticationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
    redis.exceptions.NoPermissionError,
)
_DENIED_TEXT = re.compile(
    r"\bNOPERM\b|user executing the script can't|\bunauthenticated\b", re.IGNORECASE
)


# What older redis-py raises (an AuthenticationError) when AUTH is answered with neither OK
# nor an error: not a refusal, a server that does not speak Redis (newer ones say so).
_NOT_OK_TO_AUTH = "Invalid Username or Password"


def _not_redis(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, redis.exceptions.InvalidResponse) or str(exc) == _NOT_OK_TO_AUTH:
            return True
        exc = exc.__cause__
    return False


def _denied(exc: BaseException | None) -> bool:
    # redis-py's asyncio client raises a refused login as a plain ConnectionError caused by
    # the AuthenticationError: the causes count too.
    while exc is not None:
        if str(exc) == _NOT_OK_TO_AUTH:
            return False
        if isinstance(exc, _DENIED) or (
            isinstance(exc, redis.ResponseError) and _DENIED_TEXT.search(str(exc))
        ):
            return True
        exc = exc.__cause__
    return False


def translated(exc: redis.RedisError | RedisClusterException) -> Exception:
    url = connection_url()
    # The original stays chained (tracebacks, error pages): it must not name the password
    # either, which redis-py does when it read a password that is not URL-encoded as a host.
    exc.args = tuple(redact_text(a, url) if isinstance(a, str) else a for a in exc.args)
    if _denied(exc):
        # Before the ConnectionError case: waiting would not help.
        return RedisAccessDenied(
            f"Redis at {redact_url(url)} refused access: {redact_text(str(exc), url)} "
            "(check the user and password of the Redis URL, and the user's ACL: django-jobs "
            "runs scripts that read and write the keys under its PREFIX)"
        )
    if _not_redis(exc):
        # Not Redis's protocol: REDIS_URL names another server (a web server, say), or a
        # proxy broke the stream. Not a command Redis refused: waiting is all one can do.
        return RedisUnavailable(
            f"Cannot reach Redis at {redact_url(url)}: the server there does not speak the "
            f"Redis protocol ({redact_text(str(exc), url)})"
        )
    if (
        isinstance(exc, (redis.ConnectionError, redis.TimeoutError))
        or nodes.unavailable_reply(exc)
        or (isinstance(exc, RedisClusterException) and nodes.cluster_unavailable(exc))
    ):
        # Also a failover under way: a slot without a master, a demoted master (READONLY), a
        # cluster that answers CLUSTERDOWN or TRYAGAIN. Waiting mends it.
        return RedisUnavailable(
            f"Cannot reach Redis at {redact_url(url)}: {redact_text(str(exc), url)}"
        )
    return StoreError(f"Redis refused a command: {exc}")


# Error replies that refuse a call whatever keys it touches, until the server is mended: out of
# memory (``maxmemory``), unable to persist (``MISCONF``: writes refused until a save works),
# busy with a script that runs too long (``BUSY``).
_SERVER_REFUSALS = ("MISCONF", "BUSY")


def refuses_every_call(exc: StoreError) -> bool:
    """Whether ``exc`` says that Redis takes no call of this client for now, whatever its keys:
    it does not answer, it refuses access, or it refuses every write (out of memory, unable to
    persist, busy). ``False`` for a fault of the call's own keys or script (a key of the wrong
    type, a script error): other calls may work."""
    if isinstance(exc, (RedisUnavailable, RedisAccessDenied)):
        return True
    cause = exc.__cause__
    return isinstance(cause, redis.exceptions.OutOfMemoryError) or (
        isinstance(cause, redis.ResponseError) and str(cause).startswith(_SERVER_REFUSALS)
    )


def trouble(exc: StoreError) -> str:
    """What an operator reads about ``exc``: that Redis does not answer, or what it refused (an
    access, a command: a key of the wrong type, say), which its own text says."""
    if isinstance(exc, RedisUnavailable):
        return f"Redis does not answer: {exc}"
    return str(exc)
