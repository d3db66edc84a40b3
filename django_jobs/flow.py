"""Flow control: unique jobs, rate limits and concurrency limits, shared by every worker.

What a job function asks for (``@job(unique=..., rate_limit="10/s", concurrency=2)``) or one
call (``.using(unique_key=..., unique_for=60)``) is checked here once, where it is written, and
becomes fields of each job's record at enqueue (:meth:`Flow.apply`), with the limits of its
queue (``DJANGO_JOBS['QUEUE_LIMITS']``). The Lua scripts do the rest in the same round trips as
the transitions (``store/lua/_flow.lua``): the enqueue takes the unique key, the claim checks
and takes the limits, and whatever ends a run gives them back.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypedDict, Unpack

from django_jobs import rules
from django_jobs.conf import jobs_settings
from django_jobs.job import Job

#: What ``unique=`` may say, and the mode the record keeps ("window": ``unique_for`` alone).
UNIQUE_MODES = {True: "finished", "until_finished": "finished", "until_started": "started"}
#: The longest key a limit or unique lock may have.
KEY_MAX = 200

#: A key: a text with ``{parameter}`` fields filled from the call's arguments, or a function of
#: the job's arguments that returns the text.
Key = str | Callable[..., str]


class FlowOptions(TypedDict, total=False):
    """The flow control options of ``@job`` (see :class:`Flow`)."""

    unique: bool | str | None
    unique_key: Key | None
    unique_for: float | timedelta | None
    rate_limit: str | None
    rate_limit_key: Key | None
    concurrency: int | None
    concurrency_key: Key | None


@dataclass(frozen=True)
class Flow:
    """The flow control of a job function, or of one call of it.

    ``unique``: "started" (a second ``.delay()`` returns the job that is still pending),
    "finished" (... still pending or running), "window" (... enqueued less than
    ``unique_for`` seconds ago), or ``None``. ``unique_for`` also bounds the first two.
    ``rate``: (count, per seconds); ``concurrency``: how many may run at once. Each key
    defaults to the job's name (and, for ``unique``, its arguments).
    """

    unique: str | None = None
    unique_key: Key | None = None
    unique_for: float | None = None
    rate: tuple[int, float] | None = None
    rate_key: Key | None = None
    concurrency: int | None = None
    concurrency_key: Key | None = None

    @classmethod
    def of(cls, **options: Unpack[FlowOptions]) -> Flow:
        """The options of ``@job`` checked; ``ValueError`` or ``TypeError`` naming the one
        that is wrong."""
        unique, unique_key = options.get("unique"), options.get("unique_key")
        unique_for, rate_limit = options.get("unique_for"), options.get("rate_limit")
        rate_limit_key, concurrency = options.get("rate_limit_key"), options.get("concurrency")
        concurrency_key = options.get("concurrency_key")
        flow = cls()
        flow = flow.with_unique(unique, unique_key, unique_for)
        if rate_limit is not None:
            flow = replace(flow, rate=rules.rate(rate_limit, "rate_limit"))
        if concurrency is not None:
            flow = replace(flow, concurrency=rules.integer(concurrency, "concurrency", minimum=1))
        for key, what, needs in (
            (rate_limit_key, "rate_limit_key", rate_limit),
            (concurrency_key, "concurrency_key", concurrency),
        ):
            if key is not None and needs is None:
                raise ValueError(f"{what} names the key of a limit: pass {what[:-4]} too.")
        return replace(
            flow,
            rate_key=_checked_key(rate_limit_key, "rate_limit_key"),
            concurrency_key=_checked_key(concurrency_key, "concurrency_key"),
        )

    def with_unique(
        self,
        unique: bool | str | None = None,
        unique_key: Key | None = None,
        unique_for: float | timedelta | None = None,
    ) -> Flow:
        """This flow with the unique options of one call (or of ``@job``) over its own: a key
        or a time alone makes the job unique (until it finishes; for ``unique_for`` alone,
        for that window); ``unique=False`` turns it off."""
        if unique is False:
            return replace(self, unique=None, unique_key=None, unique_for=None)
        if unique is not None and unique not in UNIQUE_MODES:
            raise rules.refused("unique", "True, 'until_started' or 'until_finished'", unique)
        seconds = None
        if unique_for is not None:
            seconds = rules.seconds(unique_for, "unique_for", positive=True)
        mode = self.unique
        if unique is not None:
            mode = UNIQUE_MODES[unique]
        elif seconds is not None and mode is None:
            mode = "window"
        elif unique_key is not None and mode is None:
            mode = "finished"
        if mode is None:
            return self
        return replace(
            self,
            unique=mode,
            unique_key=_checked_key(unique_key, "unique_key") or self.unique_key,
            unique_for=seconds if seconds is not None else self.unique_for,
        )

    def apply(self, job: Job, signature: inspect.Signature | None) -> None:
        """Write this flow control and that of the job's queue into ``job``'s fields, with
        each key made from its arguments (bound to ``signature``, the parameters the caller
        passes, when known); ``ValueError`` when a key cannot be made."""
        limits: list[list[Any]] = []
        if self.unique:
            key = self.unique_key or f"{job.name}:{_digest(job.args, job.kwargs)}"
            job.unique_key = _made_key(key, job, signature, "unique_key")
            job.unique_until = self.unique
            job.unique_for = self.unique_for
        if self.concurrency:
            key = _made_key(self.concurrency_key or job.name, job, signature, "concurrency_key")
            limits.append(["concurrency", key, self.concurrency])
        if self.rate:
            key = _made_key(self.rate_key or job.name, job, signature, "rate_limit_key")
            limits.append(["rate", key, *self.rate])
        queue_limits = jobs_settings.QUEUE_LIMITS.get(job.queue)
        if queue_limits:
            # Checked by the setting's rule when QUEUE_LIMITS was read.
            if "concurrency" in queue_limits:
                limits.append(["concurrency", f"queue:{job.queue}", queue_limits["concurrency"]])
            if "rate" in queue_limits:
                count, per = rules.rate(queue_limits["rate"], "QUEUE_LIMITS")
                limits.append(["rate", f"queue:{job.queue}", count, per])
        job.limits = limits


NO_FLOW = Flow()


def _digest(args: list[Any], kwargs: dict[str, Any]) -> str:
    """The arguments as canonical JSON, hashed: equal arguments give the same key."""
    text = json.dumps([args, kwargs], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _checked_key(key: Key | None, what: str) -> Key | None:
    if key is None or callable(key):
        return key
    return _text_key(key, what)


def _text_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise rules.refused(what, "a non-empty string or a function of the job's arguments", key)
    if len(key) > KEY_MAX or not key.isprintable():
        raise rules.refused(what, f"at most {KEY_MAX} printable characters", key)
    return key


def _made_key(key: Key, job: Job, signature: inspect.Signature | None, what: str) -> str:
    """``key`` for this job: called with its arguments, or filled with them by name
    (``"customer:{customer_id}"``; without braces a key is taken as it is)."""
    if callable(key):
        return _text_key(key(*job.args, **job.kwargs), f"{what} (what {key!r} returned)")
    if "{" not in key:
        return key
    arguments = dict(job.kwargs)
    if signature is not None:
        try:
            bound = signature.bind(*job.args, **job.kwargs)
        except (TypeError, ValueError):
            pass  # validation.arguments() names the mismatch
        else:
            bound.apply_defaults()
            arguments = bound.arguments
    try:
        return _text_key(key.format(**arguments), what)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ValueError(
            f"{what} {key!r} of job {job.name!r} cannot be filled from its arguments "
            f"({type(exc).__name__}: {exc}); name a parameter of the function in braces."
        ) from None
