"""The operations console in the admin, through Django's test client against real Redis: what it
shows, what its actions do, and who may do what. The browser tests are in
tests/test_console_browser.py."""

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from django_jobs.flow import Flow
from django_jobs.job import JobStatus
from django_jobs.worker.leases import Leases
from tests.census import census

DASHBOARD = "/admin/django_jobs/job/"
ACT = "/admin/django_jobs/job/act/"
SURE = "Yes, I\N{RIGHT SINGLE QUOTATION MARK}m sure"

pytestmark = pytest.mark.django_db


def state_url(state, **query):
    url = reverse("admin:django_jobs_job_list", args=[state])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def job_url(job_id):
    return reverse("admin:django_jobs_job_change", args=[job_id])


def staff(username, *perms):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.fixture
def viewer(client, jobs_settings):
    client.force_login(staff("viewer", "view_job"))
    return client


@pytest.fixture
def operator(client, jobs_settings):
    client.force_login(staff("operator", "view_job", "change_job"))
    return client


def fail_job(queue, job_id, error="ValueError: boom", tb="Traceback...\nValueError: boom"):
    """Take ``job_id`` and fail it for good, as a worker would."""
    leases = Leases()
    job = leases.dequeue(queue.queues, "host.1:0", 30)
    assert job.id == job_id
    leases.fail_job(job, error, tb, retry=False)


def assert_each_job_in_one_place(queue, redis_client):
    found = census(queue, redis_client)
    assert all(len(places) == 1 for places in found.values()), found
    records = {k.rsplit(":", 1)[1] for k in redis_client.scan_iter(match=f"{queue.prefix}:job:*")}
    assert records == set(found)


def content(response):
    return response.content.decode()


# -- who sees what ----------------------------------------------------------------------------


def test_the_admin_index_links_the_console_for_a_user_who_may_view_jobs(viewer):
    page = content(viewer.get("/admin/"))
    assert f'href="{DASHBOARD}"' in page
    assert ">Jobs<" in page


def test_staff_without_the_permissions_get_403_and_no_link(client, jobs_settings):
    client.force_login(staff("nobody"))
    assert DASHBOARD not in content(client.get("/admin/"))
    assert client.get(DASHBOARD).status_code == 403
    assert client.get(state_url("failed")).status_code == 403


def test_a_view_only_user_sees_no_action_and_a_forged_post_is_refused(viewer, queue):
    job = queue.enqueue("tests.testapp.jobs.add", [1, 2])
    page = content(viewer.get(job_url(job.id)))
    assert "Cancel job" not in page
    assert 'name="action"' not in page
    assert 'name="action"' not in content(viewer.get(state_url("pending")))
    forged = viewer.post(ACT, {"action": "cancel", "ids": [job.id], "confirmed": "yes"})
    assert forged.status_code == 403
    assert queue.get_job(job.id).status is JobStatus.PENDING


def test_an_anonymous_visitor_is_sent_to_the_login_page(client, jobs_settings):
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_actions_need_the_csrf_token(jobs_settings, queue):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(staff("operator", "view_job", "change_job"))
    job = queue.enqueue("tests.testapp.jobs.add", [1, 2])
    response = client.post(ACT, {"action": "cancel", "ids": [job.id], "confirmed": "yes"})
    assert response.status_code == 403
    assert queue.get_job(job.id).status is JobStatus.PENDING


# -- the dashboard ----------------------------------------------------------------------------


def test_the_dashboard_counts_jobs_per_queue_priority_and_state(viewer, queue):
    for _ in range(3):
        queue.enqueue("tests.testapp.jobs.add", [1, 2], queue="emails", priority="high")
    queue.enqueue("tests.testapp.jobs.add", [1, 2], delay=600)
    page = content(viewer.get(DASHBOARD))
    emails = re.search(
        r'<th scope="row"><a href="[^"]*queue=emails">emails</a></th>(.*?)</tr>', page, re.S
    )
    cells = re.findall(r"<td>(\d+)", emails.group(1))
    assert cells[:5] == ["0", "3", "0", "0", "3"]  # critical, high, normal, low, ready
    assert "No live worker" in page  # nobody serves "emails"
    assert "has 3 pending jobs but no live worker serves it" in page
    assert re.search(r'jobs-count">4</span> Pending', page)
    assert re.search(r'jobs-count">1</span> Scheduled', page)


