from pathlib import Path

from harness.profile import summarise
from harness.report import markdown
from harness.results import number, summary
from harness.targets import targets


def _drain(mode: str, processes: int, rates: list[float]) -> dict:
    return {"mode": mode, "processes": processes, "jobs": 20_000, "per_second": rates}


def _results() -> dict:
    date = "2026-11-28 12:00 UTC"

    def stamp(**values: object) -> dict:
        return {**values, "measured": date, "quick": False}

    return {
        "run_date": date,
        "config": {"reps": 3, "quick": False},
        "machine": {"date": date, "cores": 2},
        "libraries": {
            "django-jobs": {
                "name": "django-jobs",
                "enqueue": stamp(per_second=[6_000.0, 7_000.0, 8_000.0], memory_per_job=[330.0]),
                "bulk": stamp(per_second=[70_000.0, 80_000.0, 90_000.0]),
                "drain": stamp(
                    modes=[
                        {
                            **_drain("--concurrency 1", 1, [2_900.0, 3_000.0, 3_100.0]),
                            "finished_record_bytes": [344.0, 344.0, 408.0],
                        }
                    ]
                ),
                "latency": stamp(start_p50_ms=[0.8, 0.9, 1.0], start_p99_ms=[2.0]),
                "roundtrips": stamp(
                    enqueue={
                        "round_trips": 1.0,
                        "commands": 5.0,
                        "top_level": {},
                        "in_scripts": {},
                    },
                    job={"round_trips": 1.5, "commands": 19.0, "top_level": {}, "in_scripts": {}},
                ),
                "scale": stamp(
                    small=1_000,
                    large=1_000_000,
                    small_per_second=[2_000.0],
                    large_per_second=[1_600.0],
                    memory_per_job=350.0,
                    fill_seconds=50.0,
                ),
            },
            "huey": {
                "name": "Huey",
                "enqueue": {"per_second": [10_000.0], "measured": "earlier", "quick": False},
                "drain": stamp(modes=[_drain("-w 1", 1, [1_400.0, 1_500.0, 1_600.0])]),
            },
            "rq": {
                "name": "RQ",
                "drain": stamp(
                    modes=[_drain("SimpleWorker", 1, [300.0]), _drain("fork", 1, [50.0])]
                ),
            },
        },
    }


def test_numbers() -> None:
    assert number(1234.5) == "1,234"
    assert number(12.34) == "12.3"
    assert number(1.234) == "1.23"
    assert number(float("nan")) == "n/a"
    assert summary([3.0, 1.0, 2.0]) == "2.00 (1.00\u20133.00)"
    assert summary([5.0]) == "5.00"


def test_targets_are_same_run_ratios_against_the_best_peer() -> None:
    results = _results()
    results["scheduler_scale"] = {
        "sqlite": {"database": "sqlite", "tasks": 100_000, "late_p99_s": 0.5, "first_tick_s": 2.0}
    }
    found = {t.label: t for t in targets(results)}
    drain = found["Drain, 1 process, every repetition (slowest)"]
    assert drain.value == 2_900 / 1_500  # our slowest repetition against Huey's median
    assert drain.met is False  # the goal is 2.5x
    assert found["Round trips per processed job"].met is False
    assert found["Round trips per enqueue"].met is True
    enqueue = found["Enqueue, one by one"]
    assert enqueue.value == 0.7
    assert enqueue.met is False
    bulk = found["Bulk enqueue (`enqueue_many`)"]
    assert bulk.value == 80_000 / 7_000
    assert bulk.met is False  # 11x, but under 100,000 jobs/s
    assert bulk.measured == "80,000 jobs/s"
    assert found["Idle latency, enqueue \u2192 start, p50"].met is None  # no peer measured it
    assert found["Idle latency, enqueue \u2192 start, p99"].met is False
    assert found["Drain with a 1,000,000-job backlog"].value == 0.8
    memory = found["Redis memory per queued no-op job"]
    assert memory.value == 350.0  # the worse of the two measurements
    assert memory.met is False  # at most 300 bytes
    assert found["Redis memory per completed job (record + result)"].value == 344.0
    late = found["Scheduler, 100,000 tasks on sqlite: ticks late, p99"]
    assert (late.value, late.met) == (0.5, True)


