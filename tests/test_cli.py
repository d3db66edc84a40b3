"""``manage.py jobs``: the subcommands that look (stats, list, show, workers), exit statuses and
errors, usage, and the real command line. The ones that change jobs: tests/test_cli_actions.py."""

import json
import re
import signal
import time

import pytest
from django.core.management.base import CommandError

from django_jobs.management.commands.jobs import SUBCOMMANDS, Command
from django_jobs.management.jobs.output import age, duration
from django_jobs.serialization import utcnow
from django_jobs.store import worker_calls
from django_jobs.store.execute import run
from django_jobs.worker.leases import Leases
from tests.cli import ADD, CommandLine, failed_job, jobs_cli, jobs_json

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")


@pytest.fixture
def cli(tmp_path, prefix, jobs_settings):
    return CommandLine(tmp_path, prefix)


# -- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("12h", 43200), ("7d", 604800), ("1h30m", 5400), ("45", 45)],
)
def test_durations_are_read_in_seconds_minutes_hours_and_days(text, seconds):
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7x", "d7", "-5s", "1.5.2h", "soon"])
def test_what_is_not_a_duration_is_refused(text):
    with pytest.raises(Exception, match="is not a duration"):
        duration(text)


def test_ages_are_written_the_way_durations_are_read():
    assert [age(s) for s in (None, 0, 42, 192, 7500, 273600)] == [
        "-",
        "0s",
        "42s",
        "3m 12s",
        "2h 5m",
        "3d 4h",
    ]


# -- stats --------------------------------------------------------------------------------------


def test_stats_show_pending_jobs_and_the_oldest_age_per_queue_and_priority(queue):
    queue.enqueue(ADD, [1, 2], priority="high")
    queue.enqueue(ADD, [1, 2], priority="high")
    queue.enqueue(ADD, [1, 2], queue="emails", priority="low")
    queue.enqueue(ADD, [1, 2], delay=600)
    failed_job(queue)

    text = jobs_cli("stats")

    lines = text.splitlines()
    assert re.fullmatch(r"default\s+high\s+2\s+\d+s", lines[1])
    assert re.fullmatch(r"emails\s+low\s+1\s+\d+s", lines[2])
    assert re.fullmatch(r"reports\s+-\s+0\s+-", lines[3])
    assert "Jobs: 4 pending (1 of them scheduled for later), 0 retrying, 0 running, 1 dead" in text
    assert "Workers: 0 live, 0 dead in the last hour" in text
    assert "Warning: no live worker serves queue 'default'; its 2 ready jobs wait." in text
    assert "Warning: no live worker serves queue 'emails'; its 1 ready job waits." in text


def test_stats_as_json_are_the_queue_api_stats_with_a_time(queue):
    queue.enqueue(ADD, [1, 2], queue="emails", priority="critical")

    data = jobs_json("stats")

    assert ISO_UTC.fullmatch(data.pop("at"))
    expected = queue.stats()
    assert data["oldest"]["emails"]["critical"] >= 0
    for found in (data, expected):
        found["oldest"]["emails"]["critical"] = "some"
    assert data == expected
    assert set(data) == {"queues", "states", "counters", "workers", "unserved", "oldest", "limits"}


def test_stats_watch_refreshes_the_screen_until_ctrl_c_which_exits_0(cli, queue):
    queue.enqueue(ADD, [1, 2])
    proc = cli.popen("stats", "--watch", "0.2")
    try:
        seen = []
        while len([line for line in seen if "Every 0.2s" in line]) < 3:
            line = proc.stdout.readline()
            assert line, "the watch ended early"
            seen.append(line)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    frames = "".join([*seen, out]).split("\x1b[H\x1b[2J")[1:]
    assert len(frames) >= 3
    assert frames[0].startswith("Every 0.2s: manage.py jobs stats")
    assert re.search(r"default\s+normal\s+1", frames[1])
    assert "Traceback" not in err


def test_stats_watch_as_json_writes_one_document_a_line(cli, queue):
    proc = cli.popen("stats", "--watch", "0.1", "--json")
    try:
        line = proc.stdout.readline()  # the first document: Django has started
        queue.enqueue(ADD, [1, 2])
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    documents = [json.loads(text) for text in [line, *out.splitlines()]]
    assert len(documents) >= 3
    assert documents[0]["states"]["pending"] == 0
    assert documents[-1]["states"]["pending"] == 1


# -- list ---------------------------------------------------------------------------------------


def test_list_shows_a_page_and_the_command_for_the_next_one(queue):
    ids = [queue.enqueue(ADD, [i, 1], queue="emails").id for i in range(5)]

    first = jobs_cli("list", "--queue", "emails", "--limit", "2")

    lines = first.splitlines()
    headers = ["ID", "STATE", "NAME", "QUEUE", "PRIORITY", "ATTEMPT", "CREATED", "NOTE"]
    assert lines[0].split() == headers
    assert [line.split()[0] for line in lines[1:3]] == ids[:2]
    assert lines[1].split()[1:6] == ["pending", ADD, "emails", "normal", "1"]
    more = lines[-1]
    assert more == "More: manage.py jobs list --queue emails --limit 2 --cursor 2"

    second = jobs_cli(*more.split()[3:])
    third = jobs_cli("list", "--queue", "emails", "--limit", "2", "--cursor", "4")

    assert [line.split()[0] for line in second.splitlines()[1:3]] == ids[2:4]
    assert third.splitlines()[1].split()[0] == ids[4]
    assert "More:" not in third


