"""Jobs that tests/test_testing_immediate.py and tests/test_testing_capture.py run in the
test's own process (django_jobs.testing), as a project's jobs.py would define them."""

from __future__ import annotations

from collections import Counter

from django.contrib.auth.models import User

from django_jobs import job

# What the jobs did, kept in this module: they run in the test's process, so tests read it.
attempts: Counter[str] = Counter()  # attempts of flaky(), by key
welcomed: list[str] = []  # the addresses send_welcome() wrote to


@job(queue="emails", max_retries=5)
def send_welcome(user_id: int) -> str:
    """Reads a row the test made (inside its transaction, for a TestCase) and "sends" a mail."""
    user = User.objects.get(pk=user_id)
    welcomed.append(user.email)
    return user.email


@job
def add(a: int, b: int = 0) -> int:
    return a + b


@job
def echo(value: object) -> object:
    return value


@job(max_retries=2)
def always_fails(message: str) -> None:
    raise ValueError(message)


@job(max_retries=3)
def flaky(key: str, failures: int) -> int:
    """Fails its first ``failures`` attempts, then returns the number of the attempt."""
    attempts[key] += 1
    if attempts[key] <= failures:
        raise ConnectionError(f"{key}: attempt {attempts[key]} failed")
    return attempts[key]


@job
def returns_a_set() -> set[int]:
    return {1, 2}


@job
def fan_out(count: int) -> int:
    """Enqueues ``count`` runs of add()."""
    for n in range(count):
        add.delay(n, 100)
    return count


@job
def add_later(a: int, b: int) -> int:
    """Enqueues add() and waits for its result, as a job of a pipeline might."""
    return add.delay(a, b).result(timeout=5) * 10


@job
async def count_users(prefix: str) -> int:
    """An async job that reads the database through Django's async ORM."""
    return await User.objects.filter(username__startswith=prefix).acount()
