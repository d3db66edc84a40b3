"""Three ``runscheduler`` processes and a worker while, in a random order, a scheduler is killed
(SIGKILL, SIGTERM: it is started again), frozen (SIGSTOP) for up to 3 s, Redis crashes and comes
back from its AOF, and a task is edited through the ORM as the admin does (its interval changed,
switched off and on again).

The other scheduler tests each show one fault at a chosen moment; this one lets them meet. When
the faults stop: no (task, due time) was enqueued twice; every run that fell due while Redis was
up (and a scheduler: faults come one at a time, so two of three always run) was enqueued, on the
task's schedule as the edits left it; the runs of a task whose policy is ``all`` were all
enqueued, outages or not; the one-time task ran once; each run's job completed, its record in
the completed index and nowhere else. The seed is printed; ``JOBS_SCHEDULER_CHAOS_SEED`` replays
a run's order of faults (not its timing).
"""

import collections
import os
import random
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
import redis
from django.db import connection

from django_jobs import JobQueue
from django_jobs.conf import jobs_settings
from django_jobs.models import ScheduledTask as TaskRow
from django_jobs.scheduling.cron import whole_seconds
from django_jobs.serialization import utcnow
from tests.census import assert_all_completed
from tests.processes import Processes, wait_until

# Seconds of faults. Setting up, settling and the drain afterwards take some more.
CHAOS_SECONDS = 32
#: A run due this long (seconds) before Redis crashes may not have been fired yet when it does:
#: it fell due while no scheduler could reach Redis, and follows its task's missed-run policy.
#: Passes take milliseconds; the rest is room for a loaded machine.
IN_FLIGHT = 1.0
#: An edit takes effect within a second (docs/periodic-tasks.md).
TAKES_EFFECT = 1.0
#: The task whose schedule the test edits, and the intervals it moves between.
EDITED = "edited"
INTERVALS = (1, 2, 3)
# Not UTC, nor a whole number of hours from it.
ZONE = "Asia/Kathmandu"


@dataclass(frozen=True)
class Segment:
    """A stretch of one task's schedule: from ``since`` (the save that began it) on, runs at
    ``first + k * every`` (none while ``first`` is ``None``: the task is off)."""

    since: datetime
    first: datetime | None
    every: timedelta


class Schedulers:
    """Three ``runscheduler`` processes, each started again after it was killed or stopped;
    each start has its own ``--scheduler-id``."""

    def __init__(self, group: Processes, count: int = 3) -> None:
        self.group = group
        self.starts = collections.Counter[int]()
        self.procs = [self.start(index) for index in range(count)]

    def start(self, index: int):
        self.starts[index] += 1
        return self.group.start(
            "--verbosity", "2", "--scheduler-id", self.id(index), command="runscheduler"
        )

    def id(self, index: int) -> str:
        return f"s{index}-{self.starts[index]}"

    def signal(self, index: int, signum: int) -> None:
        proc = self.procs[index]
        if proc.poll() is None:
            os.kill(proc.pid, signum)
        if signum in (signal.SIGKILL, signal.SIGTERM):
            proc.wait(timeout=60)
            self.procs[index] = self.start(index)


def make_task(name: str, **fields) -> Segment:
    """A task made as the admin does (``full_clean()``, ``save()``); its first segment."""
    row = TaskRow(name=name, job_name="tests.record", args=[name], **fields)
    row.full_clean()
    row.save()
    every = timedelta(seconds=row.interval_seconds or 60)
    return Segment(utcnow(), row.next_run, every)


def edit(rng: random.Random, segments: list[Segment]) -> str:
    """Change the interval of the edited task, or switch it off and, after a while, on."""
    row = TaskRow.objects.get(name=EDITED)
    if rng.random() < 0.5:
        row.interval_seconds = rng.choice([i for i in INTERVALS if i != row.interval_seconds])
        what = "interval"
    else:
        row.enabled = False
        what = "off-on"
    before = utcnow()
    row.full_clean()
    row.save()
    segments.append(saved(row, before))
    if what == "off-on":
        time.sleep(rng.uniform(1.5, 3.0))
        row.enabled = True
        before = utcnow()
        row.full_clean()
        row.save()
        segments.append(saved(row, before))
    return what


