"""The job record (``django_jobs/job.py``) and the JSON rules (``django_jobs/serialization.py``).

Nothing here talks to Redis: these are the conversions every queue operation relies on.
"""

import json
import re
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from django_jobs import (
    InvalidJobRecord,
    Job,
    JobPriority,
    JobStatus,
    NotJSONSerializable,
    Progress,
)
from django_jobs.serialization import check_json, from_timestamp, utcnow

T0 = datetime(2024, 5, 17, 9, 30, 15, 123456, tzinfo=UTC)
DATETIME_FIELDS = ("created_at", "scheduled_at", "started_at", "finished_at")
PLUS_TWO = timezone(timedelta(hours=2))


def full_job() -> Job:
    """A job with every field set to something other than its default."""
    return Job(
        id="0f8e7d6c5b4a",
        name="reports.build",
        args=[1, -2.5, "naïve ✓", None, True, [1, [2, [3]]], {"deep": {"list": [{"x": 1}]}}],
        kwargs={"user": {"id": 42, "tags": ["a", "b"]}, "empty": {}, "nothing": None, "no": False},
        status=JobStatus.RETRYING,
        priority=JobPriority.HIGH,
        queue="reports",
        created_at=T0,
        scheduled_at=T0 + timedelta(minutes=5, microseconds=1),
        started_at=T0 + timedelta(seconds=1, microseconds=876543),
        finished_at=datetime(2024, 5, 17, 9, 31, 0, 999999, tzinfo=UTC),
        max_retries=5,
        retry_count=2,
        timeout=12.5,
        user_id="42",
        result={"rows": [[1, "a"], [2, "b"]], "total": 2.75, "ok": True, "none": None},
        error="ValueError: boom",
        traceback='Traceback (most recent call last):\n  File "x.py"\nValueError: boom',
        worker_id="host-1:4242:ab12",
        lost_count=1,
        late_count=1,
        errors=[
            {
                "attempt": 1,
                "error": "ValueError: boom",
                "traceback": "Traceback ...",
                "worker_id": "host-1:4242:ab12",
                "failed_at": 1715938215.123456,
            },
            {
                "attempt": 2,
                "error": "KeyError: 'x'",
                "traceback": "",
                "worker_id": "host-2:7:cd34",
                "failed_at": 1715938275.5,
            },
        ],
        lease_token="c0ffee00",
        cancel_requested=True,
        retry_backoff_base=0.5,
        retry_backoff_max=30,
        meta={"priority": -7, "backend": "default", "run_after": None},
        unique_key="reports.build:customer-7",
        unique_until="finished",
        unique_for=3600,
        limits=[["concurrency", "customer:7", 2], ["rate", "queue:reports", 50, 1.0]],
        # Attempt 5: after 2 retried failures, 1 lost worker and 1 late one (older attempts'
        # are not read).
        progress=Progress(3, 10.5, "step ✓", T0 + timedelta(seconds=2, microseconds=7), 5),
        parked="2|reports|concurrency:customer:7",
        after="group:9f8e",
        then="5d6c",
        group="7a7b",
        group_index=3,
        immutable=True,
    )


def minimal_job() -> Job:
    return Job(id="1a2b3c", name="mail.send")


@pytest.fixture(params=["minimal", "full"])
def job(request):
    return {"minimal": minimal_job, "full": full_job}[request.param]()


def _field_named(field: str) -> str:
    return re.escape(f"'{field}'")


# -- JobStatus ------------------------------------------------------------------------------


def test_job_statuses_are_the_seven_lowercase_states_and_the_outbox_one():
    assert [s.value for s in JobStatus] == [
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
        "retrying",
        "waiting",
        "waiting_for_commit",
    ]
    assert JobStatus("running") is JobStatus.RUNNING
    assert JobStatus.RUNNING == "running"


@pytest.mark.parametrize(
    ("status", "finished"),
    [
        (JobStatus.PENDING, False),
        (JobStatus.RUNNING, False),
        (JobStatus.RETRYING, False),
        (JobStatus.COMPLETED, True),
        (JobStatus.FAILED, True),
        (JobStatus.CANCELLED, True),
    ],
)
def test_only_completed_failed_and_cancelled_are_finished(status, finished):
    assert status.is_finished is finished
    assert Job(id="j", name="n", status=status).is_finished is finished


