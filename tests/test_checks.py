"""System checks for ``DJANGO_JOBS`` (``django_jobs/checks.py``), run as ``manage.py check`` does.

Settings are changed with pytest-django's ``settings`` fixture; ``jobs_settings`` and the cached
clients are reloaded on ``setting_changed``.
"""

import os

import pytest
import redis
from django.core.checks import ERROR, WARNING, run_checks

from django_jobs.checks import check_cluster_client, check_redis, check_settings
from django_jobs.conf import DEFAULTS

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
UNREACHABLE = "redis://:s3cret@127.0.0.1:1/0"
LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
# Django's model checks ask the database what it supports (JSONField on SQLite), once per
# process: a test that runs the checks first must be allowed to connect.
pytestmark = pytest.mark.django_db


def jobs_messages() -> list:
    """What ``manage.py check`` reports about ``DJANGO_JOBS`` (the task backend's own checks,
    ``django_jobs.tasks.*``, compare TASKS with it: tests/test_tasks_contract.py has them)."""
    return [
        m
        for m in run_checks()
        if m.id and m.id.startswith("django_jobs.") and not m.id.startswith("django_jobs.tasks.")
    ]


def jobs_ids() -> list[str]:
    return [m.id for m in jobs_messages()]


@pytest.fixture
def caches(settings):
    """Set ``CACHES`` to a locmem ``default`` plus the given aliases."""

    def caches(**aliases):
        settings.CACHES = {"default": LOCMEM, **aliases}

    return caches


def test_default_test_settings_pass_every_check():
    assert jobs_messages() == []
    assert [m for m in run_checks() if m.level >= ERROR] == []


def test_defaults_alone_are_valid(settings):
    del settings.DJANGO_JOBS

    assert check_settings() == []


@pytest.mark.parametrize(
    "value", [["REDIS_URL", REDIS_URL], "redis://127.0.0.1:6379/0", None, 5], ids=repr
)
def test_django_jobs_that_is_not_a_dict_is_an_error(settings, value):
    settings.DJANGO_JOBS = value

    messages = jobs_messages()

    assert [m.id for m in messages] == ["django_jobs.E001"]
    assert "must be a dict" in messages[0].msg
    assert type(value).__name__ in messages[0].hint


@pytest.mark.parametrize(
    ("unknown", "named"),
    [
        ({"QUEUE": ["default"]}, "QUEUE"),
        ({"redis_url": REDIS_URL}, "redis_url"),
        ({"TTL": 5, "RETRIES": 1}, "RETRIES, TTL"),
        ({1: "x"}, "1"),
    ],
)
def test_unknown_key_is_an_error_naming_it(settings, unknown, named):
    settings.DJANGO_JOBS = {**settings.DJANGO_JOBS, **unknown}

    messages = [m for m in jobs_messages() if m.id == "django_jobs.E002"]

    assert len(messages) == 1
    assert f"unknown keys: {named}." in messages[0].msg
    assert all(key in messages[0].hint for key in DEFAULTS)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JOB_TTL", 0),
        ("JOB_TTL", -5),
        ("JOB_TTL", 1.5),
        ("JOB_TTL", "3600"),
        ("JOB_TTL", True),
        ("RESULT_TTL", None),
        ("RETRY_BACKOFF_BASE", 0),
        ("RETRY_BACKOFF_MAX", -1),
        ("MAX_LOST", 0),
        ("MAX_RETRIES", -1),
        ("MAX_RETRIES", 1.0),
        ("MAX_RETRIES", False),
        ("LEASE_TIMEOUT", "x"),
        ("LEASE_TIMEOUT", 0),
        ("LEASE_TIMEOUT", -0.5),
        ("LEASE_TIMEOUT", None),
        ("DEFAULT_TIMEOUT", True),
        ("DEFAULT_TIMEOUT", "300"),
        ("LEASE_TIMEOUT", float("nan")),
        ("DEFAULT_TIMEOUT", float("nan")),
        ("DEFAULT_TIMEOUT", float("inf")),
        ("REPLY_SPIN_MICROSECONDS", -1),
        ("REPLY_SPIN_MICROSECONDS", 10_001),
        ("REPLY_SPIN_MICROSECONDS", 50.0),
    ],
)
def test_bad_number_is_an_error_naming_the_setting_and_value(configure, name, value):
    """NaN is not a positive number (a NaN lease makes every dequeue fail in Redis), and an
    infinite DEFAULT_TIMEOUT makes every enqueue without a timeout fail in ``build_job``."""
    configure(**{name: value})

    messages = jobs_messages()

    assert [m.id for m in messages] == ["django_jobs.E003"]
    assert f"DJANGO_JOBS['{name}']" in messages[0].msg
    assert repr(value) in messages[0].msg
    assert repr(DEFAULTS[name]) in messages[0].hint


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_RETRIES", 0),
        ("JOB_TTL", 1),
        ("LEASE_TIMEOUT", 0.5),
        ("DEFAULT_TIMEOUT", 1),
        ("DEFAULT_TIMEOUT", 2.5),
        ("REPLY_SPIN_MICROSECONDS", 0),
        ("REPLY_SPIN_MICROSECONDS", 10_000),
    ],
)
def test_smallest_and_largest_allowed_numbers_pass(configure, name, value):
    configure(**{name: value})

    assert check_settings() == []


