"""The jobs console in a real browser: Playwright for Python driving Debian's Chromium
(/usr/bin/chromium) against pytest-django's live server, with real worker and scheduler
processes under the test's key prefix.

Set JOBS_SCREENSHOTS to a folder (``docs/img``) to save the screenshots the README shows.
Without Chromium or Playwright these tests skip, except under CI (``CI=true``), where
``.ci/run`` installs both and a missing one is a failure.
"""

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User

from django_jobs import JobQueue
from django_jobs.job import JobStatus
from django_jobs.models import ScheduledTask
from django_jobs.worker.leases import Leases
from tests.processes import Processes, wait_until

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = os.environ.get("JOBS_SCREENSHOTS")

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    sync_playwright = None

if (sync_playwright is None or not shutil.which(CHROMIUM)) and not os.environ.get("CI"):
    pytest.skip("Playwright or /usr/bin/chromium is missing", allow_module_level=True)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def chromium():
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still synchronous, which Django would refuse without this.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def console(django_db_setup, live_server, chromium, jobs_settings, workers):
    """A function that logs a new staff user with ``perms`` in and returns their page.

    ``django_db_setup`` comes before ``live_server``: made while the database's name was still
    the settings' ``:memory:``, the live server would share this thread's SQLite connection
    with its own threads, which SQLite does not survive (crashes, "API misuse")."""
    contexts = []

    def log_in(username="operator", perms=("view_job", "change_job"), **options):
        user = User.objects.create_user(username, password="pw-" + username, is_staff=True)
        for codename in perms:
            user.user_permissions.add(Permission.objects.get(codename=codename))
        context = chromium.new_context(**{"viewport": {"width": 1280, "height": 900}, **options})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", username)
        page.fill("#id_password", "pw-" + username)
        page.click("input[type=submit]")
        expect(page.locator("#site-name")).to_be_visible()
        page.base = live_server.url
        return page

    yield log_in
    for context in contexts:
        context.close()


def shot(page, name):
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def card(page, label):
    """The number on the dashboard's card of ``label``."""
    text = page.locator(".jobs-card", has_text=label).first.locator(".jobs-count").inner_text()
    return int(text)


def test_an_operator_follows_a_failed_job_from_the_dashboard_to_its_requeued_completion(
    console, workers, ledger
):
    page = console()
    page.click("#content-main a[href$='/django_jobs/job/'] >> nth=0")  # the index links it
    expect(page).to_have_url(re.compile(r"/admin/django_jobs/job/$"))
    before = card(page, "Pending")
    jobs = JobQueue()
    for i in range(3):
        jobs.enqueue("tests.testapp.jobs.add", [i, i], queue="emails", delay=3600)
    page.reload()
    assert card(page, "Pending") == before + 3

    workers.start("--queue", "default", "--concurrency", "2")
    failing = jobs.enqueue("tests.testapp.jobs.fail_until_fixed", ["invoice"])
    for i in range(5):
        jobs.enqueue("tests.testapp.jobs.add", [i, 1])
    wait_until(lambda: jobs.get_job(failing.id).status is JobStatus.FAILED, message="dead")
    # The page is read once: the worker's heartbeat must be in before it loads. Its job
    # processes are forked and may finish all of this before the supervisor's first beat on a
    # loaded machine.
    wait_until(lambda: any(w.alive for w in jobs.workers()), message="the worker's heartbeat")
    page.goto(f"{page.base}/admin/django_jobs/job/")
    expect(page.locator("#workers")).to_contain_text("Alive")
    shot(page, "console-dashboard")

    page.locator(".jobs-card a", has_text="Failed").click()
    page.locator("#result_list a", has_text=failing.id[:10]).click()
    expect(page.locator(".jobs-traceback").first).to_contain_text("invoice is not fixed yet")
    expect(page.locator(".jobs-traceback").first).to_contain_text("Traceback")
    shot(page, "console-job")

    (ledger / "invoice.fixed").touch()
    page.click("button:has-text('Requeue job')")
    expect(page.locator("#content")).to_contain_text("Requeue these dead jobs")
    page.click("input[value='Yes, I\N{RIGHT SINGLE QUOTATION MARK}m sure']")
    expect(page.locator(".messagelist")).to_contain_text("Requeued 1 job.")
    wait_until(lambda: jobs.get_job(failing.id).status is JobStatus.COMPLETED, message="done")
    page.reload()
    expect(page.locator(".jobs-fields")).to_contain_text("completed")
    expect(page.locator(".jobs-timeline")).to_contain_text("Attempt 1 failed")


def test_an_operator_cancels_a_running_job(console, workers, ledger):
    workers.start("--queue", "default")
    jobs = JobQueue()
    job = jobs.enqueue("tests.testapp.jobs.sleep", [60, "long"])
    wait_until(lambda: (ledger / "long.started").exists(), message="the job to start")
    page = console()
    page.goto(f"{page.base}/admin/django_jobs/job/state/running/")
    shot(page, "console-running")
    page.locator("#result_list a", has_text=job.id[:10]).click()
    page.click("button:has-text('Cancel job')")
    page.click("input[value='Yes, I\N{RIGHT SINGLE QUOTATION MARK}m sure']")
    expect(page.locator(".messagelist")).to_contain_text(
        "Asked the worker of 1 running job to stop it"
    )
    wait_until(lambda: jobs.get_job(job.id).status is JobStatus.CANCELLED, message="cancelled")
    page.reload()
    expect(page.locator(".jobs-fields")).to_contain_text("cancelled")


