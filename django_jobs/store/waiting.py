"""A blocking ``BLPOP`` whose reply is read when it comes, while the process also waits for
something else (:func:`select.select` on both); and the script call sent behind it.

An idle worker child blocks on its shard's wake-up list itself (``worker/wakeups.py``) and
listens to its supervisor's pipe at the same time: a STOP must not wait for the end of a
one-second block. So the command is sent on a connection of its own, taken from the pool once
and kept for the next waits (a wake-up pays for no checkout and return of the pool: on an idle
machine that was 12 µs between the token and the job), the caller selects on that
connection's socket (:meth:`Blpop.fileno`) beside the pipe, and :meth:`Blpop.reply` reads the
reply once it is there. Errors are translated as for any other call (:mod:`.execute`).

The child's claim goes in the same write, behind the ``BLPOP`` (:meth:`Blpop.send`'s
``then``): Redis runs it as soon as the wait ends, so the claim's reply follows the token
without a round trip of its own. A wait given up on while such a call is behind it is ended
with ``CLIENT UNBLOCK`` rather than by closing the connection (:meth:`Blpop.cancel`): the call
then runs at once and its reply is read, and a job it leased is not left for lease recovery.
"""

from __future__ import annotations

import select
import time
import weakref
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from django_jobs.conf import jobs_settings
from django_jobs.exceptions import StoreError
from django_jobs.store import nodes
from django_jobs.store.commands import Command, command_of
from django_jobs.store.connection import get_redis, pooled, read_reply, redis_outage, usable
from django_jobs.store.errors import translated
from django_jobs.store.scripts import Call
from django_jobs.store.topology import is_cluster_client

# The server's id of each connection a wait was sent on (``CLIENT ID``), for ``CLIENT UNBLOCK``:
# with the socket it was asked on (a reconnected connection has another id), or None when the
# server refused to tell (an ACL user without ``CLIENT``).
_CLIENT_IDS: weakref.WeakKeyDictionary[Any, tuple[Any, int | None]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Woken:
    """The replies to a wait (:meth:`Blpop.reply`)."""

    token: bool  # a token came (False: the block ran out)
    then: Any  # the reply to the call sent behind the wait (an error reply as it was read)
    error: Exception | None = None  # the wait's own error reply: raise it once ``then`` is used


class Blpop:
    """``BLPOP key timeout``, sent by :meth:`send` and read by :meth:`reply`: one at a time."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._pool: Any = None
        self._client: Any = None  # the client of the server the wait was sent to
        self._connection: Any = None  # the connection of the wait under way, if any
        self._held: Any = None  # the connection the waits go on, out of the pool ``_pool``
        self._then: Call | None = None
        self._deadline = 0.0  # time.monotonic() after which a silent server is given up on

    @property
    def sent(self) -> bool:
        """A ``BLPOP`` was sent whose reply was not read yet."""
        return self._connection is not None

    def send(self, timeout: float, then: Call | None = None) -> None:
        """Send ``BLPOP`` (``timeout`` > 0 seconds) on the waits' connection (:meth:`_hold`),
        and the script call ``then`` in the same write: Redis runs it as soon as the wait ends,
        a token come or the block run out."""
        step = Command(("BLPOP", self.key, timeout), block=timeout)
        try:
            client = get_redis()
            commands = [step.args]
            if then is not None:
                # FCALL, or EVALSHA on a cluster (the client says which): on the wait's node,
                # as a claim's keys share the wake-up list's hash tag.
                commands.append(command_of(client, then))
            if is_cluster_client(client):
                client = nodes.node_client(client, self.key)
            self._connection = usable(self._hold(client))
            if then is not None:
                self._learn_id()
            self._send(self._connection.pack_commands(commands))
        except (redis.RedisError, RedisClusterException) as exc:
            self.close()
            raise translated(exc) from exc
        self._then = then
        self._deadline = time.monotonic() + step.read_timeout

    def _hold(self, client: Any) -> Any:
        """The connection the waits go on: taken from ``client``'s pool and kept, until it
        fails (:meth:`close`) or the waits go to another pool (a new client; the node of a
        cluster that moved the key's slot), when the one held goes back."""
        if self._held is not None and self._pool is not client.connection_pool:
            self._pool.release(self._held)
            self._held = None
        self._client, self._pool = client, client.connection_pool
        if self._held is None:
            self._held = pooled(self._pool, "BLPOP")
        return self._held

    def _send(self, packed: Any) -> None:
        try:
            self._connection.send_packed_command(packed)
        except redis.ConnectionError:
            # A pooled connection that Redis closed (it restarted): one fresh try.
            self._connection.disconnect()
            self._connection.send_packed_command(packed)

    def _learn_id(self) -> None:
        """Ask the connection's id once (a round trip per new connection), for :meth:`cancel`."""
        connection = self._connection
        known = _CLIENT_IDS.get(connection)
        # redis-py keeps the socket of a connected Connection in _sock.
        if connection._sock is not None and known is not None and known[0] is connection._sock:
            return
        self._send(connection.pack_command("CLIENT", "ID"))
        try:
            client_id: int | None = int(connection.read_response())
        except redis.ResponseError:
            client_id = None  # not allowed: cancel() closes the connection instead
        _CLIENT_IDS[connection] = (connection._sock, client_id)

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

    def reply(self) -> Woken:
        """Read the replies that :meth:`ready` says are there: whether a token came, and the
        reply to the call sent behind the wait, if any. The connection is kept for the next.

        An error reply to the wait alone is raised; with a call behind it, it comes in
        :attr:`Woken.error`, as the call's reply must be dealt with first (it may have leased
        a job).
        """
        connection, then = self._connection, self._then
        try:
            token: Any = read_reply(connection)
            answer = read_reply(connection) if then is not None else None
        except (redis.RedisError, RedisClusterException) as exc:
            self.close()
            raise translated(exc) from exc
        self._connection = self._then = None
        redis_outage.answered()  # the end of an outage this process reported, if any
        error = translated(token) if isinstance(token, redis.ResponseError) else None
        if error is not None and then is None:
            raise error
        return Woken(error is None and bool(token), answer, error)

    def cancel(self) -> Woken | None:
        """Give up on the wait. With a call behind it, end the wait (``CLIENT UNBLOCK``) and
        read the replies: the call runs at once, and what it did is known. ``None`` when the
        connection was closed instead (no call behind the wait; or the server could not be
        asked or did not answer: a job the call may have leased then comes back through lease
        recovery)."""
        if self._then is None:
            self.close()
            return None
        known = _CLIENT_IDS.get(self._connection)
        client_id = known[1] if known is not None else None
        # Bounded: a server that stops answering is given up on as any wait is.
        give_up = time.monotonic() + float(jobs_settings.REDIS_SOCKET_TIMEOUT)
        try:
            while not self.ready():
                if client_id is None or time.monotonic() > give_up:
                    self.close()
                    return None
                # 0 when the wait was no longer blocked (or not yet: it is asked again).
                self._client.execute_command("CLIENT", "UNBLOCK", client_id)
                select.select([self.fileno()], [], [], 0.05)
            return self.reply()
        except (redis.RedisError, RedisClusterException, StoreError):
            self.close()
            return None

    def close(self) -> None:
        """Give up on the reply: the connection is closed (Redis drops the wait with it, and
        the call behind it unless it ran already) and goes back to the pool."""
        if self._held is not None:
            self._held.disconnect()
            self._pool.release(self._held)
            self._held = None
        self._connection = self._then = None
