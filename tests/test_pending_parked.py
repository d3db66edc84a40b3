"""Pending jobs that a rate or concurrency limit holds back (parked on waiting lists) are listed
with the other pending ones: ``JobQueue.page(PENDING)``, the console's Pending list (with the
limit that holds each back, and its cancel action) and ``manage.py jobs list``; against real
Redis, with jobs parked by real claims."""

import re

import pytest

from django_jobs import JobStatus, browse, job
from django_jobs.worker.leases import Leases
from tests.census import assert_census
from tests.cli import jobs_cli, jobs_json
from tests.test_console import ACT, content, staff, state_url
from tests.test_shards import sharded, slots  # noqa: F401 (fixtures)


@job(concurrency=1, concurrency_key="customer:{customer}")
def sync_account(customer: int, step: int = 0) -> None:
    pass


@job(queue="emails", rate_limit="1/m")
def send_mail(n: int) -> None:
    pass


@job
def plain(n: int = 0) -> int:
    return n


CUSTOMER_1, CUSTOMER_2 = "concurrency:customer:1", "concurrency:customer:2"
RATE = f"rate:{send_mail.name}"


def take(queue, queues=("default",)):
    return Leases(queue.prefix).dequeue(list(queues), worker_id="w", lease=30)


@pytest.fixture
def mix(queue):
    """Pending jobs of every kind, by name: parked ("h2", "h3" on customer 1 at normal
    priority, "h5" on customer 2 at high, "m2" on the rate limit of queue emails), ready
    ("r1", "r2" and "low" in default, "e1" in emails) and delayed ("d1"). "h1", "h4" and "m1"
    run. ``queue.enqueue()``, not ``.delay()``: console tests run inside a transaction."""
    jobs = {f"h{n}": queue.enqueue(sync_account.name, [1], {"step": n}) for n in (1, 2, 3)}
    assert take(queue).id == jobs["h1"].id
    assert take(queue) is None, "parks h2 and h3: customer 1 has its one slot taken"
    for n in (4, 5):
        jobs[f"h{n}"] = queue.enqueue(sync_account.name, [2], {"step": n}, priority="high")
    assert take(queue).id == jobs["h4"].id
    assert take(queue) is None, "parks h5"
    jobs.update({f"m{n}": queue.enqueue(send_mail.name, [n]) for n in (1, 2)})
    assert take(queue, ["emails"]).id == jobs["m1"].id
    assert take(queue, ["emails"]) is None, "parks m2: the one token a minute is spent"
    jobs["r1"], jobs["r2"] = queue.enqueue(plain.name, [1]), queue.enqueue(plain.name, [2])
    jobs["e1"] = queue.enqueue(plain.name, [3], queue="emails")
    jobs["low"] = queue.enqueue(plain.name, [4], priority="low")
    jobs["d1"] = queue.enqueue(plain.name, [5], delay=60)
    return {name: handle.id for name, handle in jobs.items()}


# The order workers take them in: by priority, then by queue, the parked jobs before the ready.
LISTED = ["h5", "h2", "h3", "r1", "r2", "m2", "e1", "low", "d1"]


def names(mix, jobs):
    by_id = {job_id: name for name, job_id in mix.items()}
    return [by_id[j.id] for j in jobs]


def page_through(browser, limit, **filters):
    """Every page of PENDING from the start: (the jobs, the pages' totals)."""
    jobs, totals, cursor = [], set(), 0
    while cursor is not None:
        page = browser.page(JobStatus.PENDING, cursor=cursor, limit=limit, **filters)
        assert len(page.jobs) <= limit
        jobs += page.jobs
        totals.add(page.total)
        cursor = page.cursor
    return jobs, totals


def test_pending_page_lists_jobs_held_back_by_a_limit(queue, mix):
    page = queue.page(JobStatus.PENDING)

    assert names(mix, page.jobs) == LISTED
    assert (page.total, page.cursor, page.parked_unread) == (9, None, 0)
    waiting = {name: j.waiting_on for name, j in zip(LISTED, page.jobs, strict=True)}
    assert waiting == {
        "h5": CUSTOMER_2,
        "h2": CUSTOMER_1,
        "h3": CUSTOMER_1,
        "m2": RATE,
        **dict.fromkeys(["r1", "r2", "e1", "low", "d1"]),
    }
    assert all(j.status is JobStatus.PENDING for j in page.jobs)
    assert page.total == queue.stats()["states"]["pending"]