def saved(row: TaskRow, before: datetime) -> Segment:
    """The segment that saving ``row`` (begun at ``before``) began, checked against the
    documented rule: an interval task changed or enabled again keeps its rhythm, its next run
    the first ``last run + k * interval`` from then (the first run at once if it never ran)."""
    every = timedelta(seconds=row.interval_seconds)
    if not row.enabled:
        assert row.next_run is None
        return Segment(before, None, every)
    assert row.last_run is not None, "the edited task ran before it is edited"
    steps = (row.next_run - row.last_run) / every
    assert steps == int(steps), (row.last_run, row.next_run, every)
    assert steps >= 1, (row.last_run, row.next_run, every)
    assert before <= row.next_run <= utcnow() + every, (before, row.next_run)
    return Segment(before, row.next_run, every)


def on_grid(due: datetime, segment: Segment) -> bool:
    return segment.first is not None and (due - segment.first) % segment.every == timedelta(0)


def grid(segment: Segment, until: datetime) -> list[datetime]:
    """The due times of ``segment`` up to ``until``."""
    times, due = [], segment.first
    while due is not None and due <= until:
        times.append(due)
        due += segment.every
    return times


def minutes(since: datetime, until: datetime) -> list[datetime]:
    """The whole minutes after ``since`` up to ``until``: the runs of ``* * * * *`` in any zone
    whose offset is a whole number of minutes (Kathmandu's is 5:45)."""
    first = since.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return grid(Segment(since, first, timedelta(minutes=1)), until)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_each_tick_is_enqueued_once_while_schedulers_and_redis_die_at_random(
    tmp_path, prefix, private_redis, workers, ledger, queue
):
    seed = int(os.environ.get("JOBS_SCHEDULER_CHAOS_SEED") or time.time())
    print(f"JOBS_SCHEDULER_CHAOS_SEED={seed}")
    rng = random.Random(seed)
    # Redis crashing must not run a job into the dead-letter queue (lost leases, retries).
    workers.settings = {**workers.settings, "MAX_LOST": 1000, "MAX_RETRIES": 1000}
    workers.start("--concurrency", "2")

    start = utcnow()
    run_at = whole_seconds(start) + timedelta(seconds=15)
    schedule = {
        "every1": [make_task("every1", schedule_type="interval", interval_seconds=1)],
        "all1": [
            make_task("all1", schedule_type="interval", interval_seconds=1, missed_run_policy="all")
        ],
        "skip2": [
            make_task(
                "skip2", schedule_type="interval", interval_seconds=2, missed_run_policy="skip"
            )
        ],
        EDITED: [make_task(EDITED, schedule_type="interval", interval_seconds=2)],
    }
    make_task("once", schedule_type="once", run_at=run_at)
    make_task("minutely", schedule_type="cron", cron_expression="* * * * *", timezone=ZONE)
    group = Processes(tmp_path / "schedulers", prefix, {}, connection.settings_dict["NAME"])
    pool = Schedulers(group)
    outages: list[tuple[datetime, datetime]] = []  # Redis down: (crashed, answering again)
    faults: collections.Counter[str] = collections.Counter()
    try:
        wait_until(lambda: runs_of(queue, "every1"), timeout=30, message="a first run")
        deadline = time.monotonic() + CHAOS_SECONDS
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.5, 2.0))
            fault = rng.choice(["kill", "term", "freeze", "redis", "edit"])
            index = rng.randrange(len(pool.procs))
            if fault == "kill":
                pool.signal(index, signal.SIGKILL)
            elif fault == "term":
                pool.signal(index, signal.SIGTERM)
            elif fault == "freeze":
                pool.signal(index, signal.SIGSTOP)
                time.sleep(rng.uniform(0.5, 3.0))
                pool.signal(index, signal.SIGCONT)
            elif fault == "redis":  # sometimes past the schedulers' first few attempts
                down = utcnow()
                private_redis.kill()
                time.sleep(rng.uniform(0.1, 1.0) if rng.random() < 0.5 else rng.uniform(3, 7))
                private_redis.start()
                outages.append((down, utcnow()))
            else:
                fault = f"edit-{edit(rng, schedule[EDITED])}"
            faults[fault] += 1
        calm = utcnow()
        print(f"faults: {dict(faults)}")

        # Every run due up to 3 s after the faults, of each task on its last schedule, comes.
        until = calm + timedelta(seconds=3)
        for name, segments in schedule.items():
            wanted = set(grid(segments[-1], until)) - set(grid(segments[-1], calm))
            wait_until(
                lambda n=name, w=wanted: w <= set(runs_of(queue, n)),
                timeout=30,
                message=f"the runs of {name} after the faults (seed {seed})",
            )
        # Each scheduler works: it beat after the faults (every 5 s).
        since, client = time.time(), private_redis.client()
        wait_until(
            lambda: all(
                (client.zscore(queue.keys.schedulers, pool.id(i)) or 0) > since
                for i in range(len(pool.procs))
            ),
            timeout=20,
            message=f"a heartbeat of every scheduler after the faults (seed {seed})",
        )
        codes = [group.stop(proc) for proc in pool.procs]
        assert codes == [0, 0, 0], group.logs()
        end = utcnow()
    finally:
        for proc in pool.procs:  # a failed test may leave one frozen
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        group.close()
    logs = group.logs()
    context = f"seed {seed}, faults {dict(faults)}, outages {outages}, edits {schedule[EDITED]}"

    # No (task, due time) was enqueued twice, of any task.
    jobs = all_jobs(queue)
    ticks = collections.Counter((job.meta["scheduled_task"], job.scheduled_at) for job in jobs)
    assert [tick for tick, count in ticks.items() if count > 1] == [], context

    def covered(due: datetime) -> bool:
        """Whether Redis answered from ``IN_FLIGHT`` before ``due`` until it was due."""
        return all(not (down - timedelta(seconds=IN_FLIGHT) <= due <= up) for down, up in outages)

    for name, segments in schedule.items():
        dues = runs_of(queue, name)
        for segment, following in zip(segments, [*segments[1:], None], strict=False):
            ends = following.since if following is not None else end
            # Once an edit took effect, runs come on its schedule only (none while off).
            settled = [d for d in dues if segment.since + timedelta(seconds=TAKES_EFFECT) <= d]
            off = [d for d in settled if d < ends and not on_grid(d, segment)]
            assert off == [], f"{name}: runs off the schedule {segment} ({context})"
            if segment.first is None:
                continue
            # Every run due on that schedule while Redis answered was enqueued; with the policy
            # "all", every run at all.
            last = min(ends - timedelta(seconds=IN_FLIGHT), calm + timedelta(seconds=3))
            due = grid(segment, last)
            wanted = due if name == "all1" else [d for d in due if covered(d)]
            lost = sorted(set(wanted) - set(dues))
            assert lost == [], f"{name}: runs never enqueued: {lost} ({context}; logs {tmp_path})"

    # The one-time task ran once, at its time, whatever happened then.
    assert runs_of(queue, "once") == [run_at], context
    # The cron task ran at each whole minute that Redis answered at (if one fell in the run).
    wanted = [d for d in minutes(start, calm) if covered(d)]
    assert set(wanted) <= set(runs_of(queue, "minutely")), context
    assert all(d.second == 0 for d in runs_of(queue, "minutely")), context
    assert "Traceback" not in logs, logs

    # Each run's job completed, its record in the completed index and nowhere else.
    client = private_redis.client()
    places = assert_all_completed(queue, client, f"every run's job to complete ({context})")
    assert {job.id for job in all_jobs(queue)} == set(places)
    print(f"runs: {len(jobs)}; outages: {[(up - down).total_seconds() for down, up in outages]}")
    assert faults, "the run made no fault"


def all_jobs(queue: JobQueue) -> list:
    """Every job record of the namespace."""
    client = redis.Redis.from_url(jobs_settings.REDIS_URL, decode_responses=True)
    ids = [key.rsplit(":", 1)[1] for key in client.scan_iter(match=f"{queue.prefix}:job:*")]
    return [job for job in queue.get_jobs(ids).values() if job is not None]


def runs_of(queue: JobQueue, name: str) -> list[datetime]:
    """The due times of the runs of task ``name`` enqueued so far, oldest first."""
    return sorted(j.scheduled_at for j in all_jobs(queue) if j.meta.get("scheduled_task") == name)
