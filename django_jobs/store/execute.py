"""Sending what the store's plans ask for, with the sync or the asyncio client, and turning
Redis errors into django-jobs exceptions (:class:`RedisUnavailable`, :class:`RedisAccessDenied`,
:class:`StoreError`): the one place where that happens.

A *plan* is a generator that yields :class:`~django_jobs.store.scripts.Call` (a script) or
:class:`Command` (a plain command) objects and receives their replies, so that the logic of an
operation is written once and runs with either client: :func:`run` and :func:`arun`, or the
``sync_twin``/``async_twin`` decorators for methods that return plans.
"""

from __future__ import annotations

import functools
import inspect
import re
import weakref
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis
from redis.exceptions import NoScriptError, RedisClusterException

from django_jobs.conf import jobs_settings
from django_jobs.exceptions import RedisAccessDenied, RedisUnavailable, StoreError
from django_jobs.store import nodes
from django_jobs.store.connection import (
    connection_url,
    get_async_redis,
    get_redis,
    redact_text,
    redact_url,
    redis_outage,
)
from django_jobs.store.scripts import FUNCTIONS, Call
from django_jobs.store.topology import is_cluster_client

T = TypeVar("T")
P = ParamSpec("P")
S = TypeVar("S")


@dataclass(frozen=True)
class Command:
    """One plain Redis command, e.g. ``Command(("GET", key))``.

    ``block`` is set for a command the server may hold for up to that many seconds (``BLPOP``,
    ``BLMOVE``): its reply is then awaited ``block`` plus ``REDIS_SOCKET_TIMEOUT`` seconds,
    whatever socket timeout the client was made with (a URL's ``?socket_timeout=1``, or
    django-redis's ``SOCKET_TIMEOUT``), so that a healthy wait is never cut short while a
    silent server is still noticed.
    """

    args: tuple[Any, ...]
    block: float | None = None

    @property
    def read_timeout(self) -> float:
        """How long to wait for the reply of a blocking command."""
        assert self.block is not None
        return self.block + float(jobs_settings.REDIS_SOCKET_TIMEOUT)


Plan = Generator[Call | Command, Any, T]


def _command(client: Any, step: Call | Command) -> tuple[Any, ...]:
    """The command of a step: a plain one as it is; a script as ``FCALL`` of its function
    (:data:`~django_jobs.store.scripts.FUNCTIONS`) or, where Redis has no functions, as a plain
    ``EVALSHA`` (:func:`_recovery` loads what the server does not know, yet or after a
    restart)."""
    if isinstance(step, Command):
        return step.args
    call = ("FCALL", step.script.function) if _functions(client) else ("EVALSHA", step.script.sha)
    return (*call, len(step.keys), *step.keys, *step.args)


# Clients that call the scripts with EVALSHA: REDIS_FUNCTIONS is off, or their server (Redis
# before 7, a proxy) or their ACL user does not take FCALL or FUNCTION LOAD.
_SCRIPTS_ONLY: weakref.WeakSet[Any] = weakref.WeakSet()


def _functions(client: Any) -> bool:
    # Not on a cluster: FCALL has no fixed key positions, and redis-py's cluster client asks
    # a node COMMAND GETKEYS before each one to route it (a second round trip per call).
    return (
        bool(jobs_settings.REDIS_FUNCTIONS)
        and client not in _SCRIPTS_ONLY
        and not is_cluster_client(client)
    )


# What a server says of FCALL or FUNCTION LOAD when it cannot take them: Redis before 7 does
# not know the commands; an ACL user may lack them (while allowed EVALSHA, as earlier versions
# of django-jobs asked).
_NO_FUNCTIONS = re.compile(
    r"(unknown command|no permissions to run the) .?(fcall|function)\b", re.IGNORECASE
)


def _recover(client: Any, step: Call | Command, exc: redis.ResponseError) -> str | None:
    """What to do about a script call's error reply ``exc``: ``"load"`` the scripts (the server
    does not know them), ``"again"`` (the client now calls scripts with EVALSHA), or ``None``
    (raise it)."""
    if not isinstance(step, Call):
        return None
    if isinstance(exc, NoScriptError) or str(exc).startswith("Function not found"):
        return "load"
    if _NO_FUNCTIONS.search(str(exc)):
        # Also when another call of this client (a coroutine, a thread) found it first.
        _SCRIPTS_ONLY.add(client)
        return "again"
    return None