@pytest.mark.parametrize(
    "prefix", ["django_jobs", "jobs:{app}", "{}", "", "{unclosed", "unclosed}", None, 5], ids=repr
)
def test_prefix_without_hash_tag_is_an_error(configure, prefix):
    configure(PREFIX=prefix)

    messages = jobs_messages()

    assert [m.id for m in messages] == ["django_jobs.E004"]
    assert repr(prefix) in messages[0].msg
    assert "hash tag" in messages[0].msg
    assert "{myproject_jobs}" in messages[0].hint


@pytest.mark.parametrize("prefix", ["{myproject_jobs}", "{a}", "{app}:jobs", "{a.b-c}"])
def test_prefix_starting_with_a_hash_tag_passes(configure, prefix):
    configure(PREFIX=prefix)

    assert check_settings() == []


@pytest.mark.parametrize(
    "queues",
    [
        [],
        (),
        ["default", "emails", "default"],
        ["default", "has space"],
        ["default", "a:b"],
        ["default", ""],
        ["default", "é"],
        ["default", 1],
        "default",
        None,
        {"default": 1},
    ],
    ids=repr,
)
def test_bad_queues_are_an_error(configure, queues):
    configure(QUEUES=queues)

    messages = jobs_messages()

    assert [m.id for m in messages] == ["django_jobs.E005"]
    assert repr(queues) in messages[0].msg


@pytest.mark.parametrize("queues", [["default"], ("default", "a.b", "c-d", "E_9")])
def test_good_queues_pass(configure, queues):
    configure(QUEUES=queues)

    assert check_settings() == []


@pytest.mark.parametrize(
    ("changes", "default_queue"),
    [
        ({"DEFAULT_QUEUE": "missing"}, "missing"),
        ({"QUEUES": ["emails", "reports"]}, "default"),
        ({"DEFAULT_QUEUE": "Default"}, "Default"),
    ],
)
def test_default_queue_not_in_queues_is_an_error(configure, changes, default_queue):
    configure(**changes)

    messages = jobs_messages()

    assert [m.id for m in messages] == ["django_jobs.E006"]
    assert repr(default_queue) in messages[0].msg


def test_another_default_queue_from_queues_passes(configure):
    configure(DEFAULT_QUEUE="emails")

    assert check_settings() == []


@pytest.mark.parametrize("alias", ["jobs", "", 3, ["default"]], ids=repr)
def test_connection_alias_not_in_caches_is_an_error(configure, alias):
    configure(CONNECTION=alias)

    messages = jobs_messages()

    assert [m.id for m in messages] == ["django_jobs.E007"]
    assert repr(alias) in messages[0].msg


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.cache.backends.locmem.LocMemCache",
        "django.core.cache.backends.redis.RedisCache",
        "django.core.cache.backends.dummy.DummyCache",
    ],
)
def test_connection_alias_that_is_not_a_django_redis_cache_is_an_error(configure, caches, backend):
    caches(jobs={"BACKEND": backend, "LOCATION": REDIS_URL})
    configure(CONNECTION="jobs")

    messages = jobs_messages()

    assert [m.id for m in messages] == ["django_jobs.E008"]
    assert "'jobs'" in messages[0].msg
    assert "django_redis.cache.RedisCache" in messages[0].hint


def test_connection_naming_a_django_redis_cache_passes(configure, caches):
    caches(jobs={"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL})
    configure(CONNECTION="jobs", REDIS_URL=UNREACHABLE)  # REDIS_URL is not used then

    assert jobs_messages() == []


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:6379",
        "localhost",
        "redis//127.0.0.1:6379/0",
        "",
        None,
        6379,
        "http://127.0.0.1:6379/0",
        "redis://127.0.0.1:port/0",
    ],
    ids=repr,
)
def test_bad_redis_url_is_an_error(configure, url):
    """A URL that redis-py cannot parse is an E009, not a crash of ``manage.py check``."""
    configure(REDIS_URL=url)

    messages = jobs_messages()

    assert [m.id for m in messages] == ["django_jobs.E009"]
    assert "redis://, rediss:// or unix://" in messages[0].msg