def test_the_dashboard_says_when_redis_does_not_answer(viewer, configure):
    configure(REDIS_URL="redis://127.0.0.1:1/0")
    response = viewer.get(DASHBOARD)
    assert response.status_code == 200
    assert "Redis does not answer" in content(response)


def test_the_dashboard_charts_the_last_hour_from_the_minute_counters(viewer, queue):
    queue.enqueue("tests.testapp.jobs.add", [1, 2])
    leases = Leases()
    leases.complete_job(leases.dequeue(queue.queues, "host.1:0", 30), 3)
    page = content(viewer.get(DASHBOARD))
    assert "1 attempts completed, 0 failed" in page
    assert page.count('class="jobs-bar-done"') == 60


def test_searching_an_id_opens_the_job_and_anything_else_lists_that_users_jobs(viewer, queue):
    job = queue.enqueue("tests.testapp.jobs.add", [1, 2], user_id=42)
    assert viewer.get(DASHBOARD, {"q": job.id})["Location"] == job_url(job.id)
    listed = viewer.get(DASHBOARD, {"q": "42"}, follow=True)
    assert job.id in content(listed)
    assert "Jobs of user 42" in content(listed)


# -- lists ------------------------------------------------------------------------------------


def test_the_failed_list_filters_by_name_and_pages_on(viewer, queue, monkeypatch):
    monkeypatch.setattr("django_jobs.admin.pages.PAGE_SIZE", 2)
    ids = [queue.enqueue("tests.testapp.jobs.fail", ["x"]).id for _ in range(3)]
    other = queue.enqueue("tests.testapp.jobs.add", [1, 2]).id
    for job_id in [*ids, other]:
        fail_job(queue, job_id)
    first = content(viewer.get(state_url("failed", name="tests.testapp.jobs.fail")))
    assert other not in first
    shown = [i for i in ids if i in first]
    assert len(shown) == 2
    next_url = re.search(r'href="([^"]+)" class="jobs-next"', first).group(1).replace("&amp;", "&")
    second = content(viewer.get(next_url))
    assert [i for i in ids if i in second and i not in shown]


def test_an_unknown_state_or_queue_is_said_and_nothing_breaks(viewer, queue):
    response = viewer.get(state_url("lost"), follow=True)
    assert "There is no job state" in content(response)
    response = viewer.get(state_url("pending", queue="nope"))
    assert "There is no queue" in content(response)


# -- a job's page -----------------------------------------------------------------------------


def test_the_job_page_shows_arguments_traceback_and_timeline_escaped(viewer, queue):
    job = queue.enqueue("tests.testapp.jobs.fail", ["<script>alert(1)</script>"], user_id=7)
    fail_job(queue, job.id, error="ValueError: <b>bad</b>", tb="Traceback\n  <img src=x>")
    page = content(viewer.get(job_url(job.id)))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;bad&lt;/b&gt;" in page
    assert "&lt;img src=x&gt;" in page
    for step in ("Enqueued", "Attempt 1 started", "Attempt 1 failed", "Failed"):
        assert step in page


def test_an_unknown_job_sends_back_to_the_dashboard_with_a_message(viewer):
    response = viewer.get(job_url("no-such-job"), follow=True)
    assert "There is no job with id" in content(response)


# -- actions ----------------------------------------------------------------------------------


def test_requeueing_a_failed_job_asks_first_then_requeues_it(operator, queue, redis_client):
    job = queue.enqueue("tests.testapp.jobs.fail", ["x"])
    fail_job(queue, job.id)
    asked = operator.post(ACT, {"action": "requeue", "ids": [job.id], "next": job_url(job.id)})
    assert asked.status_code == 200
    assert SURE in content(asked)
    assert queue.get_job(job.id).status is JobStatus.FAILED  # nothing done yet
    done = operator.post(
        ACT, {"action": "requeue", "ids": [job.id], "confirmed": "yes", "next": job_url(job.id)}
    )
    assert done["Location"] == job_url(job.id)
    assert queue.get_job(job.id).status is JobStatus.PENDING
    assert_each_job_in_one_place(queue, redis_client)


