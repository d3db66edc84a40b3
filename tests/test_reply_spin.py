"""A sync thread polls for a reply for up to ``REPLY_SPIN_MICROSECONDS`` before it sleeps on
the socket (store/spin.py): a reply that comes within it is read at once, a poll that times out
backs the thread off (1, 2, 4 ... 1,024 commands without polling), and a reply that comes later
is still read, as it always was. ``runworker`` and ``runscheduler`` never poll; 0 turns it off."""

import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from django.db import connection

from django_jobs import JobPriority
from django_jobs.store import spin
from django_jobs.store.connection import get_redis, kept
from tests.processes import REPO, Processes
from tests.test_kept_connection import ready_args
from tests.testapp import jobs
from tests.testing_jobs import add


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def test_a_reply_already_there_is_found_at_once(pair):
    ours, theirs = pair
    theirs.sendall(b"+OK\r\n")
    waits = spin.ReplySpin()

    started = time.perf_counter()
    assert waits.wait(ours, 1.0) is True

    assert time.perf_counter() - started < 0.5
    assert (waits.skip, waits.backoff) == (0, 1)


def test_a_reply_that_comes_while_polling_is_found_before_the_time_is_up(pair):
    ours, theirs = pair
    threading.Timer(0.02, theirs.sendall, (b"+OK\r\n",)).start()

    started = time.perf_counter()
    assert spin.ReplySpin().wait(ours, 5.0) is True

    assert 0.015 < time.perf_counter() - started < 2.5


def test_polls_that_time_out_skip_the_next_1_2_4_commands_up_to_1024(pair):
    ours, _ = pair
    waits = spin.ReplySpin()
    skipped = []
    for _ in range(13):
        started = time.perf_counter()
        assert waits.wait(ours, 0.0002) is False  # nothing comes
        assert time.perf_counter() - started >= 0.0002
        count = 0
        while waits.skip:
            started = time.perf_counter()
            assert waits.wait(ours, 10.0) is False  # skipped: no poll, no wait
            assert time.perf_counter() - started < 1.0
            count += 1
        skipped.append(count)

    assert skipped == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1024, 1024]


def test_a_reply_found_while_polling_ends_the_back_off(pair):
    ours, theirs = pair
    waits = spin.ReplySpin()
    for _ in range(3):
        assert waits.wait(ours, 0.0001) is False
        while waits.skip:
            waits.wait(ours, 0.0001)
    assert waits.backoff == 8

    theirs.sendall(b"+OK\r\n")
    assert waits.wait(ours, 1.0) is True

    assert (waits.skip, waits.backoff) == (0, 1)


def test_a_new_socket_is_polled_once_the_old_one_is_gone(pair):
    ours, theirs = pair
    waits = spin.ReplySpin()
    theirs.sendall(b"+OK\r\n")
    assert waits.wait(ours, 1.0) is True
    fresh, other = socket.socketpair()
    try:
        other.sendall(b"+OK\r\n")
        assert waits.wait(fresh, 1.0) is True
        assert waits.sock is fresh
    finally:
        fresh.close()
        other.close()


def polls_of_a_new_thread(action):
    """What this module's polling did in a thread of its own (a thread's polling state is its
    own) while ``action`` ran there: the socket it polled, beside the connection the thread
    keeps."""
    seen = {}

    def run():
        action()
        seen["sock"] = spin._spin.sock
        seen["connection"] = kept(get_redis())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen


def test_an_enqueue_polls_the_connection_its_thread_keeps_and_finds_its_reply(queue, redis_client):
    seen = polls_of_a_new_thread(lambda: [add.delay(1, i) for i in range(20)])

    assert seen["sock"] is seen["connection"]._sock
    assert ready_args(queue, redis_client) == [[1, i] for i in range(20)]


def test_zero_turns_polling_off(queue, configure, redis_client):
    configure(REPLY_SPIN_MICROSECONDS=0)

    seen = polls_of_a_new_thread(lambda: add.delay(1, 2))

    assert seen["sock"] is None
    assert ready_args(queue, redis_client) == [[1, 2]]


def test_a_reply_later_than_the_poll_is_still_read_and_the_thread_backs_off(private_redis, queue):
    """Redis frozen (SIGSTOP) while an enqueue waits: its poll times out, the read blocks as it
    always did, and the job is stored once, when Redis goes on."""
    add.delay(0, 0)  # the connection and the scripts are there before the freeze
    got = {}

    def enqueue():
        got["handle"] = add.delay(1, 2)
        got["skip"] = spin._spin.skip
        got["backoff"] = spin._spin.backoff

    private_redis.proc.send_signal(signal.SIGSTOP)
    try:
        thread = threading.Thread(target=enqueue)
        thread.start()
        time.sleep(0.2)
        assert thread.is_alive()  # waiting for the reply, not spinning for ever
    finally:
        private_redis.proc.send_signal(signal.SIGCONT)
    thread.join(timeout=10)

    assert (got["skip"], got["backoff"]) == (1, 2)
    with private_redis.client() as client:
        assert ready_args(queue, client) == [[0, 0], [1, 2]]


@pytest.mark.parametrize("value", [-1, 10_001, 1.5, True, "100"])
def test_a_bad_value_raises_before_anything_is_sent(queue, configure, redis_client, value):
    configure(REPLY_SPIN_MICROSECONDS=value)

    with pytest.raises(ValueError, match=r"DJANGO_JOBS\['REPLY_SPIN_MICROSECONDS'\]"):
        add.delay(1, 2)

    assert not redis_client.exists(queue.keys.queue("default", JobPriority.NORMAL))


# runworker and runscheduler turn polling off for their process before they start.
COMMANDS = """
import sys, django
django.setup()
from django.core.management import call_command
from django_jobs.store import spin
before = spin.reply_spin()
call_command(sys.argv[1], *sys.argv[2:])
print(before, spin.reply_spin())
"""


@pytest.mark.parametrize(
    "command", [["runworker", "--burst"], ["runscheduler", "--once"]], ids=lambda c: c[0]
)
def test_worker_and_scheduler_processes_never_poll(
    tmp_path, jobs_settings, prefix, command, transactional_db
):
    env = Processes(tmp_path, prefix, db=connection.settings_dict["NAME"]).env()
    done = subprocess.run(
        [sys.executable, "-c", COMMANDS, *command],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split()[-2:] == ["0.0001", "0.0"]


# A worker's children do not poll either: a forked one as its supervisor left it, a spawned one
# (the supervisor spawns its children off Linux) starting a new interpreter.
CHILDREN = """
import sys, types
import django
django.setup()
from django.core.management import call_command
from django_jobs.worker import supervisor
if sys.argv[1] == "spawn":  # the supervisor spawns its children, as it does off Linux
    supervisor.sys = types.SimpleNamespace(platform="darwin")
call_command("runworker", "--burst", "--concurrency", "1")
"""


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_workers_children_never_poll_forked_or_spawned(tmp_path, jobs_settings, prefix, start):
    handle = jobs.reply_poll.delay()
    env = Processes(tmp_path, prefix).env()
    done = subprocess.run(
        [sys.executable, "-c", CHILDREN, start],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert handle.result(timeout=10) == 0.0
