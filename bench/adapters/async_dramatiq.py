"""The async job of ``bench/async_jobs.py`` in Dramatiq: an ``async def`` actor, run by the
``AsyncIO`` middleware on the worker's event loop thread. Each of the worker's threads waits
for one such job, so ``dramatiq --threads N`` runs N at once. Imported by the harness (to
enqueue) and by the worker, configured from ``BENCH_REDIS_URL``."""

from __future__ import annotations

import asyncio

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware.asyncio import AsyncIO

from adapters.base import redis_url

broker = RedisBroker(url=redis_url())
broker.add_middleware(AsyncIO())
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
async def nap(seconds: float) -> None:
    await asyncio.sleep(seconds)
