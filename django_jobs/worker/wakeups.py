"""How idle worker processes wait for wake-up tokens.

An enqueue pushes a token onto the wake-up list of its shard (``<shard prefix>:wakeup``); each
token wakes one waiter (Redis serves blocked clients in turn: no thundering herd), and a token
pushed while nobody waits stays in the list for the next wait (no lost wake-up).

- A child whose queues live on one shard waits itself (:class:`ChildWakeups`): it blocks on
  the list and, as the token comes, claims. Nothing passes through the supervisor on the way
  from an enqueue to the start of the job, which keeps an idle worker's latency low.
- Otherwise the supervisor waits and tells an idle child GO over its pipe: for queues on
  several shards (:class:`ShardWakeups`: one ``BLPOP`` cannot wait on lists of several slots
  of a cluster, so it keeps one blocking ``BLPOP`` per shard, each on a connection of its own;
  a token taken while no child is idle waits here, as it would have waited in Redis), for a
  child whose async jobs left it room, and for one whose supervisor was silent.
"""

from __future__ import annotations

import asyncio
import functools
import select
import time
from multiprocessing.connection import Connection

from django_jobs.exceptions import RedisAccessDenied, RedisUnavailable, StoreError
from django_jobs.store import calls, shards
from django_jobs.store.connection import Backoff
from django_jobs.store.execute import arun
from django_jobs.store.keys import Keys, Namespace
from django_jobs.store.waiting import Blpop
from django_jobs.worker.retry import auntil_redis_answers, keep_going, redis_pause
from django_jobs.worker.slots import GO, STOP

# An idle worker blocks on the wake-up list at most this long at a time, so that it sends
# about one request per second while idle (each of its N idle children, waiting itself, blocks
# N times as long). Enqueues wake it at once; so does a delayed or retrying job due before all
# others, whose due time it then waits for.
IDLE_BLOCK = 1.0
# Every this many idle blocks it claims anyway, in case a wake-up was missed.
IDLE_CLAIM_EVERY = 5
# The shortest block: BLPOP's timeout 0 would wait for ever.
SHORTEST_BLOCK = 0.001


class ShardWakeups:
    """The wake-up tokens of the shards of ``keys``, one blocking wait each (:meth:`run`)."""

    def __init__(self, keys: list[Keys], block: float) -> None:
        self.keys = keys
        self.block = block
        self.tokens: asyncio.Queue[bool] = asyncio.Queue()

    async def run(self, idle: asyncio.Event, stopped: asyncio.Event) -> None:
        """Wait on every shard's list while ``idle`` is set, until ``stopped``."""
        waits = [asyncio.create_task(self._wait(keys, idle, stopped)) for keys in self.keys]
        try:
            await stopped.wait()
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _wait(self, keys: Keys, idle: asyncio.Event, stopped: asyncio.Event) -> None:
        async def step() -> None:
            await idle.wait()
            block = functools.partial(arun, calls.wait_wakeup(keys, timeout=self.block))
            if await auntil_redis_answers(block, until=stopped):
                self.tokens.put_nowait(True)

        # Redis not answering is waited out inside; anything else is logged and waited again.
        await keep_going(f"wake-ups on {keys.prefix}", step, stopped.is_set, stopped)

    async def wait(self, timeout: float) -> bool:
        """``True`` when a token of some shard came within ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self.tokens.get(), timeout)
        except TimeoutError:
            return False


class ChildWakeups:
    """The wait of an idle child on the wake-up list of its one shard (:meth:`wait`)."""

    def __init__(self, keys: Keys, block: float) -> None:
        self.blpop = Blpop(keys.wakeup)
        self.block = block  # the longest block: the next delayed job may end it sooner
        self.backoff = Backoff(limit=IDLE_BLOCK)

    @classmethod
    def of(cls, namespace: Namespace, queues: list[str], block: float) -> ChildWakeups | None:
        """The wait of a child serving ``queues``, blocking ``block`` seconds at most at a
        time; ``None`` when they live on several shards (the supervisor waits for it:
        :class:`ShardWakeups`)."""
        served = list(shards.by_shard(queues))
        return cls(namespace.shard_keys(served[0]), block) if len(served) == 1 else None

    def wait(self, pipe: Connection, next_due: float | None) -> bytes:
        """Block until there may be work, and return ``GO``: a token came, the next delayed
        job (due at ``next_due``) is due, or ``IDLE_CLAIM_EVERY`` blocks passed without a
        token (in case one was missed; with N children, each claims that often every N blocks
        of the worker's). Return ``STOP`` when the supervisor says so on ``pipe`` (or is gone).

        While Redis does not answer it returns ``GO`` after a pause (the claim that follows
        waits for Redis); the supervisor's ``STOP`` is heard during the pause too.
        """
        quiet = 0
        while True:
            try:
                if not self.blpop.sent:
                    block = self.block
                    if next_due is not None:
                        block = min(block, max(next_due - time.time(), SHORTEST_BLOCK))
                    self.blpop.send(block)
                waits = [pipe.fileno(), self.blpop.fileno()]
                ready, _, _ = select.select(waits, [], [], self.blpop.left())
                if waits[0] in ready:
                    message = self._message(pipe)
                    if message is not None:
                        return message
                    continue
                if not self.blpop.ready():
                    raise RedisUnavailable("Redis did not answer a wait on the wake-up list")
                if self.blpop.reply():
                    self.backoff.reset()
                    return GO
            except (RedisUnavailable, RedisAccessDenied, StoreError) as exc:
                self.blpop.close()
                return self._pause(pipe, redis_pause(self.backoff, exc))
            self.backoff.reset()
            quiet += 1
            due = next_due is not None and next_due <= time.time()
            if due or quiet % IDLE_CLAIM_EVERY == 0:
                return GO

    def _message(self, pipe: Connection) -> bytes | None:
        """The supervisor's GO or STOP (``None``: another message, about an async job that is
        over). Its wait is dropped: the child claims or exits now."""
        try:
            message = pipe.recv_bytes()
        except (EOFError, OSError):
            message = STOP  # the supervisor is gone
        if message not in (GO, STOP):
            return None
        # A token Redis may have handed to this wait meanwhile is lost with it; the supervisor
        # sends no GO to a child that waits itself, so it is STOP: the child exits anyway.
        self.blpop.close()
        return message

    def _pause(self, pipe: Connection, seconds: float) -> bytes:
        """Wait ``seconds`` (Redis did not answer), then ``GO``; ``STOP`` if said meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and pipe.poll(left):
            message = self._message(pipe)
            if message is not None:
                return message
        return GO
