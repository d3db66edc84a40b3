"""``runscheduler`` through a Redis outage, against a private redis-server that the test stops
(SIGTERM: calls fail at once) or freezes (SIGSTOP: calls hang until their time-out), then brings
back: the runs due meanwhile follow each task's missed-run policy, the log says why they were
missed, and SIGTERM ends the scheduler within seconds while Redis does not answer.
"""

import os
import signal
import time
from datetime import timedelta

import pytest
from django.db import connection

from django_jobs import JobQueue
from django_jobs.serialization import utcnow
from tests.processes import Processes, wait_until

# Three tasks due every second, one per missed-run policy.
TASKS = {
    policy: {"job": "tests.record", "interval": 1, "args": [policy], "missed_runs": policy}
    for policy in ("skip", "catch_up", "all")
}
# A frozen Redis is noticed within a second (the defaults are 5 and 10 s).
QUICK = {"REDIS_CONNECT_TIMEOUT": 1, "REDIS_SOCKET_TIMEOUT": 1}


@pytest.fixture
def scheduler(tmp_path, prefix, private_redis, jobs_settings):
    """Start ``runscheduler`` on the private Redis and this test's (file) database."""
    started = []

    def start(settings):
        group = Processes(tmp_path, prefix, settings, connection.settings_dict["NAME"])
        started.append(group)
        return group, group.start("--verbosity", "2", command="runscheduler")

    yield start
    private_redis.proc.send_signal(signal.SIGCONT)  # a failed test may leave it frozen
    for group in started:
        group.close()


def dues(policy):
    """The due times of the runs of task ``policy`` enqueued so far."""
    jobs = JobQueue().list_jobs("pending", limit=10_000)
    return sorted(job.scheduled_at for job in jobs if job.args == [policy])


def outage(server, how):
    """Make Redis stop answering; return the function that brings it back."""
    if how == "stopped":
        server.stop()
        return server.start  # the same socket; the AOF keeps what was written
    os.kill(server.proc.pid, signal.SIGSTOP)
    return lambda: os.kill(server.proc.pid, signal.SIGCONT)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_after_an_outage_missed_runs_follow_each_tasks_policy(scheduler, private_redis, how):
    group, proc = scheduler({"SCHEDULES": TASKS, **QUICK})
    wait_until(lambda: all(len(dues(p)) >= 2 for p in TASKS), timeout=30, message="runs")
    # A quarter past a second: between two passes of the scheduler (which come at about .0
    # and .5), so that no pass is cut in two and no fire waits in a frozen server's buffer.
    time.sleep(1.25 - time.time() % 1)
    down = utcnow()
    bring_back = outage(private_redis, how)
    time.sleep(7)
    bring_back()
    up = utcnow()
    wait_until(
        lambda: all(dues(p) and dues(p)[-1] >= up + timedelta(seconds=2) for p in TASKS),
        timeout=30,
        message="runs after the outage",
    )
    assert group.stop(proc) == 0, group.logs()
    log = group.output(proc)

    # Runs due in this window fell during the outage for sure, and were found more than
    # AFTER_OUTAGE_GRACE (2 s) late: the ones of the last 30 s are not all enqueued at once.
    def missed(policy):
        first, last = down + timedelta(seconds=1.5), up - timedelta(seconds=2.5)
        return [due for due in dues(policy) if first <= due <= last]

    assert missed("skip") == [], log
    # Runs due once Redis answered again are on time, however long the scheduler paused before
    # its next attempt (its pauses grew to 10 s: it came back 5 s after Redis, and dropped them).
    for policy in TASKS:
        first = up.replace(microsecond=0) + timedelta(seconds=1)
        wanted = [
            first + timedelta(seconds=i)
            for i in range(int((max(dues(policy)) - first).total_seconds()))
        ]
        lost = sorted(set(wanted) - set(dues(policy)))
        assert lost == [], f"{policy}: runs due after the outage never enqueued\n{log}"
    assert len(missed("catch_up")) <= 1, log
    every = dues("all")
    assert every == [every[0] + timedelta(seconds=i) for i in range(len(every))], (
        "policy all: every run, each once"
    )
    for policy in TASKS:
        assert len(set(dues(policy))) == len(dues(policy)), f"{policy}: a run enqueued twice"
    assert "policy skip: skipping" in log
    assert "policy all: enqueueing them" in log
    assert "this scheduler could not work from" in log
    assert "no scheduler was running" not in log
    assert "Redis did not answer); runs missed meanwhile follow each task's missed-run" in log


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_sigterm_stops_a_scheduler_within_seconds_while_redis_does_not_answer(
    scheduler, private_redis, how
):
    # The default time-outs: a frozen Redis holds each call for 10 s.
    group, proc = scheduler({"SCHEDULES": {"skip": TASKS["skip"]}})
    wait_until(lambda: dues("skip"), timeout=30, message="a run")
    outage(private_redis, how)
    time.sleep(1.5)  # the scheduler is in a call that waits, or in its pause before the next

    asked = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    took = time.monotonic() - asked

    assert code == 0, group.logs()
    assert took < 10, f"took {took:.1f}s\n{group.logs()}"


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_a_scheduler_that_waits_for_a_frozen_redis_at_start(scheduler, private_redis):
    os.kill(private_redis.proc.pid, signal.SIGSTOP)
    # The default time-outs: its first call to Redis waits 10 s for a reply.
    group, proc = scheduler({"SCHEDULES": {"skip": TASKS["skip"]}})
    time.sleep(3)

    asked = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    took = time.monotonic() - asked

    assert code == 0, group.logs()
    assert took < 10, f"took {took:.1f}s\n{group.logs()}"
    assert "SIGTERM before Redis answered; exiting" in group.output(proc)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_runs_due_while_redis_is_back_for_a_moment_are_enqueued(scheduler, private_redis):
    """Redis down for 7 s, back for 2 s, down again for 3 s (a flapping server): the scheduler
    sees it back within its 2 s and enqueues the runs due then. Its pauses between attempts grew
    to 10 s before: it did not try while Redis was back, and after the second outage those
    runs were missed and skipped (runscheduler's chaos test saw them lost)."""
    group, proc = scheduler({"SCHEDULES": TASKS})
    wait_until(lambda: all(dues(p) for p in TASKS), timeout=30, message="runs")
    private_redis.stop()
    time.sleep(7)
    private_redis.start()
    back = utcnow()
    time.sleep(2)
    private_redis.stop()
    time.sleep(3)
    private_redis.start()
    later = utcnow() + timedelta(seconds=1)
    wait_until(lambda: all(dues(p)[-1] >= later for p in TASKS), timeout=30, message="runs")
    assert group.stop(proc) == 0, group.logs()

    first = back.replace(microsecond=0) + timedelta(seconds=1)  # due while Redis answered
    for policy in TASKS:
        assert first in dues(policy), f"{policy}: {dues(policy)}\n{group.output(proc)}"
