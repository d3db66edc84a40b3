"""A blocking ``BLPOP`` whose reply is read when it comes, while the process also waits for
something else (:func:`select.select` on both).

An idle worker child blocks on its shard's wake-up list itself (``worker/wakeups.py``) and
listens to its supervisor's pipe at the same time: a STOP must not wait for the end of a
one-second block. So the command is sent on a pooled connection of its own, the caller selects
on that connection's socket (:meth:`Blpop.fileno`) beside the pipe, and :meth:`Blpop.reply`
reads the reply once it is there. Errors are translated as for any other call
(:mod:`.execute`).
"""

from __future__ import annotations

import time
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from django_jobs.store import nodes
from django_jobs.store.commands import Command
from django_jobs.store.connection import get_redis, pooled, redis_outage
from django_jobs.store.errors import translated
from django_jobs.store.topology import is_cluster_client


class Blpop:
    """``BLPOP key timeout``, sent by :meth:`send` and read by :meth:`reply`: one at a time."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._pool: Any = None
        self._connection: Any = None
        self._deadline = 0.0  # time.monotonic() after which a silent server is given up on

    @property
    def sent(self) -> bool:
        """A ``BLPOP`` was sent whose reply was not read yet."""
        return self._connection is not None

    def send(self, timeout: float) -> None:
        """Send ``BLPOP`` (``timeout`` > 0 seconds) on a connection taken from the pool."""
        step = Command(("BLPOP", self.key, timeout), block=timeout)
        try:
            client = get_redis()
            if is_cluster_client(client):
                client = nodes.node_client(client, self.key)
            self._pool = client.connection_pool
            self._connection = pooled(self._pool, "BLPOP")
            try:
                self._connection.send_command(*step.args)
            except redis.ConnectionError:
                # A pooled connection that Redis closed (it restarted): one fresh try.
                self._connection.disconnect()
                self._connection.send_command(*step.args)
        except (redis.RedisError, RedisClusterException) as exc:
            self.close()
            raise translated(exc) from exc
        self._deadline = time.monotonic() + step.read_timeout

    def fileno(self) -> int:
        """The socket the reply comes on (for ``select``)."""
        # redis-py keeps the socket of a connected Connection in _sock; send() connected it.
        return int(self._connection._sock.fileno())

    def left(self) -> float:
        """Seconds until the reply is overdue: the server (or the network) is not answering."""
        return max(self._deadline - time.monotonic(), 0.0)

    def ready(self) -> bool:
        """The reply is there (also when it was read off the socket into a buffer already)."""
        try:
            return bool(self._connection.can_read(timeout=0))
        except redis.RedisError as exc:
            self.close()
            raise translated(exc) from exc

    def reply(self) -> bool:
        """Read the reply that :meth:`ready` says is there: ``True`` when a token came,
        ``False`` when the block ran out. The connection goes back to the pool."""
        try:
            reply = self._connection.read_response()
        except (redis.RedisError, RedisClusterException) as exc:
            self.close()
            raise translated(exc) from exc
        self._pool.release(self._connection)
        self._connection = None
        redis_outage.answered()  # the end of an outage this process reported, if any
        return bool(reply)

    def close(self) -> None:
        """Give up on the reply: the connection is closed (Redis drops the wait with it)."""
        if self._connection is not None:
            self._connection.disconnect()
            self._pool.release(self._connection)
            self._connection = None