# -- JobPriority ----------------------------------------------------------------------------


def test_priorities_are_ordered_low_normal_high_critical():
    assert JobPriority.LOW < JobPriority.NORMAL < JobPriority.HIGH < JobPriority.CRITICAL
    assert sorted(JobPriority) == [
        JobPriority.LOW,
        JobPriority.NORMAL,
        JobPriority.HIGH,
        JobPriority.CRITICAL,
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (JobPriority.HIGH, JobPriority.HIGH),
        (JobPriority.LOW, JobPriority.LOW),
        (0, JobPriority.LOW),
        (1, JobPriority.NORMAL),
        (2, JobPriority.HIGH),
        (3, JobPriority.CRITICAL),
        ("low", JobPriority.LOW),
        ("NORMAL", JobPriority.NORMAL),
        ("High", JobPriority.HIGH),
        ("cRiTiCaL", JobPriority.CRITICAL),
    ],
)
def test_priority_is_parsed_from_a_member_its_value_or_its_name_in_any_case(value, expected):
    assert JobPriority.parse(value) is expected


@pytest.mark.parametrize("value", ["urgent", "", "2", 4, -1, 2.0, None, True, False, [1]], ids=repr)
def test_unknown_priority_is_refused_with_the_choices_named(value):
    with pytest.raises(ValueError, match=r"Unknown priority") as info:
        JobPriority.parse(value)

    message = str(info.value)
    assert repr(value) in message
    for priority in JobPriority:
        assert f"{priority.name} ({priority.value})" in message


# -- Job ------------------------------------------------------------------------------------


def test_job_with_only_id_and_name_gets_the_defaults():
    job = minimal_job()

    assert job.status is JobStatus.PENDING
    assert job.priority is JobPriority.NORMAL
    assert job.queue == "default"
    assert (job.args, job.kwargs, job.errors) == ([], {}, [])
    assert (job.max_retries, job.retry_count, job.lost_count, job.timeout) == (3, 0, 0, 300)
    assert all(getattr(job, name) is None for name in DATETIME_FIELDS)
    assert job.result is job.error is job.traceback is job.user_id is None
    assert job.worker_id is job.lease_token is None
    assert job.cancel_requested is False
    assert not job.is_finished


def test_jobs_do_not_share_their_default_lists_and_dicts():
    first, second = Job(id="a", name="n"), Job(id="b", name="n")
    first.args.append(1)
    first.kwargs["x"] = 1
    first.errors.append({})

    assert (second.args, second.kwargs, second.errors) == ([], {}, [])


def test_the_full_job_sets_every_field():
    """Guards the round-trip tests below: a field added to Job must be added to full_job()."""
    full, minimal = full_job(), minimal_job()
    left_at_default = [
        f.name
        for f in fields(Job)
        if f.name not in ("id", "name") and getattr(full, f.name) == getattr(minimal, f.name)
    ]
    assert left_at_default == []


# -- to_dict / from_dict / to_json / from_json ----------------------------------------------


def test_job_round_trips_through_a_dict_exactly(job):
    data = job.to_dict()

    assert Job.from_dict(data) == job
    assert Job.from_dict(data).to_dict() == data


def test_job_round_trips_through_json_exactly(job):
    text = job.to_json()

    assert Job.from_json(text) == job
    assert Job.from_json(text.encode()) == job
    assert Job.from_json(text).to_json() == text


def test_round_trip_keeps_types_not_just_equal_values():
    restored = Job.from_json(full_job().to_json())

    assert restored.status is JobStatus.RETRYING
    assert restored.priority is JobPriority.HIGH
    assert type(restored.timeout) is float
    assert type(restored.max_retries) is int
    assert restored.cancel_requested is True
    for name in DATETIME_FIELDS:
        value = getattr(restored, name)
        assert value == getattr(full_job(), name)
        assert value.utcoffset() == timedelta(0)


def test_to_dict_is_plain_json_with_status_by_value_and_priority_by_name():
    data = full_job().to_dict()

    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["status"] == "retrying"
    assert data["priority"] == "high"
    assert data["retry_count"] == 2
    assert data["lost_count"] == 1
    assert data["errors"] == full_job().errors


