"""An enqueue that Redis refuses part-way leaves nothing behind: against the real Redis, a key
an enqueue writes (a ready list, the delayed jobs, the wake-ups, the event counts, a user's
index, a unique key, the waiting steps of a workflow) holding a value of another type makes
``.delay()``, ``enqueue_many()`` (each chunk whole) and a workflow's ``.delay()`` raise an error
that names the key, with no record, no unique key and no entry in any list or index left for
the refused jobs; once the key is mended the same enqueue works. A requeue of dead letters that
would meet such a key requeues none of them.
"""

from dataclasses import dataclass
from typing import Any

import pytest

from django_jobs import JobPriority, JobStatus, bulk, chain, group, job
from django_jobs.exceptions import RedisUnavailable, StoreError
from django_jobs.flow import Flow
from django_jobs.store.errors import refuses_every_call
from django_jobs.worker.leases import Leases
from tests.census import assert_census, census


@pytest.fixture(autouse=True, params=[True, False], ids=["functions", "scripts"])
def called_as(request, configure):
    """Each test with the scripts as Redis functions (FCALL) and as scripts (EVALSHA), which
    carry the helpers a refused call needs in a text of their own."""
    configure(REDIS_FUNCTIONS=request.param)


@job
def plain(n: int = 0) -> int:
    return n


@job
def total(values: list) -> int:
    return sum(values)


@dataclass(frozen=True)
class Kind:
    """A key an enqueue writes: the options that make a job write it, its Redis type, and
    whether every job of an enqueue writes it (else only a job with ``options`` does)."""

    name: str
    options: dict[str, Any]
    expected: str
    every_job: bool = False

    def build_options(self, n: int) -> dict[str, Any]:
        """``options`` as ``build_job`` takes them, for the job of argument ``n``."""
        if "unique" not in self.options:
            return self.options
        return {"flow": Flow.of(unique=True, unique_key=f"fault:{n}")}

    def key(self, queue, n: int) -> str:
        """The key that the job of argument ``n`` with these options writes."""
        keys = queue.keys
        return {
            "ready list": keys.queue("emails", JobPriority.NORMAL),
            "scheduled set": keys.scheduled,
            "wake-up list": keys.wakeup,
            "events hash": keys.events,
            "user index": keys.user("7"),
            "unique key": f"{queue.prefix}:unique:fault:{n}",
        }[self.name]


KINDS = [
    Kind("ready list", {"queue": "emails"}, "list"),
    Kind("scheduled set", {"delay": 60}, "zset"),
    Kind("wake-up list", {}, "list", every_job=True),
    Kind("events hash", {}, "hash", every_job=True),
    Kind("user index", {"user_id": 7}, "zset"),
    Kind("unique key", {"unique": True, "unique_key": "fault:{n}"}, "string"),
]


def break_key(redis_client, key: str, expected: str) -> None:
    """Write a value of another type than ``expected`` at ``key``."""
    if expected == "string":
        redis_client.hset(key, "written", "by hand")
    else:
        redis_client.set(key, "written by hand")


def refused_message(key: str, expected: str) -> str:
    kind = "hash" if expected == "string" else "string"
    return f"WRONGTYPE {key} holds a {kind}, not a {expected}; nothing of this enqueue was stored"


def assert_nothing_of(queue, redis_client, ids, kept=None) -> None:
    """No record, unique key, index entry or place for ``ids``; the jobs ``kept`` ({id: place})
    are where they should be, and nothing else exists."""
    prefix = queue.prefix
    for job_id in ids:
        assert not redis_client.exists(queue.keys.job(job_id)), job_id
    for key in redis_client.scan_iter(match=f"{prefix}:unique:*"):
        assert redis_client.get(key) not in ids, key
    for key in redis_client.scan_iter(match=f"{prefix}:user:*"):
        assert not set(redis_client.zrange(key, 0, -1)) & set(ids), key
    assert_census(queue, redis_client, kept or {})


