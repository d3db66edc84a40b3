"""Each thread sends its commands on a connection it keeps (``kept`` in store/connection.py):
threads never share one, a forked child makes its own, and one that Redis closed (a restart,
a killed client) is made afresh before the next command, which then works at once."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from django_jobs import JobPriority, RedisUnavailable
from django_jobs.store.connection import get_redis, kept
from tests.testing_jobs import add


def ready_args(queue, client) -> list[list[int]]:
    """The arguments of the jobs waiting in the default queue, in order."""
    ids = client.lrange(queue.keys.queue("default", JobPriority.NORMAL), 0, -1)
    return [queue.get_job(job_id).args for job_id in ids]


def test_threads_enqueueing_at_once_each_get_their_own_replies(queue, redis_client):
    errors: list[BaseException] = []
    handles: dict[int, list] = {n: [] for n in range(4)}
    connections: dict[int, object] = {}

    def enqueue(n: int) -> None:
        try:
            for i in range(150):
                handles[n].append(add.delay(n, i))
            connections[n] = kept(get_redis())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=enqueue, args=(n,)) for n in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    # Each handle is the job its own call stored (a shared connection would mix up replies).
    for n, made in handles.items():
        assert [queue.get_job(h.id).args for h in made] == [[n, i] for i in range(150)]
    assert len({id(c) for c in connections.values()}) == 4
    assert len(ready_args(queue, redis_client)) == 600


# Run in a process of its own: one that forks from a bare main thread, as a web server's
# master or a worker's supervisor does. Exits with 0 only if the child's commands went on a
# connection of its own (another client id), and every job each read back was its own.
FORKS = """
import os, django
django.setup()
from django_jobs import JobQueue
from django_jobs.store.commands import Command
from django_jobs.store.execute import run
from tests.testing_jobs import add

queue = JobQueue()

def ask_id():
    return (yield Command(("CLIENT", "ID")))

def client_id():
    return run(ask_id())

def read_back(handles):
    return all(getattr(queue.get_job(h.id), "args", None) == h.job.args for h in handles)

made = [add.delay(0, i) for i in range(50)]  # the parent's connection, made before the fork
parent = client_id()
pid = os.fork()
if pid == 0:
    mine = [add.delay(1, i) for i in range(50)]
    os._exit(0 if client_id() != parent and read_back([*made, *mine]) else 3)
_, status = os.waitpid(pid, 0)
mine = [add.delay(2, i) for i in range(50)]
good = client_id() == parent and read_back([*made, *mine])
raise SystemExit(os.waitstatus_to_exitcode(status) or (0 if good else 4))
"""


def test_a_forked_child_talks_to_redis_on_a_connection_of_its_own(queue, prefix, redis_client):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(Path(__file__).parent.parent),
        "JOBS_TEST_PREFIX": prefix,
    }
    done = subprocess.run([sys.executable, "-c", FORKS], env=env, capture_output=True, timeout=60)

    assert done.returncode == 0, done.stderr.decode()[-2000:]
    expected = [[n, i] for n in range(3) for i in range(50)]
    assert sorted(ready_args(queue, redis_client)) == expected


def test_enqueue_works_at_once_after_redis_restarts(private_redis, queue):
    first = add.delay(1, 2)
    private_redis.stop()
    with pytest.raises(RedisUnavailable):
        add.delay(3, 4)
    private_redis.start()

    second = add.delay(5, 6)

    assert queue.get_job(first.id).args == [1, 2]
    assert queue.get_job(second.id).args == [5, 6]


def test_a_connection_the_server_closed_is_made_afresh(private_redis, queue):
    add.delay(1, 2)
    with private_redis.client() as admin:
        admin.client_kill_filter(_type="normal", skipme=True)

    handle = add.delay(3, 4)

    assert queue.get_job(handle.id).args == [3, 4]
    with private_redis.client() as admin:
        assert admin.llen(queue.keys.queue("default", JobPriority.NORMAL)) == 2