def test_list_as_json_gives_the_jobs_as_dicts_and_the_cursor(queue):
    dead = failed_job(queue)
    queue.enqueue(ADD, [1, 2])

    data = jobs_json("list", "--state", "dead")

    assert set(data) == {"jobs", "cursor", "total", "scanned", "parked_unread"}
    assert data["cursor"] is None
    assert data["total"] == 1
    (job,) = data["jobs"]
    assert job["id"] == dead.id
    assert job["status"] == "failed"
    assert job["attempt"] == 1
    assert ISO_UTC.fullmatch(job["created_at"])
    assert ISO_UTC.fullmatch(job["errors"][0]["failed_at"])
    assert job["errors"][0]["error"] == "ValueError: boom"


def test_list_filters_by_name_and_by_user(queue):
    mine = queue.enqueue(ADD, [1, 2], user_id=7)
    queue.enqueue(ADD, [1, 2], user_id=8)
    other = queue.enqueue("tests.testapp.jobs.sleep", [0])

    assert [j["id"] for j in jobs_json("list", "--user", "7")["jobs"]] == [mine.id]
    named = jobs_json("list", "--name", "tests.testapp.jobs.sleep")
    assert [j["id"] for j in named["jobs"]] == [other.id]
    assert named["scanned"] == 3
    assert "1 shown; the filters looked at 3 of 3." in jobs_cli(
        "list", "--name", "tests.testapp.jobs.sleep"
    )


def test_list_of_an_unknown_queue_is_an_error_that_names_the_queues(queue):
    with pytest.raises(CommandError, match=r"Unknown queue 'nope'.*'default', 'emails'"):
        jobs_cli("list", "--queue", "nope")


# -- show ---------------------------------------------------------------------------------------


def test_show_gives_the_record_arguments_each_failure_and_the_timeline(queue):
    job = failed_job(queue)

    text = jobs_cli("show", job.id)

    assert text.startswith(f"Job {job.id}\n")
    assert f"  name      {ADD}\n  state     failed\n  queue     reports\n" in text
    assert "  attempt   1 (0 of 0 retries used, 0 lost to dead workers)" in text
    assert "  worker    w-1" in text
    assert "Args:\n  [1, 2]\nKwargs:\n  {}\n" in text
    assert re.search(r"  attempt 1, \S+\+00:00 on w-1: ValueError: boom\n", text)
    assert '    Traceback (most recent call last):\n      File "jobs.py", line 3\n' in text
    timeline = text.split("Timeline:\n")[1].splitlines()
    assert [re.sub(r"^  \S+  ", "", line) for line in timeline] == [
        "enqueued: reports, normal",
        "attempt 1 started: on w-1",
        "attempt 1 failed: ValueError: boom on w-1",
        "failed: ValueError: boom",
    ]


def test_show_counts_the_run_of_a_late_worker_in_the_attempt(queue):
    job = queue.enqueue(ADD, [1, 2])
    leases = Leases(queue.prefix)
    late = leases.dequeue(worker_id="frozen", lease=0.05)
    time.sleep(0.1)  # its worker froze: the lease ran out while the job ran
    leases.recover_expired()
    assert leases.complete_job(late, 3) is False  # it finished after all, unrecorded

    text = jobs_cli("show", job.id)

    attempt = "2 (0 of 3 retries used, 0 lost to dead workers, 1 run again after a late worker)"
    assert f"  attempt   {attempt}" in text
    assert jobs_json("show", job.id)["late_count"] == 1


def test_show_of_a_completed_job_gives_its_result_and_as_json_its_timeline(queue):
    queue.enqueue(ADD, [1, 2], kwargs={}, user_id="ann")
    leases = Leases(queue.prefix)
    job = leases.dequeue(worker_id="w-2")
    leases.complete_job(job, {"sum": 3})

    assert 'Result:\n  {"sum": 3}\n' in jobs_cli("show", job.id)
    data = jobs_json("show", job.id)

    assert data["result"] == {"sum": 3}
    assert data["status"] == "completed"
    assert data["user_id"] == "ann"
    assert [event["event"] for event in data["timeline"]] == [
        "enqueued",
        "attempt 1 started",
        "completed",
    ]
    assert all(ISO_UTC.fullmatch(event["at"]) for event in data["timeline"])
    assert set(data) >= set(job.to_dict()) | {"attempt", "timeline"}


def test_show_of_an_unknown_id_is_an_error(queue):
    with pytest.raises(CommandError, match=r"There is no job 'nope' \(unknown, or expired\)"):
        jobs_cli("show", "nope")


# -- workers ------------------------------------------------------------------------------------