@pytest.mark.parametrize("limit", [1, 2, 3, 4])
def test_paging_through_parked_ready_and_delayed_jobs_skips_and_repeats_none(queue, mix, limit):
    jobs, totals = page_through(queue, limit)

    assert names(mix, jobs) == LISTED
    assert totals == {9}
    for n in range(0, 9, limit):  # unfiltered, page n starts at n * limit
        assert names(mix, queue.page("pending", cursor=n, limit=limit).jobs) == LISTED[n:][:limit]


@pytest.mark.parametrize("limit", [1, 2, 10])
def test_queue_and_name_filters_keep_the_parked_jobs_of_that_queue_and_name(queue, mix, limit):
    emails, emails_totals = page_through(queue, limit, queue="emails")
    synced, _ = page_through(queue, limit, name=sync_account.name)
    mails, _ = page_through(queue, limit, queue="emails", name=send_mail.name)

    assert names(mix, emails) == ["m2", "e1"]
    assert emails_totals == {3}, "the emails lists (one waiting list, one ready) and the delayed"
    assert names(mix, synced) == ["h5", "h2", "h3"]
    assert names(mix, mails) == ["m2"]


def test_a_page_expands_a_bounded_number_of_waiting_lists(queue, mix, monkeypatch, redis_client):
    monkeypatch.setattr(browse, "PARKED_LISTS", 2)
    first_two = redis_client.zrange(queue.keys.parked, 0, 1)
    listed = {
        f"1|default|{CUSTOMER_1}": ["h2", "h3"],
        f"2|default|{CUSTOMER_2}": ["h5"],
        f"1|emails|{RATE}": ["m2"],
    }

    jobs, totals = page_through(queue, 2)

    shown = {name for member in first_two for name in listed[member]}
    assert names(mix, jobs) == [n for n in LISTED if n in shown or n[0] not in "hm"]
    assert totals == {5 + len(shown)}, "the lists left out are left out of the total"
    assert queue.page("pending").parked_unread == 1
    assert queue.stats()["states"]["limited"] == len(shown), "stats count what a page lists"
    assert sum(limit["waiting"] for limit in queue.stats()["limits"]) == 4, "limits count all"


def test_stats_count_the_jobs_a_page_lists_however_few_limits_they_read(queue, mix, monkeypatch):
    monkeypatch.setattr(browse, "LIMITS_SHOWN", 1)  # fewer limits read than hold jobs back
    jobs, _ = page_through(queue, 50)
    listed = [job for job in jobs if job.waiting_on]

    stats = queue.stats()

    assert len(stats["limits"]) == 1
    assert stats["states"]["limited"] == len(listed) == 4


def test_the_order_follows_the_claims(queue, mix):
    """A worker serving default and emails takes the parked jobs as they are listed once
    their limits let them start."""
    leases = Leases(queue.prefix)
    running = [queue.get_job(mix[n]) for n in ("h4", "h1")]
    for held in running:
        leases.complete_job(held, None)  # frees customer 2's slot, then customer 1's

    taken = [take(queue, ["default", "emails"]) for _ in range(6)]

    assert names(mix, taken) == ["h5", "h2", "r1", "r2", "e1", "low"]
    assert queue.get_job(mix["h3"]).waiting_on == CUSTOMER_1, "h2 holds the slot again"


def test_sharded_pages_list_each_shards_parked_jobs(sharded, slots):  # noqa: F811
    mails = [sharded.enqueue(send_mail.name, [n]) for n in (1, 2)]
    ready = sharded.enqueue(plain.name, [1])
    leases = Leases(sharded.prefix)
    assert leases.dequeue(["emails"], worker_id="w", lease=30).id == mails[0].id
    assert leases.dequeue(["emails"], worker_id="w", lease=30) is None

    page = sharded.page(JobStatus.PENDING, limit=1)
    rest = sharded.page(JobStatus.PENDING, cursor=page.cursor, limit=1)

    assert [j.id for j in page.jobs + rest.jobs] == [ready.id, mails[1].id]
    assert (rest.total, rest.cursor) == (2, None)
    assert rest.jobs[0].waiting_on == RATE
    assert [j.id for j in sharded.list_jobs(JobStatus.PENDING, queue="emails")] == [mails[1].id]
    assert "page" in slots


