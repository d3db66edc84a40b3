"""The cluster's numbers as Prometheus metrics: gauges from one :meth:`JobQueue.stats` call and
counters from the job events the Lua scripts count in Redis (``Keys.events``).

Each scrape costs two round trips and no scan: ``stats()`` (one script) and one ``HGETALL`` of
the events.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django_jobs.metrics import prometheus_client
from django_jobs.queue import JobQueue
from django_jobs.store import metrics_calls
from django_jobs.store.execute import run

# The counter of each event the scripts count (``count_event`` in lua/_lib.lua), and its help.
COUNTERS = {
    "enqueued": ("django_jobs_enqueued", "Jobs enqueued (also by the scheduler)."),
    "started": ("django_jobs_started", "Attempts started (jobs leased by a worker)."),
    "succeeded": ("django_jobs_succeeded", "Attempts that completed."),
    "failed": ("django_jobs_failed", "Attempts that failed (an exception, a timeout, a crash)."),
    "retried": ("django_jobs_retried", "Failed attempts that will be retried."),
    "dead": (
        "django_jobs_dead_lettered",
        "Jobs moved to the dead-letter queue (out of retries, lost too often, or unreadable).",
    ),
    "cancelled": ("django_jobs_cancelled", "Jobs cancelled."),
    "recovered": (
        "django_jobs_recovered",
        "Jobs requeued after their worker was lost (their lease expired).",
    ),
    "stale": (
        "django_jobs_stale_acks",
        "Completions and failures refused: the worker no longer held the job's lease.",
    ),
    "limited": (
        "django_jobs_limited",
        "Jobs a rate or concurrency limit held back (parked until it lets them start).",
    ),
}
assert set(COUNTERS) == set(metrics_calls.EVENTS)

# The totals of stats()["states"] exported as gauges (``failed`` is the dead-letter queue).
STATE_GAUGES = {
    "scheduled": ("django_jobs_scheduled_jobs", "Delayed jobs waiting for their time."),
    "limited": ("django_jobs_limited_jobs", "Jobs a rate or concurrency limit holds back."),
    "retrying": ("django_jobs_retrying_jobs", "Failed jobs waiting for their retry."),
    "running": ("django_jobs_running_jobs", "Jobs leased by a worker."),
    "failed": ("django_jobs_dead_jobs", "Jobs in the dead-letter queue."),
    "waiting": ("django_jobs_waiting_jobs", "Steps of chains and groups waiting for others."),
}


class JobsCollector:
    """A Prometheus collector of the numbers of one namespace (``JobQueue().prefix`` at each
    scrape, so ``override_settings`` applies), read from Redis at each scrape."""

    def __init__(self, jobs: JobQueue | None = None) -> None:
        self.jobs = jobs

    def describe(self) -> list[Any]:
        # Nothing up front: registering must not read Redis.
        return []

    def collect(self) -> Iterator[Any]:
        prometheus_client()  # ImproperlyConfigured, naming the extra, without it
        from prometheus_client import core

        jobs = self.jobs or JobQueue()
        stats = jobs.stats()
        events: dict[tuple[str, str, str], int] = {}
        for keys in jobs.all_keys():  # each shard's scripts count their own events
            for event, count in run(metrics_calls.events(keys)).items():
                events[event] = events.get(event, 0) + count
        yield from _gauges(core, stats)
        families = {
            event: core.CounterMetricFamily(name, text, labels=["queue", "name"])
            for event, (name, text) in COUNTERS.items()
        }
        for (event, queue, name), count in sorted(events.items()):
            if event in families:
                families[event].add_metric([queue, name], count)
        yield from families.values()


def _gauges(core: Any, stats: dict[str, Any]) -> Iterator[Any]:
    pending = core.GaugeMetricFamily(
        "django_jobs_pending_jobs",
        "Jobs ready to run, waiting for a worker, per queue and priority.",
        labels=["queue", "priority"],
    )
    for queue, counts in stats["queues"].items():
        for priority, count in counts.items():
            pending.add_metric([queue, priority], count)
    yield pending
    oldest = core.GaugeMetricFamily(
        "django_jobs_oldest_pending_age_seconds",
        "Seconds the oldest ready job of a queue and priority has waited (absent when none).",
        labels=["queue", "priority"],
    )
    for queue, ages in stats["oldest"].items():
        for priority, age in ages.items():
            if age is not None:
                oldest.add_metric([queue, priority], age)
    yield oldest
    for state, (name, text) in STATE_GAUGES.items():
        yield core.GaugeMetricFamily(name, text, value=stats["states"][state])
    yield core.GaugeMetricFamily(
        "django_jobs_live_workers",
        "runworker processes whose heartbeat is current.",
        value=stats["workers"]["live"],
    )
    unserved = core.GaugeMetricFamily(
        "django_jobs_unserved_jobs",
        "Ready jobs of a queue that no live worker serves (0 when one does or none wait).",
        labels=["queue"],
    )
    for queue in stats["queues"]:
        unserved.add_metric([queue], stats["unserved"].get(queue, 0))
    yield unserved
    waiting = core.GaugeMetricFamily(
        "django_jobs_limit_waiting_jobs",
        "Jobs held back by a rate or concurrency limit, per limit (those used in the last day).",
        labels=["kind", "key"],
    )
    for limit in stats["limits"]:
        waiting.add_metric([limit["kind"], limit["key"]], limit["waiting"])
    yield waiting
