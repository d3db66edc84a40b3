"""Django signals about the jobs a worker runs, sent in the worker's processes.

Connect receivers where the worker imports them at start-up: in an ``AppConfig.ready()``, or
in an app's ``jobs.py``. Each signal is sent once the outcome is recorded in Redis, from the
process that recorded it: the child process that ran the job, or, for a job whose process was
killed (a timeout, a cancellation) or died, the worker's supervising process. A worker that
lost a job's lease (another worker took it over) records nothing, and sends nothing but
``job_started``.

``sender`` is the registered job (the :class:`~django_jobs.registry.JobFunction` that ``@job``
returned, so ``job_failed.connect(receiver, sender=send_welcome)`` hears only that job), or
``None`` for a job this worker does not know by that name (a task of Django's task API, an
unknown name). ``job`` is the :class:`~django_jobs.job.Job` as the worker claimed it: its
``attempt``, ``retry_count`` and ``max_retries`` are those of this attempt.

A receiver that raises is logged (logger ``django_jobs.worker``, with its traceback) and the
worker goes on. Receivers run in the worker before it takes its next job: keep them short, and
hand slow work to a thread or to a job of its own.
"""

from __future__ import annotations

from django.dispatch import Signal

#: A worker is about to run ``job``. Arguments: ``sender``, ``job``.
job_started = Signal()

#: ``job`` completed and its result is stored. Arguments: ``sender``, ``job``, ``result`` (what
#: the job returned, as JSON reads it back), ``seconds`` (how long it ran).
job_succeeded = Signal()

#: An attempt of ``job`` failed and the failure is recorded. Arguments: ``sender``, ``job``,
#: ``error`` (one line, ``"ValueError: boom"``), ``traceback`` (text; empty when there is none,
#: e.g. for a timeout), ``exception`` (the exception raised, or ``None`` when the job did not
#: raise: a timeout, a crashed process, arguments that no longer fit), ``will_retry``, ``due``
#: (an aware UTC ``datetime``: when the retry runs; ``None`` without one) and ``seconds``.
job_failed = Signal()

#: ``job`` failed for good and waits in the dead-letter queue: sent after ``job_failed``
#: (whose ``will_retry`` is false), with the same ``sender``, ``job``, ``error``, ``traceback``
#: and ``exception``.
job_dead = Signal()

#: ``job`` was cancelled while it ran: its worker stopped it. Arguments: ``sender``, ``job``,
#: ``seconds`` (how long it had run). Jobs cancelled before they started are cancelled by
#: whoever asked (``JobQueue.cancel``, the admin), with no worker involved, and send nothing.
job_cancelled = Signal()
