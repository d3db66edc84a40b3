"""The scheduler at scale: ``manage.py runscheduler`` with many enabled periodic tasks.

Run on demand (not a test), from the repository root::

    .venvs/dev/bin/python bench/scheduler_scale.py [--tasks 100000] [--db sqlite|postgresql]
                                                   [--seconds 60] [--schedulers 1]

It makes a throw-away database (a SQLite file in a temporary folder, or a temporary database on
the local PostgreSQL server: trust auth, user ``postgres``), migrates it, bulk-inserts the tasks
in their steady state (each with its next run, as a scheduler that had been running left them)
and starts one real ``runscheduler`` under a Redis key prefix of its own (Redis at
``127.0.0.1:6379``; only that prefix's keys are deleted at the end). The tasks: most are interval
tasks of 60-3600 s, some cron tasks (``*/5 * * * *``, ``0 * * * *``, ...) in UTC,
Europe/Berlin, America/New_York, Asia/Kolkata and Pacific/Chatham, and ``--every-second`` tasks
of 1 s, so that ticks fall due every second.

It reports the start-up time (process start to the "started" log line, and to the first tick
enqueued), the scheduler's CPU seconds per wall second and its RSS over the ``--seconds``
after start-up, and the lateness of the ticks enqueued then (the job's ``created_at`` minus its
``scheduled_at``: p50, p99, max). With ``--json PATH`` it also writes these figures and the
lateness percentiles to ``PATH`` under the database's name (``sqlite``, ``postgresql``; other
entries of the file are kept), for the chart: ``python3 bench/run.py --scheduler-scale PATH``.

With ``--schedulers N`` it starts N ``runscheduler`` processes on the same tasks: CPU and RSS
are then per scheduler (the mean and the highest), lateness is each tick's first job, and it
reports how many ticks were enqueued more than once (exactly-once says 0).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/0"
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Chatham")
CRONS = ("*/5 * * * *", "0 * * * *", "30 2 * * *", "15 */3 * * *", "0 9 * * MON-FRI")
JOB = "benchapp.jobs.noop"
START_BUDGET = 10  # seconds (issue 19, item 5)
# The runs of all but the 1 s tasks begin this long after the inserts (seconds): beyond the
# start-up budget, so that a start-up slowed down by a busy machine leaves no backlog of ticks
# in the window (the start-up is reported on its own).
LEAD = 2 * START_BUDGET

SETTINGS = """\
import json, os
SECRET_KEY = "bench"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django_jobs", "benchapp"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {{"default": json.loads(os.environ["SCALE_DB"])}}
PREFIX = os.environ["SCALE_PREFIX"]
DJANGO_JOBS = {{"REDIS_URL": {redis!r}, "PREFIX": PREFIX, "QUEUES": ["default"]}}
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every-second", type=int, default=20, help="tasks of a 1 s interval")
    parser.add_argument("--cron-share", type=float, default=0.02, help="share of cron tasks")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--schedulers", type=int, default=1, help="runscheduler processes")
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="also write the figures and the lateness percentiles to PATH, under the "
        "database's name (other entries of the file are kept)",
    )
    return parser.parse_args()


