"""``manage.py jobs``: the subcommands that change jobs (requeue, cancel, delete, purge, enqueue),
their confirmation, what they print, and where every job is afterwards (the census)."""

import json
import time
from unittest import mock

import pytest
from django.core.management.base import CommandError

from django_jobs.flow import Flow
from django_jobs.worker.leases import Leases
from tests.census import assert_census
from tests.cli import ADD, CommandLine, failed_job, jobs_cli, jobs_cli_error, jobs_json


@pytest.fixture
def cli(tmp_path, prefix, jobs_settings):
    return CommandLine(tmp_path, prefix)


def answer(text):
    """Answer the confirmation question with ``text``."""
    return mock.patch("builtins.input", return_value=text)


def no_question():
    """Fail the test if a question is asked."""
    return mock.patch("builtins.input", side_effect=AssertionError("asked"))


# -- confirmation -------------------------------------------------------------------------------


def test_a_destructive_command_asks_first_and_does_nothing_unless_the_answer_is_yes(
    queue, redis_client
):
    dead = failed_job(queue)

    with answer("n"), pytest.raises(CommandError, match="Nothing done: not confirmed"):
        jobs_cli("purge", "--dead")
    assert_census(queue, redis_client, {dead.id: "dead"})

    with answer("yes") as asked:
        assert jobs_cli("purge", "--dead") == "Purged 1 dead jobs.\n"
    asked.assert_called_once()
    assert_census(queue, redis_client, {})


def test_the_question_goes_to_stderr_and_an_answer_on_stdin_is_read(cli, queue, redis_client):
    dead = failed_job(queue)

    refused = cli("requeue", dead.id, "--json", stdin="n\n")
    closed = cli("requeue", dead.id, "--json", stdin="")
    assert_census(queue, redis_client, {dead.id: "dead"})
    done = cli("requeue", dead.id, "--json", stdin="y\n")

    assert refused.returncode == 1
    assert refused.stdout == ""
    assert (
        refused.stderr == "Requeue 1 dead job? [y/N] CommandError: Nothing done: not confirmed.\n"
    )
    assert closed.returncode == 1
    assert "pass --noinput to run without asking" in closed.stderr
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"jobs": [{"id": dead.id, "outcome": "requeued", "ok": True}]}
    assert_census(queue, redis_client, {dead.id: "queue:reports:normal"})


@pytest.mark.parametrize("flag", ["--noinput", "--no-input", "--yes"])
def test_noinput_and_yes_skip_the_question(queue, redis_client, flag):
    dead = failed_job(queue)

    with no_question():
        jobs_cli("delete", dead.id, flag)

    assert_census(queue, redis_client, {})


# -- requeue ------------------------------------------------------------------------------------


def test_requeue_moves_dead_jobs_back_and_reports_each_id_it_could_not(queue, redis_client):
    dead = failed_job(queue)
    pending = queue.enqueue(ADD, [1, 2])

    jobs_cli_error("requeue", dead.id, "nope", pending.id, "--noinput")

    assert_census(
        queue, redis_client, {dead.id: "queue:reports:normal", pending.id: "queue:default:normal"}
    )
    assert queue.get_job(dead.id).status == "pending"


def test_requeue_says_what_became_of_each_id_in_human_and_json_form(queue):
    dead = failed_job(queue)
    pending = queue.enqueue(ADD, [1, 2])

    text, error = jobs_cli_error("requeue", dead.id, pending.id, "nope", "--noinput")
    dead_again = failed_job(queue)
    data, _ = jobs_cli_error("requeue", dead_again.id, "nope", "--noinput", "--json")

    assert text.splitlines() == [
        f"{dead.id}: requeued",
        f"{pending.id}: not dead: it is pending; left as it is",
        "nope: no such job (unknown, or expired)",
    ]
    assert str(error) == f"2 of 3 jobs could not be requeued: {pending.id}, nope."
    assert json.loads(data) == {
        "jobs": [
            {"id": dead_again.id, "outcome": "requeued", "ok": True},
            {"id": "nope", "outcome": "missing", "ok": False},
        ]
    }


