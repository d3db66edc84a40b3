"""Dramatiq: ``@dramatiq.actor`` functions on a ``RedisBroker``; ``dramatiq`` workers.

Dramatiq stores no results by default. So drain workers run without the ``Results``
middleware, as by default, and only the latency workload's worker (and the harness, which waits
for the result) add it, with ``BENCH_DRAMATIQ_RESULTS=1``. Either way Dramatiq logs a warning
for every message whose actor returns a value it does not store, as ``noop`` does.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from adapters.base import Adapter, DrainMode, redis_url, venv_command

RESULTS_ENV = "BENCH_DRAMATIQ_RESULTS"
broker = RedisBroker(url=redis_url())
WITH_RESULTS = os.environ.get(RESULTS_ENV) == "1"
if WITH_RESULTS:
    broker.add_middleware(Results(backend=RedisBackend(url=redis_url())))
dramatiq.set_broker(broker)


@dramatiq.actor
def noop(i: int) -> int:
    return i


if WITH_RESULTS:

    @dramatiq.actor(store_results=True)
    def stamp() -> float:
        return time.time()


def dramatiq_worker(processes: int) -> tuple[str, ...]:
    args = ("--processes", str(processes), "--threads", "1")
    return venv_command("dramatiq", "adapters.lib_dramatiq", *args)


class Dramatiq(Adapter):
    name = "Dramatiq"
    distributions = ("dramatiq",)
    setup_notes: ClassVar[str] = (
        "`noop.send(i)` of a `@dramatiq.actor` on `RedisBroker` (default middleware). Workers: "
        "`dramatiq --processes N --threads 1`. Results: none, as by default (done = the "
        "queue's hash of unacknowledged messages is empty); the latency workload alone adds "
        "the `Results` middleware with its Redis backend and a `store_results=True` actor, "
        "and waits with `message.get_result(block=True)` (a blocking `BRPOPLPUSH`). Dramatiq "
        "logs a warning for each `noop` message, as it returns a value that is not stored: "
        "left as is (a log line per job, as django-jobs, RQ and Huey write too)."
    )

    def drain_modes(self, processes: int) -> list[DrainMode]:
        name = f"--processes {processes} --threads 1"
        return [DrainMode(name, processes, (dramatiq_worker(processes),))]

    def enqueue(self, i: int) -> None:
        noop.send(i)

    def unfinished(self, probe: redis.Redis, n: int) -> int:
        return int(probe.hlen("dramatiq:default.msgs"))

    def idle_worker(self) -> DrainMode:
        return DrainMode(
            "--processes 1 --threads 1", 1, (dramatiq_worker(1),), ((RESULTS_ENV, "1"),)
        )

    def submit_stamp(self) -> Any:
        if not WITH_RESULTS:
            raise RuntimeError(f"the harness must set {RESULTS_ENV}=1 before importing this")
        return stamp.send()

    def wait_stamp(self, handle: Any, timeout: float) -> float:
        return float(handle.get_result(block=True, timeout=int(timeout * 1000)))


ADAPTER = Dramatiq()