def database(kind: str, folder: Path) -> tuple[dict, str | None]:
    """The Django DATABASES entry, and the PostgreSQL database made for it (or ``None``)."""
    if kind == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(folder / "db.sqlite3")}, None
    import psycopg

    name = f"django_jobs_scale_{os.getpid()}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    entry = {"ENGINE": "django.db.backends.postgresql", "NAME": name, "USER": "postgres"}
    return {**entry, "HOST": "127.0.0.1"}, name


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def insert_tasks(args: argparse.Namespace) -> tuple[dict[str, int], float]:
    """Bulk-insert the tasks, each with its next run (steady state); their counts by kind, and
    when (epoch seconds) their runs begin."""
    from django.db.models import F

    from django_jobs.models import ScheduledTask
    from django_jobs.scheduling.task import ScheduledTask as Task

    rng = random.Random(args.seed)
    now = datetime.now(UTC).replace(microsecond=0)
    crons = round(args.tasks * args.cron_share)
    intervals = args.tasks - crons - args.every_second
    rows, next_runs = [], {}
    for i in range(args.tasks):
        if i < args.every_second:
            task = Task(f"second-{i}", JOB, "interval", interval_seconds=1, args=[i])
            task.next_run = now + timedelta(seconds=2)
        elif i < args.every_second + crons:
            expr, tz = rng.choice(CRONS), rng.choice(ZONES)
            task = Task(f"cron-{i}", JOB, "cron", cron_expression=expr, timezone=tz, args=[i])
            key = (expr, tz)
            if key not in next_runs:
                next_runs[key] = task.calculate_next_run(now)
            task.next_run = next_runs[key]
        else:
            every = rng.randint(60, 3600)
            task = Task(f"interval-{i}", JOB, "interval", interval_seconds=every, args=[i])
            task.next_run = now + timedelta(seconds=rng.randint(1, every))
        task.last_run = task.next_run - timedelta(seconds=task.interval_seconds or 60)
        row = ScheduledTask(name=task.name)
        row.set_definition(task)
        row.next_run, row.last_run = task.next_run, task.last_run
        rows.append(row)
    ScheduledTask.objects.bulk_create(rows, batch_size=2000)
    # The inserts took a while: the runs are moved on by that, and by LEAD, so that the window
    # measures the steady state rather than a backlog the bench itself made (the 1 s tasks are
    # due at once: the first tick enqueued says when the scheduler is up).
    # next_run is the schedulers' column: the triggers do not count this as an edit.
    lead = datetime.now(UTC) - now + timedelta(seconds=LEAD)
    ScheduledTask.objects.filter(interval_seconds=1).update(next_run=datetime.now(UTC))
    ScheduledTask.objects.exclude(interval_seconds=1).update(next_run=F("next_run") + lead)
    kinds = {"every second": args.every_second, "interval": intervals, "cron": crons}
    return kinds, (now + lead).timestamp()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) // 1024
    return values


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def write_json(path: Path, entry: dict) -> None:
    """Put ``entry`` under its database's name in the JSON file at ``path``."""
    import json

    data = json.loads(path.read_text()) if path.exists() else {}
    data[entry["database"]] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def ticks(redis, prefix: str) -> tuple[list[tuple[float, float]], int]:
    """(scheduled_at, created_at) of every tick enqueued under ``prefix`` (its first job), and
    how many ticks had more than one job (a task's ``args`` names it)."""
    ids: list[bytes] = []
    for key in redis.scan_iter(match=f"{prefix}:queue:*", count=1000):
        ids += redis.lrange(key, 0, -1)
    pipe = redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(f"{prefix}:job:{job_id.decode()}", "args", "scheduled_at", "created_at")
    first: dict[tuple[bytes, float], float] = {}
    jobs = 0
    for args, due, created in pipe.execute():
        if due and created:
            jobs += 1
            tick = (args, float(due))
            first[tick] = min(first.get(tick, float("inf")), float(created))
    return [(due, created) for (_, due), created in first.items()], jobs - len(first)


