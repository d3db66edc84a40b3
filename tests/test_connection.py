"""Connecting to Redis (``django_jobs/connection.py``): URLs, redaction, reusing django-redis."""

import asyncio
import os

import pytest
import redis
from django_redis import get_redis_connection

from django_jobs import JobPriority, JobQueue, JobsError, RedisUnavailable
from django_jobs.store.connection import connection_url, get_redis, redact_url

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
UNREACHABLE = "redis://:s3cret@127.0.0.1:1/0"
LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


def django_redis_cache(location):
    return {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": location}


@pytest.fixture
def via_django_redis(settings, configure):
    """``CONNECTION`` names a django-redis cache at ``REDIS_URL``; ``DJANGO_JOBS['REDIS_URL']``
    points nowhere, so anything that works went through the cache's client."""
    settings.CACHES = {"default": LOCMEM, "jobs": django_redis_cache(REDIS_URL)}
    configure(CONNECTION="jobs", REDIS_URL=UNREACHABLE)
    return "jobs"


# -- redact_url -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://localhost/0", "redis://localhost/0"),
        ("redis://ada@127.0.0.1:6379/0", "redis://ada@127.0.0.1:6379/0"),
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://ada:s3cret@redis.example.com:6380/2", "redis://ada:***@redis.example.com:6380/2"),
        ("rediss://ada:s3cret@redis.example.com/0", "rediss://ada:***@redis.example.com/0"),
        ("redis://:s3cret@10.0.0.7/0?socket_timeout=5", "redis://:***@10.0.0.7/0?socket_timeout=5"),
        ("unix:///run/redis/redis.sock?db=0", "unix:///run/redis/redis.sock?db=0"),
        ("unix://:s3cret@/run/redis/redis.sock?db=1", "unix://:***@/run/redis/redis.sock?db=1"),
        ("redis://:s3cret@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
    ],
)
def test_redact_url_replaces_only_the_password(url, redacted):
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@127.0.0.1:6379/0",
        "redis://ada:s3cret@127.0.0.1/0",
        "unix://:s3cret@/run/redis/redis.sock",
        "unix:///run/redis/redis.sock?db=0&password=s3cret",
        "redis://127.0.0.1:6379/0?password=s3cret",
    ],
)
def test_redact_url_never_shows_the_password(url):
    """redis-py also reads the password from the query string (``?password=``), the usual
    place for it in a ``unix://`` URL."""
    redacted = redact_url(url)

    assert "s3cret" not in redacted
    assert "***" in redacted


# -- connection_url -------------------------------------------------------------------------


def test_connection_url_is_redis_url_by_default(configure):
    configure(REDIS_URL="redis://:s3cret@10.0.0.7:6390/3")

    assert connection_url() == "redis://:s3cret@10.0.0.7:6390/3"


@pytest.mark.parametrize(
    "location",
    [
        "redis://127.0.0.1:6379/4",
        ["redis://127.0.0.1:6379/4", "redis://127.0.0.1:6380/4"],
        ("redis://127.0.0.1:6379/4",),
        "redis://127.0.0.1:6379/4,redis://127.0.0.1:6380/4",
    ],
    ids=["string", "list", "tuple", "comma-separated"],
)
def test_connection_url_is_the_location_of_the_connection_cache(settings, configure, location):
    """With replicas, the first location is the primary (django-redis also splits a LOCATION
    string on commas)."""
    settings.CACHES = {"default": LOCMEM, "jobs": django_redis_cache(location)}
    configure(CONNECTION="jobs")

    assert connection_url() == "redis://127.0.0.1:6379/4"


# -- get_redis ------------------------------------------------------------------------------


def test_get_redis_is_one_client_for_redis_url_until_the_settings_change(configure):
    client = get_redis()

    assert get_redis() is client
    assert client.ping()
    configure(PREFIX="{other}")
    assert get_redis() is not client


def test_get_redis_reuses_the_client_of_the_django_redis_cache(via_django_redis):
    client = get_redis()

    assert client is get_redis_connection(via_django_redis)
    assert get_redis() is client


def test_queue_works_through_the_django_redis_client(via_django_redis, prefix, redis_client):
    queue = JobQueue(prefix=prefix)

    job = queue.enqueue("reports.build", [1, {"x": [2.5, None]}], {"to": "ada"}, priority="high")

    assert queue.get_job(job.id) == job
    assert queue.get_job(job.id).priority is JobPriority.HIGH
    assert redis_client.hget(queue.keys.job(job.id), "name") == "reports.build"
    assert get_redis_connection(via_django_redis).exists(queue.keys.job(job.id)) == 1


def test_async_queue_connects_to_the_location_of_the_django_redis_cache(via_django_redis, prefix):
    queue = JobQueue(prefix=prefix)
    job = queue.enqueue("reports.build", [1])

    assert asyncio.run(queue.aget_job(job.id)) == job


# -- Redis unavailable ----------------------------------------------------------------------


@pytest.fixture(params=["REDIS_URL", "CONNECTION"])
def unreachable(request, settings, configure):
    """Redis with a password, at a port where nothing answers: named by REDIS_URL, or by the
    location of a django-redis cache."""
    if request.param == "REDIS_URL":
        configure(REDIS_URL=UNREACHABLE)
    else:
        settings.CACHES = {"default": LOCMEM, "jobs": django_redis_cache(UNREACHABLE)}
        configure(CONNECTION="jobs")


def enqueue(queue):
    return queue.enqueue("mail.send", [1])


def aenqueue(queue):
    return asyncio.run(queue.aenqueue("mail.send", [1]))


@pytest.mark.parametrize("call", [enqueue, aenqueue])
@pytest.mark.usefixtures("unreachable")
def test_unreachable_redis_raises_redis_unavailable_without_the_password(prefix, call):
    with pytest.raises(RedisUnavailable) as info:
        call(JobQueue(prefix=prefix))

    message = str(info.value)
    assert "redis://:***@127.0.0.1:1/0" in message
    assert "s3cret" not in message
    assert "s3cret" not in str(info.value.__cause__)
    assert isinstance(info.value.__cause__, redis.ConnectionError)


@pytest.mark.usefixtures("unreachable")
def test_redis_unavailable_is_a_builtin_connection_error(prefix):
    with pytest.raises(ConnectionError) as info:
        JobQueue(prefix=prefix).enqueue("mail.send")

    assert isinstance(info.value, RedisUnavailable)
    assert isinstance(info.value, JobsError)
    assert issubclass(RedisUnavailable, ConnectionError)