def test_a_requeue_says_which_job_holds_the_unique_key_of_a_dead_job_it_left(
    operator, queue, redis_client
):
    unique = Flow.of(unique_key="invoice:9")
    dead = queue.enqueue("tests.testapp.jobs.fail", ["x"], flow=unique, max_retries=0)
    fail_job(queue, dead.id)
    other = queue.enqueue("tests.testapp.jobs.fail", ["y"], max_retries=0)
    fail_job(queue, other.id)
    holder = queue.enqueue("tests.testapp.jobs.fail", ["z"], flow=unique)
    held = f"Left job {dead.id} in the dead letters: its unique key is held by job {holder.id}."

    selected = operator.post(
        ACT, {"action": "requeue", "ids": [dead.id, other.id], "confirmed": "yes"}, follow=True
    )
    assert "Requeued 1 job." in content(selected)
    assert held in content(selected)
    assert queue.get_job(dead.id).status is JobStatus.FAILED
    assert queue.get_job(other.id).status is JobStatus.PENDING
    every = operator.post(ACT, {"action": "requeue_all", "confirmed": "yes"}, follow=True)
    assert "Requeued 0 dead jobs." in content(every)
    assert held in content(every)
    assert census(queue, redis_client) == {
        dead.id: ["dead"],
        other.id: ["queue:default:normal"],
        holder.id: ["queue:default:normal"],
    }
    assert_each_job_in_one_place(queue, redis_client)


def test_cancel_and_delete_from_a_list_selection(operator, queue, redis_client):
    pending = [queue.enqueue("tests.testapp.jobs.add", [i, i]).id for i in range(3)]
    operator.post(ACT, {"action": "cancel", "ids": pending[:2], "confirmed": "yes"})
    statuses = [queue.get_job(i).status for i in pending]
    assert statuses == [JobStatus.CANCELLED, JobStatus.CANCELLED, JobStatus.PENDING]
    operator.post(ACT, {"action": "delete", "ids": pending, "confirmed": "yes"})
    assert all(queue.get_job(i) is None for i in pending)
    assert_each_job_in_one_place(queue, redis_client)


def test_deleting_a_running_job_is_refused_with_a_message(operator, queue):
    job = queue.enqueue("tests.testapp.jobs.add", [1, 2])
    Leases().dequeue(queue.queues, "host.1:0", 30)
    response = operator.post(
        ACT, {"action": "delete", "ids": [job.id], "confirmed": "yes"}, follow=True
    )
    assert "cancel it first" in content(response)
    assert queue.get_job(job.id).status is JobStatus.RUNNING


def test_requeue_all_dead_and_empty_a_queue(operator, queue, redis_client):
    dead = [queue.enqueue("tests.testapp.jobs.fail", ["x"]).id for _ in range(3)]
    for job_id in dead:
        fail_job(queue, job_id)
    operator.post(ACT, {"action": "requeue_all", "confirmed": "yes"})
    assert queue.stats()["states"]["failed"] == 0
    queue.enqueue("tests.testapp.jobs.add", [1, 2], queue="emails")
    response = operator.post(
        ACT, {"action": "empty_queue", "queue": "emails", "confirmed": "yes"}, follow=True
    )
    assert "Emptied queue emails: deleted 1 pending job." in content(response)
    assert queue.stats()["queues"]["emails"]["normal"] == 0
    assert queue.stats()["queues"]["default"]["normal"] == 3
    assert_each_job_in_one_place(queue, redis_client)


def test_a_bad_action_or_selection_is_refused(operator, queue):
    assert operator.get(ACT).status_code == 405
    assert operator.post(ACT, {"action": "explode"}).status_code == 400
    assert operator.post(ACT, {"action": "cancel", "ids": ["bad id"]}).status_code == 400
    assert operator.post(ACT, {"action": "empty_queue", "queue": "nope"}).status_code == 400