def test_a_peer_of_this_run_is_compared_before_one_of_an_earlier_run() -> None:
    results = _results()  # Huey's enqueue (10,000 jobs/s) is of an earlier run
    rq = results["libraries"]["rq"]
    rq["enqueue"] = {"per_second": [5_000.0], "measured": results["run_date"], "quick": False}
    enqueue = {t.label: t for t in targets(results)}["Enqueue, one by one"]
    assert enqueue.value == 7_000 / 5_000
    assert "RQ: 5,000" in enqueue.goal


def test_bulk_gives_its_calls_size_and_the_one_call_rate() -> None:
    results = _results()
    results["libraries"]["django-jobs"]["bulk"].update(batch=1_000, one_call_per_second=[1.2e5])
    bulk = {t.label: t for t in targets(results)}["Bulk enqueue (`enqueue_many`)"]
    assert bulk.measured == "80,000 jobs/s in calls of 1,000 (120,000 in one call)"
    assert bulk.met is False  # judged on the calls of 1,000


def test_markdown_marks_numbers_from_another_run() -> None:
    text = markdown(_results())
    assert "10,000\u2020" in text  # Huey's enqueue comes from an earlier run
    assert "\u2705 met" in text
    assert "\u274c missed" in text
    assert "SimpleWorker: 300<br>fork: 50.0" in text


def test_the_footnote_names_the_run_each_number_was_measured_in_through_merges() -> None:
    # This run merged a run that had itself merged an older one: Huey's number is the older
    # run's, and that run's floor was never kept, so none is compared.
    results = _results()
    results["libraries"]["huey"]["enqueue"]["measured"] = "2026-11-20 10:00 UTC"
    results["merged_from"] = "2026-11-25 09:00 UTC"
    results["merged_floor"] = [9_000.0]
    results["floor"] = {"commands": 2_000, "per_second": [3_000.0]}

    text = markdown(results)

    assert "\u2020 measured in an earlier run (2026-11-20 10:00 UTC;" in text
    assert "2026-11-25" not in text
    assert "floor was" not in text


def test_the_footnote_compares_floors_when_the_numbers_come_from_the_merged_run() -> None:
    results = _results()
    results["libraries"]["huey"]["enqueue"]["measured"] = "2026-11-25 09:00 UTC"
    results["merged_from"] = "2026-11-25 09:00 UTC"
    results["merged_floor"] = [9_000.0]
    results["floor"] = {"commands": 2_000, "per_second": [3_000.0]}

    assert "floor was 9,000 INCR/s then and 3,000 now" in markdown(results)


def test_the_wake_up_floor_is_reported_beside_the_latency_goal() -> None:
    results = _results()
    results["floor"] = {
        "commands": 2_000,
        "per_second": [8_000.0],
        "wakeup_start_p50_ms": [0.4, 0.5, 0.6],
        "wakeup_start_p99_ms": [1.5, 1.6, 1.7],
        "wakeup_done_p50_ms": [0.9],
    }
    found = {t.label: t for t in targets(results)}
    p99 = found["Idle latency, enqueue \u2192 start, p99"]
    assert p99.goal == "< 1 ms (bare wake-up here: 1.60 ms)"
    text = markdown(results)
    assert "takes p50 0.50 (0.40\u20130.60) ms and p99 1.60 (1.50\u20131.70) ms to wake" in text


def test_a_library_that_keeps_nothing_of_finished_jobs_shows_no_negative_memory() -> None:
    # Dramatiq keeps nothing by default: what is measured is the allocator moving a byte.
    results = _results()
    mode = results["libraries"]["huey"]["drain"]["modes"][0]
    mode["finished_memory_per_job"] = [1.09, -0.76, -0.76]
    row = next(line for line in markdown(results).splitlines() if "per finished job" in line)
    assert "| 0 (0\u20131) |" in row
    assert "-1" not in row


