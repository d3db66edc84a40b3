"""Settings checked where they are used: gunicorn and uWSGI run no system checks, so a bad
``DJANGO_JOBS`` value raises at its first use, with the words of its system check; the default
``PREFIX`` is a warning outside tests; a ``REDIS_URL`` naming a server that is not Redis raises
``RedisUnavailable`` with the URL, without its password."""

import asyncio
import os
import socket
import subprocess
import sys
import threading
from contextlib import closing

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured

from django_jobs import JobQueue
from django_jobs.checks import check_prefix, check_redis, check_settings
from django_jobs.conf import DEFAULTS, jobs_settings
from django_jobs.exceptions import RedisUnavailable
from django_jobs.worker.supervisor import Worker
from tests.processes import REPO
from tests.testapp import jobs

LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


def delay():
    return jobs.add.delay(1, 2)


def enqueue():
    return JobQueue().enqueue("tests.testapp.jobs.add", [1, 2])


def start_worker():
    return Worker(concurrency=1)


@pytest.mark.parametrize(
    ("changes", "use", "check_id"),
    [
        ({"QUEUES": "default"}, delay, "E005"),
        ({"QUEUES": "default"}, enqueue, "E005"),
        ({"QUEUES": []}, delay, "E005"),
        ({"DEFAULT_QUEUE": "mail"}, delay, "E006"),
        ({"PREFIX": "jobs"}, delay, "E004"),
        ({"REDIS_URL": "localhost:6379"}, delay, "E009"),
        ({"CONNECTION": "jobs"}, delay, "E007"),
        ({"DEFAULT_TIMEOUT": "300"}, delay, "E003"),
        ({"MAX_RETRIES": 1.0}, enqueue, "E003"),
        ({"MAX_PAYLOAD_BYTES": "1MB"}, delay, "E003"),
        ({"ENQUEUE_ON_COMMIT": "yes"}, delay, "E012"),
        ({"REDIS_FUNCTIONS": 1}, delay, "E012"),
        ({"LEASE_TIMEOUT": "60"}, start_worker, "E003"),
        ({"QUEUE": ["default"]}, delay, "E002"),
    ],
    ids=lambda value: value.__name__ if callable(value) else repr(value),
)
def test_a_bad_setting_raises_at_first_use_with_the_words_of_its_system_check(
    configure, settings, changes, use, check_id
):
    settings.CACHES = {"default": LOCMEM}
    configure(**changes)
    (check,) = [m for m in check_settings() if m.id == f"django_jobs.{check_id}"]

    with pytest.raises(ImproperlyConfigured) as raised:
        use()

    assert str(raised.value) == f"{check.msg} {check.hint}"


def test_queues_given_as_a_string_is_named_as_such_not_read_letter_by_letter(configure):
    configure(QUEUES="default")

    with pytest.raises(ImproperlyConfigured) as raised:
        delay()

    message = str(raised.value)
    assert message.startswith(
        "DJANGO_JOBS['QUEUES'] must be a non-empty list of distinct queue names, not 'default'."
    )
    assert "['d', 'e'" not in message


def test_django_jobs_that_is_not_a_dict_raises_at_first_use(settings):
    settings.DJANGO_JOBS = "redis://127.0.0.1:6379/0"

    with pytest.raises(ImproperlyConfigured, match=r"^DJANGO_JOBS must be a dict\. It is a str\.$"):
        delay()


def test_a_setting_mended_by_a_settings_change_is_read_again(configure):
    configure(QUEUES="default")
    with pytest.raises(ImproperlyConfigured):
        jobs_settings.QUEUES  # noqa: B018

    configure(QUEUES=["default"])

    assert jobs_settings.QUEUES == ["default"]


def test_the_checks_and_the_first_use_report_the_same_problem_once_each(configure):
    configure(QUEUES="default", PREFIX="jobs")

    assert sorted(m.id for m in check_settings()) == ["django_jobs.E004", "django_jobs.E005"]
    assert jobs_settings.as_dict()["QUEUES"] == "default", "as_dict() stays unchecked"


# -- the default prefix ---------------------------------------------------------------------


@pytest.fixture
def outside_tests(monkeypatch):
    """As in ``manage.py check`` or ``runworker``: Django's test environment is not set up."""
    monkeypatch.delattr(mail, "outbox")


def test_the_default_prefix_is_a_warning_outside_tests(configure, outside_tests):
    configure(PREFIX=DEFAULTS["PREFIX"])

    (warning,) = check_prefix()

    assert warning.id == "django_jobs.W003"
    assert "DJANGO_JOBS['PREFIX'] is the default, '{django_jobs}'" in warning.msg
    assert "take each other's jobs" in warning.msg
    assert "'{myproject_jobs}'" in warning.hint


def test_a_prefix_of_the_projects_own_passes(configure, outside_tests):
    configure(PREFIX="{myproject_jobs}")

    assert check_prefix() == []


def test_the_default_prefix_is_not_reported_under_the_test_runner(settings):
    del settings.DJANGO_JOBS  # every default

    assert check_prefix() == []


def test_manage_py_check_warns_about_the_default_prefix():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env["JOBS_TEST_PREFIX"] = DEFAULTS["PREFIX"]
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])

    done = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "django_jobs.W003" in output


# -- a server that is not Redis -------------------------------------------------------------


class NotRedis:
    """A TCP server in a thread that answers in its own way: ``echo`` sends back what it gets
    (a Redis command looks like a reply then), ``http`` answers as a web server would."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client: socket.socket) -> None:
        with closing(client):
            while data := client.recv(65536):
                if self.kind == "echo":
                    client.sendall(data)
                else:
                    client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    return

    def close(self) -> None:
        self.server.close()


@pytest.fixture(params=["echo", "http"])
def not_redis(request, configure):
    server = NotRedis(request.param)
    url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
    configure(REDIS_URL=url, REDIS_CONNECT_TIMEOUT=2, REDIS_SOCKET_TIMEOUT=2)
    yield f"redis://:***@127.0.0.1:{server.port}/0"
    server.close()


def test_a_redis_url_naming_a_server_that_is_not_redis_raises_redis_unavailable(not_redis, prefix):
    with pytest.raises(RedisUnavailable) as raised:
        JobQueue(prefix).enqueue("tests.testapp.jobs.add", [1, 2])

    message = str(raised.value)
    assert message.startswith(f"Cannot reach Redis at {not_redis}: the server there ")
    assert "s3cret" not in message


def test_the_asyncio_client_raises_redis_unavailable_too(not_redis, prefix):
    async def enqueue():
        await JobQueue(prefix).aenqueue("tests.testapp.jobs.add", [1, 2])

    with pytest.raises(RedisUnavailable) as raised:
        asyncio.run(enqueue())

    assert str(raised.value).startswith(f"Cannot reach Redis at {not_redis}: the server there ")


def test_the_system_check_reports_a_server_that_is_not_redis_as_not_answering(not_redis):
    (warning,) = check_redis()

    assert warning.id == "django_jobs.W001"
    assert "s3cret" not in warning.msg
