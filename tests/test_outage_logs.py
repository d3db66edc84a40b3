"""While Redis is down, each process logs one line at the first failure, then one a minute
(not one per retry, nor one per loop that retries), and one "Redis answers again after N s" line
when it is back: the shared reporter (``store.connection.OutageLog``), then real ``runworker``
and ``runscheduler`` processes against a private redis-server that the test stops and starts.
"""

import logging
import time

import pytest
from django.db import connection

from django_jobs import JobQueue
from django_jobs.exceptions import RedisUnavailable
from django_jobs.store.connection import OutageLog, redis_outage
from tests.processes import Processes, wait_until
from tests.testapp import jobs

DOWN = "Redis does not answer"
STILL = "Redis still does not answer"
BACK = "Redis answers again after"
TICK = {"tick": {"job": "tests.record", "interval": 1, "args": ["tick"], "missed_runs": "skip"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_logged_once_then_once_a_minute_then_once_when_it_ends(caplog):
    clock, log = Clock(), logging.getLogger("django_jobs.test")
    outage = OutageLog(clock=clock)
    error = RedisUnavailable("Cannot reach Redis at redis://127.0.0.1:1/0: refused")

    with caplog.at_level(logging.WARNING, "django_jobs.test"):
        outage.answered()  # no outage: nothing to say
        for _ in range(50):  # retries within the first minute
            outage.failed(log, error, "scheduler: ")
            clock.now += 1
        for _ in range(15):  # and the next 75 s, every 5 s
            outage.failed(log, error, "scheduler: ")
            clock.now += 5
        outage.answered()
        outage.answered()

    assert [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records] == [
        ("ERROR", f"scheduler: {DOWN}"),
        ("ERROR", f"scheduler: {STILL} after 60s"),
        ("ERROR", f"scheduler: {STILL} after 120s"),
        ("WARNING", f"scheduler: {BACK} 125.0s"),
    ]
    assert "redis://127.0.0.1:1/0: refused" in caplog.records[0].getMessage()
    assert "(53 failed attempts)" in caplog.records[1].getMessage()


def test_any_call_that_works_ends_a_reported_outage(queue, caplog):
    with caplog.at_level(logging.WARNING, "django_jobs.worker"):
        redis_outage.failed(logging.getLogger("django_jobs.worker"), RedisUnavailable("down"))
        queue.stats()
        queue.stats()

    assert [r.getMessage().split(" after")[0] for r in caplog.records] == [
        f"{DOWN} (down); waiting for it, with a line every 60s while it lasts",
        "Redis answers again",
    ]


def lines(text: str, what: str) -> list[str]:
    return [line for line in text.splitlines() if what in line]


@pytest.mark.slow
def test_a_worker_logs_an_outage_once_per_process_and_once_when_redis_is_back(
    workers, private_redis
):
    proc = workers.start("--concurrency", "2")
    assert jobs.add.delay(1, 1).result(timeout=15) == 2

    private_redis.stop()
    # Seven seconds of retries: pauses of 0.1, 0.2, 0.4 ... 5 s in each loop of each process.
    time.sleep(7)
    private_redis.start()
    assert jobs.add.delay(2, 2).result(timeout=30) == 4
    wait_until(lambda: lines(workers.output(proc), BACK), timeout=15, message="the last line")
    time.sleep(1)  # any other process that reported the outage says it is over too

    log = workers.output(proc)
    down, back = lines(log, DOWN), lines(log, BACK)
    # The supervisor (its loops fail together) and at most each of the two children.
    assert 1 <= len(down) <= 3, log
    assert all("Cannot reach Redis at unix://" in line for line in down), log
    assert lines(log, "Cannot reach Redis") == down, "no loop logs each of its retries"
    assert len(back) == len(down), log
    assert lines(log, STILL) == [], "less than a minute"
    assert "trying again in" not in log
    assert proc.poll() is None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_scheduler_logs_an_outage_once_and_once_when_redis_is_back(
    tmp_path, prefix, private_redis, jobs_settings
):
    group = Processes(tmp_path, prefix, {"SCHEDULES": TICK}, connection.settings_dict["NAME"])
    try:
        proc = group.start(command="runscheduler")
        wait_until(lambda: JobQueue().list_jobs("pending"), timeout=30, message="a run")

        private_redis.stop()
        time.sleep(7)
        private_redis.start()
        wait_until(lambda: lines(group.output(proc), BACK), timeout=30, message="the last line")

        assert group.stop(proc) == 0, group.logs()
        log = group.output(proc)
        (down,) = lines(log, DOWN)
        assert lines(log, "Cannot reach Redis") == [down]
        assert "scheduler: Redis does not answer (Cannot reach Redis at unix://" in down
        (back,) = lines(log, BACK)
        assert "scheduler: Redis answers again after" in back
        assert "trying again in" not in log
    finally:
        group.close()