def wait_for(predicate, timeout: float, proc: subprocess.Popen) -> float | None:
    """Seconds (monotonic) when ``predicate()`` held, or ``None`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if predicate():
            return time.monotonic()
        time.sleep(0.01)
    return None


def main() -> None:
    args = parse_args()
    folder = Path(tempfile.mkdtemp(prefix="scheduler-scale-"))
    (folder / "scale_settings.py").write_text(SETTINGS.format(redis=REDIS_URL))
    prefix = f"{{scale-{uuid.uuid4().hex[:8]}}}"
    entry, pg_name = database(args.db, folder)
    import json

    os.environ.update(
        DJANGO_SETTINGS_MODULE="scale_settings",
        SCALE_DB=json.dumps(entry),
        SCALE_PREFIX=prefix,
        PYTHONPATH=os.pathsep.join([str(folder), str(REPO / "bench"), str(REPO)]),
    )
    sys.path[:0] = [str(folder), str(REPO / "bench"), str(REPO)]
    import django
    import redis as redis_py
    from django.core.management import call_command

    django.setup()
    redis = redis_py.Redis.from_url(REDIS_URL)
    procs: list[subprocess.Popen] = []
    try:
        call_command("migrate", verbosity=0)
        began = time.monotonic()
        kinds, steady = insert_tasks(args)
        print(f"{args.tasks} tasks inserted in {time.monotonic() - began:.1f}s: {kinds}")
        from django.db import connections

        connections.close_all()
        logs = [folder / f"runscheduler-{k}.log" for k in range(args.schedulers)]
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "django", "runscheduler"],
                cwd=REPO,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
            )
            for log in logs
        ]
        proc, log_path = procs[0], logs[0]
        up = wait_for(lambda: b" started" in log_path.read_bytes(), 60, proc)
        first = wait_for(lambda: any(redis.scan_iter(f"{prefix}:queue:*")), 120, proc)
        if first is None:
            sys.exit(f"no tick enqueued; log:\n{log_path.read_text()[-3000:]}")
        # The window begins with the steady state (or at once, after a start-up beyond LEAD).
        wait_for(lambda: time.time() >= steady, LEAD, proc)
        window_start, cpu_start = time.time(), [cpu_seconds(p.pid) for p in procs]
        wall_start = time.monotonic()
        while time.monotonic() - wall_start < args.seconds and proc.poll() is None:
            time.sleep(0.5)
        wall = time.monotonic() - wall_start
        cpus = [(cpu_seconds(p.pid) - c) / wall for p, c in zip(procs, cpu_start, strict=True)]
        cpu = sum(cpus) / len(cpus)
        window_end = time.time()
        mems = [memory(p.pid) for p in procs]
        mem = {key: max(m[key] for m in mems) for key in ("VmRSS", "VmHWM")}
        enqueued, duplicates = ticks(redis, prefix)
        in_window = [
            (due, created) for due, created in enqueued if window_start <= due <= window_end - 2
        ]
        late = [created - due for due, created in in_window]
        print(
            f"database {args.db}, {args.tasks} enabled tasks, {args.schedulers} scheduler(s), "
            f"{args.seconds:g}s measured"
        )
        print(f"start-up: 'started' after {(up or float('nan')) - started:.2f}s, ")
        print(f"          first tick enqueued after {first - started:.2f}s")
        print(
            f"CPU: {cpu:.3f} s per wall second (per scheduler, highest {max(cpus):.3f}); "
            f"RSS {mem['VmRSS']} MiB (peak {mem['VmHWM']})"
        )
        print(
            f"ticks due in the window: {len(late)}; lateness p50 {percentile(late, 0.5):.3f}s, "
            f"p99 {percentile(late, 0.99):.3f}s, max {max(late, default=float('nan')):.3f}s"
        )
        # A window that began with a backlog (a start-up beyond LEAD) shows in its first slices.
        slices = [
            [
                created - due
                for due, created in in_window
                if start <= due - window_start < start + 10
            ]
            for start in range(0, int(args.seconds), 10)
        ]
        print(
            "p99 by 10 s of the window: " + " ".join(f"{percentile(s, 0.99):.2f}" for s in slices)
        )
        print(f"ticks enqueued more than once (all of the run): {duplicates}")
        if args.json is not None:
            from harness.stats import QUANTILES

            write_json(
                args.json,
                {
                    "database": args.db,
                    "tasks": args.tasks,
                    "kinds": kinds,
                    "seconds": args.seconds,
                    "schedulers": args.schedulers,
                    "duplicates": duplicates,
                    "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "startup_s": round((up or float("nan")) - started, 3),
                    "first_tick_s": round(first - started, 3),
                    "cpu_per_s": round(cpu, 4),
                    "rss_mib": mem["VmRSS"],
                    "peak_rss_mib": mem["VmHWM"],
                    "ticks": len(late),
                    "late_p50_s": round(percentile(late, 0.5), 4),
                    "late_p99_s": round(percentile(late, 0.99), 4),
                    "late_max_s": round(max(late, default=float("nan")), 4),
                    "lateness_s": {
                        "q": list(QUANTILES),
                        "v": [round(percentile(late, q / 100), 4) for q in QUANTILES],
                    },
                },
            )
            print(f"figures written to {args.json}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        keys = list(redis.scan_iter(match=f"{prefix}*", count=5000))
        for start in range(0, len(keys), 5000):
            redis.delete(*keys[start : start + 5000])
        from django.db import connections

        connections.close_all()
        if pg_name is not None:
            drop_database(pg_name)
        print(f"logs: {folder}")


if __name__ == "__main__":
    main()
