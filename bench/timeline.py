#!/usr/bin/env python3
"""Where an idle job's time goes between the processes, as the kernel's scheduler ran them:
the latency workload's jobs (an idle one-process worker, jobs 10-30 ms apart, each waited for)
recorded with ``perf sched record``, then, job by job, the hand-offs from the enqueue call to
the job's start: the enqueuer wakes redis-server with its command, Redis wakes the worker with
the job and the enqueuer with its reply, and each woken process waits for a vCPU::

    python3 bench/timeline.py                        # django-jobs and Huey, 200 jobs each (~1 min)
    python3 bench/timeline.py --only django-jobs --jobs 100 --json bench/out/timeline.json

Per library it prints, beside when the enqueue call returned, the job started and the
enqueuer had the result (p50, ms), the p50 in µs of:

- **Redis waits**: from the enqueuer waking Redis to Redis running;
- **worker waits**: from Redis waking the worker to the worker running;
- **reply after the job**: from Redis waking the worker to Redis waking the enqueuer with the
  reply its enqueue call returned with (what Redis runs in between: the claim sent behind the
  worker's wait, say; negative where an enqueue of several commands had its last reply before
  the worker was woken);
- **enqueuer waits**: from Redis waking the enqueuer with that reply to the enqueuer running;
- **worker's first run**: how long the woken worker ran before it first gave its vCPU up (to
  block on its next command, or preempted);

and the share of jobs whose enqueuer ran only after the worker's first run, on the worker's
vCPU (**behind the worker**), and whose worker took Redis's vCPU before Redis had woken the
enqueuer (**Redis preempted**). A figure is over the jobs that had its hand-off: an enqueuer
that got its reply while it polled was never woken.

Run on demand, never from the tests. It needs ``perf`` with the scheduler's tracepoints
(Debian: ``apt-get install linux-perf``; as root, or with ``kernel.perf_event_paranoid`` at -1)
and what ``run.py`` needs; like ``run.py`` it runs in ``bench/.venv`` and starts a private
``redis-server``. ``perf`` records every process of the machine: the figures are of this
machine's scheduler as it is, with whatever else runs on it (``perf`` included).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

BENCH = Path(__file__).resolve().parent
LIBRARIES = ("django-jobs", "huey")

# A line of ``perf script -F tid,cpu,time,event,trace`` for a scheduler event.
LINE = re.compile(
    r"^\s*(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<time>[\d.]+):\s+sched:(?P<kind>\w+):\s+(?P<trace>.*)$"
)
FIELD = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True)
class Event:
    """A scheduler event: ``tid`` is the task running on ``cpu`` (a waking's waker)."""

    time: float
    cpu: int
    tid: int
    kind: str  # sched_switch or sched_waking
    fields: dict[str, str]


@dataclass(frozen=True)
class Roles:
    """The thread ids of the three processes of a job's path."""

    enqueuer: frozenset[int]
    redis: frozenset[int]
    worker: frozenset[int]


@dataclass(frozen=True)
class Span:
    """One job, in ``CLOCK_MONOTONIC`` seconds (perf's clock here): the enqueue call made and
    returned, the job started (its own clock), the enqueuer had the result."""

    sent: float
    returned: float
    started: float
    done: float


def parse(lines: Iterable[str]) -> list[Event]:
    """The ``sched_switch`` and ``sched_waking`` events of ``perf script`` output, in order."""
    events = []
    for line in lines:
        match = LINE.match(line)
        if match is None or match["kind"] not in ("sched_switch", "sched_waking"):
            continue
        fields = dict(FIELD.findall(match["trace"]))
        events.append(
            Event(float(match["time"]), int(match["cpu"]), int(match["tid"]), match["kind"], fields)
        )
    events.sort(key=lambda event: event.time)
    return events


def _waking(
    window: list[Event],
    wakers: frozenset[int],
    wakees: frozenset[int],
    after: float,
    before: float = math.inf,
    *,
    last: bool = False,
) -> Event | None:
    """The first (or ``last``) waking of one of ``wakees`` by one of ``wakers`` in
    ``(after, before]``."""
    found = None
    for event in window:
        if (
            after < event.time <= before
            and event.kind == "sched_waking"
            and event.tid in wakers
            and int(event.fields["pid"]) in wakees
        ):
            if not last:
                return event
            found = event
    return found


def _switch(window: list[Event], side: str, tids: frozenset[int], after: float) -> Event | None:
    """The first switch after ``after`` that puts one of ``tids`` on a vCPU (``side`` "next")
    or takes it off (``side`` "prev")."""
    for event in window:
        if (
            event.time > after
            and event.kind == "sched_switch"
            and int(event.fields[f"{side}_pid"]) in tids
        ):
            return event
    return None


def _since(start: Event | None, end: Event | None) -> float | None:
    return None if start is None or end is None else (end.time - start.time) * 1e6


def job_facts(events: list[Event], roles: Roles, spans: list[Span]) -> list[dict[str, Any]]:
    """The hand-offs of each job of ``spans`` (see the module's docstring), from ``events``
    in order."""
    times = [event.time for event in events]
    found = []
    for span in spans:
        window = events[bisect_left(times, span.sent) : bisect_right(times, span.done)]
        redis_woken = _waking(window, roles.enqueuer, roles.redis, span.sent, span.returned)
        redis_ran = redis_woken and _switch(window, "next", roles.redis, redis_woken.time)
        worker_woken = _waking(window, roles.redis, roles.worker, span.sent)
        worker_ran = worker_woken and _switch(window, "next", roles.worker, worker_woken.time)
        worker_off = worker_ran and _switch(
            window, "prev", frozenset({int(worker_ran.fields["next_pid"])}), worker_ran.time
        )
        # The reply the enqueue call returned with: its last (a peer's enqueue may send several
        # commands, one after another).
        reply = _waking(window, roles.redis, roles.enqueuer, span.sent, span.returned, last=True)
        enqueuer_ran = reply and _switch(window, "next", roles.enqueuer, reply.time)
        # Redis taken off its vCPU, still runnable, for the worker it woke, before it woke
        # the enqueuer.
        preempted = worker_woken is not None and any(
            worker_woken.time < event.time <= (reply.time if reply else span.returned)
            and event.kind == "sched_switch"
            and int(event.fields["prev_pid"]) in roles.redis
            and event.fields["prev_state"].startswith("R")
            and int(event.fields["next_pid"]) in roles.worker
            for event in window
        )
        behind = bool(
            enqueuer_ran
            and worker_off
            and enqueuer_ran.cpu == worker_off.cpu
            and enqueuer_ran.time >= worker_off.time
        )
        found.append(
            {
                "redis_wait_us": _since(redis_woken, redis_ran),
                "worker_wait_us": _since(worker_woken, worker_ran),
                "reply_after_job_us": _since(worker_woken, reply),
                "enqueuer_wait_us": _since(reply, enqueuer_ran),
                "worker_first_run_us": _since(worker_ran, worker_off),
                "behind_worker": behind,
                "redis_preempted": preempted,
            }
        )
    return found


FIGURES = (
    "redis_wait_us",
    "worker_wait_us",
    "reply_after_job_us",
    "enqueuer_wait_us",
    "worker_first_run_us",
)


def summary(facts: list[dict[str, Any]], spans: list[Span]) -> dict[str, Any]:
    """The figures of the module's docstring over a library's jobs."""

    def p50(values: Iterable[float | None]) -> float | None:
        known = [value for value in values if value is not None]
        return median(known) if known else None

    n = len(facts)
    return {
        "jobs": n,
        "returned_p50_ms": p50((s.returned - s.sent) * 1e3 for s in spans),
        "start_p50_ms": p50((s.started - s.sent) * 1e3 for s in spans),
        "done_p50_ms": p50((s.done - s.sent) * 1e3 for s in spans),
        **{f"{key[:-3]}_p50_us": p50(f[key] for f in facts) for key in FIGURES},
        "behind_worker_share": sum(f["behind_worker"] for f in facts) / n,
        "redis_preempted_share": sum(f["redis_preempted"] for f in facts) / n,
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    """``results`` (library -> summary) as a Markdown table: p50s, in µs where not said."""

    def cell(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    heads = ("Redis waits", "Worker waits", "Reply after the job", "Enqueuer waits")
    rows = [
        "| Library | Jobs | Returned / start / done (ms) | "
        + " | ".join(heads)
        + " | Worker's first run | Behind the worker | Redis preempted |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in results.items():
        times = " / ".join(
            cell(s[k], ".2f") for k in ("returned_p50_ms", "start_p50_ms", "done_p50_ms")
        )
        micros = " | ".join(cell(s[f"{key[:-3]}_p50_us"], ".0f") for key in FIGURES)
        rows.append(
            f"| {name} | {s['jobs']} | {times} | {micros} | {s['behind_worker_share']:.0%} "
            f"| {s['redis_preempted_share']:.0%} |"
        )
    return "\n".join(rows)


# -- recording -----------------------------------------------------------------------------------


def _threads(pids: Iterable[int]) -> frozenset[int]:
    import psutil

    return frozenset(thread.id for pid in pids for thread in psutil.Process(pid).threads())


def _jobs(adapter: Any, steps: Iterable[int]) -> list[Span]:
    """The latency workload's jobs, one after another, each waited for, on perf's clock."""
    from harness.workloads import stamped_job

    spans = []
    for _ in steps:
        offset = time.monotonic() - time.time()
        spans.append(Span(*(stamp + offset for stamp in stamped_job(adapter))))
    return spans


def _under_perf(data: Path, run: Callable[[], list[Span]]) -> list[Span]:
    """``run()`` while ``perf sched record`` records the whole machine into ``data``."""
    perf = subprocess.Popen(
        ["perf", "sched", "record", "-k", "CLOCK_MONOTONIC", "-o", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # perf is recording
        if perf.poll() is not None:
            raise SystemExit(f"perf sched record failed: {perf.communicate()[1].strip()}")
        return run()
    finally:
        if perf.poll() is None:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)


def record(key: str, jobs: int, logs: Path) -> tuple[list[Event], Roles, list[Span]]:
    """Run ``jobs`` idle jobs of library ``key`` under ``perf sched record``."""
    from adapters import load
    from harness.floor import paced
    from harness.redis_server import PrivateRedis
    from harness.workers import Workers, worker_env

    with PrivateRedis() as server, tempfile.TemporaryDirectory() as tmp:
        os.environ["BENCH_REDIS_URL"] = server.url
        adapter = load(key)
        mode = adapter.idle_worker()
        workers = Workers(mode.commands, worker_env(server.url, mode.env), logs / f"{key}.log")
        try:
            adapter.wait_stamp(adapter.submit_stamp(), timeout=60)  # the worker is up
            assert server.process is not None
            roles = Roles(
                enqueuer=frozenset({threading.get_native_id()}),
                redis=_threads([server.process.pid]),
                worker=_threads(p.pid for p in workers.tree()),
            )
            data = Path(tmp) / "perf.data"
            spans = _under_perf(data, lambda: _jobs(adapter, paced(jobs, 0)))
        finally:
            workers.stop()
        script = subprocess.run(
            ["perf", "script", "-i", str(data), "-F", "tid,cpu,time,event,trace"],
            capture_output=True,
            text=True,
            check=True,
        )
    return parse(script.stdout.splitlines()), roles, spans


def main(argv: list[str]) -> None:
    from adapters import MODULES

    parser = argparse.ArgumentParser(
        description="Where an idle job's time goes between the enqueuer, redis-server and the "
        "worker, as the kernel's scheduler ran them (perf sched record); see bench/README.md."
    )
    parser.add_argument(
        "--only",
        default=",".join(LIBRARIES),
        help=f"libraries, comma-separated, of: {', '.join(MODULES)} (default: django-jobs,huey)",
    )
    parser.add_argument("--jobs", type=int, default=200, help="jobs per library (default 200)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs: at least 1, not {args.jobs}")
    unknown = [key for key in args.only.split(",") if key not in MODULES]
    if unknown:
        parser.error(f"--only: no library {', '.join(unknown)}; there are {', '.join(MODULES)}")
    if shutil.which("perf") is None:
        raise SystemExit("perf not found (Debian: apt-get install linux-perf).")
    logs = BENCH / "out" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results = {}
    for key in args.only.split(","):
        events, roles, spans = record(key, args.jobs, logs)
        results[key] = summary(job_facts(events, roles, spans), spans)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    if Path(sys.prefix).resolve() != (BENCH / ".venv").resolve():
        sys.path.insert(0, str(BENCH))
        from run import VENV_PYTHON, ensure_venv

        ensure_venv()
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])
    sys.path.insert(0, str(BENCH))
    main(sys.argv[1:])
