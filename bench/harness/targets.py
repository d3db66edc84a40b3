"""django-jobs' targets (issue 18), each as measured in a run: same-run ratios against the
best peer, thresholds, and the scheduler-at-scale figures when the results hold them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

from harness import misses
from harness.results import (
    DASH,
    DJ,
    PEERS,
    TIMES,
    Results,
    best_mode,
    display_name,
    lookup,
    median_of,
    number,
)
from harness.stats import median


@dataclass(frozen=True)
class Target:
    label: str
    goal: str
    measured: str
    value: float  # the number compared with the threshold
    shown: str  # the value as shown (a ratio, or the value itself)
    met: bool | None  # None: not measured
    why: str = ""  # where the time went, from the run's measures (harness.misses)


class Peer(NamedTuple):
    """The best peer of a comparison: its name as shown, its value and its key."""

    name: str
    value: float
    lib: str


NAN = float("nan")


def _lib(peer: Peer | None) -> str | None:
    return peer.lib if peer else None


def _check(value: float | None, ok: Callable[[float], bool]) -> bool | None:
    if value is None or math.isnan(value):
        return None
    return ok(value)


def _best_peer(
    results: Results, workload: str, value: Callable[[str], float | None], *, lowest: bool = False
) -> Peer | None:
    """The peer with the best value (the highest, or with ``lowest`` the lowest) among those
    that ran ``workload`` in this run: a ratio is a same-run ratio. Only when no peer ran it
    does a number of an earlier run count (the report marks those)."""
    found = [(lib, value(lib)) for lib in PEERS]
    found = [(lib, v) for lib, v in found if v is not None and not math.isnan(v)]
    same_run = [
        (lib, v)
        for lib, v in found
        if (lookup(results, lib, workload) or {}).get("measured") == results.get("run_date")
    ]
    found = same_run or found
    if not found:
        return None
    pick = min if lowest else max
    lib, best = pick(found, key=lambda item: item[1])
    return Peer(display_name(results, lib), best, lib)


def _ratio(label: str, ours: float, peer: Peer | None, goal: float, unit: str) -> Target:
    """``ours`` against the best peer's value, met at ``goal`` times or more."""
    ratio = ours / peer.value if peer else NAN
    against = f" ({peer.name}: {number(peer.value)} {unit})" if peer else ""
    return Target(
        label,
        f"≥ {goal:g}{TIMES} the best peer{against}",
        f"{number(ours)} {unit}",
        ratio,
        f"{number(ratio, 2)}{TIMES}",
        _check(ratio, lambda r: r >= goal - 1e-9),
    )


def _at_most(
    label: str, value: float, goal: float, unit: str, goal_text: str = "", digits: int = 2
) -> Target:
    shown = f"{number(value, digits if value < 10 else None)} {unit}".strip()
    return Target(
        label,
        goal_text or f"≤ {number(goal)} {unit}".strip(),
        shown,
        value,
        shown,
        None if math.isnan(goal) else _check(value, lambda v: v <= goal + 1e-9),
    )


def _drain(results: Results, processes: int, goal: float, every: bool) -> Target:
    """Our best mode with ``processes`` processes against the best peer's: with ``every``,
    our slowest repetition must reach the goal against the peer's median."""
    ours = best_mode(results, DJ, processes)

    def peer_rate(lib: str) -> float | None:
        best = best_mode(results, lib, processes)
        return median(best["per_second"]) if best else None

    peer = _best_peer(results, "drain", peer_rate)
    rates = ours["per_second"] if ours else []
    rate = min(rates) if every and rates else (median(rates) if rates else NAN)
    plural = "process" if processes == 1 else "processes"
    label = f"Drain, {processes} {plural}" + (", every repetition (slowest)" if every else "")
    return _ratio(label, rate, peer, goal, "jobs/s")


def _median_peer(results: Results, workload: str, key: str, *, lowest: bool = False) -> Peer | None:
    """The peer with the best median of ``workload``'s ``key`` (see :func:`_best_peer`)."""
    return _best_peer(
        results,
        workload,
        lambda lib: (
            median_of(results, lib, workload, key) if lookup(results, lib, workload) else None
        ),
        lowest=lowest,
    )


def _latency_peer(results: Results, key: str) -> Peer | None:
    """The peer with the lowest idle latency ``key`` (a p50 or p99, in ms)."""
    return _median_peer(results, "latency", key, lowest=True)


def _latency(results: Results, key: str, label: str) -> Target:
    ours = median_of(results, DJ, "latency", key)
    peer = _latency_peer(results, key)
    goal = (
        f"≤ the best peer ({peer.name}: {number(peer.value, 2)} ms)" if peer else "≤ the best peer"
    )
    target = _at_most(label, ours, peer.value if peer else NAN, "ms", goal)
    return replace(target, why=misses.latency(results, _lib(peer)))


def _p99_goal(results: Results) -> str:
    """The p99 goal, with the machine's floor for it: a bare redis-py process woken from BLPOP."""
    floor = _floor(results, "wakeup_start_p99_ms")
    return "< 1 ms" if math.isnan(floor) else f"< 1 ms (bare wake-up here: {number(floor, 2)} ms)"


