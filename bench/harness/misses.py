"""Why a target was missed, from the run's own measures: where each job's time and CPU went,
django-jobs beside the peer it was compared with.

The enqueue, bulk and latency workloads keep, per job, the CPU of the process that enqueued
(``cpu_client_us``) and of redis-server (``cpu_redis_us``), and how long its commands ran
(``redis_commands_us``, scripts included; wall-clock time, so it may exceed the CPU when the
server is descheduled): see ``workloads.CpuSplit``. With the floor (one round trip, one bare
wake-up) they split a gap into client, server and waits. Each function returns one Markdown
sentence or two, or "" when the run has not measured enough.
"""

from __future__ import annotations

import math

from harness.results import DJ, Results, display_name, lookup, median_of, number
from harness.stats import median


def _us(value: float) -> str:
    return f"{number(value, 0 if value >= 100 else 1)} µs"


def _ms(value: float) -> str:
    return f"{number(value, 2)} ms"


def _both(results: Results, peer: str, show: str, *path: str) -> str:
    """``ours (Peer: theirs)``, each shown by ``show`` ("us" or "ms")."""
    write = _us if show == "us" else _ms
    ours, theirs = median_of(results, DJ, *path), median_of(results, peer, *path)
    return f"{write(ours)} ({display_name(results, peer)}: {write(theirs)})"


def _measured(results: Results, lib: str, workload: str) -> bool:
    return not math.isnan(median_of(results, lib, workload, "cpu_redis_us"))


def _round_trip(results: Results) -> str:
    rates = (results.get("floor") or {}).get("per_second")
    return f"; one round trip here is {_us(1e6 / median(rates))}" if rates else ""


def _enqueue_commands(results: Results, lib: str, kind: str) -> list[str]:
    """The commands one enqueue of ``lib`` sends (``kind`` "top_level") or runs inside its
    scripts ("in_scripts"), as the roundtrips workload counted them (most first)."""
    counted = lookup(results, lib, "roundtrips", "enqueue", kind) or {}
    return [name.upper() for name, calls in counted.items() if calls >= 0.5]


def enqueue(results: Results, peer: str | None) -> str:
    """The one-by-one enqueue against ``peer``'s: wall time per job, and its CPU here and in
    Redis."""
    if peer is None or not (
        _measured(results, DJ, "enqueue") and _measured(results, peer, "enqueue")
    ):
        return ""
    wall = {lib: 1e6 / median_of(results, lib, "enqueue", "per_second") for lib in (DJ, peer)}
    cpu = {
        lib: (
            median_of(results, lib, "enqueue", "cpu_client_us"),
            median_of(results, lib, "enqueue", "cpu_redis_us"),
        )
        for lib in (DJ, peer)
    }
    gap = wall[DJ] - wall[peer]
    inside = _enqueue_commands(results, DJ, "in_scripts")
    theirs = _enqueue_commands(results, peer, "top_level")
    what = ""
    if inside and theirs:
        what = (
            f" django-jobs writes a whole record in one Lua function ({', '.join(inside)}), "
            f"after checking the arguments' JSON; {display_name(results, peer)} sends "
            f"{', '.join(theirs)}."
        )
    return (
        f"Per job, django-jobs takes {_us(wall[DJ])} ({display_name(results, peer)}: "
        f"{_us(wall[peer])}){_round_trip(results)}. The enqueuing process spends "
        f"{_both(results, peer, 'us', 'enqueue', 'cpu_client_us')} of CPU on it and "
        f"redis-server {_both(results, peer, 'us', 'enqueue', 'cpu_redis_us')}, whose "
        f"commands run {_both(results, peer, 'us', 'enqueue', 'redis_commands_us')}: the "
        f"{_us(gap)} between them go with {_us(cpu[DJ][0] - cpu[peer][0])} more CPU in the "
        f"client and {_us(cpu[DJ][1] - cpu[peer][1])} more in Redis.{what}"
    )


def bulk(results: Results) -> str:
    """``enqueue_many`` in calls of a batch: its CPU per job here and in Redis."""
    if not _measured(results, DJ, "bulk"):
        return ""
    rate = median_of(results, DJ, "bulk", "per_second")
    client = median_of(results, DJ, "bulk", "cpu_client_us")
    server = median_of(results, DJ, "bulk", "cpu_redis_us")
    commands = median_of(results, DJ, "bulk", "redis_commands_us")
    return (
        f"Per job, {_us(1e6 / rate)} (100,000 jobs/s needs 10 µs): this process spends "
        f"{_us(client)} of CPU (building the jobs, checking and encoding them, sending them) and "
        f"redis-server {_us(server)}, whose script runs {_us(commands)} (a hash written per "
        "job). A call's chunks go one behind another, so the client's work on one overlaps "
        "Redis's on the one before: the larger of the two sets the pace."
    )


def latency(results: Results, peer: str | None) -> str:
    """The idle latency against ``peer``'s: when the enqueue returned, the bare wake-up, and the
    CPU per job here and in Redis."""
    if peer is None or not (
        _measured(results, DJ, "latency") and _measured(results, peer, "latency")
    ):
        return ""
    floor = results.get("floor") or {}
    wake = ""
    if floor.get("wakeup_start_p50_ms"):
        wake = (
            f"; a bare wake-up here takes {_ms(median(floor['wakeup_start_p50_ms']))} at p50 "
            f"and {_ms(median(floor['wakeup_start_p99_ms']))} at p99, "
            f"{_ms(median(floor['wakeup_done_p50_ms']))} until its answer is read"
        )
    # A call that returns after its job started was answered only after the woken worker's
    # claim ran (Redis writes its replies once per pass of its loop), once its caller slept.
    submit, start = (
        median_of(results, DJ, "latency", key) for key in ("submit_p50_ms", "start_p50_ms")
    )
    started = f" (django-jobs' job has started by then: {_ms(start)})" if submit >= start else ""
    return (
        "The enqueue call returns after "
        f"{_both(results, peer, 'ms', 'latency', 'submit_p50_ms')} at p50{started}{wake}. "
        "Per job, "
        f"redis-server spends {_both(results, peer, 'us', 'latency', 'cpu_redis_us')} of CPU, "
        f"its commands run {_both(results, peer, 'us', 'latency', 'redis_commands_us')} (for "
        "django-jobs the scripts that enqueue, lease, record and report the job; the worker "
        "is woken by a token and leases the job in the same write), and the enqueuing process "
        f"{_both(results, peer, 'us', 'latency', 'cpu_client_us')}, its wait for the result "
        "included."
    )
