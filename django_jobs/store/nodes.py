"""What a Redis Cluster changes in sending a step (:mod:`.execute`): the node that owns a key,
blocking waits on that node's connection, and ``WAIT`` for replicas after a script call.

redis-py's ``RedisCluster`` routes plain commands and ``EVALSHA`` itself (by the slot of the
keys), follows ``MOVED`` and ``ASK`` and reloads the map of slots after a connection error. A
blocking wait (``BLPOP``) and a pipeline that must reach one node (``EVALSHA`` + ``WAIT``) go
to the owning master's own client here, which this module finds and, when the slot has moved
(a failover, a resharding) or the node does not answer, refreshes.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis
from redis.exceptions import AskError, NoScriptError, RedisClusterException

from django_jobs.store.topology import is_cluster_client

logger = logging.getLogger("django_jobs")

# What a cluster says while a slot has no master that answers, or the client's map is
# stale: a failover is under way, and waiting is all one can do.
UNAVAILABLE = (
    redis.exceptions.ClusterDownError,  # CLUSTERDOWN, MASTERDOWN
    redis.exceptions.TryAgainError,
    redis.exceptions.ReadOnlyError,  # a demoted master (Sentinel), or a replica
    redis.exceptions.SlotNotCoveredError,
    AskError,  # MOVED or ASK still, after the map of slots was read again
)


def unavailable_reply(exc: BaseException) -> bool:
    """Whether an error reply means a failover under way rather than a refused command: also
    ``UNBLOCKED``, which Redis answers a blocked ``BLPOP`` with when its master is demoted,
    and ``NOREPLICAS``, a master with ``min-replicas-to-write`` that lost its replicas (as an
    old master does once its replica was promoted)."""
    return isinstance(exc, UNAVAILABLE) or str(exc).startswith(("UNBLOCKED", "NOREPLICAS"))


def cluster_unavailable(exc: BaseException) -> bool:
    """Whether a ``RedisClusterException`` (not a ``RedisError``) means that the cluster does
    not answer (no node reachable, a slot without a master), rather than a misuse such as
    keys of several slots in one call."""
    if isinstance(exc, redis.exceptions.SlotNotCoveredError):
        return True
    text = str(exc).lower()
    return "cannot be connected" in text or "not covered" in text


def node_client(client: Any, key: str) -> redis.Redis:
    """The sync client of the master that owns ``key``'s slot, as ``client`` last saw it."""
    node = client.get_node_from_key(key)
    return node.redis_connection or client.get_redis_connection(node)


def refresh(client: Any) -> None:
    """Read the cluster's map of slots again (after ``MOVED``, or a node that did not answer);
    quietly keep the old one if no node answers now."""
    with contextlib.suppress(redis.RedisError, RedisClusterException, OSError):
        client.nodes_manager.initialize()


async def arefresh(client: Any) -> None:
    """The asyncio twin of :func:`refresh`."""
    with contextlib.suppress(redis.RedisError, RedisClusterException, OSError):
        await client.nodes_manager.initialize()


def send_blocking(client: Any, step: Any, send: Any) -> Any:
    """``send(node, step)`` (a blocking wait) on the master that owns the step's key (its first
    argument after the command): once more after a ``MOVED`` answer, and with the map of
    slots refreshed after a connection error (the caller waits and tries again)."""
    for attempt in (1, 2):
        try:
            return send(node_client(client, step.args[1]), step)
        except AskError:
            refresh(client)
            if attempt == 2:
                raise
        except (redis.ConnectionError, redis.TimeoutError):
            refresh(client)
            raise
    raise AssertionError("unreachable")


def _give_back(node: Any, connection: Any) -> None:
    """Return a connection taken with ``acquire_connection`` to an asyncio cluster node
    (redis-py before 5.1 has no ``release``: its free list is where its own commands put it)."""
    release = getattr(node, "release", None)
    if release is not None:
        release(connection)
    else:
        node._free.append(connection)


async def asend_blocking(client: Any, step: Any) -> Any:
    """:func:`send_blocking` with the asyncio cluster client, whose nodes keep their own
    connections (no pool): one is taken, used for the wait and given back."""
    for attempt in (1, 2):
        await client.initialize()
        node = client.get_node_from_key(step.args[1])
        connection = node.acquire_connection()
        try:
            await connection.send_command(*step.args)
            return await connection.read_response(timeout=step.read_timeout)
        except AskError:
            await arefresh(client)
            if attempt == 2:
                raise
        except redis.ResponseError:
            raise
        except BaseException as exc:
            # An unread (or half-read) reply would be taken for the next command's.
            await connection.disconnect()
            if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                await arefresh(client)
            raise
        finally:
            _give_back(node, connection)
    raise AssertionError("unreachable")