def test_requeue_all_dead_of_one_name(queue, redis_client):
    adds = [failed_job(queue) for _ in range(2)]
    sleep = failed_job(queue, name="tests.testapp.jobs.sleep")

    with answer("y") as asked:
        text = jobs_cli("requeue", "--all-dead", "--name", ADD)

    assert asked.call_count == 1
    assert text == "Requeued 2 dead jobs.\n"
    expected = {job.id: "queue:reports:normal" for job in adds}
    assert_census(queue, redis_client, {**expected, sleep.id: "dead"})
    data = jobs_json("requeue", "--all-dead", "--yes")
    assert data == {"jobs": [{"id": sleep.id, "outcome": "requeued", "ok": True}]}
    assert_census(queue, redis_client, {**expected, sleep.id: "queue:reports:normal"})


def held_dead_letter(queue):
    """A dead job of queue ``reports`` whose unique key a job pending in ``default`` holds, and
    that job."""
    unique = Flow.of(unique_key="report:1")
    queue.enqueue(ADD, [1, 2], max_retries=0, queue="reports", flow=unique)
    leases = Leases(queue.prefix)
    dead = leases.dequeue(queues=["reports"], worker_id="w-1")
    leases.fail_job(dead, "ValueError: boom")
    return dead, queue.enqueue(ADD, [3, 4], flow=unique)


def test_requeue_says_which_job_holds_the_unique_key_of_a_dead_job_it_left(queue, redis_client):
    dead, holder = held_dead_letter(queue)
    other = failed_job(queue)
    held = f"its unique key is held by job {holder.id}; left in the dead letters"

    text, error = jobs_cli_error("requeue", dead.id, other.id, "--noinput")
    data, _ = jobs_cli_error("requeue", dead.id, "--noinput", "--json")

    assert text.splitlines() == [f"{dead.id}: {held}", f"{other.id}: requeued"]
    assert str(error) == f"1 of 2 jobs could not be requeued: {dead.id}."
    assert json.loads(data) == {
        "jobs": [{"id": dead.id, "outcome": "held", "ok": False, "held_by": holder.id}]
    }
    expected = {holder.id: "queue:default:normal", other.id: "queue:reports:normal"}
    assert_census(queue, redis_client, {**expected, dead.id: "dead"})


def test_requeue_all_dead_requeues_the_rest_and_names_the_jobs_a_held_key_left(queue, redis_client):
    first = failed_job(queue)
    dead, holder = held_dead_letter(queue)
    last = failed_job(queue)

    text, error = jobs_cli_error("requeue", "--all-dead", "--noinput")
    expected = dict.fromkeys((first.id, last.id), "queue:reports:normal")
    expected.update({holder.id: "queue:default:normal", dead.id: "dead"})
    assert_census(queue, redis_client, expected)
    data, _ = jobs_cli_error("requeue", "--all-dead", "--noinput", "--json")

    assert text.splitlines() == [
        "Requeued 2 dead jobs.",
        f"{dead.id}: its unique key is held by job {holder.id}; left in the dead letters",
    ]
    assert str(error) == f"1 of 3 jobs could not be requeued: {dead.id}."
    assert json.loads(data) == {
        "jobs": [{"id": dead.id, "outcome": "held", "ok": False, "held_by": holder.id}]
    }


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["requeue", "--noinput"], "give the ids of dead jobs, or --all-dead"),
        (["requeue", "a", "--all-dead"], "give the ids of dead jobs, or --all-dead"),
        (["requeue", "a", "--name", ADD], "--name goes with --all-dead"),
        (["purge", "--queue", "default", "--older-than", "1d"], "--older-than goes with"),
    ],
)
def test_options_that_do_not_go_together_are_bad_usage(queue, cli, args, problem):
    with pytest.raises(CommandError, match=f"Error: {problem}"):
        jobs_cli(*args)
    done = cli(*args)
    assert done.returncode == 2
    assert problem in done.stderr


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_cancels_what_it_can_and_names_what_it_could_not(queue, redis_client):
    pending = queue.enqueue(ADD, [1, 2], queue="emails")
    queue.enqueue(ADD, [1, 2])
    running = Leases(queue.prefix).dequeue(queues=["default"], lease=30)
    dead = failed_job(queue)

    data, error = jobs_cli_error(
        "cancel", pending.id, running.id, dead.id, "nope", "--yes", "--json"
    )

    assert json.loads(data) == {
        "jobs": [
            {"id": pending.id, "outcome": "cancelled", "ok": True},
            {"id": running.id, "outcome": "requested", "ok": True},
            {"id": dead.id, "outcome": "failed", "ok": False},
            {"id": "nope", "outcome": "missing", "ok": False},
        ]
    }
    assert str(error) == f"2 of 4 jobs could not be cancelled: {dead.id}, nope."
    assert_census(
        queue, redis_client, {pending.id: "cancelled", running.id: "processing", dead.id: "dead"}
    )
    assert queue.get_job(running.id).cancel_requested