def test_next_never_leaves_the_site(operator, queue):
    job = queue.enqueue("tests.testapp.jobs.add", [1, 2])
    response = operator.post(
        ACT,
        {"action": "cancel", "ids": [job.id], "confirmed": "yes", "next": "https://evil.example/"},
    )
    assert response["Location"] == DASHBOARD


# -- cost ---------------------------------------------------------------------------------------


@pytest.fixture
def round_trips(monkeypatch):
    """Counts the Redis round trips (script calls and commands) this process makes."""
    from django_jobs.store import execute

    sent = []
    real = execute.execute

    def counted(client, step):
        sent.append(step)
        return real(client, step)

    monkeypatch.setattr(execute, "execute", counted)
    return sent


def test_each_page_costs_a_fixed_number_of_round_trips_whatever_the_number_of_jobs(
    viewer, queue, round_trips, configure, redis_client
):
    def cost(url):
        round_trips.clear()
        assert viewer.get(url).status_code == 200
        return len(round_trips)

    pages = [DASHBOARD, state_url("pending"), state_url("completed", name="tests.testapp.jobs.add")]
    before = [cost(url) for url in pages]
    # With a limit that holds jobs back: the dashboard reads the limits in the same round trip.
    configure(QUEUE_LIMITS={"emails": {"concurrency": 1}})
    queue.enqueue_many(
        [queue.build_job("tests.testapp.jobs.add", [i, i], queue="emails") for i in range(500)]
    )
    leases = Leases()
    leases.dequeue(["emails"], "host.1:0", 30)
    assert leases.dequeue(["emails"], "host.1:0", 30) is None
    assert queue.stats()["states"]["limited"] > 0
    assert [cost(url) for url in pages] == before == [3, 2, 2]
    parked = redis_client.lindex(queue.keys.waiting("1|emails|concurrency:queue:emails"), 0)
    assert cost(job_url(parked)) == 2


def test_redis_going_away_mid_use_gives_a_message_not_an_error_page(
    client, jobs_settings, private_redis
):
    client.force_login(staff("operator", "view_job", "change_job"))
    from django_jobs import JobQueue

    jobs = JobQueue()
    job = jobs.enqueue("tests.testapp.jobs.add", [1, 2])
    assert client.get(job_url(job.id)).status_code == 200
    private_redis.kill()
    for url in (DASHBOARD, state_url("pending")):
        response = client.get(url)
        assert response.status_code == 200
        assert "Redis does not answer" in content(response)
    response = client.post(
        ACT, {"action": "cancel", "ids": [job.id], "confirmed": "yes"}, follow=True
    )
    assert "Redis does not answer" in content(response)
    assert "may have been done in part" in content(response)
    response = client.get(job_url(job.id), follow=True)
    assert "Redis does not answer" in content(response)


def test_a_workflow_step_shows_its_neighbours_and_its_groups_progress_in_fixed_round_trips(
    viewer, queue, round_trips, configure
):
    from django_jobs import chain, group
    from tests.testapp import jobs

    configure(ENQUEUE_ON_COMMIT=False)  # the test's transaction never commits
    handle = chain(
        jobs.add.s(1, 2), group(jobs.add.s(i) for i in range(300)), jobs.gather.s()
    ).delay()
    first, members, callback = handle.steps
    Leases(queue.prefix).complete_job(Leases(queue.prefix).dequeue(), 3)
    Leases(queue.prefix).complete_job(Leases(queue.prefix).dequeue(), 3)

    round_trips.clear()
    page = content(viewer.get(job_url(members.members[5].id)))
    assert len(round_trips) == 4, "the job, the workers, the step before it and its group"
    assert "member 6 of 300" in page
    assert "1 of 300 done" in page
    assert first.id in page
    assert callback.id in page
    page = content(viewer.get(job_url(callback.id)))
    assert "Waits for" in page
    assert "a group of 300: 1 of 300 done" in page
    assert "waiting" in content(viewer.get(state_url("waiting")))
    page = content(viewer.get(job_url(first.id)))
    assert "Then" in page
