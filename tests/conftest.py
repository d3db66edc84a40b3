import os
import uuid

import pytest
import redis

from django_jobs import JobQueue

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_client():
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client):
    """A key prefix of this test's own; its keys, and only those, are deleted afterwards."""
    prefix = f"{{test-{uuid.uuid4().hex[:12]}}}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def jobs_settings(settings, prefix):
    """``DJANGO_JOBS`` for this test, under its own prefix; tests may change it further."""
    settings.DJANGO_JOBS = {**settings.DJANGO_JOBS, "PREFIX": prefix}
    return settings


@pytest.fixture
def configure(settings):
    """Change some keys of ``DJANGO_JOBS``, keeping the test settings' others."""

    def configure(**changes):
        settings.DJANGO_JOBS = {**settings.DJANGO_JOBS, **changes}

    return configure


# Nothing listens there: a test of the testing modes that reached Redis would fail with
# RedisUnavailable.
CLOSED_PORT = "redis://127.0.0.1:1/0"


@pytest.fixture
def no_redis(configure):
    """Point django-jobs at a port nothing listens on: the testing modes must not need Redis."""
    configure(REDIS_URL=CLOSED_PORT, REDIS_CONNECT_TIMEOUT=1)


@pytest.fixture
def queue(jobs_settings):
    return JobQueue()


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    """A folder outside Redis where test jobs write what they did."""
    monkeypatch.setenv("JOBS_TEST_LEDGER", str(tmp_path))
    return tmp_path


@pytest.fixture
def workers(jobs_settings, prefix, ledger):
    """Start ``runworker`` processes under this test's prefix with time-compressed settings."""
    from tests.processes import FAST, Processes

    jobs_settings.DJANGO_JOBS = {**jobs_settings.DJANGO_JOBS, **FAST}
    started = Processes(ledger, prefix, FAST)
    yield started
    started.close()


@pytest.fixture
def private_redis(configure, monkeypatch):
    """A redis-server of this test's own, which it may kill and restart; the test process and
    the worker processes it starts both use it."""
    from tests.redis_server import RedisServer

    server = RedisServer()
    server.start()
    monkeypatch.setenv("REDIS_URL", server.url)
    configure(REDIS_URL=server.url)
    yield server
    server.remove()


@pytest.fixture
def tcp_redis(configure, monkeypatch):
    """A redis-server of this test's own on TCP, for the test process and the workers it
    starts (a client of ``redis.Redis`` is yielded): a connection the server closed takes the
    next write without an error there, where on a unix socket the write fails at once."""
    from tests.redis_server import RedisServer, free_port

    port = free_port()
    server = RedisServer("--port", str(port))
    server.start()
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("REDIS_URL", url)
    configure(REDIS_URL=url)
    client = redis.Redis(port=port)
    yield client
    client.close()
    server.remove()


# The fixtures through which a test reaches the database.
DATABASE_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "django_db_setup",
        "admin_client",
        "admin_user",
        "client",
        "live_server",
        "django_user_model",
    }
)


def pytest_collection_modifyitems(config, items):
    """JOBS_TEST_DATABASE_ONLY=1 keeps the tests that use the database (a ``django_db`` mark or
    a database fixture): .ci/run runs those on PostgreSQL, the whole suite on SQLite."""
    if not os.environ.get("JOBS_TEST_DATABASE_ONLY"):
        return
    kept, dropped = [], []
    for item in items:
        uses_db = item.get_closest_marker("django_db") or DATABASE_FIXTURES & set(
            getattr(item, "fixturenames", ())
        )
        (kept if uses_db else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def pipe():
    """(the child's end, the supervisor's end) of a pipe like a worker child's."""
    from multiprocessing import Pipe

    child_end, supervisor_end = Pipe()
    yield child_end, supervisor_end
    child_end.close()
    supervisor_end.close()