def test_cancel_says_what_became_of_each_job(queue):
    pending = queue.enqueue(ADD, [1, 2], queue="emails")
    queue.enqueue(ADD, [1, 2])
    running = Leases(queue.prefix).dequeue(queues=["default"], lease=30)
    dead = failed_job(queue)

    text, _ = jobs_cli_error("cancel", pending.id, running.id, dead.id, "--yes")

    assert text.splitlines() == [
        f"{pending.id}: cancelled",
        f"{running.id}: running: its worker was asked to stop it",
        f"{dead.id}: already failed; left as it is",
    ]


# -- delete -------------------------------------------------------------------------------------


def test_delete_deletes_all_but_running_and_unknown_ids(queue, redis_client):
    pending = queue.enqueue(ADD, [1, 2], queue="emails")
    queue.enqueue(ADD, [1, 2])
    running = Leases(queue.prefix).dequeue(queues=["default"], lease=30)
    dead = failed_job(queue)

    text, error = jobs_cli_error("delete", pending.id, running.id, dead.id, "nope", "--yes")

    assert str(error) == f"2 of 4 jobs could not be deleted: {running.id}, nope."
    assert text.splitlines() == [
        f"{pending.id}: deleted (it was pending)",
        f"{running.id}: running: cancel it first, then delete it",
        f"{dead.id}: deleted (it was failed)",
        "nope: no such job (unknown, or expired)",
    ]
    assert_census(queue, redis_client, {running.id: "processing"})
    assert queue.get_job(pending.id) is None


def test_delete_as_json(queue, redis_client):
    dead = failed_job(queue)

    data = jobs_json("delete", dead.id, "--yes")

    assert data == {"jobs": [{"id": dead.id, "outcome": "deleted", "ok": True}]}
    assert_census(queue, redis_client, {})


# -- purge --------------------------------------------------------------------------------------


def test_purge_of_a_queue_deletes_its_pending_jobs_only(queue, redis_client):
    for _ in range(3):
        queue.enqueue(ADD, [1, 2], queue="emails")
    queue.enqueue(ADD, [1, 2], queue="emails", delay=600)
    keep = queue.enqueue(ADD, [1, 2])

    with answer("y"):
        text = jobs_cli("purge", "--queue", "emails")

    assert text == "Purged 4 pending jobs of queue 'emails'.\n"
    assert_census(queue, redis_client, {keep.id: "queue:default:normal"})


def test_purge_older_than_keeps_the_recent_ones(queue, redis_client):
    old = queue.enqueue(ADD, [1, 2], queue="emails")
    queue.cancel_job(old.id)
    two_days_ago = time.time() - 2 * 86400
    redis_client.zadd(queue.keys.cancelled, {old.id: two_days_ago})  # as if cancelled then
    recent = queue.enqueue(ADD, [1, 2], queue="emails")
    queue.cancel_job(recent.id)

    data = jobs_json("purge", "--cancelled", "--older-than", "1d", "--noinput")

    assert data == {
        "purged": 1,
        "state": "cancelled",
        "queue": None,
        "name": None,
        "older_than": 86400.0,
    }
    assert_census(queue, redis_client, {recent.id: "cancelled"})