def test_an_operator_selects_a_whole_page_and_cancels_it(console):
    jobs = JobQueue()
    ids = [jobs.enqueue("tests.testapp.jobs.add", [i, i], queue="reports").id for i in range(4)]
    page = console()
    page.goto(f"{page.base}/admin/django_jobs/job/state/pending/?queue=reports")
    page.check("#action-toggle")  # the admin's own "select all"
    expect(page.locator(".action-counter")).to_contain_text("4 of 4 selected")
    page.select_option("select[name=action]", "cancel")
    page.click("button[name=index]")
    expect(page.locator(".jobs-confirm-list li")).to_have_count(4)
    page.click("input[value='Yes, I\N{RIGHT SINGLE QUOTATION MARK}m sure']")
    expect(page.locator(".messagelist")).to_contain_text("Cancelled 4 jobs.")
    assert {jobs.get_job(i).status for i in ids} == {JobStatus.CANCELLED}
    expect(page).to_have_url(re.compile(r"state/pending/\?queue=reports$"))


def test_an_operator_finds_the_jobs_a_limit_holds_back_and_cancels_one(console, jobs_settings):
    limits = {"QUEUE_LIMITS": {"reports": {"concurrency": 1}}}
    jobs_settings.DJANGO_JOBS = {**jobs_settings.DJANGO_JOBS, **limits}
    jobs = JobQueue()
    ids = [jobs.enqueue("tests.testapp.jobs.add", [i, i], queue="reports").id for i in range(3)]
    leases = Leases()
    assert leases.dequeue(["reports"], "w", 60).id == ids[0]
    assert leases.dequeue(["reports"], "w", 60) is None, "the other two are parked"
    page = console()
    page.goto(f"{page.base}/admin/django_jobs/job/state/pending/?queue=reports")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    for row in (rows.nth(0), rows.nth(1)):
        expect(row.locator(".jobs-limit")).to_have_text("waiting on concurrency:queue:reports")
    shot(page, "console-pending-limited")
    page.check(f"input.action-select[value='{ids[1]}']")
    page.select_option("select[name=action]", "cancel")
    page.click("button[name=index]")
    page.click("input[value='Yes, I\N{RIGHT SINGLE QUOTATION MARK}m sure']")
    expect(page.locator(".messagelist")).to_contain_text("Cancelled 1 job.")
    expect(rows).to_have_count(1)
    assert [j.status for j in map(jobs.get_job, ids)] == [
        JobStatus.RUNNING,
        JobStatus.CANCELLED,
        JobStatus.PENDING,
    ]


def test_a_view_only_user_sees_everything_and_no_button(console, workers):
    jobs = JobQueue()
    job = jobs.enqueue("tests.testapp.jobs.add", [1, 2])
    page = console("viewer", perms=("view_job",))
    page.goto(f"{page.base}/admin/django_jobs/job/state/pending/")
    expect(page.locator("#result_list")).to_contain_text(job.id[:10])
    assert page.locator("select[name=action]").count() == 0
    assert page.locator("input[type=checkbox]").count() == 0
    page.goto(f"{page.base}/admin/django_jobs/job/{job.id}/")
    expect(page.locator(".jobs-fields")).to_contain_text("pending")
    assert page.locator(".object-tools button").count() == 0
    shot(page, "console-view-only")


def test_the_console_follows_dark_mode_and_narrow_screens(console, workers):
    JobQueue().enqueue("tests.testapp.jobs.add", [1, 2], queue="reports")
    page = console(color_scheme="dark", viewport={"width": 390, "height": 844})
    page.goto(f"{page.base}/admin/django_jobs/job/")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)", "the admin's dark theme applies"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 1, "nothing makes the page wider than a phone's screen"
    shot(page, "console-dark-narrow")


def test_disabling_a_scheduled_task_in_the_admin_stops_its_runs(console, prefix, tmp_path):
    from django.db import connection

    task = ScheduledTask.objects.create(
        name="tick",
        job_name="tests.record",
        schedule_type="interval",
        interval_seconds=1,
        args=["tick"],
    )
    group = Processes(tmp_path / "scheduler", prefix, db=connection.settings_dict["NAME"])
    try:
        group.start("--verbosity", "2", command="runscheduler")
        jobs = JobQueue()
        try:
            wait_until(lambda: len(jobs.task_runs("tick")) >= 2, message="two runs")
        except AssertionError:
            raise AssertionError(group.logs()) from None
        page = console(perms=("view_job", "view_scheduledtask", "change_scheduledtask"))
        page.goto(f"{page.base}/admin/django_jobs/scheduledtask/{task.pk}/change/")
        expect(page.locator(".field-recent_runs")).to_contain_text("pending")
        page.goto(f"{page.base}/admin/django_jobs/scheduledtask/")
        page.check(f"input[name=_selected_action][value='{task.pk}']")
        page.select_option("select[name=action]", "disable_tasks")
        page.click("button[name=index]")
        expect(page.locator(".messagelist")).to_contain_text("Disabled 1 task.")
        count = len(jobs.task_runs("tick"))
        time.sleep(3)
        # A run the scheduler was firing while the task was being disabled may still land.
        assert len(jobs.task_runs("tick")) <= count + 1, group.logs()
    finally:
        group.close()
