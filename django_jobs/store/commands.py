"""The commands a store step is sent as, and the recovery of a script call the server cannot
take yet: the one place that knows scripts are called with ``FCALL`` (or ``EVALSHA``) and how
they are loaded when Redis does not know them (a new server, a restart, a failover).

A *plan* is a generator that yields :class:`~django_jobs.store.scripts.Call` (a script) or
:class:`Command` (a plain command) objects and receives their replies, so that the logic of an
operation is written once and runs with either client (:mod:`.execute`).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.exceptions import NoScriptError

try:
    from hiredis import pack_command
except ImportError:  # redis-py packs commands in Python then
    pack_command = None

from django_jobs.conf import jobs_settings
from django_jobs.store import nodes
from django_jobs.store.connection import kept
from django_jobs.store.scripts import FUNCTIONS, Call
from django_jobs.store.spin import await_reply, reply_spin
from django_jobs.store.topology import is_cluster_client

T = TypeVar("T")


@dataclass(frozen=True)
class Command:
    """One plain Redis command, e.g. ``Command(("GET", key))``.

    ``block`` is set for a command the server may hold for up to that many seconds (``BLPOP``,
    ``BLMOVE``): its reply is then awaited ``block`` plus ``REDIS_SOCKET_TIMEOUT`` seconds,
    whatever socket timeout the client was made with (a URL's ``?socket_timeout=1``, or
    django-redis's ``SOCKET_TIMEOUT``), so that a healthy wait is never cut short while a
    silent server is still noticed.

    ``then``, with ``block``: a script call sent in the same write, behind the wait, which
    Redis runs as soon as the wait ends (the reply is then the pair of replies): what the
    waiter would do next, without a round trip of its own (``result()`` reads the job that its
    wait says finished). It must be safe to send again, as it is after an error reply.

    ``first``, with ``block``: a script call sent in the same write, in front of the wait (its
    reply comes first in the tuple of replies): what the waiter would otherwise ask in a round
    trip of its own before it waits (``result()`` marks the job watched). The wait runs
    whatever it answers, so a call that may find nothing to wait for must end the wait
    itself (a token pushed on the list waited on). It goes in the wait's write only on a
    connection whose server has answered one already (:mod:`.execute`); otherwise it is sent
    on its own first, and a server without the scripts (new, or restarted without them) loads
    them. Refused in the write all the same (the scripts flushed meanwhile), it is sent again
    once they are loaded, after the wait, which may then run its whole timeout. It must be
    safe to send again.
    """

    args: tuple[Any, ...]
    block: float | None = None
    then: Call | None = None
    first: Call | None = None

    @property
    def read_timeout(self) -> float:
        """How long to wait for the reply of a blocking command."""
        assert self.block is not None
        return self.block + float(jobs_settings.REDIS_SOCKET_TIMEOUT)


@dataclass(frozen=True)
class Stream:
    """Script calls sent one behind another on one connection, each as soon as ``calls`` (an
    iterator) makes it: the caller makes the next call while Redis runs the one before. Their
    replies are read after the last one was sent; the reply to the step is the list of them, in
    order, each failed call's error (its error reply, or its reply lost with the connection)
    as the :class:`~django_jobs.exceptions.StoreError` the call alone would have raised.
    Where calls cannot share a connection so (a cluster, replicas waited for, the asyncio
    client) they are sent one by one."""

    calls: Iterator[Call]


Plan = Generator[Call | Command, Any, T]


def command_of(client: Any, step: Call | Command) -> tuple[Any, ...]:
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


def recover(client: Any, step: Call | Command, exc: redis.ResponseError) -> str | None:
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
        remedy = recover(client, step, exc)
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
                if recover(client, step, load_exc) != "again":
                    raise
        try:
            return (yield command_of(client, step))
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


def _exchange(client: Any, args: tuple[Any, ...]) -> Any:
    """One command and its reply with a sync client.

    A plain client's command goes straight to the connection this thread keeps
    (:func:`~django_jobs.store.connection.kept`), with the connection's own retries
    (``Retry``, as ``execute_command`` uses them): the pool's checkout and return and
    ``execute_command``'s other layers (its per-call metrics hooks and argument checks) cost
    an enqueue as much as the rest of its Python. Other clients (a cluster's routes by key)
    keep ``execute_command``.
    """
    connection = kept(client)
    if connection is None:
        return client.execute_command(*args)
    packed = _pack(connection, args)
    spin = reply_spin()
    return connection.retry.call_with_retry(
        lambda: _request(connection, packed, spin), lambda _: connection.disconnect()
    )


def _pack(connection: Any, args: tuple[Any, ...]) -> list[bytes]:
    """The command as redis-py packs it: with hiredis when it is installed, as redis-py does,
    but without the per-argument pass that redis-py's packer makes first (for argument types
    that django-jobs never sends), which costs an enqueue's two dozen arguments more than
    packing them."""
    if pack_command is None:
        packed: list[bytes] = connection.pack_command(*args)
        return packed
    try:
        return [pack_command(args)]
    except TypeError as exc:
        raise redis.DataError(str(exc)) from None


def _request(connection: Any, packed: list[bytes], spin: float) -> Any:
    # Both disconnect the connection when they fail (a half-read reply is never left behind).
    connection.send_packed_command(packed)
    if spin:
        await_reply(connection, spin)
    return connection.read_response()


def send(client: Any, step: Call | Command) -> Any:
    """A step with a sync client: one command, and when it fails, :func:`_recovery`."""
    try:
        return _exchange(client, command_of(client, step))
    except redis.ResponseError as exc:
        return recovered(client, step, exc)


def recovered(client: Any, step: Call | Command, exc: redis.ResponseError) -> Any:
    """The reply to ``step`` after its error reply ``exc``, with a sync client: the scripts
    loaded and the step sent again (:func:`_recovery`), or ``exc`` raised."""
    steps = _recovery(client, step, exc)
    done, value = False, next(steps)
    while not done:
        try:
            reply = _exchange(client, value)
        except redis.ResponseError as exc:
            reply = exc
        done, value = _advance(steps, reply)
    return value


async def asend(client: Any, step: Call | Command) -> Any:
    """:func:`send` with an asyncio client."""
    try:
        return await client.execute_command(*command_of(client, step))
    except redis.ResponseError as exc:
        return await arecovered(client, step, exc)


async def arecovered(client: Any, step: Call | Command, exc: redis.ResponseError) -> Any:
    """:func:`recovered` with an asyncio client."""
    steps = _recovery(client, step, exc)
    done, value = False, next(steps)
    while not done:
        try:
            reply = await client.execute_command(*value)
        except redis.ResponseError as exc:
            reply = exc
        done, value = _advance(steps, reply)
    return value
