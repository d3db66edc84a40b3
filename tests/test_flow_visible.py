"""Flow control made visible and operable: the limits read in one round trip
(``JobQueue.limits()`` and ``stats()``), the console, ``manage.py jobs``, the Prometheus metrics,
and purging a queue's parked jobs; against real Redis."""

import asyncio
import re
import time

import pytest

from django_jobs import browse, job
from django_jobs.worker.leases import Leases
from tests.census import assert_census
from tests.cli import jobs_cli, jobs_json
from tests.test_console import ACT, DASHBOARD, content, job_url, staff
from tests.test_metrics import TOKEN, scrape_view


@job(rate_limit="2/m")
def call_api(n: int) -> int:
    return n


@job(unique=True, concurrency=1, concurrency_key="customer:{customer_id}")
def sync_customer(customer_id: int, step: int = 0) -> None:
    pass


@job
def plain(n: int = 0) -> int:
    return n


RATE, CONCURRENCY = f"rate:{call_api.name}", "concurrency:customer:1"


def take(queue, queues=("default",), lease=30.0):
    return Leases(queue.prefix).dequeue(list(queues), worker_id="w", lease=lease)


@pytest.fixture
def limited(queue):
    """Three jobs running and three held back: one by a rate limit of 2 a minute, two by a
    concurrency limit of 1 (customer 1). Returns (running, parked) handles."""
    # queue.enqueue(), not .delay(): a console test runs inside a transaction, whose .delay()
    # would wait for its commit.
    calls = [queue.enqueue(call_api.name, [n]) for n in range(3)]
    syncs = [queue.enqueue(sync_customer.name, [1], {"step": n}) for n in range(3)]
    running = [take(queue) for _ in range(3)]
    assert take(queue) is None
    assert [j.id for j in running] == [calls[0].id, calls[1].id, syncs[0].id]
    return running, [calls[2], syncs[1], syncs[2]]


@pytest.fixture
def operator(client, db, jobs_settings):
    client.force_login(staff("flow-operator", "view_job", "change_job"))
    return client


# -- the read: one round trip ------------------------------------------------------------------


def test_limits_say_tokens_running_slots_sizes_and_jobs_waiting(queue, limited):
    limits = queue.limits()

    assert [limit.id for limit in limits] == [CONCURRENCY, RATE], "the latest used first"
    concurrency, rate = limits
    assert (concurrency.kind, concurrency.key) == ("concurrency", "customer:1")
    assert (concurrency.running, concurrency.size, concurrency.waiting) == (1, 1, 2)
    assert concurrency.tokens is None
    assert concurrency.per is None
    assert (rate.kind, rate.key, rate.size, rate.per, rate.waiting) == (
        "rate",
        call_api.name,
        2,
        60.0,
        1,
    )
    assert 0 <= rate.tokens < 0.1, "both tokens spent, refilling at one per 30 s"
    assert rate.running is None
    assert 0 <= time.time() - rate.last_used.timestamp() < 5
    assert [limit.id for limit in asyncio.run(queue.alimits())] == [CONCURRENCY, RATE]


def test_stats_list_the_limits_and_count_the_parked_jobs_as_pending(queue, limited):
    stats = queue.stats()

    assert stats["states"]["limited"] == 3
    assert stats["states"]["pending"] == 3
    assert [(limit["kind"], limit["key"], limit["waiting"]) for limit in stats["limits"]] == [
        ("concurrency", "customer:1", 2),
        ("rate", call_api.name, 1),
    ]
    assert stats["limits"][0] == queue.limits()[0].to_dict()


def test_only_live_leases_count_as_running(queue):
    sync_customer.delay(2)
    take(queue, lease=0.05)
    assert queue.limits()[0].running == 1
    time.sleep(0.1)
    assert queue.limits()[0].running == 0, "its worker was lost: the slot is free"


def test_a_full_bucket_untouched_for_its_period_reads_as_unknown(queue, redis_client):
    call_api.delay(1)
    take(queue)
    redis_client.delete(f"{queue.prefix}:bucket:{call_api.name}")  # expired: full again

    (rate,) = queue.limits()
    assert (rate.tokens, rate.size, rate.waiting) == (None, None, 0)


