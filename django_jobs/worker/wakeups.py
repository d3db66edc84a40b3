"""The supervisor's wait for wake-up tokens when its queues live on several shards.

An enqueue pushes a token onto the wake-up list of its shard (``<shard prefix>:wakeup``). One
``BLPOP`` cannot wait on lists of several slots of a cluster, so the supervisor keeps one
blocking ``BLPOP`` per shard, each on a connection of its own, while a child is idle: a token
from any shard wakes a child within milliseconds, and nothing polls Redis in a loop. A token
taken while no child is idle waits here, as it would have waited in Redis.
"""

from __future__ import annotations

import asyncio
import functools

from django_jobs.store import calls
from django_jobs.store.execute import arun
from django_jobs.store.keys import Keys
from django_jobs.worker.retry import auntil_redis_answers, keep_going


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
