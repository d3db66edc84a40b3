"""Huey: ``@huey.task()`` functions on a ``RedisHuey``; ``huey_consumer``."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import redis
from huey import RedisHuey
from huey.api import Result

from adapters.base import Adapter, DrainMode, redis_url, venv_command

huey = RedisHuey("bench", url=redis_url())

# The harness polls a result this often while waiting for it: Huey's own blocking get()
# sleeps 50 ms and more between looks (unless notify_result=True, which is not the default).
POLL = 0.0005


@huey.task()
def noop(i: int) -> int:
    return i


@huey.task()
def stamp() -> float:
    return time.time()


def consumer(*args: str) -> tuple[str, ...]:
    return venv_command("huey_consumer", "adapters.lib_huey.huey", *args)


class Huey(Adapter):
    name = "Huey"
    distributions = ("huey",)
    setup_notes: ClassVar[str] = (
        "`noop(i)` of a `@huey.task()` on `RedisHuey` (defaults: blocking `BRPOP` dequeue, "
        "results in one hash). Workers: `huey_consumer -w 1 -k thread`, and `-w 2 -k process` "
        "for two processes (default logging, a line per task, to a file). Done = fields of the "
        "result hash. Latency: Huey's blocking `get()` sleeps 50 ms and more between looks, "
        "so the harness polls the result every 0.5 ms instead."
    )

    def drain_modes(self, processes: int) -> list[DrainMode]:
        if processes == 1:
            return [DrainMode("-w 1 -k thread", 1, (consumer("-w", "1", "-k", "thread"),))]
        args = ("-w", str(processes), "-k", "process")
        return [DrainMode(f"-w {processes} -k process", processes, (consumer(*args),))]

    def enqueue(self, i: int) -> None:
        noop(i)

    def unfinished(self, probe: redis.Redis, n: int) -> int:
        return n - int(probe.hlen(huey.storage.result_key))

    def submit_stamp(self) -> Result:
        return stamp()

    def wait_stamp(self, handle: Any, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = handle.get()
            if value is not None:
                return float(value)
            time.sleep(POLL)
        raise TimeoutError(f"Huey task {handle.id} has no result after {timeout} s")


ADAPTER = Huey()