def test_purge_of_completed_jobs_of_one_name(queue, redis_client):
    leases = Leases(queue.prefix)
    queue.enqueue(ADD, [1, 2])
    queue.enqueue("tests.testapp.jobs.sleep", [0])
    add, sleep = leases.dequeue(), leases.dequeue()
    leases.complete_job(add, 3)
    leases.complete_job(sleep, 0)

    text = jobs_cli("purge", "--completed", "--name", ADD, "--older-than", "0s", "--yes")

    assert text == f"Purged 1 completed jobs named '{ADD}' older than 0s.\n"
    assert_census(queue, redis_client, {sleep.id: "completed"})


def test_purge_of_an_unknown_queue_is_an_error(queue):
    with pytest.raises(CommandError, match="Unknown queue 'nope'"):
        jobs_cli("purge", "--queue", "nope", "--yes")


# -- enqueue ------------------------------------------------------------------------------------


def test_enqueue_stores_a_registered_job_with_its_arguments_and_options(queue, redis_client):
    text = jobs_cli(
        "enqueue",
        ADD,
        "[1]",
        "--kwargs",
        '{"b": 2}',
        "--queue",
        "emails",
        "--priority",
        "critical",
        "--delay",
        "15m",
    )

    job_id = text.split()[1]
    assert text.startswith(f"Enqueued {job_id} ({ADD}) on queue emails, priority critical, due in")
    job = queue.get_job(job_id)
    assert (job.args, job.kwargs, job.queue, job.priority.name) == (
        [1],
        {"b": 2},
        "emails",
        "CRITICAL",
    )
    assert 890 < (job.scheduled_at - job.created_at).total_seconds() <= 900
    assert_census(queue, redis_client, {job_id: "scheduled"})


def test_enqueue_takes_the_jobs_own_options_and_writes_the_job_as_json(queue, redis_client):
    data = jobs_json("enqueue", "tests.report", '["monthly"]')

    assert data["name"] == "tests.report"
    assert (data["queue"], data["priority"], data["max_retries"]) == ("reports", "high", 1)
    assert data["args"] == ["monthly"]
    assert data["status"] == "pending"
    assert_census(queue, redis_client, {data["id"]: "queue:reports:high"})


def test_enqueue_of_an_unknown_name_names_the_close_ones(queue, redis_client):
    with pytest.raises(CommandError, match=rf"No job is registered as 'add'. Did you mean: {ADD}"):
        jobs_cli("enqueue", "add")
    with pytest.raises(CommandError, match=r"Did you mean: tests.testapp.jobs.add"):
        jobs_cli("enqueue", "tests.testapp.jobs.ad")
    assert_census(queue, redis_client, {})


def test_enqueue_with_arguments_the_job_does_not_take_is_an_error(queue, redis_client):
    with pytest.raises(CommandError, match=r"missing a required argument: 'b'"):
        jobs_cli("enqueue", ADD, "[1]")
    with pytest.raises(CommandError, match=r"Error: argument ARGS_JSON: '\{\}' is not a JSON list"):
        jobs_cli("enqueue", ADD, "{}")
    assert_census(queue, redis_client, {})


def test_an_enqueued_job_runs_in_a_real_worker_and_show_gives_its_result(cli, workers, queue):
    done = cli("enqueue", ADD, "[20, 22]", "--json")
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["id"]

    worker = workers.start("--burst", "--concurrency", "1")
    assert worker.wait(timeout=60) == 0, workers.logs()

    shown = cli("show", job_id)
    assert shown.returncode == 0
    assert "  state     completed" in shown.stdout
    assert "Result:\n  42\n" in shown.stdout
