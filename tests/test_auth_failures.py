"""A Redis that refuses the client: a wrong password, an unknown ACL user, a user without the
permissions django-jobs needs. ``runworker`` and ``runscheduler`` exit at start-up with a one-line
reason that never shows the password, while a Redis that merely does not answer yet is waited
for; a running scheduler whose password stops working logs errors, backs off, and goes on once
it works again. Against a private redis-server with ``requirepass`` and ACL users.
"""

import asyncio
import time
from datetime import timedelta

import pytest
import redis
from django.db import connection

from django_jobs import JobQueue
from django_jobs.exceptions import RedisAccessDenied, RedisUnavailable, StoreError
from django_jobs.serialization import utcnow
from tests.processes import Processes, wait_until

PASSWORD = "s3cret-Pa55"  # the server's; never printed
WRONG = "wr0ng-Pa55"
COMMANDS = ["runworker", "runscheduler"]
TICK = {"tick": {"job": "tests.record", "interval": 1, "args": ["tick"], "missed_runs": "skip"}}


def url_of(server, user="", password=PASSWORD):
    """The server's URL with ``user:password@`` (``password=`` for a user of the same name)."""
    return server.url.replace("unix://", f"unix://{user}:{password}@")


@pytest.fixture
def secured(private_redis):
    """The private Redis with a password for the default user and three ACL users: ``app``
    (everything), ``others`` (every command, but only on keys that are not ours) and ``reader``
    (read commands and scripts, no writes). Returns an admin client."""
    admin = private_redis.client()
    admin.execute_command("ACL", "SETUSER", "app", "on", f">{PASSWORD}", "~*", "+@all")
    admin.execute_command("ACL", "SETUSER", "others", "on", f">{PASSWORD}", "~{x}*", "+@all")
    admin.execute_command(
        "ACL", "SETUSER", "reader", "on", f">{PASSWORD}", "~*", "+@read", "+@scripting"
    )
    admin.config_set("requirepass", PASSWORD)
    return redis.Redis.from_url(url_of(private_redis), decode_responses=True)


# The process groups a test started: killed after it, whatever its outcome.
STARTED: list[Processes] = []


@pytest.fixture(autouse=True)
def _close_started():
    yield
    while STARTED:
        STARTED.pop().close()


def start(tmp_path, prefix, monkeypatch, url, command, settings=None, db=None):
    monkeypatch.setenv("REDIS_URL", url)
    group = Processes(tmp_path, prefix, settings or {}, db)
    STARTED.append(group)
    return group, group.start("--concurrency", "1") if command == "runworker" else group.start(
        command="runscheduler"
    )


REFUSALS = {
    "wrong password": lambda server: url_of(server, password=WRONG),
    "no password": lambda server: server.url,
    "unknown user": lambda server: url_of(server, user="nobody", password=WRONG),
    "keys out of reach": lambda server: url_of(server, user="others"),
    "no writes": lambda server: url_of(server, user="reader"),
}


