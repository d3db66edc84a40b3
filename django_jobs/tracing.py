"""OpenTelemetry traces (the ``opentelemetry`` extra: ``pip install "django-jobs[opentelemetry]"``).

A span around each enqueue (``enqueue <name>``, kind PRODUCER) and one around each run
(``run <name>``, kind CONSUMER), with the job's id, name, queue and attempt. The enqueue's W3C
trace context travels in the job record (``meta["traceparent"]`` and ``meta["tracestate"]``),
so the run's span is a child of the enqueue's, and so of the request that enqueued the job.
Spans go wherever the project's tracer provider sends them; without the OpenTelemetry API
installed this module does nothing, and imports nothing of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # not installed: every function here does nothing
    trace = propagate = otel_context = None  # type: ignore[assignment]

from django_jobs.job import TRACE_CONTEXT_KEYS

if TYPE_CHECKING:
    from django_jobs.job import Job

TRACER = "django_jobs"


def _attributes(job: Job, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": "django_jobs",
        "messaging.operation.type": "send" if operation == "enqueue" else "process",
        "messaging.operation.name": operation,
        "messaging.destination.name": job.queue,
        "messaging.message.id": job.id,
        "django_jobs.job.name": job.name,
        "django_jobs.job.priority": job.priority.name.lower(),
        "django_jobs.job.attempt": job.attempt,
    }


# What enqueue_span and run_span give without OpenTelemetry: one context that does nothing
# (and yields None), for every enqueue and run (a generator-based one would cost each a
# generator).
_NO_SPAN = contextlib.nullcontext()


def enqueue_span(jobs: list[Job]) -> contextlib.AbstractContextManager[None]:
    """A span for the enqueue of ``jobs`` (one per job; the block sends them all), whose context
    is written into each job's meta first. A job whose meta carries a trace context already
    (enqueued again, e.g. from the outbox) keeps it.

    The spans are not made current: the block may be a plan that an asyncio task suspends.
    """
    if trace is None:
        return _NO_SPAN
    if _untraced():
        # The no-op tracer's spans would carry the context current here (a request's, traced
        # upstream) and nothing else: the same for every job, so it is injected once.
        context = _injected(None)
        for job in jobs:
            _carry(job, context)
        return _NO_SPAN
    return _enqueue_spans(jobs)


def _untraced() -> bool:
    """No tracer provider is set (the API's default proxy): spans would record nothing. The
    OpenTelemetry API is often installed by another package without an SDK behind it, and
    then spans and their attributes cost each enqueue and each run for nothing."""
    return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _injected(span: Any) -> dict[str, str]:
    """The trace context of ``span`` (``None``: the current one) as the job record keeps it."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=None if span is None else trace.set_span_in_context(span))
    return {key: carrier[key] for key in TRACE_CONTEXT_KEYS if key in carrier}


def _carries(job: Job) -> bool:
    return any(key in job.meta for key in TRACE_CONTEXT_KEYS)


def _carry(job: Job, context: dict[str, str]) -> None:
    """Write ``context`` into the job's meta, unless it carries one already."""
    if context and not _carries(job):
        job.meta = {**job.meta, **context}


@contextlib.contextmanager
def _enqueue_spans(jobs: list[Job]) -> Iterator[None]:
    tracer = trace.get_tracer(TRACER)
    spans = []
    for job in jobs:
        if _carries(job):
            continue
        span = tracer.start_span(
            f"enqueue {job.name}",
            kind=trace.SpanKind.PRODUCER,
            attributes=_attributes(job, "enqueue"),
        )
        _carry(job, _injected(span))
        spans.append(span)
    try:
        yield
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        for span in spans:
            span.end()


def run_span(job: Job) -> contextlib.AbstractContextManager[Any]:
    """The current span while ``job`` runs, a child of its enqueue's span when its meta carries
    that context. Yields the span (``None`` without OpenTelemetry) for :func:`finish`.

    Without a tracer provider (:func:`_untraced`) no span is made: the enqueue's context, if
    the job carries one, is made current for the run (as the no-op tracer's span would make
    it), so that the jobs it enqueues carry it on; it yields ``None``."""
    if trace is None or (_untraced() and not _carries(job)):
        return _NO_SPAN
    return _run_context(job) if _untraced() else _run_span(job)


def _parent(job: Job) -> Any:
    carrier = {key: str(job.meta[key]) for key in TRACE_CONTEXT_KEYS if key in job.meta}
    return propagate.extract(carrier) if carrier else None


@contextlib.contextmanager
def _run_context(job: Job) -> Iterator[None]:
    token = otel_context.attach(_parent(job))
    try:
        yield None
    finally:
        otel_context.detach(token)


@contextlib.contextmanager
def _run_span(job: Job) -> Iterator[Any]:
    parent = _parent(job)
    with trace.get_tracer(TRACER).start_as_current_span(
        f"run {job.name}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes=_attributes(job, "run"),
        record_exception=False,  # run_job catches everything; finish() records it
        set_status_on_exception=False,
    ) as span:
        yield span


def finish(span: Any, ok: bool, error: str, exception: BaseException | None) -> None:
    """Mark the run's ``span`` failed when the attempt failed."""
    if span is None or ok:
        return
    if exception is not None:
        span.record_exception(exception)
    span.set_status(trace.Status(trace.StatusCode.ERROR, error.split("\n", 1)[0]))
