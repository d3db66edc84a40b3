"""RQ: functions enqueued by import path on a ``Queue``; ``rq worker --burst``."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import redis
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry

from adapters.base import Adapter, DrainMode, redis_url, venv_command


def noop(i: int) -> int:
    return i


def stamp() -> float:
    return time.time()


def rq_worker(*args: str, burst: bool = True) -> tuple[str, ...]:
    burst_args = ("--burst",) if burst else ()
    return venv_command("rq", "worker", *burst_args, "--url", redis_url(), *args, "default")


SIMPLE = ("-w", "rq.worker.SimpleWorker")
# The forking worker runs some 50 jobs/s here (a fork per job): 20,000 would take 7 minutes a
# run, so its drains have a twentieth of the jobs (1,000 of 20,000).
FORK_SHARE = 0.05


class RQ(Adapter):
    name = "RQ"
    distributions = ("rq",)
    setup_notes: ClassVar[str] = (
        "`Queue('default').enqueue(noop, i)`. Workers: `rq worker --burst` with "
        "`-w rq.worker.SimpleWorker` (runs jobs in the worker process) and with the default "
        "`Worker` (forks a work horse per job; as it is slow, its drains have a twentieth of "
        "the jobs); two processes are two SimpleWorkers. Default logging (a few lines per "
        "job) to a file. Results: stored by default (a stream per job, kept 500 s); done = "
        "the `FinishedJobRegistry`. Latency: "
        "`job.latest_result(timeout=...)`, which blocks on the result stream (`XREAD`)."
    )

    def __init__(self) -> None:
        self.redis = redis.Redis.from_url(redis_url())
        self.queue = Queue("default", connection=self.redis)
        self.finished_key = FinishedJobRegistry(queue=self.queue).key

    def drain_modes(self, processes: int) -> list[DrainMode]:
        if processes == 1:
            return [
                DrainMode("SimpleWorker", 1, (rq_worker(*SIMPLE),)),
                DrainMode("Worker (fork per job)", 1, (rq_worker(),), share=FORK_SHARE),
            ]
        return [
            DrainMode(f"SimpleWorker x{processes}", processes, (rq_worker(*SIMPLE),) * processes)
        ]

    def idle_worker(self) -> DrainMode:
        return DrainMode("SimpleWorker", 1, (rq_worker(*SIMPLE, burst=False),))

    def enqueue(self, i: int) -> None:
        self.queue.enqueue(noop, i)

    def unfinished(self, probe: redis.Redis, n: int) -> int:
        return n - int(probe.zcard(self.finished_key))

    def submit_stamp(self) -> Job:
        return self.queue.enqueue(stamp)

    def wait_stamp(self, handle: Any, timeout: float) -> float:
        result = handle.latest_result(timeout=max(1, round(timeout)))
        if result is None:
            raise TimeoutError(f"RQ job {handle.id} has no result after {timeout} s")
        return float(result.return_value)


ADAPTER = RQ()