def test_limits_unused_for_a_day_are_forgotten_unless_jobs_wait_on_them(
    queue, limited, redis_client
):
    a_day_ago = time.time() - 86_401
    redis_client.zadd(queue.keys.limits, {RATE: a_day_ago, CONCURRENCY: a_day_ago})
    Leases(queue.prefix).recover_expired()
    assert {limit.id for limit in queue.limits()} == {CONCURRENCY, RATE}, "jobs wait on both"

    queue.delete_job(limited[1][0].id)  # nothing waits on the rate limit now
    redis_client.zadd(queue.keys.limits, {RATE: a_day_ago})
    assert [limit.id for limit in queue.limits()] == [CONCURRENCY]
    assert redis_client.zrange(queue.keys.limits, 0, -1) == [CONCURRENCY]


def test_the_read_is_bounded_to_the_latest_limits(queue, monkeypatch):
    for customer in range(3):
        sync_customer.delay(customer)
        take(queue)
    monkeypatch.setattr(browse, "LIMITS_SHOWN", 2)

    assert [limit.key for limit in queue.limits()] == ["customer:2", "customer:1"]
    assert len(queue.stats()["limits"]) == 2


# -- the console --------------------------------------------------------------------------------


def test_the_dashboard_shows_each_limit_and_the_jobs_waiting_on_it(operator, queue, limited):
    page = content(operator.get(DASHBOARD))

    rows = re.findall(
        r"<tr>\s*<td>(\w+)</td>\s*<th scope=\"row\"><code>([^<]+)</code>(.*?)</tr>", page, re.S
    )
    cells = {key: re.findall(r"<td>(?:<span[^>]*>)?([^<]*)", rest) for _, key, rest in rows}
    assert cells["customer:1"][:3] == ["1 at once", "1 running", "2"]
    assert cells[call_api.name][0] == "2 per 1m"
    assert re.match(r"0\.0 tokens", cells[call_api.name][1])
    assert cells[call_api.name][2] == "1"
    assert re.search(r'jobs-count">3</span> Waiting on a limit', page)
    assert re.search(r'jobs-count">3</span> Pending', page)


def test_the_dashboard_has_no_limits_table_without_limits(operator, queue):
    plain.delay()
    page = content(operator.get(DASHBOARD))
    assert 'id="limits"' not in page
    assert "Waiting on a limit" not in page


def test_a_job_page_shows_its_unique_key_its_limits_and_the_limit_it_waits_on(operator, limited):
    parked = limited[1][1]
    page = content(operator.get(job_url(parked.id)))

    assert f"{parked.unique_key} (until it finishes)" in page
    assert "concurrency customer:1, 1 at once" in page
    assert "limit <code>concurrency:customer:1</code>" in page


# -- manage.py jobs stats and show --------------------------------------------------------------


def test_jobs_stats_prints_the_limits_and_json_includes_them(queue, limited):
    text = jobs_cli("stats")

    assert re.search(r"LIMIT\s+KEY\s+SIZE\s+NOW\s+WAITING\s+USED", text)
    assert re.search(r"concurrency\s+customer:1\s+1 at once\s+1 running\s+2\s+\d+s ago", text)
    assert re.search(rf"rate\s+{re.escape(call_api.name)}\s+2 per 1m\s+0\.0 tokens\s+1", text)
    assert "3 pending (0 of them scheduled for later, 3 waiting on a limit)" in text
    data = jobs_json("stats")
    assert data["states"]["limited"] == 3
    assert [(limit["key"], limit["waiting"]) for limit in data["limits"]] == [
        ("customer:1", 2),
        (call_api.name, 1),
    ]


def test_jobs_show_tells_the_unique_key_limits_and_waiting(limited):
    text = jobs_cli("show", limited[1][1].id)
    assert re.search(r"unique\s+.+ \(until it finishes\)", text)
    assert re.search(r"limits\s+concurrency customer:1, 1 at once", text)
    assert re.search(r"waiting\s+on limit concurrency:customer:1", text)