def _load_command(client: Any, step: Call) -> tuple[Any, ...]:
    if _functions(client):
        return ("FUNCTION", "LOAD", "REPLACE", FUNCTIONS.source)
    return ("SCRIPT", "LOAD", step.script.source)


# The commands that recover from a script call's error reply (see _recovery): each is yielded,
# and its reply sent back or its error reply thrown in; the step's reply is the value.
Steps = Generator[tuple[Any, ...], Any, Any]


def _recovery(client: Any, step: Call | Command, exc: redis.ResponseError) -> Steps:
    """After the error reply ``exc`` to a script call: load the scripts when the server does
    not know them (or switch to EVALSHA when it takes no functions) and call again; twice at
    most (a restart may come between the two). Other errors are raised."""
    for _ in range(2):
        remedy = _recover(client, step, exc)
        if remedy is None:
            raise exc
        if remedy == "load":
            assert isinstance(step, Call)
            if is_cluster_client(client):
                # EVAL loads the script on the master that owns the keys and runs it, in one
                # round trip (SCRIPT LOAD would go to every master, and fail while one is down):
                # a new master after a failover, or one the slot moved to, learns it so.
                return (yield nodes.eval_command(step))
            try:
                yield _load_command(client, step)
            except redis.ResponseError as load_exc:
                if _recover(client, step, load_exc) != "again":
                    raise
        try:
            return (yield _command(client, step))
        except redis.ResponseError as again:
            exc = again
    raise exc


def _advance(steps: Steps, reply: Any) -> tuple[bool, Any]:
    """Send ``steps`` a reply (or throw it the error reply): (done, the value or next command)."""
    try:
        if isinstance(reply, redis.ResponseError):
            return False, steps.throw(reply)
        return False, steps.send(reply)
    except StopIteration as done:
        return True, done.value


def _script(client: Any, step: Call | Command) -> Any:
    """A step with a sync client: one command, and when it fails, :func:`_recovery`."""
    try:
        return client.execute_command(*_command(client, step))
    except redis.ResponseError as exc:
        steps = _recovery(client, step, exc)
    done, value = False, next(steps)
    while not done:
        try:
            reply = client.execute_command(*value)
        except redis.ResponseError as exc:
            reply = exc
        done, value = _advance(steps, reply)
    return value


async def _ascript(client: Any, step: Call | Command) -> Any:
    """:func:`_script` with an asyncio client."""
    try:
        return await client.execute_command(*_command(client, step))
    except redis.ResponseError as exc:
        steps = _recovery(client, step, exc)
    done, value = False, next(steps)
    while not done:
        try:
            reply = await client.execute_command(*value)
        except redis.ResponseError as exc:
            reply = exc
        done, value = _advance(steps, reply)
    return value


def _pooled(pool: Any, name: str) -> Any:
    """``pool.get_connection()``: redis-py < 5.3 requires the command name, later versions
    warn when it is given."""
    parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    needs_name = parameter is not None and parameter.default is inspect.Parameter.empty
    return pool.get_connection(name) if needs_name else pool.get_connection()


def _send_blocking(client: Any, step: Command) -> Any:
    """A blocking command on a connection of the client's pool, with its own read timeout.

    redis-py has no per-command timeout for the sync client: the connection's ``can_read``
    waits for the reply with the timeout given (and restores the socket's own afterwards);
    the small reply is then read at once.
    """
    pool = client.connection_pool
    connection = _pooled(pool, step.args[0])
    try:
        for attempt in (1, 2):
            try:
                connection.send_command(*step.args)
                break
            except redis.ConnectionError:
                # A pooled connection that Redis closed (e.g. it restarted): one fresh try,
                # as redis-py's own retry would do for a plain command.
                connection.disconnect()
                if attempt == 2:
                    raise
        if not connection.can_read(timeout=step.read_timeout):
            raise redis.TimeoutError(f"No reply to {step.args[0]} in {step.read_timeout:g} s")
        return connection.read_response()
    except redis.ResponseError:
        raise
    except BaseException:
        # An unread (or half-read) reply would be taken for the next command's.
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


