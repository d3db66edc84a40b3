"""Chains and groups with real ``runworker`` processes that are SIGKILLed while they run: what
the jobs did is written to a ledger outside Redis, and the census is checked at the end."""

import json
import os
import random
import signal

from django_jobs import JobStatus, chain, group
from tests.census import assert_census, untimed_keys
from tests.processes import wait_until
from tests.testapp import jobs


def kill(proc) -> None:
    """SIGKILL a worker and its children: nothing it ran can record anything."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_chain_of_five_survives_a_worker_killed_in_step_three(
    workers, ledger, queue, redis_client
):
    first = workers.start("--concurrency", "1")
    handle = chain(
        jobs.step.s(0, 1, slow_at=3), *(jobs.step.s(n, slow_at=3) for n in (2, 3, 4, 5))
    ).delay()
    wait_until(lambda: lines(ledger / "slow.log"), message="step 3 to start")
    kill(first)
    workers.start("--concurrency", "1")

    assert handle.result(timeout=30) == 15, workers.logs()
    assert lines(ledger / "steps.log") == ["1", "2", "3", "4", "5"]
    assert len(lines(ledger / "slow.log")) == 2, "step 3 ran again after its worker died"
    third = handle.refresh().steps[2]
    assert third.job.lost_count == 1
    assert third.job.args == [3, 3]
    assert all(s.status is JobStatus.COMPLETED for s in handle.steps)
    assert_census(queue, redis_client, {s.id: "completed" for s in handle.steps})
    assert untimed_keys(queue.prefix, redis_client) == []


def test_a_group_of_1000_runs_its_callback_once_with_every_result_under_a_sigkill_storm(
    workers, ledger, queue, redis_client
):
    # A member may be in flight at several kills; as a poison pill it would fail the group,
    # which is another test's rule (test_workflow.py): here every member must come through.
    workers.settings["MAX_LOST"] = 20
    handle = group(jobs.member.s(i) for i in range(1000)).then(jobs.gather.s()).delay()
    members, callback = handle.steps
    procs = [workers.start("--concurrency", "2") for _ in range(3)]
    kills = 0
    for threshold in range(100, 1000, 100):
        wait_until(
            lambda t=threshold: len(lines(ledger / "members.log")) >= t,
            timeout=60,
            message=f"{threshold} members to run",
        )
        kill(procs.pop(random.randrange(len(procs))))
        kills += 1
        procs.append(workers.start("--concurrency", "2"))

    assert callback.result(timeout=60) == 1000, workers.logs()
    runs = lines(ledger / "callback.log")
    assert len(runs) == 1, "the callback ran exactly once"
    assert json.loads(runs[0]) == [3 * i for i in range(1000)], "every result, in member order"
    ran = lines(ledger / "members.log")
    assert set(ran) == {str(i) for i in range(1000)}
    assert kills == 9
    found = queue.get_jobs([m.id for m in members.members])
    assert sum(job.lost_count for job in found.values()) > 0, "the kills hit running members"
    assert members.refresh().done == 1000
    assert members.failed is None
    expected = {m.id: "completed" for m in members.members}
    expected[callback.id] = "completed"
    assert_census(queue, redis_client, expected)
    assert untimed_keys(queue.prefix, redis_client) == []
    assert redis_client.ttl(queue.keys.group(members.id)) > 0
    assert redis_client.ttl(queue.keys.group_results(members.id)) > 0
