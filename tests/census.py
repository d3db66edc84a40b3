"""Where is every job? Each id must be in exactly one state structure."""

from django_jobs import JobQueue
from django_jobs.conf import jobs_settings
from django_jobs.job import JobPriority
from tests.processes import wait_until


def census(queue: JobQueue, client) -> dict[str, list[str]]:
    """Map each job id found in any structure to the places it was found in."""
    keys = queue.keys
    places: dict[str, list[str]] = {}
    for name in jobs_settings.QUEUES:
        for priority in JobPriority:
            key = keys.queue(name, priority)
            for job_id in client.lrange(key, 0, -1):
                places.setdefault(job_id, []).append(f"queue:{name}:{priority.name.lower()}")
    # Jobs held back by a rate or concurrency limit wait on lists of their own (_flow.lua).
    for key in client.scan_iter(match=f"{keys.prefix}:waiting:*"):
        for job_id in client.lrange(key, 0, -1):
            places.setdefault(job_id, []).append(key.removeprefix(f"{keys.prefix}:"))
    for place, key in keys.state_sets.items():
        for job_id in client.zrange(key, 0, -1):
            places.setdefault(job_id, []).append(place)
    return places


def assert_census(queue: JobQueue, client, expected: dict[str, str]) -> None:
    """Every job is in exactly the one place ``expected`` says, and no other job exists."""
    found = census(queue, client)
    duplicates = {job_id: where for job_id, where in found.items() if len(where) != 1}
    assert not duplicates, f"jobs in more than one place: {duplicates}"
    assert {job_id: where[0] for job_id, where in found.items()} == expected
    records = {k.rsplit(":", 1)[1] for k in client.scan_iter(match=f"{queue.prefix}:job:*")}
    assert records == set(expected), "every job record is in a structure, and vice versa"


def assert_all_completed(queue: JobQueue, client, message: str, timeout: float = 60):
    """Wait until every job record of ``queue``'s namespace is in the completed index, then
    check that each is there and nowhere else; the census, each id's places."""
    wait_until(
        lambda: (
            client.zcard(queue.keys.completed)
            == len(list(client.scan_iter(match=f"{queue.prefix}:job:*")))
        ),
        timeout=timeout,
        message=message,
    )
    places = census(queue, client)
    assert {job_id: where for job_id, where in places.items() if where != ["completed"]} == {}
    return places


# The keys of a namespace that live as long as it does (indexes, counters, wake-ups): every
# other key must carry a TTL once its job, group or window is over.
LASTING = (
    "scheduled",
    "retrying",
    "processing",
    "dead",
    "completed",
    "cancelled",
    "waiting_jobs",
    "counters",
    "events",
    "wakeup",
    "limits",
    "parked",
    "workers",
)


def untimed_keys(prefix: str, client) -> list[str]:
    """The keys under ``prefix`` without a TTL, other than the lasting ones (and ready lists)."""
    found = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        name = key.removeprefix(f"{prefix}:")
        if name in LASTING or name.startswith("queue:"):
            continue
        if client.ttl(key) == -1:
            found.append(name)
    return sorted(found)
