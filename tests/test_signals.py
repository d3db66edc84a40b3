"""Failures reach the team: Django signals sent in the worker's processes for each outcome (the
receivers of tests/testapp/receivers.py write them to the ledger), log lines at WARNING for a
retry and ERROR with the traceback for a job that goes to the dead-letter queue, and the
worker's start-up line. With real ``runworker`` processes."""

import json
import logging
import os
import re

import pytest

from django_jobs import JobFailed, JobStatus
from django_jobs.worker.execute import log_serving
from tests.processes import wait_until
from tests.testapp import jobs


@pytest.fixture
def signals_ledger(ledger, monkeypatch):
    """The signals the workers send, as the test app's receivers recorded them."""
    monkeypatch.setenv("JOBS_TEST_SIGNALS", "1")
    path = ledger / "signals.jsonl"

    def sent(job_id=None):
        if not path.exists():
            return []
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        return [e for e in entries if job_id is None or e["job"] == job_id]

    return sent


def names(entries):
    return [e["signal"] for e in entries]


def test_a_job_that_completes_sends_started_then_succeeded_from_the_process_that_ran_it(
    workers, signals_ledger
):
    handle = jobs.add.delay(2, 3)
    proc = workers.start("--concurrency", "1", "--burst")
    assert proc.wait(timeout=30) == 0, workers.logs()

    started, succeeded = signals_ledger(handle.id)
    assert names([started, succeeded]) == ["job_started", "job_succeeded"]
    assert started["sender"] == succeeded["sender"] == "tests.testapp.jobs.add"
    assert succeeded["result"] == 5
    assert succeeded["seconds"] >= 0
    # Sent in the worker's child, not in this process nor the supervisor.
    assert started["pid"] == succeeded["pid"] not in (os.getpid(), proc.pid)


def test_a_failing_job_sends_failed_with_will_retry_then_failed_and_dead_and_logs_each(
    workers, signals_ledger
):
    proc = workers.start("--concurrency", "1")
    handle = jobs.fail.using(max_retries=1).delay("boom")
    with pytest.raises(JobFailed):
        handle.result(timeout=30)
    wait_until(lambda: "job_dead" in names(signals_ledger(handle.id)), message="job_dead")

    sent = signals_ledger(handle.id)
    assert names(sent) == [
        "job_started",
        "job_failed",
        "job_started",
        "job_failed",
        "job_dead",
    ]
    retry, final, dead = sent[1], sent[3], sent[4]
    assert (retry["attempt"], retry["will_retry"]) == (1, True)
    assert retry["due"] is not None
    assert (final["attempt"], final["will_retry"], final["due"]) == (2, False, None)
    for failed in (retry, final, dead):
        assert failed["sender"] == "tests.testapp.jobs.fail"
        assert failed["error"] == "ValueError: boom"
        assert failed["exception"] == "ValueError: boom"
        assert "raise ValueError(message)" in failed["traceback"]

    log = workers.output(proc)
    (warning,) = [line for line in log.splitlines() if f"{handle.id} " in line and "WARN" in line]
    assert re.search(r"attempt 1 of 2 failed after [\d.]+s; retry due at \S+ \(in \d+s\)", warning)
    assert warning.endswith("ValueError: boom")
    (error,) = [line for line in log.splitlines() if f"{handle.id} " in line and "ERROR" in line]
    assert "attempt 2 of 2 failed after" in error
    assert "moved to the dead-letter queue: ValueError: boom" in error
    after = log[log.index(error) :]
    assert "Traceback (most recent call last)" in after
    assert "raise ValueError(message)" in after


def test_a_timeout_and_a_crash_are_signalled_by_the_supervisor(workers, signals_ledger):
    proc = workers.start("--concurrency", "2")
    timed_out = jobs.sleep.using(timeout=1, max_retries=0).delay(30)
    crashed = jobs.crash.using(max_retries=1).delay()

    def done():
        return (
            "job_dead" in names(signals_ledger(timed_out.id))
            and len([e for e in signals_ledger(crashed.id) if e["signal"] == "job_failed"]) == 2
        )

    wait_until(done, timeout=30, message="both outcomes signalled")

    failed, dead = [e for e in signals_ledger(timed_out.id) if e["signal"] != "job_started"]
    assert names([failed, dead]) == ["job_failed", "job_dead"]
    assert failed["error"].startswith("JobTimeout: the job ran longer than its timeout of 1")
    assert failed["will_retry"] is False
    assert failed["exception"] is None
    assert failed["traceback"] == ""
    assert failed["pid"] == dead["pid"] == proc.pid, "the supervisor records and signals it"

    crash_failures = [e for e in signals_ledger(crashed.id) if e["signal"] == "job_failed"]
    assert [e["will_retry"] for e in crash_failures] == [True, False]
    assert all(e["error"].startswith("WorkerCrashed:") for e in crash_failures)
    assert crash_failures[0]["due"] is not None
    assert {e["pid"] for e in crash_failures} == {proc.pid}
    assert timed_out.refresh().status is crashed.refresh().status is JobStatus.FAILED