def test_to_dict_writes_datetimes_as_iso_8601_utc_with_microseconds():
    data = full_job().to_dict()

    assert data["created_at"] == "2024-05-17T09:30:15.123456+00:00"
    assert data["scheduled_at"] == "2024-05-17T09:35:15.123457+00:00"
    assert data["finished_at"] == "2024-05-17T09:31:00.999999+00:00"
    assert minimal_job().to_dict()["created_at"] is None


@pytest.mark.parametrize("name", DATETIME_FIELDS)
def test_to_dict_writes_datetimes_of_other_time_zones_in_utc(name):
    """``to_dict`` promises ISO 8601 *in UTC*; an aware datetime in +02:00 is converted."""
    job = Job(id="j", name="n", **{name: datetime(2024, 5, 17, 11, 30, 15, 5, tzinfo=PLUS_TWO)})

    data = job.to_dict()

    assert data[name] == "2024-05-17T09:30:15.000005+00:00"
    assert Job.from_dict(data) == job


def _to_dict_or_refusal(job: Job) -> tuple[dict | None, str | None]:
    try:
        return job.to_dict(), None
    except ValueError as exc:
        return None, str(exc)


@pytest.mark.parametrize("name", DATETIME_FIELDS)
def test_to_dict_never_writes_a_naive_datetime(name):
    """A naive datetime on a Job must be refused (a ``ValueError`` naming the field) or written
    with an offset. Written bare, it gives a record that ``from_dict`` itself refuses."""
    job = Job(id="j", name="n", **{name: datetime(2024, 5, 17, 9, 30, 15)})

    data, refusal = _to_dict_or_refusal(job)

    if refusal is not None:
        assert name in refusal
    else:
        written = data[name]
        assert datetime.fromisoformat(written).tzinfo is not None, (
            f"{name} written naive: {written}"
        )
        Job.from_dict(data)


def test_to_json_is_compact_and_keeps_non_ascii_text():
    text = full_job().to_json()

    assert '"naïve ✓"' in text
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def test_from_dict_ignores_unknown_keys():
    data = {**minimal_job().to_dict(), "written_by_a_newer_version": 1}

    assert Job.from_dict(data) == minimal_job()


def test_from_dict_accepts_a_priority_by_its_value():
    assert Job.from_dict({"id": "j", "name": "n", "priority": 3}).priority is JobPriority.CRITICAL


