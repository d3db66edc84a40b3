"""Passwords in a Redis URL are never printed, also ones that are not URL-encoded and hold
``?``, ``#``, ``@`` or ``/`` (which end a URL's netloc early for ``urlsplit`` and redis-py)."""

import os
import subprocess
import sys

import pytest

from django_jobs import JobQueue, RedisUnavailable
from django_jobs.store.connection import redact_text, redact_url
from tests.processes import REPO

# Each password with the pieces of it that must not show either.
# (Pieces with digits, which nothing else in a URL or a message holds by chance.)
PASSWORDS = ["p7@s8?w9#r6/x5", "s3c?r4", "s3c#r4", "s3/c4", "s3@c4", "a1@b2/c3?d4#e5", "p1:s2@w3"]


def pieces(password: str) -> list[str]:
    for separator in ":@/?#":
        password = password.replace(separator, " ")
    return [piece for piece in password.split() if len(piece) >= 2]


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://user:p@ss?w#rd/x@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:se/cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://:s3cr?et@host/0", "redis://:***@host/0"),
        ("redis://:s3cr#et@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://ada:s3@cret@host/0", "rediss://ada:***@host/0"),
        ("unix://:a@b/c?d#e@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        # No colon: a user name alone is shown, unless it could be a mangled password.
        ("redis://ada@host/0", "redis://ada@host/0"),
        ("redis://p@ss/x@host/0", "redis://***@host/0"),
        ("redis://p?ss@host/0", "redis://***@host/0"),
        # The password query parameter runs to the next "&", whatever it holds.
        ("redis://host/0?password=p@ss?w#rd/x", "redis://host/0?password=***"),
        (
            "redis://host/0?db=1&password=a@b&socket_timeout=2",
            "redis://host/0?db=1&password=***&socket_timeout=2",
        ),
        ("redis://u:s3@c@host/0?password=a@b", "redis://u:***@host/0?password=***"),
    ],
)
def test_any_userinfo_and_password_parameter_is_redacted(url, redacted):
    assert redact_url(url) == redacted


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize(
    "template",
    [
        "redis://user:{}@127.0.0.1:1/0",
        "redis://:{}@localhost:1/0",
        "unix://:{}@/nonexistent/redis.sock",
        "redis://127.0.0.1:1/0?password={}",
    ],
)
def test_no_piece_of_a_password_is_left_in_a_redacted_url(template, password):
    url = template.format(password)

    redacted = redact_url(url)

    assert "***" in redacted
    for piece in pieces(password):
        assert piece not in redacted, (url, redacted)


def test_redis_errors_do_not_name_pieces_of_the_password():
    # redis-py reads "ss" as the host here and says it cannot resolve it.
    url = "redis://user:p@ss?w#rd/x@127.0.0.1:1/0"
    message = "Error -2 connecting to ss:6379. Name or service not known."

    assert (
        redact_text(message, url) == "Error -2 connecting to ***:6379. Name or service not known."
    )


@pytest.mark.parametrize("password", ["p7@s8?w9#r6/x5", "s3c?r4:8", "p1:s2@w3"])
def test_delay_error_never_shows_the_password(configure, prefix, password):
    configure(REDIS_URL=f"redis://user:{password}@127.0.0.1:1/0", REDIS_CONNECT_TIMEOUT=1)

    with pytest.raises((RedisUnavailable, ValueError)) as raised:
        JobQueue(prefix).enqueue("a.job")

    text = str(raised.value)
    for piece in pieces(password):
        assert piece not in text, text


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:p7@s8?w9#r6/x5@127.0.0.1:1/0",
        "redis://:s3/c4@127.0.0.1:1/0",
        "redis://:s3c#r4@127.0.0.1:1/0",
        "redis://:p1:s2@w3@127.0.0.1:1/0",
        "redis://127.0.0.1:1/0?password=p7@s8?w9#r6/x5",
        "unix://:a1@b2/c3?d4#e5@/nonexistent/redis.sock",
    ],
)
def test_manage_py_check_never_prints_the_password(url):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "REDIS_URL": url}
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
    assert "django_jobs." in output  # a warning or error about Redis was printed
    for piece in pieces(url.split("://")[1]):
        if piece[0].isalpha() and any(c.isdigit() for c in piece):
            assert piece not in output, output