def test_profile_summary(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    child = 'process 1:"python manage.py runworker";process 2:"python manage.py runworker"'
    raw.write_text(
        f"{child};child_main (django_jobs/runner.py:10);"
        "Child._process (django_jobs/runner.py:20);send (redis/connection.py:5) 30\n"
        f"{child};child_main (django_jobs/runner.py:10);Job.from_hash (django_jobs/job.py:7) 10\n"
        'process 1:"python manage.py runworker";Worker.run (django_jobs/worker.py:1);'
        "select (selectors.py:3) 5\n"
        'process 1:"python manage.py runworker";<module> (manage.py:1);'
        "_load (<frozen importlib._bootstrap>:1) 50\n"
    )
    text = summarise(raw, jobs=100)
    assert "### worker child (claims, runs and records jobs): 40 samples, 0.400 per job" in text
    assert "| redis | 75.0% |" in text
    assert "| `Child._process` (django_jobs/runner.py) | 75.0% |" in text
    assert "| `child_main`" not in text.split("inclusive")[1]  # on every sample: left out
    assert "(50 more during imports, left out)" in text


def test_a_missed_target_says_where_the_time_went_as_measured_in_the_run() -> None:
    results = _results()
    dj, huey = results["libraries"]["django-jobs"], results["libraries"]["huey"]
    results["floor"] = {"per_second": [10_000.0], "commands": 20_000}
    dj["enqueue"].update(cpu_client_us=[90.0], cpu_redis_us=[40.0], redis_commands_us=[25.0])
    dj["roundtrips"]["enqueue"]["in_scripts"] = {"hset": 1.0, "rpush": 1.0, "zadd": 0.01}
    enqueue_commands = {"round_trips": 1.0, "commands": 1.0, "top_level": {"lpush": 1.0}}
    processed = {"round_trips": 4.0, "commands": 4.0, "top_level": {}, "in_scripts": {}}
    huey["roundtrips"] = {"enqueue": {**enqueue_commands, "in_scripts": {}}, "job": processed}
    huey["enqueue"] = {
        "per_second": [10_000.0],
        "cpu_client_us": [60.0],
        "cpu_redis_us": [12.0],
        "redis_commands_us": [2.0],
        "measured": results["run_date"],
        "quick": False,
    }
    dj["bulk"].update(cpu_client_us=[6.0], cpu_redis_us=[7.5], redis_commands_us=[6.0])
    found = {t.label: t for t in targets(results)}
    why = found["Enqueue, one by one"].why
    # 7,000 against 10,000 jobs/s: 143 against 100 µs per job, 43 µs apart.
    assert "django-jobs takes 143 µs (Huey: 100 µs)" in why
    assert "one round trip here is 100 µs" in why
    assert "90.0 µs (Huey: 60.0 µs) of CPU" in why
    assert "commands run 25.0 µs (Huey: 2.0 µs)" in why
    assert "30.0 µs more CPU in the client and 28.0 µs more in Redis" in why
    # The commands the script runs on every call, and the peer's, as the run counted them.
    assert "in one Lua function (HSET, RPUSH)" in why
    assert "Huey sends LPUSH." in why
    bulk = found["Bulk enqueue (`enqueue_many`)"].why
    assert "Per job, 12.5 µs" in bulk
    assert "redis-server 7.5 µs, whose script runs 6.0 µs" in bulk
    # Only the missed targets are explained, in the report under the table.
    text = markdown(results)
    assert "- **Enqueue, one by one**: Per job" in text
    assert "- **Drain, 1 process" not in text


def test_a_target_is_not_explained_by_a_run_that_did_not_measure_its_cpu() -> None:
    found = {t.label: t for t in targets(_results())}
    assert found["Enqueue, one by one"].met is False
    assert found["Enqueue, one by one"].why == ""
    assert "Why the missed ones" not in markdown(_results())


def test_missed_latencies_share_one_explanation() -> None:
    results = _results()
    dj, huey = results["libraries"]["django-jobs"], results["libraries"]["huey"]
    cpu = {"cpu_client_us": [900.0], "cpu_redis_us": [700.0], "redis_commands_us": [500.0]}
    dj["latency"].update(done_p50_ms=[2.3], submit_p50_ms=[1.4], **cpu)
    huey["latency"] = {
        "start_p50_ms": [0.7],
        "done_p50_ms": [1.9],
        "submit_p50_ms": [0.7],
        **cpu,
        "measured": results["run_date"],
        "quick": False,
    }
    text = markdown(results)
    assert (
        "- **Idle latency, enqueue \u2192 start, p50**, **Idle latency, enqueue \u2192 start, "
        "p99**, **Idle latency, enqueue \u2192 done, p50**: The enqueue call returns after "
        "1.40 ms (Huey: 0.70 ms)"
    ) in text
    assert text.count("The enqueue call returns after") == 1
    # Its job started (0.9 ms, the median) before the call returned: the note says so.
    assert "at p50 (django-jobs' job has started by then: 0.90 ms)" in text
