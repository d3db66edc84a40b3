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
from collections.abc import Callable
from multiprocessing.connection import Connection

from django_jobs.exceptions import RedisAccessDenied, RedisUnavailable, StoreError
from django_jobs.store import calls, shards
from django_jobs.store.commands import Plan
from django_jobs.store.connection import Backoff
from django_jobs.store.execute import arun, resume
from django_jobs.store.keys import Keys, Namespace
from django_jobs.store.scripts import Call
from django_jobs.store.waiting import Blpop
from django_jobs.worker.retry import auntil_redis_answers, keep_going, redis_pause
from django_jobs.worker.slots import GO, STOP
from django_jobs.worker.turns import Claim

# An idle worker blocks on the wake-up list at most this long at a time, so that it sends
# about one request per second while idle (each of its N idle children, waiting itself, blocks
# N times as long; the claim a child sends behind each block, see idle.py, goes in the same
# write). Enqueues wake it at once; so does a delayed or retrying job due before all others,
# whose due time it then waits for.
IDLE_BLOCK = 1.0
# Every this many idle blocks without a claim behind them it claims anyway, in case a wake-up
# was missed.
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

    def wait(
        self,
        pipe: Connection,
        next_due: float | None,
        claims: Callable[[], Plan[Claim] | None] = lambda: None,
    ) -> tuple[bytes, Claim | None]:
        """Block until there may be work, and return ``GO``; or ``STOP`` when the supervisor
        says so on ``pipe`` (or is gone).

        Each block is sent with the claim that ``claims()`` plans, if any, behind it in the
        same write (see ``store/waiting.py``): a claim that took a job ends the wait, and comes
        with ``GO``; one that took nothing says when the next delayed job is due, and the wait
        goes on. ``STOP`` comes with the claim of the block it ended, if that claim ran (the
        caller gives its jobs back). Without a claim, ``GO`` (and ``None``) says: claim now. A
        token came, the next delayed job (due at ``next_due``) is due, or ``IDLE_CLAIM_EVERY``
        blocks passed without a token (in case one was missed; with N children, each claims
        that often every N blocks of the worker's).

        While Redis does not answer it returns ``GO`` after a pause (the claim that follows
        waits for Redis); the supervisor's ``STOP`` is heard during the pause too.
        """
        quiet = 0
        plan: Plan[Claim] | None = None
        step: Call | None = None
        while True:
            try:
                if not self.blpop.sent:
                    block = self.block
                    if next_due is not None:
                        block = min(block, max(next_due - time.time(), SHORTEST_BLOCK))
                    plan = claims()
                    step = None if plan is None else _first_call(plan)
                    self.blpop.send(block, step)
                waits = [pipe.fileno(), self.blpop.fileno()]
                ready, _, _ = select.select(waits, [], [], self.blpop.left())
                if waits[0] in ready:
                    message = self._message(pipe)
                    if message is not None:
                        return message, self._cancel(plan, step)
                    continue
                # The socket select found readable is not asked again (two system calls on the
                # way from the token to the job): reading the reply finds a closed one.
                if waits[1] not in ready and not self.blpop.ready():
                    raise RedisUnavailable("Redis did not answer a wait on the wake-up list")
                woken = self.blpop.reply()
                if plan is not None and step is not None:
                    claim = resume(plan, step, woken.then)
                    if woken.error is not None and claim.job is None:
                        raise woken.error
                    self.backoff.reset()
                    if claim.job is not None:
                        return GO, claim
                    next_due = claim.next_due  # each block claims: no other claim is due
                    continue
                if woken.token:
                    self.backoff.reset()
                    return GO, None
            except (RedisUnavailable, RedisAccessDenied, StoreError) as exc:
                self.blpop.close()
                return self._pause(pipe, redis_pause(self.backoff, exc)), None
            self.backoff.reset()
            quiet += 1
            due = next_due is not None and next_due <= time.time()
            if due or quiet % IDLE_CLAIM_EVERY == 0:
                return GO, None

    def _cancel(self, plan: Plan[Claim] | None, step: Call | None) -> Claim | None:
        """Give up on the wait under way; the claim behind it, if it ran (see Blpop.cancel).
        Without a claim a token Redis may have handed to this wait meanwhile is lost with it:
        the supervisor sends no GO to a child that waits itself, so it is STOP, and the child
        exits anyway."""
        woken = self.blpop.cancel()
        if woken is None or plan is None or step is None:
            return None
        try:
            return resume(plan, step, woken.then)
        except (RedisUnavailable, RedisAccessDenied, StoreError):
            return None  # a job it leased comes back through lease recovery

    @staticmethod
    def _message(pipe: Connection) -> bytes | None:
        """The supervisor's GO or STOP (``None``: another message, about an async job that is
        over). Its wait is given up on: the child claims or exits now."""
        try:
            message = pipe.recv_bytes()
        except (EOFError, OSError):
            message = STOP  # the supervisor is gone
        return message if message in (GO, STOP) else None

    def _pause(self, pipe: Connection, seconds: float) -> bytes:
        """Wait ``seconds`` (Redis did not answer), then ``GO``; ``STOP`` if said meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and pipe.poll(left):
            message = self._message(pipe)
            if message is not None:
                return message
        return GO


def _first_call(plan: Plan[Claim]) -> Call:
    """The first step of a claim's plan: the claim script's call, sent behind the wait."""
    step = next(plan)
    assert isinstance(step, Call)
    return step