BAD_FIELDS = [
    ("status", "done"),
    ("status", "RUNNING"),
    ("status", 1),
    ("status", None),
    ("priority", "urgent"),
    ("priority", 9),
    ("priority", True),
    ("priority", None),
    ("created_at", "2024-05-17T09:30:15.123456"),
    ("scheduled_at", "2024-05-17 09:30"),
    ("started_at", "next tuesday"),
    ("finished_at", "17/05/2024 09:30:15"),
    ("created_at", 1715938215.123456),
    ("args", "[1, 2]"),
    ("args", {"a": 1}),
    ("args", None),
    ("kwargs", [["a", 1]]),
    ("kwargs", "a=1"),
    ("kwargs", None),
    ("errors", "boom"),
    ("max_retries", "three"),
    ("retry_count", "1.5"),
    ("retry_count", None),
    ("timeout", "soon"),
    ("retry_backoff_base", "soon"),
    ("meta", [1]),
    ("id", None),
    ("id", ""),
    ("id", 7),
    ("name", None),
    ("name", ""),
    ("name", ["a"]),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_from_dict_refuses_a_malformed_field_and_names_it(field, value):
    data = {**full_job().to_dict(), field: value}

    with pytest.raises(InvalidJobRecord, match=_field_named(field)):
        Job.from_dict(data)


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_from_json_refuses_a_malformed_field_and_names_it(field, value):
    text = json.dumps({**full_job().to_dict(), field: value})

    with pytest.raises(InvalidJobRecord, match=_field_named(field)):
        Job.from_json(text)


@pytest.mark.parametrize("missing", ["id", "name"])
def test_record_without_id_or_name_is_refused(missing):
    data = full_job().to_dict()
    del data[missing]

    with pytest.raises(InvalidJobRecord, match=_field_named(missing)):
        Job.from_dict(data)
    with pytest.raises(InvalidJobRecord, match=_field_named(missing)):
        Job.from_json(json.dumps(data))


@pytest.mark.parametrize("data", [None, [], ["id", "name"], "job", 7], ids=repr)
def test_record_that_is_not_a_dict_is_refused(data):
    with pytest.raises(InvalidJobRecord, match="must be a dict"):
        Job.from_dict(data)
    with pytest.raises(InvalidJobRecord, match="must be a dict"):
        Job.from_json(json.dumps(data))


@pytest.mark.parametrize(
    "text", ["", "{", "{'id': 'j'}", '{"id": "j",}', "not json", b"\xff\xfe", None], ids=repr
)
def test_text_that_is_not_json_is_refused(text):
    with pytest.raises(InvalidJobRecord, match="not valid JSON"):
        Job.from_json(text)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_from_json_refuses_the_non_standard_constants_that_to_json_cannot_write(constant):
    """JSON has no NaN or Infinity; ``to_json`` refuses to write them, so ``from_json`` must not
    accept a record it cannot write back (it would fail later with a bare ``ValueError``)."""
    text = '{"id": "j", "name": "n", "args": [%s]}' % constant  # noqa: UP031

    with pytest.raises(InvalidJobRecord):
        Job.from_json(text)


def test_invalid_job_record_is_a_value_error():
    assert issubclass(InvalidJobRecord, ValueError)
    with pytest.raises(ValueError, match="'status'"):
        Job.from_dict({"id": "j", "name": "n", "status": "done"})


# -- to_hash / from_hash --------------------------------------------------------------------


def test_job_round_trips_through_its_redis_hash(job):
    data = job.to_hash()

    assert Job.from_hash(job.id, data, result=job.result) == job


def test_hash_holds_only_strings_and_leaves_out_id_result_and_empty_values():
    assert minimal_job().to_hash() == {
        "name": "mail.send",
        "status": "pending",
        "priority": "1",
        "queue": "default",
    }
    assert Job.from_hash("j", minimal_job().to_hash()).retry_count == 0
    data = full_job().to_hash()
    assert all(isinstance(value, str) for value in data.values())
    assert "id" not in data
    assert "result" not in data
    assert data["cancel_requested"] == "1"
    assert json.loads(data["errors"]) == full_job().errors


def test_hash_leaves_out_retries_and_timeout_that_hold_their_defaults():
    default = Job(id="j", name="n", max_retries=3, timeout=300.0).to_hash()
    other = Job(id="j", name="n", max_retries=0, timeout=300.5).to_hash()

    assert "max_retries" not in default
    assert "timeout" not in default
    assert (other["max_retries"], other["timeout"]) == ("0", "300.5")
    restored = Job.from_hash("j", default)
    assert (restored.max_retries, restored.timeout) == (3, 300)


def test_a_record_that_holds_the_default_fields_reads_the_same():
    """Records written before the defaults were left out hold them: they read the same."""
    written = {**minimal_job().to_hash(), "max_retries": "3", "timeout": "300"}

    assert Job.from_hash(minimal_job().id, written) == minimal_job()


def test_the_scripts_read_a_missing_max_retries_as_the_dataclass_default():
    from django_jobs.store.scripts import _LIBRARY_TEXT

    (lua,) = re.findall(r"^local MAX_RETRIES = (\d+)$", _LIBRARY_TEXT, re.MULTILINE)
    (field,) = (f for f in fields(Job) if f.name == "max_retries")
    assert int(lua) == field.default


def test_hash_holds_datetimes_as_epoch_seconds_with_microseconds():
    data = full_job().to_hash()

    assert data["created_at"] == "1715938215.123456"
    assert from_timestamp(data["created_at"]) == T0


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=UTC),
        datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 5, 17, 11, 30, 15, 500000, tzinfo=PLUS_TWO),
    ],
)
def test_hash_datetimes_come_back_exact_and_in_utc(moment):
    job = Job(id="j", name="n", created_at=moment, scheduled_at=moment)

    restored = Job.from_hash("j", job.to_hash())

    assert restored.created_at == moment
    assert restored.created_at.tzinfo is UTC