@pytest.mark.parametrize("refusal", REFUSALS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_refused_client_exits_at_start_with_one_clear_line(
    tmp_path, prefix, monkeypatch, private_redis, secured, command, refusal
):
    url = REFUSALS[refusal](private_redis)
    group, proc = start(tmp_path, prefix, monkeypatch, url, command)

    code = proc.wait(timeout=60)

    output = group.output(proc)
    assert code != 0, output
    (line,) = [line for line in output.splitlines() if "refused access" in line]
    assert line.startswith("CommandError: "), output
    assert "Traceback" not in output
    assert PASSWORD not in output
    assert WRONG not in output
    assert url.replace(PASSWORD, "***").replace(WRONG, "***") in line, "the URL, redacted"
    assert "serving" not in output, "no worker was started"
    assert "started" not in output, "no scheduler was started"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("command", COMMANDS)
def test_redis_that_does_not_answer_at_start_is_waited_for(
    tmp_path, prefix, monkeypatch, private_redis, command
):
    private_redis.stop()
    db = connection.settings_dict["NAME"]
    group, proc = start(tmp_path, prefix, monkeypatch, private_redis.url, command, db=db)
    wait_until(lambda: "Cannot reach Redis" in group.output(proc), timeout=60, message="a try")
    time.sleep(2)  # attempts after 0.1, 0.2, 0.4 and 0.8 s: still the one line
    assert proc.poll() is None, "it waits"
    assert group.output(proc).count("Cannot reach Redis") == 1, "a line a minute, not each try"

    private_redis.start()
    started = "serving" if command == "runworker" else "started"
    wait_until(lambda: started in group.output(proc), timeout=60, message="the start")
    assert "Redis answers again after" in group.output(proc)
    assert group.stop(proc) == 0, group.logs()


def test_the_reason_is_a_store_error_that_is_not_redis_unavailable(
    private_redis, secured, configure, queue
):
    configure(REDIS_URL=url_of(private_redis, password=WRONG))
    with pytest.raises(RedisAccessDenied) as refused:
        queue.stats()
    assert isinstance(refused.value, StoreError)
    assert not isinstance(refused.value, RedisUnavailable | ConnectionError)
    assert WRONG not in str(refused.value)
    assert PASSWORD not in str(refused.value)
    assert "refused access: invalid username-password pair" in str(refused.value)
    # redis-py's asyncio client reports it as a ConnectionError caused by the refusal.
    with pytest.raises(RedisAccessDenied, match="refused access: invalid username-password"):
        asyncio.run(queue.astats())

    configure(REDIS_URL=url_of(private_redis, user="others"))
    with pytest.raises(RedisAccessDenied, match=r"refused access: .*permission"):
        queue.stats()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_running_scheduler_whose_password_stops_working_backs_off_and_recovers(
    tmp_path, prefix, monkeypatch, private_redis, secured, jobs_settings
):
    url = url_of(private_redis, user="app")
    jobs_settings.DJANGO_JOBS = {**jobs_settings.DJANGO_JOBS, "REDIS_URL": url}
    group, proc = start(
        tmp_path,
        prefix,
        monkeypatch,
        url,
        "runscheduler",
        settings={"SCHEDULES": TICK},
        db=connection.settings_dict["NAME"],
    )

    def dues():
        return [j.scheduled_at for j in JobQueue().list_jobs("pending", limit=10_000)]

    wait_until(lambda: len(dues()) >= 2, timeout=30, message="two runs")
    # The password is rotated, and the scheduler's connection is dropped: it must log in again.
    secured.execute_command("ACL", "SETUSER", "app", "resetpass", ">rotated")
    secured.client_kill_filter(_type="normal", skipme=True)
    rotated = utcnow()
    time.sleep(8)
    assert proc.poll() is None, "it keeps going"
    refusals = group.output(proc).count("refused access")
    assert 3 <= refusals <= 10, f"an error each time, with pauses that grow\n{group.logs()}"

    secured.execute_command("ACL", "SETUSER", "app", "resetpass", f">{PASSWORD}")
    back = utcnow()
    wait_until(lambda: max(dues()) >= back + timedelta(seconds=2), timeout=30, message="runs again")
    wait_until(lambda: "working again" in group.output(proc), timeout=10, message="the log")
    assert group.stop(proc) == 0, group.logs()
    log = group.output(proc)
    assert "working again after" in log
    assert "no scheduler was running" not in log
    # Due while refused, and more than AFTER_OUTAGE_GRACE (2 s) before it worked again.
    during = [
        d for d in dues() if rotated + timedelta(seconds=1.5) <= d <= back - timedelta(seconds=2.5)
    ]
    assert during == [], "policy skip: what fell due while refused is skipped"
    assert PASSWORD not in log


def test_a_running_worker_whose_password_stops_working_waits_and_goes_on(
    tmp_path, prefix, monkeypatch, private_redis, secured, jobs_settings
):
    url = url_of(private_redis, user="app")
    jobs_settings.DJANGO_JOBS = {**jobs_settings.DJANGO_JOBS, "REDIS_URL": url}
    group, proc = start(tmp_path, prefix, monkeypatch, url, "runworker")
    first = JobQueue().enqueue("tests.testapp.jobs.add", [1, 2])
    assert JobQueue().wait_for(first.id, 30).result == 3

    # The password is rotated, and the worker's connections are dropped: they must log in again.
    secured.execute_command("ACL", "SETUSER", "app", "resetpass", ">rotated")
    secured.client_kill_filter(_type="normal", skipme=True)
    time.sleep(6)
    log = group.output(proc)
    assert proc.poll() is None, "it keeps going"
    assert log.count("refused access") < 60, f"an error each attempt, not a crash loop\n{log}"
    assert "Traceback" not in log, log
    assert "ended" not in log, "no process of it crashed"

    secured.execute_command("ACL", "SETUSER", "app", "resetpass", f">{PASSWORD}")
    second = JobQueue().enqueue("tests.testapp.jobs.add", [2, 3])
    assert JobQueue().wait_for(second.id, 30).result == 5
    assert group.stop(proc) == 0, group.logs()
    assert PASSWORD not in group.output(proc)