def _floor(results: Results, key: str) -> float:
    """The median of the floor workload's ``key`` (NaN when it was not measured)."""
    values = (results.get("floor") or {}).get(key)
    return median(values) if values else NAN


def _memory(results: Results) -> list[Target]:
    queued = median_of(results, DJ, "enqueue", "memory_per_job")
    large = lookup(results, DJ, "scale", "memory_per_job")
    worst = max(queued, large) if large is not None else queued
    mode = best_mode(results, DJ, 1)
    finished = (
        median(mode["finished_record_bytes"]) if mode and "finished_record_bytes" in mode else NAN
    )
    return [
        _at_most("Redis memory per queued no-op job", worst, 300, "B"),
        _at_most("Redis memory per completed job (record + result)", finished, 400, "B"),
    ]


def _scheduler(results: Results) -> list[Target]:
    out = []
    for key, run in sorted((results.get("scheduler_scale") or {}).items()):
        name = run.get("database", key)
        tasks = number(run["tasks"])
        out.append(
            _at_most(
                f"Scheduler, {tasks} tasks on {name}: ticks late, p99", run["late_p99_s"], 1.0, "s"
            )
        )
        out.append(
            _at_most(
                f"Scheduler, {tasks} tasks on {name}: start-up (to its first tick enqueued)",
                run["first_tick_s"],
                10.0,
                "s",
            )
        )
    return out


def targets(results: Results) -> list[Target]:
    """django-jobs' targets from issue 18, each as measured in this run."""
    per_job = float(lookup(results, DJ, "roundtrips", "job", "round_trips") or NAN)
    per_enqueue = float(lookup(results, DJ, "roundtrips", "enqueue", "round_trips") or NAN)
    enqueue = median_of(results, DJ, "enqueue", "per_second")
    peer_enqueue = _median_peer(results, "enqueue", "per_second")
    bulk = median_of(results, DJ, "bulk", "per_second")
    one_call = median_of(results, DJ, "bulk", "one_call_per_second")
    bulk_batch = float(lookup(results, DJ, "bulk", "batch") or NAN)
    small, large = (
        median_of(results, DJ, "scale", "small_per_second"),
        median_of(results, DJ, "scale", "large_per_second"),
    )
    sizes = lookup(results, DJ, "scale") or {}
    start_p99 = median_of(results, DJ, "latency", "start_p99_ms")
    backlog = large / small
    return [
        _drain(results, 1, 2.5, every=True),
        _drain(results, 2, 1.5, every=False),
        _at_most("Round trips per processed job", per_job, 1.0, "", digits=3),
        _at_most("Round trips per enqueue", per_enqueue, 1.0, "", digits=3),
        replace(
            _ratio("Enqueue, one by one", enqueue, peer_enqueue, 1.0, "jobs/s"),
            why=misses.enqueue(results, _lib(peer_enqueue)),
        ),
        Target(
            "Bulk enqueue (`enqueue_many`)",
            f"≥ 10{TIMES} our one-by-one enqueue and ≥ 100,000 jobs/s",
            f"{number(bulk)} jobs/s"
            + (f" in calls of {number(bulk_batch)}" if not math.isnan(bulk_batch) else "")
            + (f" ({number(one_call)} in one call)" if not math.isnan(one_call) else ""),
            bulk / enqueue,
            f"{number(bulk / enqueue, 1)}{TIMES}",
            _check(bulk / enqueue, lambda r: r >= 10.0 and bulk >= 100_000),
            misses.bulk(results),
        ),
        _latency(results, "start_p50_ms", "Idle latency, enqueue → start, p50"),
        replace(
            _at_most(
                "Idle latency, enqueue → start, p99", start_p99, 1.0, "ms", _p99_goal(results)
            ),
            # Explained against the peer of the lowest start p50, as the p50 is.
            why=misses.latency(results, _lib(_latency_peer(results, "start_p50_ms"))),
        ),
        _latency(results, "done_p50_ms", "Idle latency, enqueue → done, p50"),
        Target(
            f"Drain with a {number(sizes.get('large', NAN))}-job backlog",
            f"within 15% of a {number(sizes.get('small', NAN))}-job one (≥ 0.85{TIMES})",
            f"{number(large)} vs {number(small)} jobs/s",
            backlog,
            f"{number(backlog, 2)}{TIMES}",
            _check(backlog, lambda r: r >= 0.85),
        ),
        *_memory(results),
        *_scheduler(results),
    ]


def _mark(met: bool | None) -> str:
    return {True: "✅ met", False: "❌ missed", None: f"{DASH} not measured"}[met]


def targets_table(results: Results) -> str:
    lines = [
        "| Target (django-jobs) | Goal | Measured | Ratio / value | |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in targets(results):
        lines.append(f"| {t.label} | {t.goal} | {t.measured} | {t.shown} | {_mark(t.met)} |")
    return "\n".join(lines)


def missed_notes(results: Results) -> str:
    """Why each missed target was missed, as measured in this run (a Markdown list; "" when
    nothing was missed, or nothing measured says why). Targets with the same explanation (the
    idle latencies) share one item."""
    grouped: dict[str, list[str]] = {}
    for t in targets(results):
        if t.met is False and t.why:
            grouped.setdefault(t.why, []).append(f"**{t.label}**")
    return "\n".join(f"- {', '.join(labels)}: {why}" for why, labels in grouped.items())