# -- metrics -------------------------------------------------------------------------------------


def test_metrics_count_the_jobs_a_limit_held_back_and_gauge_those_waiting(configure, limited):
    configure(METRICS_TOKEN=TOKEN)
    found = scrape_view()

    def limited_total(name):
        return found[("django_jobs_limited_total", (("name", name), ("queue", "default")))]

    assert limited_total(call_api.name) == 1
    assert limited_total(sync_customer.name) == 2
    waiting = "django_jobs_limit_waiting_jobs"
    assert found[(waiting, (("key", "customer:1"), ("kind", "concurrency")))] == 2
    assert found[(waiting, (("key", call_api.name), ("kind", "rate")))] == 1
    assert found[("django_jobs_limited_jobs", ())] == 3


# -- purge ---------------------------------------------------------------------------------------


def test_emptying_a_queue_deletes_its_parked_jobs_and_their_waiting_lists(
    queue, limited, configure, redis_client
):
    configure(QUEUE_LIMITS={"emails": {"concurrency": 1}})
    emails = [plain.using(queue="emails").delay(n) for n in range(2)]
    mail = take(queue, ["emails"])
    assert take(queue, ["emails"]) is None
    running = limited[0]

    assert queue.purge("pending", queue="default") == 3

    assert_census(
        queue,
        redis_client,
        {
            **{j.id: "processing" for j in [*running, mail]},
            emails[1].id: "waiting:1|emails|concurrency:queue:emails",
        },
    )
    assert redis_client.zrange(queue.keys.parked, 0, -1) == ["1|emails|concurrency:queue:emails"]
    assert not redis_client.exists(f"{queue.prefix}:waiters:{CONCURRENCY}")
    assert not redis_client.exists(f"{queue.prefix}:waiters:{RATE}")
    assert take(queue) is None
    claim = Leases(queue.prefix).claim(["default"], "w", 30)
    assert claim.next_due is None or claim.next_due > time.time(), "no stale list to look at"
    assert sync_customer.delay(1, step=1).created is True, "the purged job's unique key is free"


def test_purging_by_name_keeps_the_other_parked_jobs_of_the_queue(queue, limited, redis_client):
    running, parked = limited
    assert queue.purge("pending", queue="default", name=sync_customer.name) == 2

    assert_census(
        queue,
        redis_client,
        {**{j.id: "processing" for j in running}, parked[0].id: f"waiting:1|default|{RATE}"},
    )
    assert redis_client.zrange(queue.keys.parked, 0, -1) == [f"1|default|{RATE}"]
    assert [limit.waiting for limit in queue.limits()] == [0, 1]


def test_the_console_empties_a_queue_with_its_parked_jobs(operator, queue, limited):
    response = operator.post(
        ACT, {"action": "empty_queue", "queue": "default", "confirmed": "yes"}, follow=True
    )
    assert "Emptied queue default: deleted 3 pending jobs." in content(response)
    assert queue.stats()["states"]["limited"] == 0


# -- claims of one queue are not blinded by the parked jobs of others ----------------------------


@job(queue="emails", concurrency=1, concurrency_key="customer:{customer_id}")
def mail_customer(customer_id: int) -> None:
    pass


def test_many_due_waiting_lists_of_another_queue_do_not_hide_a_queues_own(queue, redis_client):
    leases = Leases(queue.prefix)
    for customer in range(70):  # 70 limits whose jobs wait in "emails", served by nobody now
        mail_customer.delay(customer)
        mail_customer.delay(customer)
    running = [take(queue, ["emails"]) for _ in range(70)]
    for job_ in running:
        leases.complete_job(job_, None)  # each frees a slot: its waiting list is due at once
    first, second = sync_customer.delay(9), sync_customer.delay(9, step=1)
    assert take(queue).id == first.id
    assert take(queue) is None  # parks the second
    leases.complete_job(queue.get_job(first.id), None)  # frees its slot: due now, last of all
    assert redis_client.zcard(queue.keys.parked) == 70

    assert take(queue).id == second.id, "the due list of 'default' is found among the others"
