"""Sending what the store's plans ask for, with the sync or the asyncio client: :func:`run`
and :func:`arun`, or the ``sync_twin``/``async_twin`` decorators for methods that return plans
(:mod:`.commands` says what a plan is). Blocking commands get a read timeout of their own, the
calls that accept new jobs wait for replicas when asked, and every Redis error comes out as a
django-jobs exception (:mod:`.errors`).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis
from redis.exceptions import RedisClusterException

from django_jobs.conf import jobs_settings
from django_jobs.exceptions import StoreError
from django_jobs.store import nodes
from django_jobs.store.commands import (
    Command,
    Plan,
    Stream,
    _pack,
    arecovered,
    asend,
    command_of,
    recovered,
    send,
)
from django_jobs.store.connection import (
    get_async_redis,
    get_redis,
    kept,
    pooled,
    read_reply,
    redis_outage,
    sends_itself,
)
from django_jobs.store.errors import translated
from django_jobs.store.scripts import Call
from django_jobs.store.topology import is_cluster_client

T = TypeVar("T")
P = ParamSpec("P")
S = TypeVar("S")


def _send_blocking(client: Any, step: Command, around: Around = (None, None)) -> Any:
    """:func:`_wait_on` a connection of the client's pool: a cluster's node, or a client that
    sends its commands itself (no connection is kept for it)."""
    pool = client.connection_pool
    connection = pooled(pool, step.args[0])
    try:
        return _wait_on(client, connection, step, around)
    finally:
        pool.release(connection)


# The script calls sent in front of a blocking command and behind it, as commands
# (:attr:`Command.first`, :attr:`Command.then`), each ``None`` when there is none.
Around = tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]


def _around(client: Any, step: Command) -> Around:
    first, then = step.first, step.then
    return (
        None if first is None else command_of(client, first),
        None if then is None else command_of(client, then),
    )


def _wait_on(client: Any, connection: Any, step: Command, around: Around = (None, None)) -> Any:
    """A blocking command on ``connection``, with its own read timeout, and the commands
    ``around`` it in the same write (:attr:`Command.first`, :attr:`Command.then`; the first on
    its own before, on a connection whose server has not answered one yet: see
    :data:`scripts_answered`): then the tuple of replies, theirs as the exceptions read.

    redis-py has no per-command timeout for the sync client: the connection's ``can_read``
    waits for the reply with the timeout given (and restores the socket's own afterwards);
    the small reply is then read at once.
    """
    first, behind = around
    lead: list[Any] = []
    try:
        for attempt in (1, 2):
            try:
                if first is not None and connection._sock not in scripts_answered:
                    assert step.first is not None
                    lead, first = [_on_its_own(client, connection, step.first)], None
                commands = [c for c in (first, step.args, behind) if c is not None]
                connection.send_packed_command(connection.pack_commands(commands))
                break
            except redis.ConnectionError:
                # A connection that Redis closed (e.g. it restarted): one fresh try, as
                # redis-py's own retry would do for a plain command.
                connection.disconnect()
                if attempt == 2:
                    raise
        # The reply of a call in front in the write comes at once; the wait's, up to its
        # timeout.
        in_write = first is not None
        replies = [read_reply(connection)] if in_write else lead
        if not connection.can_read(timeout=step.read_timeout):
            raise redis.TimeoutError(f"No reply to {step.args[0]} in {step.read_timeout:g} s")
        replies += [read_reply(connection) for _ in commands[in_write:]]
    except BaseException:
        # An unread (or half-read) reply would be taken for the next command's.
        connection.disconnect()
        raise
    return _replies(step, replies)


def _on_its_own(client: Any, connection: Any, call: Call) -> Any:
    """The reply of a blocking step's call in front sent on its own on ``connection``, the
    scripts loaded if its server refused it for want of them; the connection is then one
    whose server has answered one (:data:`scripts_answered`)."""
    connection.send_packed_command(connection.pack_commands([command_of(client, call)]))
    reply = read_reply(connection)
    if isinstance(reply, redis.ResponseError):
        reply = recovered(client, call, reply)
    scripts_answered.add(connection._sock)
    return reply


async def _aread(connection: Any, timeout: float) -> Any:
    try:
        return await connection.read_response(timeout=timeout)
    except redis.ResponseError as exc:
        return exc


def _replies(step: Command, replies: list[Any]) -> Any:
    """The reply of a blocking step: its own (an error reply raised), or with calls around it
    the tuple of replies, in the order they were sent."""
    wait = replies[0 if step.first is None else 1]
    if isinstance(wait, redis.ResponseError):
        raise wait
    return wait if len(replies) == 1 else tuple(replies)


async def _asend_blocking(client: Any, step: Command, around: Around = (None, None)) -> Any:
    """The asyncio twin of :func:`_send_blocking` and :func:`_wait_on`: ``read_response``
    takes a timeout there."""
    pool = client.connection_pool
    connection = await pooled(pool, step.args[0])
    first, behind = around
    lead: list[Any] = []
    socket_timeout = float(jobs_settings.REDIS_SOCKET_TIMEOUT)
    try:
        for attempt in (1, 2):
            try:
                if first is not None and connection._writer not in scripts_answered:
                    assert step.first is not None
                    lead, first = [await _aon_its_own(client, connection, step.first)], None
                commands = [c for c in (first, step.args, behind) if c is not None]
                await connection.send_packed_command(connection.pack_commands(commands))
                break
            except redis.ConnectionError:
                await connection.disconnect()
                if attempt == 2:
                    raise
        replies = [*lead] if first is None else [await _aread(connection, socket_timeout)]
        replies.append(await _aread(connection, step.read_timeout))
        if behind is not None:
            replies.append(await _aread(connection, socket_timeout))
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)
    return _replies(step, replies)


async def _aon_its_own(client: Any, connection: Any, call: Call) -> Any:
    """:func:`_on_its_own` on an asyncio connection (known by its stream writer, made anew
    with each connection)."""
    await connection.send_packed_command(connection.pack_commands([command_of(client, call)]))
    reply = await _aread(connection, float(jobs_settings.REDIS_SOCKET_TIMEOUT))
    if isinstance(reply, redis.ResponseError):
        reply = await arecovered(client, call, reply)
    scripts_answered.add(connection._writer)
    return reply


def _recover_around(client: Any, step: Command, reply: tuple[Any, ...]) -> tuple[Any, ...]:
    """The replies of a blocking step's calls around it, a call that the server could not take
    yet (a new server, a restart: not loaded) sent again once the scripts are loaded."""
    replies = list(reply)
    for index, call in ((0, step.first), (-1, step.then)):
        if call is not None and isinstance(replies[index], redis.ResponseError):
            replies[index] = recovered(client, call, replies[index])
    return tuple(replies)


async def _arecover_around(client: Any, step: Command, reply: tuple[Any, ...]) -> tuple[Any, ...]:
    """:func:`_recover_around` with an asyncio client."""
    replies = list(reply)
    for index, call in ((0, step.first), (-1, step.then)):
        if call is not None and isinstance(replies[index], redis.ResponseError):
            replies[index] = await arecovered(client, call, replies[index])
    return tuple(replies)


# The connections (a sync one's socket, an asyncio one's stream writer: both made anew when
# the connection is, after Redis closed it or restarted) whose server has answered a script
# call sent in front of a wait (Command.first). Only on those does that call go in the wait's
# write: a server without the scripts (new, or restarted without them) would refuse it and
# leave the wait to run its course, so on another it is first sent on its own, which loads
# them. (On a cluster it is always sent on its own.)
scripts_answered: weakref.WeakSet[Any] = weakref.WeakSet()


def _led_by(first: Any, step: Command, reply: Any) -> tuple[Any, ...]:
    """The replies of a blocking step whose call in front was sent on its own (``first`` its
    reply, ``reply`` that of the rest), as if all had gone in one write."""
    return (first, *reply) if step.then is not None else (first, reply)


# The scripts that accept new jobs: with WAIT_FOR_REPLICAS, their calls wait for replicas.
REPLICATED = frozenset({"enqueue", "enqueue_flow"})


def _replicas(step: Call | Command) -> int:
    if isinstance(step, Call) and step.script.name in REPLICATED:
        return int(jobs_settings.WAIT_FOR_REPLICAS)
    return 0


def _send_stream(client: Any, step: Stream) -> list[Any]:
    """A :class:`Stream` with a sync client: the calls written one behind another on one
    pooled connection, as they are made, then their replies read (see :class:`Stream`)."""
    if sends_itself(client) or int(jobs_settings.WAIT_FOR_REPLICAS):
        return [_one(client, call) for call in step.calls]
    pool = client.connection_pool
    connection = pooled(pool, "FCALL")
    sent: list[Call] = []
    replies: list[Any] = []
    try:
        try:
            for call in step.calls:
                sent.append(call)
                connection.send_packed_command(_pack(connection, command_of(client, call)))
            replies += [read_reply(connection) for _ in sent]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Each call whose reply was not read may or may not have run; those not made yet
            # were not sent: either way each is its call's error, sent again by its caller.
            connection.disconnect()
            sent += step.calls
            lost = translated(exc)
            replies += [lost] * (len(sent) - len(replies))
        except BaseException:
            connection.disconnect()  # no reply left unread for the next command
            raise
    finally:
        pool.release(connection)
    return [_settled(client, call, reply) for call, reply in zip(sent, replies, strict=True)]


def _settled(client: Any, call: Call, reply: Any) -> Any:
    """A streamed call's reply: an error reply recovered from as :func:`execute` does (the
    scripts loaded and the call sent again), or as the error the call would raise."""
    if not isinstance(reply, redis.ResponseError):
        return reply
    try:
        return recovered(client, call, reply)
    except (redis.RedisError, RedisClusterException) as exc:
        return translated(exc)


def _one(client: Any, call: Call) -> Any:
    """One call of a stream sent alone: its reply, or its error."""
    try:
        return execute(client, call)
    except StoreError as exc:
        return exc


def execute(client: Any, step: Call | Command | Stream) -> Any:
    """One step with a sync client."""
    try:
        if isinstance(step, Stream):
            reply = _send_stream(client, step)
        elif isinstance(step, Command) and step.block is not None:
            if step.first is not None and is_cluster_client(client):
                # The calls around the wait go on their own (FCALL would go to a node as it
                # is): the one in front first.
                first = execute(client, step.first)
                reply = _led_by(first, step, execute(client, replace(step, first=None)))
            elif is_cluster_client(client):
                reply = nodes.send_blocking(client, step, _send_blocking)
                if step.then is not None:
                    reply = (reply, send(client, step.then))
            else:
                around = _around(client, step)
                # On the connection this thread keeps, as any command (a result's wait pays
                # for no checkout and return of the pool), or a pooled one for a client that
                # sends its commands itself.
                connection = kept(client)
                if connection is None:
                    reply = _send_blocking(client, step, around)
                else:
                    reply = _wait_on(client, connection, step, around)
                if around != (None, None):
                    reply = _recover_around(client, step, reply)
        elif replicas := _replicas(step):
            timeout = float(jobs_settings.WAIT_FOR_REPLICAS_TIMEOUT)
            reply = nodes.send_replicated(client, step, replicas, timeout)
        else:
            reply = send(client, step)
    except (redis.RedisError, RedisClusterException) as exc:
        raise translated(exc) from exc
    redis_outage.answered()  # the end of an outage this process reported, if any
    return reply


async def _aone(client: Any, call: Call) -> Any:
    """:func:`_one` with an asyncio client."""
    try:
        return await aexecute(client, call)
    except StoreError as exc:
        return exc


async def aexecute(client: Any, step: Call | Command | Stream) -> Any:
    """One step with an asyncio client."""
    try:
        if isinstance(step, Stream):
            # One by one: redis-py's asyncio connections take no writes behind one another.
            reply = [await _aone(client, call) for call in step.calls]
        elif isinstance(step, Command) and step.block is not None:
            if step.first is not None and is_cluster_client(client):
                first = await aexecute(client, step.first)
                reply = _led_by(first, step, await aexecute(client, replace(step, first=None)))
            elif is_cluster_client(client):
                reply = await nodes.asend_blocking(client, step)
                if step.then is not None:
                    reply = (reply, await asend(client, step.then))
            else:
                around = _around(client, step)
                reply = await _asend_blocking(client, step, around)
                if around != (None, None):
                    reply = await _arecover_around(client, step, reply)
        elif replicas := _replicas(step):
            timeout = float(jobs_settings.WAIT_FOR_REPLICAS_TIMEOUT)
            reply = await nodes.asend_replicated(client, step, replicas, timeout)
        else:
            reply = await asend(client, step)
    except (redis.RedisError, RedisClusterException) as exc:
        raise translated(exc) from exc
    redis_outage.answered()
    return reply


def run(plan: Plan[T]) -> T:
    """Run ``plan`` with the shared sync client and return its value.

    A step that fails raises its :class:`RedisUnavailable`, :class:`RedisAccessDenied` or
    :class:`StoreError` inside the plan, at its ``yield``, so that a plan may handle it (e.g.
    send an idempotent call again).
    """
    client = _client()
    try:
        return _go_on(client, plan, next(plan))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def resume(plan: Plan[T], step: Call, reply: Any) -> T:
    """Run the rest of ``plan`` (as :func:`run`), whose current ``step`` the caller sent
    itself, in one write with a command in front of it (``store/waiting.py``), and got
    ``reply`` to: an error reply as the :class:`redis.ResponseError` read, which is recovered
    from as :func:`execute` does (the scripts loaded and the step sent again) or raised into
    the plan."""
    client = _client()
    try:
        if isinstance(reply, redis.ResponseError):
            try:
                reply = recovered(client, step, reply)
            except (redis.RedisError, RedisClusterException) as exc:
                return _go_on(client, plan, plan.throw(translated(exc)))
        return _go_on(client, plan, plan.send(reply))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _client() -> Any:
    try:
        # A cluster client asks for the map of slots as it is made: it may find no node.
        return get_redis()
    except (redis.RedisError, RedisClusterException) as exc:
        raise translated(exc) from exc


def _go_on(client: Any, plan: Plan[T], step: Call | Command) -> T:
    """Send ``step`` and the plan's steps after it; StopIteration carries the plan's value."""
    while True:
        try:
            reply = execute(client, step)
        except StoreError as exc:
            step = plan.throw(exc)
        else:
            step = plan.send(reply)


async def arun(plan: Plan[T]) -> T:
    """Run ``plan`` with this event loop's asyncio client and return its value (see
    :func:`run`)."""
    try:
        client = get_async_redis()
    except (redis.RedisError, RedisClusterException) as exc:
        raise translated(exc) from exc
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