def test_from_hash_ignores_fields_written_for_the_scripts_own_use():
    data = {**full_job().to_hash(), "lease_deadline": "1715938999.5", "id": "other"}

    assert Job.from_hash(full_job().id, data, result=full_job().result) == full_job()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "done"),
        ("priority", "9"),
        ("priority", "urgent"),
        ("created_at", "yesterday"),
        ("retry_count", "many"),
        ("timeout", "soon"),
        ("args", "[1, 2"),
        ("args", '{"a": 1}'),
        ("kwargs", "[1]"),
        ("errors", "not json"),
        ("retry_backoff_max", "later"),
        ("meta", "[1]"),
        ("meta", "{"),
    ],
)
def test_from_hash_refuses_a_malformed_field_and_names_it_and_the_job(field, value):
    data = {**full_job().to_hash(), field: value}

    with pytest.raises(InvalidJobRecord, match=_field_named(field)) as info:
        Job.from_hash("job-42", data)
    assert "job-42" in str(info.value)


def test_from_hash_without_a_name_is_refused():
    data = full_job().to_hash()
    del data["name"]

    with pytest.raises(InvalidJobRecord, match="'name'"):
        Job.from_hash("job-42", data)


# -- check_json -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**70,
        1.5,
        -0.0,
        "",
        "naïve ✓",
        [],
        {},
        [None, [True, {"a": [1.0, "x"]}]],
        {"user": {"id": 1, "tags": ["a"], "extra": {}}},
    ],
    ids=repr,
)
def test_json_values_pass_the_check(value):
    check_json(value, "args[0]")


@pytest.mark.parametrize(
    ("value", "path", "named", "hint"),
    [
        ([1, (2, 3)], "args", "args[1] is a builtins.tuple", "Pass a list instead"),
        ({"a": {"b": (1,)}}, "kwargs", "kwargs['a']['b'] is a builtins.tuple", "list instead"),
        ([T0], "args", "args[0] is a datetime.datetime", "value.isoformat()"),
        ({"a": {"b": T0}}, "kwargs", "kwargs['a']['b'] is a datetime.datetime", "isoformat()"),
        ([[{1, 2}]], "args", "args[0][0] is a builtins.set", "Pass a sorted list"),
        ({"a": frozenset()}, "kwargs", "kwargs['a'] is a builtins.frozenset", "sorted list"),
        ([1, float("nan")], "args", "args[1] is nan", "JSON cannot represent"),
        ({"a": {"b": float("inf")}}, "kwargs", "kwargs['a']['b'] is inf", "cannot represent"),
        ([float("-inf")], "args", "args[0] is -inf", "JSON cannot represent"),
        ({"a": {1: "x"}}, "kwargs", "kwargs['a'] has the key 1", "keys must be strings"),
        ([{None: 1}], "args", "args[0] has the key None", "keys must be strings"),
        ({("a", "b"): 1}, "kwargs", "kwargs has the key ('a', 'b')", "keys must be strings"),
        ([Decimal("1.10")], "args", "args[0] is a decimal.Decimal", "Pass only str, int"),
        ([b"bytes"], "args", "args[0] is a builtins.bytes", "Pass only str, int"),
        (object(), "the result", "the result is a builtins.object", "Pass only str, int"),
    ],
)
def test_value_that_does_not_survive_json_is_refused_with_its_path_and_a_hint(
    value, path, named, hint
):
    with pytest.raises(NotJSONSerializable) as info:
        check_json(value, path)

    assert named in str(info.value)
    assert hint in str(info.value)


def test_model_instance_is_refused_with_a_hint_to_pass_its_pk():
    with pytest.raises(NotJSONSerializable) as info:
        check_json([1, User(pk=1, username="ada")], "args")

    message = str(info.value)
    assert "args[1] is a django.contrib.auth.models.User" in message
    assert "instance.pk" in message
    assert "primary key" in message


def test_not_json_serializable_is_a_type_error():
    with pytest.raises(TypeError):
        check_json({1, 2}, "args[0]")


def test_timestamps_and_now_are_aware_utc():
    assert from_timestamp("1715938215.123456") == T0
    assert from_timestamp(b"1715938215.123456") == T0
    now = utcnow()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
