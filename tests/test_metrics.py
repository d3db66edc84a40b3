"""Prometheus metrics: the cluster's counters (kept in Redis by the scripts that make each
transition) and gauges (one stats() call) served by the metrics view, and a worker's run and
wait time histograms served by ``runworker --metrics-port`` with its processes added up. Each
scrapes after a known workload and asserts the exact numbers."""

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser, Permission, User
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory
from prometheus_client.parser import text_string_to_metric_families

from django_jobs.checks import check_settings
from django_jobs.conf import InvalidSetting, jobs_settings
from django_jobs.metrics import views
from django_jobs.worker.leases import Leases
from tests.processes import REPO, wait_until
from tests.redis_server import free_port

TOKEN = "s3cret-token-of-the-tests"
ADD, FAIL, SLEEP = "tests.testapp.jobs.add", "tests.testapp.jobs.fail", "tests.testapp.jobs.sleep"


def samples(text):
    """{(sample name, (sorted labels)): value} of a scrape."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(request_headers=None, user=None):
    request = RequestFactory().get("/metrics/", headers=request_headers or {})
    request.user = user or AnonymousUser()
    return views.metrics(request)


def scrape_view():
    response = get({"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    return samples(response.content.decode())


@pytest.fixture
def token(configure, jobs_settings):
    configure(METRICS_TOKEN=TOKEN)


def test_the_view_counts_each_transition_by_queue_and_job_name_and_gauges_the_states(queue, token):
    leases = Leases(queue.prefix)
    queue.enqueue_many(
        [queue.build_job(ADD, [i, 1]) for i in range(3)]
        + [queue.build_job(ADD, [9, 9], delay=3600)]
        + [queue.build_job(FAIL, ["boom"], queue="emails", max_retries=r) for r in (1, 0)]
    )
    done = leases.dequeue(["default"])
    assert leases.complete_job(done, 3)
    done.lease_token, done.worker_id = "not-the-lease", "another-worker"
    assert not leases.complete_job(done, 3)  # refused: stale
    for _ in range(2):  # the first is retried, the second goes to the dead letters
        leases.fail_job(leases.dequeue(["emails"]), "ValueError: boom")
    pending = queue.list_jobs("pending", queue="default")
    assert queue.cancel_job(pending[0].id) == "cancelled"
    lost = leases.dequeue(["default"], lease=0.05)
    time.sleep(0.1)
    assert leases.recover_expired().requeued == [lost.id]

    found = scrape_view()
    add, fail = (("name", ADD), ("queue", "default")), (("name", FAIL), ("queue", "emails"))
    counters = {
        name[len("django_jobs_") : -len("_total")]: {
            labels: value for (n, labels), value in found.items() if n == name
        }
        for name in {n for n, _ in found if n.endswith("_total")}
    }
    assert counters == {
        "enqueued": {add: 4, fail: 2},
        "started": {add: 2, fail: 2},
        "succeeded": {add: 1},
        "failed": {fail: 2},
        "retried": {fail: 1},
        "dead_lettered": {fail: 1},
        "cancelled": {add: 1},
        "recovered": {add: 1},
        "stale_acks": {add: 1},
    }
    normal = lambda q: (("priority", "normal"), ("queue", q))  # noqa: E731
    assert found[("django_jobs_pending_jobs", normal("default"))] == 1
    assert found[("django_jobs_pending_jobs", normal("emails"))] == 0
    assert (
        found[("django_jobs_pending_jobs", (("priority", "critical"), ("queue", "reports")))] == 0
    )
    assert found[("django_jobs_scheduled_jobs", ())] == 1
    assert found[("django_jobs_retrying_jobs", ())] == 1
    assert found[("django_jobs_running_jobs", ())] == 0
    assert found[("django_jobs_dead_jobs", ())] == 1
    assert found[("django_jobs_live_workers", ())] == 0
    assert found[("django_jobs_unserved_jobs", (("queue", "default"),))] == 1
    assert found[("django_jobs_unserved_jobs", (("queue", "emails"),))] == 0
    age = found[("django_jobs_oldest_pending_age_seconds", normal("default"))]
    assert 0 <= age < 30
    assert ("django_jobs_oldest_pending_age_seconds", normal("emails")) not in found


def test_counts_are_those_of_every_process_and_a_resent_completion_counts_once(queue, token):
    leases = Leases(queue.prefix)
    queue.enqueue(ADD, [1, 2])
    job = leases.dequeue()
    assert leases.complete_job(job, 3)
    assert leases.complete_job(job, 3)  # its first reply was lost: recorded (and counted) once
    other = Leases(queue.prefix)  # another process's view: the counts live in Redis
    queue.enqueue(ADD, [1, 2])
    assert other.complete_job(other.dequeue(), 3)
    found = scrape_view()
    add = (("name", ADD), ("queue", "default"))
    assert found[("django_jobs_succeeded_total", add)] == 2
    assert ("django_jobs_stale_acks_total", add) not in found


@pytest.mark.django_db
def test_the_view_needs_the_bearer_token_or_the_view_job_permission(queue, token):
    assert get().status_code == 403
    assert get({"Authorization": "Bearer wrong-token-of-the-tests"}).status_code == 403
    assert get({"Authorization": f"Basic {TOKEN}"}).status_code == 403
    assert get({"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    plain = User.objects.create_user("plain", password="x")
    assert get(user=plain).status_code == 403
    viewer = User.objects.create_user("viewer", password="x")
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_job", content_type__app_label="django_jobs")
    )
    viewer = User.objects.get(pk=viewer.pk)  # permissions are cached per instance
    response = get(user=viewer)
    assert response.status_code == 200
    assert b"django_jobs_pending_jobs" in response.content
    assert response["Cache-Control"].startswith("max-age=0")


def test_with_redis_gone_the_view_answers_503_so_the_scrape_fails(token, private_redis):
    assert get({"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    private_redis.kill()
    response = get({"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 503
    assert response.content.decode().startswith("Redis does not answer")


@pytest.mark.django_db
def test_without_a_token_only_users_with_the_permission_may_read(queue, jobs_settings):
    assert jobs_settings.DJANGO_JOBS.get("METRICS_TOKEN") is None
    assert get({"Authorization": "Bearer anything-at-all-here"}).status_code == 403
    admin = User.objects.create_superuser("admin", password="x")
    assert get(user=admin).status_code == 200


@pytest.mark.parametrize(
    ("value", "wrong"),
    [("short", "it has 5"), ("a token with spaces in it", "whitespace"), (42, "it is a int")],
)
def test_a_bad_metrics_token_is_refused_at_use_and_by_the_checks_without_echoing_it(
    configure, value, wrong
):
    configure(METRICS_TOKEN=value)
    with pytest.raises(InvalidSetting, match=f"METRICS_TOKEN.*{wrong}") as info:
        jobs_settings.METRICS_TOKEN  # noqa: B018
    assert str(value) not in str(info.value) or value == 42
    assert [e.id for e in check_settings()] == ["django_jobs.E013"]


def test_without_prometheus_client_the_view_names_the_extra_and_the_package_imports(
    monkeypatch, token
):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImproperlyConfigured, match=r"django-jobs\[prometheus\]"):
        get({"Authorization": f"Bearer {TOKEN}"})


def test_without_prometheus_client_metrics_port_ends_runworker_naming_the_extra(workers):
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(['manage.py', 'runworker', '--burst', '--metrics-port', '9'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=workers.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "--metrics-port 9: django-jobs' metrics need prometheus_client" in done.stderr
    assert "django-jobs[prometheus]" in done.stderr


def test_metrics_port_serves_the_histograms_of_all_the_workers_processes(workers, queue, token):
    port = free_port()
    proc = workers.start("--concurrency", "3", "--metrics-port", str(port))
    handles = (
        [queue.enqueue(SLEEP, [0.3]) for _ in range(6)]
        + [queue.enqueue(ADD, [i, 1]) for i in range(4)]
        + [queue.enqueue(FAIL, ["boom"], queue="emails", max_retries=0)]
    )
    for handle in handles:
        queue.wait_for(handle.id, timeout=30)
    finished = [queue.get_job(h.id) for h in handles]
    assert len({job.worker_id for job in finished[:6]}) > 1  # the sleeps ran side by side

    def scrape():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return samples(response.read().decode())

    found = scrape()
    for name, queue_name, count in (
        (SLEEP, "default", 6),
        (ADD, "default", 4),
        (FAIL, "emails", 1),
    ):
        labels = (("name", name), ("queue", queue_name))
        assert found[("django_jobs_run_seconds_count", labels)] == count
        assert found[("django_jobs_wait_seconds_count", labels)] == count
    sleeps = (("name", SLEEP), ("queue", "default"))
    assert 1.8 <= found[("django_jobs_run_seconds_sum", sleeps)] < 6
    # Counted in Redis, the same numbers in the project's view.
    cluster = scrape_view()
    assert cluster[("django_jobs_succeeded_total", sleeps)] == 6
    assert cluster[("django_jobs_live_workers", ())] == 1

    folder = Path(re.search(r"\(values in (\S+)\)", workers.output(proc)).group(1))
    assert folder.is_dir()
    assert workers.stop(proc, signal.SIGTERM) == 0
    assert not folder.exists()  # removed at exit
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        scrape()


def test_metrics_port_already_taken_ends_runworker_with_the_reason(workers):
    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        proc = workers.start("--burst", "--metrics-port", str(port))
        assert proc.wait(timeout=60) == 1
    assert f"--metrics-port {port}:" in workers.output(proc)
    assert "Address already in use" in workers.output(proc)


def test_a_worker_without_metrics_port_serves_no_metrics(workers, queue):
    proc = workers.start("--concurrency", "1", "--burst")
    queue.enqueue(ADD, [1, 1])
    assert proc.wait(timeout=60) == 0
    assert "metrics of this worker" not in workers.output(proc)
    wait_until(lambda: queue.stats()["states"]["completed"] == 1, message="the job ran")