def test_several_bad_values_are_all_reported(configure):
    configure(JOB_TTL=0, PREFIX="jobs", QUEUES=[], CONNECTION="nope", EXTRA=1)

    assert sorted(jobs_ids()) == [
        "django_jobs.E002",
        "django_jobs.E003",
        "django_jobs.E004",
        "django_jobs.E005",
        "django_jobs.E007",
    ]


# -- Redis itself ---------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["REDIS_URL", "CONNECTION"])
def test_redis_that_does_not_answer_is_a_warning_without_the_password(configure, caches, via):
    if via == "REDIS_URL":
        configure(REDIS_URL=UNREACHABLE)
    else:
        caches(jobs={"BACKEND": "django_redis.cache.RedisCache", "LOCATION": UNREACHABLE})
        configure(CONNECTION="jobs")

    messages = jobs_messages()

    assert [m.id for m in messages] == ["django_jobs.W001"]
    warning = messages[0]
    assert warning.level == WARNING
    assert "redis://:***@127.0.0.1:1/0" in warning.msg
    assert "does not answer" in warning.msg
    assert "s3cret" not in warning.msg
    assert "s3cret" not in warning.hint


def test_redis_is_not_contacted_when_the_settings_are_bad(configure):
    configure(REDIS_URL=UNREACHABLE, PREFIX="no_hash_tag")

    assert jobs_ids() == ["django_jobs.E004"]
    assert check_redis() == []


def test_answering_redis_passes():
    assert check_redis() == []


@pytest.mark.parametrize(
    ("version", "too_old"),
    [
        ("5.0.14", True),
        ("6.0.20", True),
        ("6.1.99", True),
        ("6.2.0", False),
        ("6.2.14", False),
        ("6.10.1", False),
        ("7.4.2", False),
        ("255.255.255", False),
    ],
)
def test_redis_older_than_6_2_is_an_error(monkeypatch, configure, version, too_old):
    """Only the version parsing is tested: a real server cannot be made older, so this test,
    and only this one, replaces ``redis.Redis.info`` with a narrow fake that reports
    ``version``. It does not stand in for the queue; nothing else is faked."""

    def info(self, section=None, *args, **kwargs):
        assert section == "server"
        return {"redis_version": version}

    monkeypatch.setattr(redis.Redis, "info", info)
    configure(REDIS_URL="redis://:s3cret@127.0.0.1:6379/0")

    messages = check_redis()

    if too_old:
        assert [m.id for m in messages] == ["django_jobs.E010"]
        assert f"version {version}" in messages[0].msg
        assert "6.2 or newer" in messages[0].msg
        assert "redis://:***@127.0.0.1:6379/0" in messages[0].msg
        assert "s3cret" not in messages[0].msg
    else:
        assert messages == []


@pytest.mark.parametrize(
    ("version", "unsafe"),
    [("5.0.8", True), ("6.4.0", True), ("7.1.1", True), ("7.2.0", False), ("8.2.0", False)],
)
def test_a_cluster_with_a_redis_py_older_than_7_2_is_a_warning(
    monkeypatch, configure, version, unsafe
):
    """Before 7.2, redis-py's cluster client does not lock its map of the cluster against the
    threads that share it. The check reads the installed version (replaced here: one cannot
    install two) and the URL; it does not connect."""
    monkeypatch.setattr(redis, "__version__", version)
    configure(REDIS_URL="redis+cluster://:s3cret@127.0.0.1:1,127.0.0.1:2")

    messages = check_cluster_client()

    if unsafe:
        assert [(m.id, m.level) for m in messages] == [("django_jobs.W006", WARNING)]
        assert f"redis-py {version}" in messages[0].msg
        assert "7.2 or newer" in messages[0].hint
        assert "s3cret" not in messages[0].msg + messages[0].hint
    else:
        assert messages == []


@pytest.mark.parametrize("url", [REDIS_URL, "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster/0"])
def test_one_server_or_sentinel_with_an_old_redis_py_is_no_warning(monkeypatch, configure, url):
    monkeypatch.setattr(redis, "__version__", "5.0.8")
    configure(REDIS_URL=url)

    assert check_cluster_client() == []
    assert "django_jobs.W006" not in jobs_ids()


def test_a_cache_client_that_is_no_cluster_client_with_an_old_redis_py_is_no_warning(
    monkeypatch, settings, configure
):
    monkeypatch.setattr(redis, "__version__", "5.0.8")
    settings.CACHES = {
        **settings.CACHES,
        "jobs": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL},
    }
    configure(CONNECTION="jobs")

    assert check_cluster_client() == []