def test_a_job_cancelled_while_it_runs_sends_job_cancelled(workers, signals_ledger, ledger, queue):
    proc = workers.start("--concurrency", "1")
    handle = jobs.sleep.delay(30, label="cancel-me")
    wait_until(lambda: (ledger / "cancel-me.started").exists(), message="the job to start")

    assert queue.cancel_job(handle.id) == "requested"
    wait_until(
        lambda: "job_cancelled" in names(signals_ledger(handle.id)), timeout=15, message="signal"
    )

    (cancelled,) = [e for e in signals_ledger(handle.id) if e["signal"] == "job_cancelled"]
    assert cancelled["sender"] == "tests.testapp.jobs.sleep"
    assert cancelled["pid"] == proc.pid
    assert cancelled["seconds"] > 0
    assert handle.refresh().status is JobStatus.CANCELLED
    assert "job_failed" not in names(signals_ledger(handle.id))


def test_receivers_that_raise_are_logged_and_the_worker_records_every_outcome(
    workers, signals_ledger, monkeypatch
):
    monkeypatch.setenv("JOBS_TEST_SIGNALS", "raise")
    ok = jobs.add.delay(1, 1)
    bad = jobs.fail.using(max_retries=0).delay("boom")
    proc = workers.start("--concurrency", "1", "--burst")
    assert proc.wait(timeout=30) == 0, workers.logs()

    assert ok.refresh().status is JobStatus.COMPLETED
    assert ok.result(timeout=1) == 2
    assert bad.refresh().status is JobStatus.FAILED
    assert names(signals_ledger(ok.id)) == ["job_started", "job_succeeded"]
    assert names(signals_ledger(bad.id)) == ["job_started", "job_failed", "job_dead"]
    log = workers.output(proc)
    receiver = "tests.testapp.receivers.record"
    for name in ("job_started", "job_succeeded", "job_failed", "job_dead"):
        raised = f"raised RuntimeError: a broken receiver of {name}"
        assert f"the {name} receiver {receiver} {raised}; the worker goes on" in log


def test_the_start_up_line_names_redis_without_its_password_the_prefix_queues_and_jobs(
    configure, caplog
):
    configure(REDIS_URL="redis://ada:s3cret-pw@redis.example:6380/2")

    with caplog.at_level(logging.INFO, "django_jobs.worker"):
        log_serving("host.1", ["default", "emails"], 3, "{app_jobs}")

    (line,) = caplog.messages
    assert "worker host.1 serving default, emails with 3 processes" in line
    assert "Redis redis://ada:***@redis.example:6380/2" in line
    assert "s3cret" not in line
    assert "prefix {app_jobs}" in line
    assert "tests.record" in line
    assert "tests.testapp.jobs.add" in line


def test_a_worker_logs_its_start_up_line(workers, prefix):
    proc = workers.start("--concurrency", "2", "--queues", "default,emails", "--burst")
    assert proc.wait(timeout=30) == 0

    (line,) = [line for line in workers.output(proc).splitlines() if " serving " in line]
    assert "serving default, emails with 2 processes; Redis " in line
    assert f"prefix {prefix};" in line
    assert "registered jobs: " in line
    assert "tests.testapp.jobs.add" in line


def test_a_job_whose_worker_was_lost_too_often_sends_job_dead_from_the_recovering_worker(
    workers, signals_ledger, queue
):
    from django_jobs.worker.leases import Leases

    workers.settings = {**workers.settings, "MAX_LOST": 1}
    lost = jobs.add.delay(1, 2)
    Leases(queue.prefix).dequeue(worker_id="gone", lease=0.01)  # a worker that died with it
    proc = workers.start("--concurrency", "1")

    wait_until(lambda: "job_dead" in names(signals_ledger(lost.id)), timeout=30, message="dead")
    (dead,) = signals_ledger(lost.id)
    assert dead["pid"] == proc.pid
    assert "lost 1 times" in dead["error"]
    assert lost.refresh().status is JobStatus.FAILED
