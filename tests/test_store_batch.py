"""Many independent plans at once (store/batch.py, the scheduler's due ticks): their first steps
in one pipeline, their later steps after, a refused step raised inside its own plan only."""

from redis.client import Pipeline

from django_jobs.exceptions import StoreError
from django_jobs.store.batch import run_each
from django_jobs.store.commands import Command


def pushed(key, value):
    """Two steps: push ``value``, then read the list's length."""
    yield Command(("RPUSH", key, value))
    return (yield Command(("LLEN", key)))


def refused(key):
    """One step that Redis refuses (``key`` is not a list); says what came back."""
    try:
        yield Command(("LPUSH", key, "x"))
    except StoreError as exc:
        return f"refused: {exc}"
    return "accepted"


def test_first_steps_go_in_one_pipeline_and_a_refusal_stays_in_its_plan(
    jobs_settings, prefix, redis_client, monkeypatch
):
    redis_client.set(f"{prefix}:text", "not a list")
    pipelines = []
    execute = Pipeline.execute

    def counted(pipe, *args, **kwargs):
        pipelines.append(len(pipe.command_stack))
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", counted)

    values = run_each(
        [pushed(f"{prefix}:a", 1), refused(f"{prefix}:text"), pushed(f"{prefix}:b", 2)]
    )

    assert pipelines == [3]
    assert values[0] == values[2] == 1
    assert values[1].startswith("refused: Redis refused a command: WRONGTYPE")
    assert redis_client.lrange(f"{prefix}:a", 0, -1) == ["1"]
    assert redis_client.get(f"{prefix}:text") == "not a list"


def test_no_plans_send_nothing(jobs_settings):
    assert run_each([]) == []


def test_run_each_gives_each_plan_its_value_or_the_error_it_did_not_catch(
    jobs_settings, prefix, redis_client
):
    redis_client.set(f"{prefix}:text", "not a list")

    def plans():
        return [
            pushed(f"{prefix}:a", 1),
            pushed(f"{prefix}:text", 2),  # refused, and the plan does not catch it
            pushed(f"{prefix}:b", 3),
        ]

    first, error, last = run_each(plans())

    assert (first, last) == (1, 1)
    assert isinstance(error, StoreError)
    assert "WRONGTYPE" in str(error)
    assert redis_client.lrange(f"{prefix}:b", 0, -1) == ["3"], "the others ran all the same"
