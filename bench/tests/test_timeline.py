"""bench/timeline.py's reading of ``perf script`` output: no perf, no Redis."""

from timeline import Roles, Span, job_facts, parse, summary

ROLES = Roles(enqueuer=frozenset({100}), redis=frozenset({200}), worker=frozenset({300, 301}))


def switch(tid: int, cpu: int, at: str, prev: int, state: str, after: int) -> str:
    return (
        f" {tid} [{cpu:03d}]  {at}:       sched:sched_switch: prev_comm=x prev_pid={prev} "
        f"prev_prio=120 prev_state={state} ==> next_comm=y next_pid={after} next_prio=120"
    )


def waking(tid: int, cpu: int, at: str, wakee: int) -> str:
    return (
        f" {tid} [{cpu:03d}]  {at}:       sched:sched_waking: comm=y pid={wakee} prio=120 "
        f"target_cpu={cpu:03d}"
    )


# The enqueuer, on vCPU 1, wakes Redis with its command and sleeps on the reply.
SENT = [
    switch(0, 1, "9.990000", 0, "R", 100),
    waking(100, 1, "10.000100", 200),
    switch(100, 1, "10.000200", 100, "S", 200),
]

# One job on one vCPU: Redis wakes the worker, which takes Redis's vCPU for 700 µs before
# Redis can wake the enqueuer with its reply.
PACKED = [
    *SENT,
    " 100 [001]  10.000150: sched:sched_stat_runtime: comm=python pid=100 runtime=84926 [ns]",
    waking(200, 1, "10.000300", 300),
    switch(200, 1, "10.000310", 200, "R", 300),
    switch(300, 1, "10.001010", 300, "S", 200),
    waking(200, 1, "10.001020", 100),
    switch(200, 1, "10.001030", 200, "S", 100),
    "a line that is no event",
]
PACKED_SPAN = Span(sent=10.00005, returned=10.0012, started=10.0009, done=10.002)

# The same job with the worker woken on the other, idle vCPU: Redis goes on and answers.
SPREAD = [
    *SENT,
    waking(200, 1, "10.000300", 301),
    switch(0, 0, "10.000350", 0, "R", 301),
    waking(200, 1, "10.000320", 100),
    switch(200, 1, "10.000330", 200, "S", 100),
    switch(301, 0, "10.000550", 301, "S", 0),
]


def test_parse_keeps_switches_and_wakings_in_time_order():
    events = parse(reversed(PACKED))
    assert [e.kind for e in events[:3]] == ["sched_switch", "sched_waking", "sched_switch"]
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert events[1].tid == 100
    assert events[1].fields["pid"] == "200"


def test_worker_that_takes_redis_vcpu_holds_back_the_enqueuers_reply():
    (facts,) = job_facts(parse(PACKED), ROLES, [PACKED_SPAN])
    assert {key: round(value) for key, value in facts.items() if key.endswith("_us")} == {
        "redis_wait_us": 100,
        "worker_wait_us": 10,
        "reply_after_job_us": 720,
        "enqueuer_wait_us": 10,
        "worker_first_run_us": 700,
    }
    assert facts["behind_worker"] is True
    assert facts["redis_preempted"] is True


def test_worker_woken_on_another_vcpu_leaves_redis_to_answer():
    (facts,) = job_facts(parse(SPREAD), ROLES, [PACKED_SPAN])
    assert round(facts["worker_wait_us"]) == 50
    assert round(facts["reply_after_job_us"]) == 20
    assert round(facts["worker_first_run_us"]) == 200
    assert facts["behind_worker"] is False
    assert facts["redis_preempted"] is False


def test_summary_takes_medians_over_the_jobs_that_had_each_hand_off():
    facts = job_facts(parse(PACKED), ROLES, [PACKED_SPAN])
    facts += job_facts(parse(SPREAD), ROLES, [PACKED_SPAN])
    facts[0]["enqueuer_wait_us"] = None  # an enqueuer that got its reply while it polled
    found = summary(facts, [PACKED_SPAN, PACKED_SPAN])
    assert found["jobs"] == 2
    assert found["behind_worker_share"] == 0.5
    assert found["redis_preempted_share"] == 0.5
    assert round(found["enqueuer_wait_p50_us"]) == 10
    assert round(found["start_p50_ms"], 2) == 0.85


def test_reply_is_the_last_the_enqueue_call_waited_for():
    # An enqueue of two commands: Redis answers the first before it wakes the worker.
    two = [
        *SENT,
        waking(200, 1, "10.000250", 100),
        switch(200, 1, "10.000260", 200, "S", 100),
        waking(100, 1, "10.000270", 200),  # the second command
        switch(100, 1, "10.000280", 100, "S", 200),
        waking(200, 1, "10.000300", 300),
        waking(200, 1, "10.000320", 100),
        switch(200, 1, "10.000330", 200, "S", 100),
    ]
    (facts,) = job_facts(parse(two), ROLES, [PACKED_SPAN])
    assert round(facts["reply_after_job_us"]) == 20
    assert round(facts["enqueuer_wait_us"]) == 10