async def _asend_blocking(client: Any, step: Command) -> Any:
    """The asyncio twin of :func:`_send_blocking`: ``read_response`` takes a timeout there."""
    pool = client.connection_pool
    connection = await _pooled(pool, step.args[0])
    try:
        for attempt in (1, 2):
            try:
                await connection.send_command(*step.args)
                break
            except redis.ConnectionError:
                await connection.disconnect()
                if attempt == 2:
                    raise
        return await connection.read_response(timeout=step.read_timeout)
    except redis.ResponseError:
        raise
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)


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


# The scripts that accept new jobs: with WAIT_FOR_REPLICAS, their calls wait for replicas.
REPLICATED = frozenset({"enqueue", "enqueue_flow"})


def _replicas(step: Call | Command) -> int:
    if isinstance(step, Call) and step.script.name in REPLICATED:
        return int(jobs_settings.WAIT_FOR_REPLICAS)
    return 0


def _translated(exc: redis.RedisError | RedisClusterException) -> Exception:
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


def execute(client: Any, step: Call | Command) -> Any:
    """One step with a sync client."""
    try:
        if isinstance(step, Command) and step.block is not None:
            if is_cluster_client(client):
                reply = nodes.send_blocking(client, step, _send_blocking)
            else:
                reply = _send_blocking(client, step)
        elif replicas := _replicas(step):
            timeout = float(jobs_settings.WAIT_FOR_REPLICAS_TIMEOUT)
            reply = nodes.send_replicated(client, step, replicas, timeout)
        else:
            reply = _script(client, step)
    except (redis.RedisError, RedisClusterException) as exc:
        raise _translated(exc) from exc
    redis_outage.answered()  # the end of an outage this process reported, if any
    return reply


async def aexecute(client: Any, step: Call | Command) -> Any:
    """One step with an asyncio client."""
    try:
        if isinstance(step, Command) and step.block is not None:
            if is_cluster_client(client):
                reply = await nodes.asend_blocking(client, step)
            else:
                reply = await _asend_blocking(client, step)
        elif replicas := _replicas(step):
            timeout = float(jobs_settings.WAIT_FOR_REPLICAS_TIMEOUT)
            reply = await nodes.asend_replicated(client, step, replicas, timeout)
        else:
            reply = await _ascript(client, step)
    except (redis.RedisError, RedisClusterException) as exc:
        raise _translated(exc) from exc
    redis_outage.answered()
    return reply


def run(plan: Plan[T]) -> T:
    """Run ``plan`` with the shared sync client and return its value.

    A step that fails raises its :class:`RedisUnavailable`, :class:`RedisAccessDenied` or
    :class:`StoreError` inside the plan, at its ``yield``, so that a plan may handle it (e.g.
    send an idempotent call again).
    """
    try:
        # A cluster client asks for the map of slots as it is made: it may find no node.
        client = get_redis()
    except (redis.RedisError, RedisClusterException) as exc:
        raise _translated(exc) from exc
    try:
        step = next(plan)
        while True:
            try:
                reply = execute(client, step)
            except StoreError as exc:
                step = plan.throw(exc)
            else:
                step = plan.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def arun(plan: Plan[T]) -> T:
    """Run ``plan`` with this event loop's asyncio client and return its value (see
    :func:`run`)."""
    try:
        client = get_async_redis()
    except (redis.RedisError, RedisClusterException) as exc:
        raise _translated(exc) from exc
    try:
        step = next(plan)
        while True:
            try:
                reply = await aexecute(client, step)
            except StoreError as exc:
                step = plan.throw(exc)
            else:
                step = plan.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def sync_twin(plan: Callable[Concatenate[S, P], Plan[T]]) -> Callable[Concatenate[S, P], T]:
    """A method that runs the plan method ``plan`` with the sync client."""

    @functools.wraps(plan)
    def method(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
        return run(plan(self, *args, **kwargs))

    method.__name__ = method.__qualname__ = plan.__name__.lstrip("_")
    return method


def async_twin(
    plan: Callable[Concatenate[S, P], Plan[T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """The ``a``-prefixed twin of :func:`sync_twin`, with the asyncio client."""

    @functools.wraps(plan)
    async def method(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
        return await arun(plan(self, *args, **kwargs))

    method.__name__ = method.__qualname__ = f"a{plan.__name__.lstrip('_')}"
    return method
