"""OpenTelemetry: a span around each enqueue and one around each run, with the job's id, name,
queue and attempt; the enqueue's trace context travels in the job record, so the run's span is
a child of the enqueue's (and of the request around it). Recorded with the SDK's in-memory
exporter; the job is run in this process as a worker's child runs it."""

import asyncio
import importlib
import sys

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from django_jobs import tracing
from django_jobs.worker.execute import run_job
from django_jobs.worker.leases import Leases
from tests.testapp import jobs

# run_job closes stale database connections, as a worker does around each job.
pytestmark = pytest.mark.django_db

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def provider():
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    return provider


@pytest.fixture(autouse=True)
def spans(provider, monkeypatch):
    """The spans of this test. The SDK is behind the API for this test only, not set as the
    global provider (which is set once for good): other tests' jobs stay untraced."""
    monkeypatch.setattr(trace, "get_tracer", provider.get_tracer)
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    _EXPORTER.clear()

    def finished(name_prefix=""):
        return [s for s in _EXPORTER.get_finished_spans() if s.name.startswith(name_prefix)]

    return finished


def run_here(queue):
    """Claim the next job and run it in this process, as a worker's child does."""
    job = Leases(queue.prefix).dequeue(worker_id="w")
    with asyncio.Runner() as loop:
        return job, run_job(job, loop)


def test_the_run_span_is_a_child_of_the_enqueue_span_inside_the_request(queue, spans, settings):
    settings.DJANGO_JOBS = {**settings.DJANGO_JOBS, "ENQUEUE_ON_COMMIT": False}
    with trace.get_tracer("tests").start_as_current_span("POST /signup") as request:
        handle = jobs.add.delay(2, 3)
    stored = queue.get_job(handle.id)
    trace_id = format(request.get_span_context().trace_id, "032x")
    assert stored.meta["traceparent"].split("-")[1] == trace_id

    _, outcome = run_here(queue)
    assert outcome.result == 5
    (enqueue,) = spans("enqueue ")
    (run,) = spans("run ")
    assert enqueue.name == "enqueue tests.testapp.jobs.add"
    assert enqueue.kind is SpanKind.PRODUCER
    assert enqueue.parent.span_id == request.get_span_context().span_id
    assert run.name == "run tests.testapp.jobs.add"
    assert run.kind is SpanKind.CONSUMER
    assert run.parent.span_id == enqueue.context.span_id
    assert run.context.trace_id == enqueue.context.trace_id == request.get_span_context().trace_id
    expected = {
        "messaging.system": "django_jobs",
        "messaging.destination.name": "default",
        "messaging.message.id": handle.id,
        "django_jobs.job.name": "tests.testapp.jobs.add",
        "django_jobs.job.priority": "normal",
        "django_jobs.job.attempt": 1,
    }
    for span, operation in ((enqueue, "send"), (run, "process")):
        assert {**span.attributes} == {
            **expected,
            "messaging.operation.type": operation,
            "messaging.operation.name": "enqueue" if operation == "send" else "run",
        }
    assert run.status.status_code is StatusCode.UNSET


def test_a_failed_run_is_an_error_span_with_the_exception_and_its_attempt(queue, spans):
    queue.enqueue("tests.testapp.jobs.fail", ["boom"], max_retries=1)
    _, outcome = run_here(queue)
    assert not outcome.ok
    (run,) = spans("run ")
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description == "ValueError: boom"
    (event,) = run.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert run.attributes["django_jobs.job.attempt"] == 1


def test_a_bulk_enqueue_makes_one_span_per_job_each_the_parent_of_its_run(queue, spans):
    queue.enqueue_many([queue.build_job("tests.testapp.jobs.add", [i, 0]) for i in range(3)])
    enqueued = {s.attributes["messaging.message.id"]: s for s in spans("enqueue ")}
    assert len(enqueued) == 3
    for _ in range(3):
        run_here(queue)
    runs = spans("run ")
    assert {r.parent.span_id for r in runs} == {s.context.span_id for s in enqueued.values()}
    for run in runs:
        assert (
            run.parent.span_id == enqueued[run.attributes["messaging.message.id"]].context.span_id
        )


def test_a_job_that_carries_a_trace_context_keeps_it(queue, spans):
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    job = queue.build_job("tests.testapp.jobs.add", [1, 1], meta={"traceparent": parent})
    queue.enqueue_many([job])
    assert spans("enqueue ") == []
    assert queue.get_job(job.id).meta["traceparent"] == parent
    run_here(queue)
    (run,) = spans("run ")
    assert format(run.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(run.parent.span_id, "016x") == "b7ad6b7169203331"


def test_without_opentelemetry_nothing_is_traced_and_nothing_added_to_the_job(
    queue, spans, monkeypatch
):
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    importlib.reload(tracing)
    try:
        assert tracing.trace is None
        job = queue.enqueue("tests.testapp.jobs.add", [1, 2])
        assert queue.get_job(job.id).meta == {}
        _, outcome = run_here(queue)
        assert outcome.result == 3
    finally:
        monkeypatch.undo()
        importlib.reload(tracing)
    assert spans() == []


@pytest.fixture
def no_provider(monkeypatch):
    """The OpenTelemetry API installed with no SDK behind it (the API's default provider)."""
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.ProxyTracerProvider())


UPSTREAM = trace.SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=trace.TraceFlags(1),
)


def test_without_a_tracer_provider_a_job_carries_the_upstream_context_and_no_span_is_made(
    queue, spans, no_provider
):
    with trace.use_span(trace.NonRecordingSpan(UPSTREAM)):
        carried = queue.enqueue_many(
            [queue.build_job("tests.testapp.jobs.add", [n, n]) for n in range(3)]
        )
    plain = queue.enqueue("tests.testapp.jobs.add", [1, 2])

    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert [queue.get_job(job.id).meta for job in carried] == [{"traceparent": parent}] * 3
    assert queue.get_job(plain.id).meta == {}
    job, outcome = run_here(queue)
    with tracing.run_span(job) as span:  # the run makes the carried context current
        assert span is None
        assert trace.get_current_span().get_span_context().trace_id == UPSTREAM.trace_id
    assert outcome.result == 0
    assert spans() == []


def test_a_job_at_the_payload_limit_still_runs_with_its_trace_context(queue, spans, configure):
    configure(MAX_PAYLOAD_BYTES=200)
    text = "x" * 200
    while True:  # the largest first argument the limit lets through
        try:
            job = queue.build_job("tests.testapp.jobs.add", [text, ""])
            break
        except ValueError:
            text = text[:-1]
    queue.enqueue_many([job])
    assert "traceparent" in queue.get_job(job.id).meta  # the limit is now exceeded by it
    claimed, outcome = run_here(queue)  # an oversized record would be dead-lettered here
    assert claimed.id == job.id
    assert outcome.ok
    assert outcome.result == text