def place(options: dict[str, Any]) -> str:
    if "delay" in options:
        return "scheduled"
    return f"queue:{options.get('queue', 'default')}:normal"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_refused_delay_stores_nothing_and_works_once_the_key_is_mended(queue, redis_client, kind):
    key = kind.key(queue, 1)
    break_key(redis_client, key, kind.expected)
    call = plain.using(**kind.options)

    with pytest.raises(StoreError) as raised:
        call.delay(1)

    assert refused_message(key, kind.expected) in str(raised.value)
    # A fault of this call's keys: not Redis down, so nothing waits for it to come back.
    assert not isinstance(raised.value, RedisUnavailable)
    assert not refuses_every_call(raised.value)
    redis_client.delete(key)  # mended (the census reads every list)
    assert_nothing_of(queue, redis_client, [])
    assert redis_client.llen(queue.keys.wakeup) == 0
    assert not redis_client.hgetall(queue.keys.events)

    handle = call.delay(1)

    assert handle.created
    assert_census(queue, redis_client, {handle.id: place(kind.options)})


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_refused_chunk_of_enqueue_many_stores_none_of_its_jobs(
    queue, redis_client, monkeypatch, kind
):
    monkeypatch.setattr(bulk, "CHUNK", 3)
    # The first chunk's last job writes the key; the jobs before it in the chunk write the
    # sound keys of their kind (another user's index, their own unique keys), which must be
    # taken back too; the second chunk's jobs write the key only if every job does.
    options = [kind.build_options(n) for n in (3, 4)]
    if kind.name == "user index":
        options = [{"user_id": "ann"}] * 2
    options += [kind.build_options(1), {}, {}, {}]
    jobs = [
        queue.build_job(plain.name, [n], **o)
        for n, o in zip((3, 4, 1, 5, 6, 7), options, strict=True)
    ]
    key = kind.key(queue, 1)
    break_key(redis_client, key, kind.expected)

    with pytest.raises(StoreError) as raised:
        queue.enqueue_many(jobs)

    assert refused_message(key, kind.expected) in str(raised.value)
    refused = jobs if kind.every_job else jobs[:3]
    assert raised.value.not_enqueued == refused
    assert raised.value.enqueued == jobs[len(refused) :]
    redis_client.delete(key)
    kept = {j.id: "queue:default:normal" for j in raised.value.enqueued}
    assert_nothing_of(queue, redis_client, [j.id for j in refused], kept)
    counted = redis_client.hget(queue.keys.events, f"enqueued|default|{plain.name}")
    assert counted == (str(len(kept)) if kept else None)
    assert redis_client.llen(queue.keys.wakeup) == len(kept)

    queue.enqueue_many(raised.value.not_enqueued)

    assert_census(queue, redis_client, {j.id: place(o) for j, o in zip(jobs, options, strict=True)})


@pytest.mark.parametrize("broken", ["waiting steps", "ready list", "events hash"])
def test_a_refused_workflow_stores_none_of_its_steps_nor_its_groups(queue, redis_client, broken):
    key, expected = {
        "waiting steps": (queue.keys.waiting_jobs, "zset"),
        "ready list": (queue.keys.queue("default", JobPriority.NORMAL), "list"),
        "events hash": (queue.keys.events, "hash"),
    }[broken]
    break_key(redis_client, key, expected)
    flow = chain(plain.s(1), group(plain.si(2), plain.si(3)).then(total.s()))

    with pytest.raises(StoreError) as raised:
        flow.delay()

    assert refused_message(key, expected) in str(raised.value)
    redis_client.delete(key)
    assert_nothing_of(queue, redis_client, [])
    assert not list(redis_client.scan_iter(match=f"{queue.prefix}:group:*"))

    flow.delay()

    places = sorted(where for found in census(queue, redis_client).values() for where in found)
    assert places == ["queue:default:normal"] + ["waiting"] * 3
    assert list(redis_client.scan_iter(match=f"{queue.prefix}:group:*"))


def test_a_refused_requeue_leaves_every_dead_letter_as_it_was(queue, redis_client):
    # Three jobs that failed for good, one of them of a queue whose list holds a string.
    queue.enqueue_many(
        [queue.build_job(plain.name, [n], max_retries=0) for n in (1, 2)]
        + [queue.build_job(plain.name, [3], max_retries=0, queue="emails")]
    )
    leases, ids = Leases(queue.prefix), []
    for _ in range(3):
        taken = leases.dequeue()
        leases.fail_job(taken, "boom")
        ids.append(taken.id)
    emails = queue.keys.queue("emails", JobPriority.NORMAL)
    redis_client.set(emails, "written by hand")

    with pytest.raises(StoreError) as raised:
        queue.requeue_dead(ids)

    assert f"WRONGTYPE {emails} holds a string, not a list; nothing was requeued" in str(
        raised.value
    )
    redis_client.delete(emails)
    assert_census(queue, redis_client, dict.fromkeys(ids, "dead"))
    assert {j.status for j in queue.get_jobs(ids).values()} == {JobStatus.FAILED}

    assert sorted(queue.requeue_dead(ids)) == sorted(ids)

    assert_census(
        queue,
        redis_client,
        {
            ids[0]: "queue:default:normal",
            ids[1]: "queue:default:normal",
            ids[2]: "queue:emails:normal",
        },
    )
