"""The redis+cluster:// and redis+sentinel:// URL forms: what they mean, what is refused and how,
and that no message shows their passwords. (Real clusters and sentinels: tests/test_cluster.py,
tests/test_sentinel.py.)"""

import pytest

from django_jobs.checks import check_redis, check_settings
from django_jobs.exceptions import RedisUnavailable
from django_jobs.store.redaction import redact_url
from django_jobs.store.topology import parse
from tests.testapp import jobs


def test_a_cluster_url_names_its_startup_nodes_credentials_and_options():
    found = parse(
        "rediss+cluster://ada:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002/0?socket_timeout=2.5",
        {"socket_timeout": 10.0, "socket_connect_timeout": 5.0},
    )
    assert found.kind == "cluster"
    assert found.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert found.options == {
        "username": "ada",
        "password": "p@ss",
        "socket_timeout": 2.5,
        "socket_connect_timeout": 5.0,
        "ssl": True,
    }


def test_a_sentinel_url_names_its_sentinels_service_database_and_both_passwords():
    found = parse("redis+sentinel://:pw@s1:26380,s2/mymaster/3?sentinel_password=spw")
    assert (found.kind, found.service) == ("sentinel", "mymaster")
    assert found.nodes == (("s1", 26380), ("s2", 26379))
    assert found.options == {"password": "pw", "db": 3}
    assert found.sentinel_options == {"password": "spw"}


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://h:7000/1", "only database 0"),
        ("redis+cluster://", "no host:port"),
        ("redis+cluster://h:port", "bad host:port"),
        ("redis+sentinel://h:26379", "/service_name"),
        ("redis+sentinel://h:26379/m/x", "/service_name"),
        ("redis+cluster://h:7000?bogus=1", "unknown option 'bogus'"),
        ("redis+cluster://h:7000?socket_timeout=soon", "bad value for socket_timeout"),
    ],
)
def test_a_bad_url_is_refused_naming_what_is_wrong(url, problem, configure):
    with pytest.raises(ValueError, match=problem):
        parse(url)
    configure(REDIS_URL=url)
    (message,) = check_settings()
    assert message.id == "django_jobs.E009"
    assert problem in message.msg


def test_no_message_shows_a_password(configure):
    url = "redis+sentinel://:hunter22@127.0.0.1:7099/m/0?sentinel_password=swordfish"
    assert redact_url(url) == ("redis+sentinel://:***@127.0.0.1:7099/m/0?sentinel_password=***")
    configure(REDIS_URL=url, REDIS_CONNECT_TIMEOUT=0.5, REDIS_SOCKET_TIMEOUT=0.5)
    (warning,) = check_redis()
    assert warning.id == "django_jobs.W001"
    with pytest.raises(RedisUnavailable) as raised:
        jobs.add.delay(1, 2)
    for text in (warning.msg, str(raised.value), repr(raised.value.__cause__)):
        assert "hunter22" not in text
        assert "swordfish" not in text


def test_a_cluster_that_does_not_answer_is_unavailable(configure):
    configure(
        REDIS_URL="redis+cluster://:hunter22@127.0.0.1:7099",
        REDIS_CONNECT_TIMEOUT=0.5,
        REDIS_SOCKET_TIMEOUT=0.5,
    )
    (warning,) = check_redis()
    assert warning.id == "django_jobs.W001"
    with pytest.raises(RedisUnavailable, match=r"redis\+cluster://:\*\*\*@127.0.0.1:7099"):
        jobs.add.delay(1, 2)