def _evalsha(step: Any) -> tuple[Any, ...]:
    return ("EVALSHA", step.script.sha, len(step.keys), *step.keys, *step.args)


def eval_command(step: Any) -> tuple[Any, ...]:
    """``EVAL`` of a script call: it runs the script and leaves it in the server's cache."""
    return _eval(step)


def _eval(step: Any) -> tuple[Any, ...]:
    return ("EVAL", step.script.source, len(step.keys), *step.keys, *step.args)


def _checked(replies: list[Any], step: Any, replicas: int, timeout: float) -> Any:
    reply, acknowledged = replies
    if isinstance(reply, Exception):
        raise reply
    if isinstance(acknowledged, Exception):
        raise acknowledged
    if int(acknowledged) < replicas:
        # The call took effect on the master: raising would make the caller send it again.
        # The job runs, unless this master is lost before a replica has it.
        logger.warning(
            "%s: %d of %d replicas acknowledged the write within %gs; it is on the master "
            "only until they catch up (DJANGO_JOBS['WAIT_FOR_REPLICAS'])",
            step.script.name,
            int(acknowledged),
            replicas,
            timeout,
        )
    return reply


def target(client: Any, step: Any) -> Any:
    """The client to pipeline ``step`` on: the owning master's for a cluster."""
    if is_cluster_client(client) and step.keys:
        return node_client(client, step.keys[0])
    return client


def send_replicated(client: Any, step: Any, replicas: int, timeout: float) -> Any:
    """A script call and ``WAIT replicas timeout`` in one pipeline (one round trip; ``WAIT``
    cannot run inside a script): its reply, once ``replicas`` replicas have the write or
    ``timeout`` seconds have passed (then a WARNING says how many had it).

    The call goes as a script (``EVALSHA``, or ``EVAL`` where the server does not know it),
    also where the others are Redis functions: one way to load what is missing, inside the
    pipeline, whatever the server."""
    for attempt in (1, 2):
        pipe = target(client, step).pipeline(transaction=False)
        pipe.execute_command(*_evalsha(step))
        pipe.execute_command("WAIT", replicas, int(timeout * 1000))
        replies = pipe.execute(raise_on_error=False)
        if isinstance(replies[0], NoScriptError):
            pipe = target(client, step).pipeline(transaction=False)
            pipe.execute_command(*_eval(step))  # EVAL also loads it on this master
            pipe.execute_command("WAIT", replicas, int(timeout * 1000))
            replies = pipe.execute(raise_on_error=False)
        if isinstance(replies[0], AskError) and attempt == 1 and is_cluster_client(client):
            refresh(client)
            continue
        return _checked(replies, step, replicas, timeout)
    raise AssertionError("unreachable")


async def _aon_node(client: Any, key: str, commands: list[tuple[Any, ...]]) -> list[Any]:
    """``commands`` on one connection of the master that owns ``key`` (the asyncio cluster
    client's pipeline may send a keyless ``WAIT`` to another node): their replies, an error
    reply as its exception."""
    await client.initialize()
    node = client.get_node_from_key(key)
    connection = node.acquire_connection()
    try:
        for command in commands:
            await connection.send_command(*command)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        _give_back(node, connection)


async def asend_replicated(client: Any, step: Any, replicas: int, timeout: float) -> Any:
    """The asyncio twin of :func:`send_replicated`."""
    wait = ("WAIT", replicas, int(timeout * 1000))
    for attempt in (1, 2):
        if is_cluster_client(client):
            replies = await _aon_node(client, step.keys[0], [_evalsha(step), wait])
            if isinstance(replies[0], NoScriptError):
                replies = await _aon_node(client, step.keys[0], [_eval(step), wait])
        else:
            pipe = client.pipeline(transaction=False)
            pipe.execute_command(*_evalsha(step))
            pipe.execute_command(*wait)
            replies = await pipe.execute(raise_on_error=False)
            if isinstance(replies[0], NoScriptError):
                pipe = client.pipeline(transaction=False)
                pipe.execute_command(*_eval(step))
                pipe.execute_command(*wait)
                replies = await pipe.execute(raise_on_error=False)
        if isinstance(replies[0], AskError) and attempt == 1 and is_cluster_client(client):
            await arefresh(client)
            continue
        return _checked(replies, step, replicas, timeout)
    raise AssertionError("unreachable")
