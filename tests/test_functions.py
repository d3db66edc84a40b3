"""The scripts as one library of Redis functions (``FCALL``, Redis 7+), and as scripts
(``EVALSHA``) where the server, the ACL user or ``REDIS_FUNCTIONS`` says no. Against private
redis-servers, whose libraries and command counts are this test's own."""

import asyncio

import pytest

from django_jobs import JobPriority
from django_jobs.store.scripts import FUNCTIONS, SCRIPTS
from tests.census import assert_census
from tests.redis_server import RedisServer
from tests.testapp import jobs

PASSWORD = "functions-test-password"


def script_calls(client) -> dict[str, int]:
    """How many FCALL and EVALSHA the server ran, by command."""
    stats = client.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("fcall", "evalsha")}


def libraries(client) -> dict[str, int]:
    """The function libraries loaded, with how many functions each has."""
    found = [dict(zip(lib[::2], lib[1::2], strict=True)) for lib in client.function_list()]
    return {lib["library_name"]: len(lib["functions"]) for lib in found}


def run_one_job(queue) -> str:
    """Enqueue a job, then claim and complete it as a worker does; returns its id."""
    from django_jobs.worker.leases import Leases

    handle = jobs.add.delay(2, 3)
    leases = Leases(queue.prefix)
    claim = leases.claim(["default"], "test-worker", 30)
    assert claim.job is not None
    assert claim.job.id == handle.id
    assert leases.complete_job(claim.job, 5)
    assert handle.result(timeout=1) == 5
    return handle.id


def test_scripts_run_as_one_library_of_redis_functions(private_redis, queue):
    client = private_redis.client()

    job_id = run_one_job(queue)

    assert libraries(client) == {FUNCTIONS.name: len(SCRIPTS)}
    calls = script_calls(client)
    assert calls["fcall"] >= 3
    assert calls["evalsha"] == 0
    assert_census(queue, client, {job_id: "completed"})


def test_a_library_that_redis_lost_is_loaded_again_by_the_next_call(private_redis, queue):
    client = private_redis.client()
    run_one_job(queue)
    client.function_delete(FUNCTIONS.name)  # as a restart without persistence would lose it

    job_id = run_one_job(queue)

    assert libraries(client) == {FUNCTIONS.name: len(SCRIPTS)}
    assert client.hget(queue.keys.job(job_id), "status") == "completed"


def test_two_versions_of_the_library_live_side_by_side(private_redis, queue):
    client = private_redis.client()
    older = FUNCTIONS.source.replace(FUNCTIONS.name, "django_jobs_0123456789ab")
    client.function_load(older)

    run_one_job(queue)

    assert libraries(client) == {
        "django_jobs_0123456789ab": len(SCRIPTS),
        FUNCTIONS.name: len(SCRIPTS),
    }


@pytest.fixture
def server_without_functions(configure, monkeypatch):
    """A redis-server whose FCALL is renamed away: what Redis before 7 (or a proxy that only
    passes scripts) answers."""
    server = RedisServer("--rename-command", "FCALL", "")
    server.start()
    monkeypatch.setenv("REDIS_URL", server.url)
    configure(REDIS_URL=server.url)
    yield server
    server.remove()


def test_a_server_without_functions_runs_the_scripts_with_evalsha(server_without_functions, queue):
    client = server_without_functions.client()

    job_id = run_one_job(queue)

    calls = script_calls(client)
    assert calls["fcall"] == 0
    assert calls["evalsha"] >= 3
    assert_census(queue, client, {job_id: "completed"})


def test_a_user_who_may_not_call_functions_runs_the_scripts_with_evalsha(
    private_redis, configure, queue
):
    client = private_redis.client()
    # An ACL written for scripts: everything but FCALL and FUNCTION.
    client.execute_command(
        "ACL",
        "SETUSER",
        "scripts",
        "on",
        f">{PASSWORD}",
        "~*",
        "&*",
        "+@all",
        "-fcall",
        "-function",
    )
    url = f"unix://scripts:{PASSWORD}@{private_redis.socket}?db=0"
    configure(REDIS_URL=url)

    job_id = run_one_job(queue)

    assert libraries(client) == {}
    assert script_calls(client)["evalsha"] >= 3
    assert client.hget(queue.keys.job(job_id), "status") == "completed"


def test_redis_functions_off_calls_every_script_with_evalsha(private_redis, configure, queue):
    configure(REDIS_FUNCTIONS=False)
    client = private_redis.client()

    run_one_job(queue)

    assert libraries(client) == {}
    assert script_calls(client)["fcall"] == 0


def test_only_a_job_with_something_to_do_at_its_end_carries_on_end(queue, redis_client):
    plain = jobs.add.delay(1, 1)
    unique = jobs.add.using(unique_key="on-end-test").delay(1, 2)

    assert redis_client.hget(queue.keys.job(plain.id), "on_end") is None
    assert redis_client.hget(queue.keys.job(unique.id), "on_end") == "1"


def test_concurrent_calls_that_all_find_no_functions_all_go_through(
    server_without_functions, queue
):
    async def enqueue_at_once():
        return await asyncio.gather(*(jobs.add.adelay(i, i) for i in range(20)))

    handles = asyncio.run(enqueue_at_once())

    client = server_without_functions.client()
    normal = queue.keys.queue("default", JobPriority.NORMAL)
    assert sorted(client.lrange(normal, 0, -1)) == sorted(h.id for h in handles)
