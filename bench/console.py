"""How fast the operations console's queue calls are with many jobs in Redis (run on demand).

    python bench/console.py [--jobs 1000000] [--redis redis://127.0.0.1:6379/0]

Fills a private prefix (``{bench-console-<random>}``) with ``--jobs`` jobs: ready and delayed
ones through the real enqueue script (``enqueue_many``), the runs of a periodic task through
the real fire script (``fire_run``), and the rest (completed, failed, cancelled, retrying,
running: most of them) as pipelines of raw writes that leave the records and index entries the
claim/ack/fail/cancel scripts would (a million trips through a worker would take too long).
Then it times the console's admin pages as a logged-in superuser sees them (Django's test
client, a throw-away SQLite database in memory: the dashboard, lists, a job's page), then
``stats()``, ``page()`` per state (first, middle and last page) and filtered, ``task_runs()``,
``requeue_dead()`` of 10,000 and ``purge()``; prints the medians in ms, and deletes its keys
(``SCAN`` on its own prefix: here only, never in the library).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django
from django.conf import settings

QUEUES = ["default", "emails", "reports"]
NAMES = [f"app.jobs.task_{k:02d}" for k in range(20)]
# Share of all jobs per state (the rest are completed), and of ready jobs per priority.
SHARES = {"ready": 0.07, "scheduled": 0.02, "retrying": 0.01, "dead": 0.02, "cancelled": 0.03}
RUNNING = 200
TASK_RUNS = 60
CHUNK = 5000


def configure(url: str, prefix: str) -> None:
    settings.configure(
        USE_TZ=True,
        SECRET_KEY="bench",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django_jobs",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        ROOT_URLCONF=__name__,
        STATIC_URL="/static/",
        ALLOWED_HOSTS=["testserver"],
        DJANGO_JOBS={"REDIS_URL": url, "PREFIX": prefix, "QUEUES": QUEUES},
    )
    django.setup()


def urls() -> list[Any]:
    from django.contrib import admin
    from django.urls import path

    return [path("admin/", admin.site.urls)]


def __getattr__(name: str) -> Any:
    # ROOT_URLCONF is this module; its urlpatterns are made once Django is set up.
    if name == "urlpatterns":
        return urls()
    raise AttributeError(name)


def measure_pages(prefix: str) -> list[tuple[str, float, str]]:
    """The console's pages, as a superuser's browser asks for them."""
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from django_jobs import JobQueue

    call_command("migrate", verbosity=0)
    client = Client()
    client.force_login(User.objects.create_superuser("bench", password="bench"))
    queue, rows = JobQueue(prefix), []
    completed = queue.page("completed", limit=1).total
    job_id = queue.page("failed", limit=1).jobs[0].id
    pages = [
        ("admin: dashboard", "/admin/django_jobs/job/"),
        ("admin: failed, first page", "/admin/django_jobs/job/state/failed/"),
        (
            "admin: completed, middle page",
            f"/admin/django_jobs/job/state/completed/?cursor={completed // 2}",
        ),
        (
            "admin: completed, name filter",
            "/admin/django_jobs/job/state/completed/?name=app.jobs.task_03",
        ),
        ("admin: pending of one queue", "/admin/django_jobs/job/state/pending/?queue=emails"),
        ("admin: a failed job's page", f"/admin/django_jobs/job/{job_id}/"),
    ]
    for label, url in pages:
        ms, response = timed(lambda u=url: client.get(u))
        assert response.status_code == 200, (url, response.status_code)
        rows.append((label, ms, f"{len(response.content) // 1024} KiB"))
    return rows


def fill(total: int, prefix: str, client: Any) -> dict[str, int]:
    """Store ``total`` jobs spread over the states; returns how many of each."""
    from django_jobs import JobQueue
    from django_jobs.conf import jobs_settings
    from django_jobs.job import JobPriority, JobStatus, new_id
    from django_jobs.scheduling.task import ScheduledTask
    from django_jobs.scheduling.ticks import fire_run
    from django_jobs.serialization import utcnow

    queue, keys, rng = JobQueue(prefix), JobQueue(prefix).keys, random.Random(1)
    now = time.time()
    job_ttl, result_ttl = int(jobs_settings.JOB_TTL), int(jobs_settings.RESULT_TTL)
    counts = {state: int(total * share) for state, share in SHARES.items()}
    counts["running"] = RUNNING
    counts["task_runs"] = TASK_RUNS
    counts["completed"] = total - sum(counts.values())

    def job(i: int, **options: Any) -> Any:
        return queue.build_job(
            rng.choice(NAMES),
            [i],
            queue=rng.choices(QUEUES, weights=[6, 3, 1])[0],
            priority=rng.choices(list(JobPriority), weights=[1, 6, 2, 1])[0],
            user_id=rng.randrange(1000) if rng.random() < 0.1 else None,
            **options,
        )

    for state, delay in (("ready", None), ("scheduled", 3600.0)):
        for start in range(0, counts[state], CHUNK):
            n = min(CHUNK, counts[state] - start)
            queue.enqueue_many([job(start + i, delay=delay and delay + i) for i in range(n)])
    task = ScheduledTask("nightly", NAMES[0], "interval", 60)
    for i in range(TASK_RUNS):
        fire_run(queue, task, utcnow().replace(microsecond=0) - timedelta(hours=TASK_RUNS - i))

    for state in ("completed", "dead", "cancelled", "retrying", "running"):
        for start in range(0, counts[state], CHUNK):
            pipe = client.pipeline(transaction=False)
            for i in range(min(CHUNK, counts[state] - start)):
                made = job(start + i)
                # Finished within the last six days (JOB_TTL keeps seven), oldest first.
                finished = now - 6 * 86400 * (1 - (start + i) / max(counts[state], 1))
                made.created_at = datetime.fromtimestamp(finished - 2, made.created_at.tzinfo)
                fields = made.to_hash()
                jkey, score = keys.job(made.id), finished
                fields.update(started_at=f"{finished - 1:.6f}", worker_id="w1")
                if state == "completed":
                    fields.update(status="completed", finished_at=f"{finished:.6f}")
                    fields["done_token"] = new_id()
                    pipe.set(keys.result(made.id), str(i), ex=result_ttl)
                    index = keys.completed
                elif state == "dead":
                    fields.update(status="failed", finished_at=f"{finished:.6f}", error="boom")
                    index = keys.dead
                elif state == "cancelled":
                    fields.update(status="cancelled", finished_at=f"{finished:.6f}")
                    index = keys.cancelled
                elif state == "retrying":
                    fields.update(status=JobStatus.RETRYING.value, retry_count="1", error="boom")
                    index, score = keys.retrying, now + 3600 + i
                else:
                    fields.update(status="running", lease_token=new_id())
                    index, score = keys.processing, now + 86400 + i
                pipe.hset(jkey, mapping=fields)
                if state in ("completed", "cancelled"):
                    pipe.expire(jkey, job_ttl)
                pipe.zadd(index, {made.id: score})
                if made.user_id is not None:
                    pipe.zadd(keys.user(str(made.user_id)), {made.id: finished - 2})
            pipe.execute()
    return counts


def timed(call: Any, repeat: int = 5) -> tuple[float, Any]:
    """The median time of ``call()`` in ms, and its last value."""
    times, value = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        value = call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), value


def measure(prefix: str) -> list[tuple[str, float, str]]:
    from django_jobs import JobQueue

    queue, rows = JobQueue(prefix), []

    def row(label: str, call: Any, repeat: int = 5, note: Any = None) -> Any:
        ms, value = timed(call, repeat)
        rows.append((label, ms, note(value) if note else ""))
        return value

    row("stats()", queue.stats, note=lambda s: f"pending={s['states']['pending']}")
    for state in ("pending", "retrying", "running", "failed", "completed", "cancelled"):
        total = queue.page(state, limit=1).total
        for where, cursor in (("first", 0), ("middle", total // 2), ("last", max(total - 50, 0))):
            row(
                f"page({state!r}) {where} page",
                lambda s=state, c=cursor: queue.page(s, cursor=c, limit=50),
                note=lambda p: f"{len(p.jobs)} jobs of {p.total}",
            )
    filtered = [
        ("page('completed', name=common)", {"name": "app.jobs.task_03"}),
        ("page('completed', name=absent)", {"name": "app.jobs.none"}),
        ("page('completed', queue='reports')", {"queue": "reports"}),
        ("page('pending', queue='emails')", {"queue": "emails"}),
        ("page('failed', name=common)", {"name": "app.jobs.task_03"}),
    ]
    for label, options in filtered:
        status = label.split("'")[1]
        row(
            label,
            lambda s=status, o=options: queue.page(s, limit=50, **o),
            note=lambda p: f"{len(p.jobs)} jobs, scanned {p.scanned}, cursor {p.cursor}",
        )
    user = next((j.user_id for j in queue.page("completed", limit=500).jobs if j.user_id), 1)
    row("page(user_id=u)", lambda: queue.page(user_id=user), note=lambda p: f"{len(p.jobs)} jobs")
    row("page('failed', user_id=u)", lambda: queue.page("failed", user_id=user))
    row("task_runs('nightly')", lambda: queue.task_runs("nightly"), note=lambda r: f"{len(r)}")
    row(
        "requeue_dead(limit=10000)",
        lambda: queue.requeue_dead(limit=10_000),
        repeat=1,
        note=lambda ids: f"{len(ids)} requeued, in batches of 1000",
    )
    row(
        "purge('cancelled', older_than=3 days)",
        lambda: queue.purge("cancelled", older_than=3 * 86400),
        repeat=1,
        note=lambda n: f"{n} deleted",
    )
    row(
        "purge('pending', queue='reports')",
        lambda: queue.purge("pending", queue="reports"),
        repeat=1,
        note=lambda n: f"{n} deleted",
    )
    row("stats() after", queue.stats, note=lambda s: f"pending={s['states']['pending']}")
    return rows


def clean(prefix: str, client: Any) -> int:
    deleted, batch = 0, []
    for key in client.scan_iter(match=f"{prefix}*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    options = parser.parse_args()
    prefix = f"{{bench-console-{uuid.uuid4().hex[:8]}}}"
    configure(options.redis, prefix)
    import redis

    client = redis.Redis.from_url(options.redis)
    try:
        started = time.monotonic()
        counts = fill(options.jobs, prefix, client)
        print(
            f"filled {sum(counts.values()):,} jobs in {time.monotonic() - started:.0f} s: {counts}"
        )
        print(f"redis memory: {client.info('memory')['used_memory_human']}")
        rows = measure_pages(prefix) + measure(prefix)
        width = max(len(label) for label, _, _ in rows)
        print(f"\n| {'call':<{width}} | median ms | |\n|{'-' * (width + 2)}|----------:|---|")
        for label, ms, note in rows:
            print(f"| {label:<{width}} | {ms:9.1f} | {note} |")
    finally:
        print(f"\ndeleted {clean(prefix, client):,} keys of {prefix}")


if __name__ == "__main__":
    main()
