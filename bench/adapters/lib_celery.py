"""Celery: ``@app.task`` functions, broker and result backend on the private Redis."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import redis
from celery import Celery
from celery.result import AsyncResult

from adapters.base import Adapter, DrainMode, redis_url, venv_command

app = Celery("bench", broker=redis_url(0), backend=redis_url(1))
app.conf.broker_connection_retry_on_startup = True


@app.task
def noop(i: int) -> int:
    return i


@app.task
def stamp() -> float:
    return time.time()


def celery_worker(*args: str) -> tuple[str, ...]:
    return venv_command("celery", "-A", "adapters.lib_celery", "worker", *args)


class CeleryAdapter(Adapter):
    name = "Celery"
    distributions = ("celery", "kombu")
    counter_db = 1  # the result backend's database: one key per finished task
    setup_notes: ClassVar[str] = (
        "`noop.delay(i)`. Broker: Redis database 0; result backend: Redis database 1 (the "
        "usual Redis setup; with it, `.delay()` also subscribes to the task's result channel). "
        "Workers: `celery worker -P solo -c 1`, and `-P prefork -c 2` for two processes; "
        "otherwise defaults (prefetch multiplier 4, acks early, mingle, gossip and heartbeats "
        "on, log level WARNING). Done = keys in the result database. Latency: "
        "`AsyncResult.get()`, which waits on the backend's pub/sub."
    )

    def drain_modes(self, processes: int) -> list[DrainMode]:
        if processes == 1:
            return [DrainMode("-P solo -c 1", 1, (celery_worker("-P", "solo", "-c", "1"),))]
        pool = ("-P", "prefork", "-c", str(processes))
        return [DrainMode(f"-P prefork -c {processes}", processes, (celery_worker(*pool),))]

    def enqueue(self, i: int) -> None:
        noop.delay(i)

    def unfinished(self, probe: redis.Redis, n: int) -> int:
        return n - int(probe.dbsize())

    def submit_stamp(self) -> AsyncResult:
        return stamp.delay()

    def wait_stamp(self, handle: Any, timeout: float) -> float:
        return float(handle.get(timeout=timeout))


ADAPTER = CeleryAdapter()