def beat(queue, worker_id, *, jobs=(), ttl=60.0, at=None):
    """A heartbeat as a running ``runworker`` writes it."""
    now = utcnow().timestamp() if at is None else at
    fields = worker_calls.worker_record(
        host="web-1",
        pid=4242,
        queues=["default", "emails"],
        concurrency=4,
        started_at=now - 7300,
        jobs=list(jobs),
        version="1.0",
        stopping=False,
    )
    run(
        worker_calls.worker_beat(
            queue.keys, worker_id=worker_id, fields=fields, now=now, ttl=ttl, forget_before=0
        )
    )


def test_workers_lists_live_and_dead_ones_with_their_current_jobs(queue):
    queue.enqueue(ADD, [1, 2])
    running = Leases(queue.prefix).dequeue(worker_id="w-live")
    beat(queue, "w-live", jobs=[running.id])
    beat(queue, "w-dead", ttl=0.05, at=utcnow().timestamp() - 120)
    time.sleep(0.1)

    text = jobs_cli("workers")
    data = jobs_json("workers")

    lines = text.splitlines()
    assert lines[0].split() == [
        "ID", "STATE", "HOST", "PID", "QUEUES", "CONCURRENCY", "STARTED", "LAST", "BEAT"
    ]  # fmt: skip
    assert re.fullmatch(
        r"w-live\s+live\s+web-1\s+4242\s+default,emails\s+4\s+2h 1m ago\s+\d+s ago", lines[1]
    )
    assert re.fullmatch(rf"    running {running.id} {ADD}, started \d+s ago", lines[2])
    assert re.fullmatch(r"w-dead\s+dead\s+-\s+-\s+-\s+-\s+-\s+2m ago", lines[3])
    live, dead = data["workers"]
    assert live["id"] == "w-live"
    assert live["state"] == "live"
    assert live["queues"] == ["default", "emails"]
    assert live["concurrency"] == 4
    assert ISO_UTC.fullmatch(live["last_beat"])
    assert live["jobs"] == [
        {
            "id": running.id,
            "name": ADD,
            "status": "running",
            "started_at": live["jobs"][0]["started_at"],
        }
    ]
    assert ISO_UTC.fullmatch(live["jobs"][0]["started_at"])
    assert dead["state"] == "dead"
    assert dead["alive"] is False
    assert dead["host"] is None


def test_workers_says_when_there_are_none(queue):
    assert jobs_cli("workers") == "No workers beat in the last hour.\n"
    assert jobs_json("workers") == {"workers": []}


# -- the command line: statuses, errors, usage, help ---------------------------------------------


def test_an_unknown_id_exits_1_with_one_line_and_no_traceback(cli):
    done = cli("show", "nope")

    assert done.returncode == 1
    assert done.stderr == "CommandError: There is no job 'nope' (unknown, or expired).\n"
    assert done.stdout == ""


def test_redis_unavailable_exits_1_with_one_line_that_hides_the_password(cli):
    done = cli(
        "stats",
        settings={
            "REDIS_URL": "redis://ops:hunter2sekrit@127.0.0.1:1/0",
            "REDIS_CONNECT_TIMEOUT": 1,
        },
    )

    assert done.returncode == 1
    assert done.stderr.startswith("CommandError: ")
    assert "redis://ops:***@127.0.0.1:1/0" in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "hunter2" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["sleep"],
        ["list", "--state", "sleeping"],
        ["list", "--limit", "0"],
        ["stats", "--watch", "0"],
        ["purge"],
        ["purge", "--dead", "--completed"],
        ["purge", "--dead", "--older-than", "a week"],
        ["requeue"],
        ["enqueue", ADD, "{not json"],
    ],
)
def test_bad_usage_exits_2_with_argparse_usage(cli, args):
    done = cli(*args)

    assert done.returncode == 2, done.stderr
    assert "usage:" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_usage_under_call_command_is_a_command_error(queue):
    with pytest.raises(CommandError, match="invalid choice: 'sleeping'"):
        jobs_cli("list", "--state", "sleeping")


def test_djangos_own_options_work_after_the_subcommand_too(cli, queue):
    queue.enqueue(ADD, [1, 2])

    done = cli("list", "--no-color", "--traceback", "-v", "2")
    before = cli("-v", "2", "list")

    assert done.returncode == 0, done.stderr
    assert "1 shown of 1 pending jobs." in done.stdout
    assert before.stdout.splitlines()[1].split()[:3] == done.stdout.splitlines()[1].split()[:3]


def test_every_subcommand_has_help_with_json(cli):
    command = Command()
    command.create_parser("manage.py", "jobs")
    parsers = command.parsers
    assert set(parsers) == set(SUBCOMMANDS) == {
        "stats", "list", "show", "workers", "requeue", "cancel", "delete", "purge",
        "move-queue", "enqueue"
    }  # fmt: skip
    for name, parser in parsers.items():
        assert "--json" in parser.format_help(), name
    done = cli("purge", "--help")
    assert done.returncode == 0
    assert "--noinput, --no-input, --yes" in done.stdout