# -- the console -------------------------------------------------------------------------------


@pytest.fixture
def operator(client, db, jobs_settings):
    client.force_login(staff("parked-operator", "view_job", "change_job"))
    return client


def test_the_console_pending_list_shows_the_limit_that_holds_each_job_back(operator, mix):
    page = content(operator.get(state_url("pending")))

    rows = re.findall(r'<tr>\s*<td class="action-checkbox">(.*?)</tr>', page, re.S)
    listed = [re.search(r'value="([^"]+)"', row).group(1) for row in rows]
    assert listed == [mix[n] for n in LISTED]
    limits = [
        re.findall(r'class="jobs-warn jobs-limit"[^>]*>waiting on <code>([^<]+)</code>', row)
        for row in rows
    ]
    assert limits == [[CUSTOMER_2], [CUSTOMER_1], [CUSTOMER_1], [], [], [RATE], [], [], []]
    assert "9 jobs" in page
    assert "not listed" not in page


def test_the_console_says_when_waiting_lists_are_left_out(operator, mix, monkeypatch):
    monkeypatch.setattr(browse, "PARKED_LISTS", 1)
    page = content(operator.get(state_url("pending", queue="default")))
    assert "2 more waiting lists of jobs held back by a limit are not listed" in page


def test_cancelling_parked_jobs_selected_in_the_pending_list(operator, queue, mix, redis_client):
    operator.post(ACT, {"action": "cancel", "ids": [mix["h2"], mix["h5"]], "confirmed": "yes"})

    assert queue.get_job(mix["h2"]).status is JobStatus.CANCELLED
    assert queue.get_job(mix["h5"]).status is JobStatus.CANCELLED
    kept = dict.fromkeys(("h1", "h4", "m1"), "processing")
    kept.update({"h3": f"waiting:1|default|{CUSTOMER_1}", "m2": f"waiting:1|emails|{RATE}"})
    kept.update(dict.fromkeys(("r1", "r2"), "queue:default:normal"))
    kept.update({"e1": "queue:emails:normal", "low": "queue:default:low", "d1": "scheduled"})
    kept.update({"h2": "cancelled", "h5": "cancelled"})
    assert_census(queue, redis_client, {mix[name]: where for name, where in kept.items()})
    assert set(redis_client.zrange(queue.keys.parked, 0, -1)) == {
        f"1|default|{CUSTOMER_1}",
        f"1|emails|{RATE}",
    }, "customer 2's emptied waiting list left the index"
    listed = queue.page(JobStatus.PENDING)
    assert names(mix, listed.jobs) == [n for n in LISTED if n not in ("h2", "h5")]


# -- manage.py jobs list -----------------------------------------------------------------------


def test_jobs_list_shows_the_parked_jobs_and_their_limit_in_text_and_json(queue, mix):
    text = jobs_cli("list", "--limit", "4")
    data = jobs_json("list", "--state", "pending")

    lines = text.splitlines()
    assert [line.split()[0] for line in lines[1:5]] == [mix[n] for n in LISTED[:4]]
    assert re.search(rf"{mix['h5']}\s+pending\s+.*waiting on limit {CUSTOMER_2}$", lines[1])
    assert "waiting on" not in lines[4], "r1 is ready"
    assert "4 shown of 9 pending jobs." in text
    assert [j["id"] for j in data["jobs"]] == [mix[n] for n in LISTED]
    assert [j["waiting_on"] for j in data["jobs"]][:6] == [
        CUSTOMER_2, CUSTOMER_1, CUSTOMER_1, None, None, RATE,
    ]  # fmt: skip
    assert (data["total"], data["parked_unread"]) == (9, 0)


def test_jobs_list_says_when_waiting_lists_are_left_out(queue, mix, monkeypatch):
    monkeypatch.setattr(browse, "PARKED_LISTS", 2)
    text = jobs_cli("list")
    assert "Not listed: the jobs of 1 more waiting list of jobs held back by a limit" in text
    assert jobs_json("list")["parked_unread"] == 1
