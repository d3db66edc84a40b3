"""The async job of ``bench/async_jobs.py`` in arq, which runs in ``bench/.venv-arq`` (arq needs
redis<6). ``arq adapters.async_arq.Settings`` runs up to ``BENCH_ARQ_MAX_JOBS`` jobs at once
and stops when the queue is empty; results are kept, as by default. ``python -m
adapters.async_arq N SECONDS`` enqueues N jobs. Configured from ``BENCH_REDIS_URL``."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import RedisSettings

from adapters.base import redis_url


async def nap(ctx: dict[str, Any], seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


class Settings:
    functions: ClassVar[list[Any]] = [nap]
    redis_settings = RedisSettings.from_dsn(redis_url())
    max_jobs = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "100"))
    burst = True
    max_tries = 1


async def enqueue(count: int, seconds: float) -> None:
    pool = await create_pool(Settings.redis_settings)
    try:
        for start in range(0, count, 100):
            batch = min(100, count - start)
            await asyncio.gather(*(pool.enqueue_job("nap", seconds) for _ in range(batch)))
    finally:
        await pool.aclose()


if __name__ == "__main__":
    asyncio.run(enqueue(int(sys.argv[1]), float(sys.argv[2])))
