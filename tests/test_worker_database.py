"""A worker's database connections between jobs, as Django's between requests: none outlives
its ``CONN_MAX_AGE``, and one that a job left broken is not handed to the next job. Real
``runworker`` processes on a SQLite file of the test's own."""

import pytest

from tests.testapp import jobs


@pytest.mark.parametrize(
    ("max_age", "kept"), [("0", False), ("null", True)], ids=["closed", "persistent"]
)
def test_a_job_never_gets_the_connection_an_earlier_job_broke(
    workers, tmp_path, monkeypatch, max_age, kept
):
    monkeypatch.setenv("JOBS_TEST_CONN_MAX_AGE", max_age)
    workers.db = str(tmp_path / "jobs.sqlite3")
    first = jobs.use_database.delay()
    breaker = jobs.use_database.delay(break_it=True)
    after = jobs.use_database.delay()

    proc = workers.start("--concurrency", "1", "--burst")

    assert proc.wait(timeout=30) == 0, workers.logs()
    assert first.result(timeout=5) == {"reused": False, "autocommit": True}
    # A healthy connection lasts its CONN_MAX_AGE: the next job gets it again, or a new one.
    assert breaker.result(timeout=5) == {"reused": kept, "autocommit": True}
    # Left with autocommit off, it is closed after its job: the next one opens a new one.
    assert after.result(timeout=5) == {"reused": False, "autocommit": True}
