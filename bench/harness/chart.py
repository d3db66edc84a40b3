"""``benchmarks.png``: the main numbers (medians with min-max bars), the idle latency's
distribution per library and, when the results hold a ``bench/scheduler_scale.py`` run, the
lateness of the scheduler's ticks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import LogLocator, NullFormatter

from harness.results import DJ, display_name, earlier_runs, libraries_in, lookup
from harness.stats import median, spread

OURS, PEER, SECOND = "#2a7ab0", "#9aa5b1", "#e08a2c"
# One colour per library in the distribution panel (django-jobs keeps its own).
LIBRARY_COLORS = {
    DJ: OURS,
    "rq": "#c0504d",
    "celery": "#6a9f3a",
    "huey": "#8064a2",
    "dramatiq": "#b08a2c",
}
DATABASES = {"sqlite": ("SQLite", OURS), "postgresql": ("PostgreSQL", SECOND)}


def _errors(values_list: list[list[float]]) -> list[list[float]]:
    """Matplotlib's asymmetric error bars: distances from the median to min and max."""
    lows, highs = [], []
    for values in values_list:
        low, high = spread(values)
        mid = median(values)
        lows.append(mid - low)
        highs.append(high - mid)
    return [lows, highs]


def _barh(ax: Axes, labels: list[str], series: list[list[float]], colors: list[str]) -> None:
    positions = list(range(len(labels)))[::-1]
    mids = [median(v) for v in series]
    ax.barh(positions, mids, xerr=_errors(series), color=colors, capsize=3)
    ax.set_yticks(positions, labels, fontsize=8)
    for y, value, values in zip(positions, mids, series, strict=True):
        ax.text(spread(values)[1], y, f"  {value:,.0f}", va="center", fontsize=7)


def _enqueue(ax: Axes, results: dict[str, Any]) -> None:
    labels, series, colors = [], [], []
    for lib in libraries_in(results):
        values = lookup(results, lib, "enqueue", "per_second")
        if values:
            labels.append(display_name(results, lib))
            series.append(values)
            colors.append(OURS if lib == DJ else PEER)
    bulk = lookup(results, DJ, "bulk", "per_second")
    if bulk:
        labels.insert(1, "django-jobs bulk")
        series.insert(1, bulk)
        colors.insert(1, SECOND)
    if series:
        _barh(ax, labels, series, colors)
        ax.set_xscale("log")
    floor = results.get("floor")
    if floor:
        ax.axvline(median(floor["per_second"]), color="black", linestyle="--", linewidth=1)
        ax.text(
            median(floor["per_second"]),
            len(labels) - 0.5,
            "redis-py floor: 1 command per round trip ",
            fontsize=7,
            va="bottom",
            ha="right",
        )
    ax.set_title("Enqueue (jobs/s, log scale)", fontsize=10)


def _drain(ax: Axes, results: dict[str, Any]) -> None:
    labels, series, colors = [], [], []
    for lib in libraries_in(results):
        for mode in lookup(results, lib, "drain", "modes") or []:
            labels.append(f"{display_name(results, lib)} {mode['mode']}")
            series.append(mode["per_second"])
            if lib == DJ:
                colors.append(OURS if mode["processes"] == 1 else SECOND)
            else:
                colors.append(PEER if mode["processes"] == 1 else "#c9ced4")
    if series:
        _barh(ax, labels, series, colors)
    ax.set_title("Drain (jobs/s; light bars: 2 processes)", fontsize=10)


def _latency(ax: Axes, results: dict[str, Any]) -> None:
    libs = [lib for lib in libraries_in(results) if lookup(results, lib, "latency")]
    width = 0.38
    for offset, key, label in (
        (-width / 2, "start", "enqueue → start"),
        (width / 2, "done", "→ done"),
    ):
        p50 = [median(lookup(results, lib, "latency", f"{key}_p50_ms") or []) for lib in libs]
        p99 = [median(lookup(results, lib, "latency", f"{key}_p99_ms") or []) for lib in libs]
        xs = [i + offset for i in range(len(libs))]
        color = OURS if key == "start" else SECOND
        ax.bar(xs, p50, width, color=color, label=f"{label} p50")
        ax.scatter(xs, p99, marker="_", s=200, color="black", zorder=3)
    ax.scatter([], [], marker="_", s=200, color="black", label="p99")
    ax.set_xticks(range(len(libs)), [display_name(results, lib) for lib in libs], fontsize=8)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(lambda y, _: f"{y:g}")
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=7)
    ax.set_title("Idle latency, p50 bars and p99 marks (ms, log scale)", fontsize=10)


def _day(stamp: str | None) -> str:
    """``2026-12-03`` of ``2026-12-03 10:45 UTC``."""
    return (stamp or "").split(" ")[0]


def _cdf(ax: Axes, dist: dict[str, list[float]], **style: Any) -> None:
    """A distribution kept as percentiles (``{"q": [...], "v": [...]}``) as a CDF line."""
    ax.plot(dist["v"], [q / 100 for q in dist["q"]], drawstyle="default", **style)


def _share_axis(ax: Axes) -> None:
    """Share of jobs (ticks) on the y axis, with the p50 and p99 levels marked."""
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(lambda y, _: f"{y:.0%}")
    for level in (0.5, 0.99):
        ax.axhline(level, color="black", linewidth=0.6, linestyle=":", zorder=1)
        ax.text(
            1.0,
            level,
            f" p{level * 100:.0f}",
            transform=ax.get_yaxis_transform(),
            fontsize=7,
            va="center",
        )
    ax.grid(axis="x", which="major", linewidth=0.4, alpha=0.5)


def _latency_distribution(ax: Axes, results: dict[str, Any]) -> None:
    """Each library's enqueue -> start (solid) and -> done (dashed) as CDFs on a log axis; a
    library measured before the distributions were kept shows its p50 and p99 as markers."""
    run_day = _day(results.get("machine", {}).get("date"))
    days = set()
    for lib in libraries_in(results):
        latency = lookup(results, lib, "latency")
        if not latency:
            continue
        color = LIBRARY_COLORS.get(lib, PEER)
        name = display_name(results, lib)
        day = _day(latency.get("measured"))
        if day and day != run_day:
            name += f" ({day})"
        dist = latency.get("distribution_ms")
        if dist:
            days.add(day)
            _cdf(ax, dist["start"], color=color, linewidth=1.6, label=f"{name} → start")
            _cdf(ax, dist["done"], color=color, linewidth=1.2, linestyle="--", label="  → done")
            continue
        for key, marker in (("start", "o"), ("done", "s")):
            xs = [median(lookup(results, lib, "latency", f"{key}_p{p}_ms") or []) for p in (50, 99)]
            ax.scatter(
                xs,
                [0.5, 0.99],
                marker=marker,
                facecolors="none",
                edgecolors=color,
                s=24,
                zorder=3,
                label=f"{name}: p50, p99 only (○ start, □ done)" if key == "start" else None,
            )
    woke = (results.get("floor") or {}).get("wakeup_start_p50_ms")
    if woke:
        ax.axvline(median(woke), color="grey", linestyle=":", linewidth=1)
        ax.plot([], [], color="grey", linestyle=":", label="bare BLPOP wake-up, p50 (floor)")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:g}")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("ms (log scale); solid: enqueue → start, dashed: enqueue → done", fontsize=8)
    _share_axis(ax)
    ax.legend(fontsize=6.5, loc="lower right", ncol=1)
    jobs = "all repetitions' jobs"
    ax.set_title(f"Idle latency: share of jobs within x ms ({jobs})", fontsize=10)


def _scheduler(ax: Axes, results: dict[str, Any]) -> None:
    """The CDF of the scheduler's tick lateness per database, p50 and p99 marked."""
    runs = results.get("scheduler_scale") or {}
    for key, (name, color) in DATABASES.items():
        run = runs.get(key)
        if not run:
            continue
        label = (
            f"{name}: {run['tasks']:,} tasks, {run['ticks']:,} ticks in {run['seconds']:g} s "
            f"({_day(run.get('measured'))})\np50 {run['late_p50_s']:.2f} s, "
            f"p99 {run['late_p99_s']:.2f} s, max {run['late_max_s']:.2f} s; "
            f"CPU {run['cpu_per_s']:.2f} s/s, RSS {run['rss_mib']} MiB"
        )
        _cdf(ax, run["lateness_s"], color=color, linewidth=1.6, label=label)
        ax.scatter([run["late_p50_s"], run["late_p99_s"]], [0.5, 0.99], color=color, s=18, zorder=3)
    ax.axvline(1.0, color="#c0504d", linewidth=1, linestyle="--")
    ax.text(1.0, 0.75, "target: p99 ≤ 1 s ", color="#c0504d", fontsize=7, ha="right")
    ax.set_xlim(left=0, right=max(1.1, *(r["late_max_s"] * 1.05 for r in runs.values())))
    ax.set_xlabel("tick lateness, s (the job's created_at - its scheduled_at)", fontsize=8)
    _share_axis(ax)
    ax.legend(fontsize=6.5, loc="lower right")
    ax.set_title("Scheduler at scale: share of ticks enqueued within x s", fontsize=10)


def _roundtrips(ax: Axes, results: dict[str, Any]) -> None:
    libs = [lib for lib in libraries_in(results) if lookup(results, lib, "roundtrips")]
    width = 0.38
    for offset, phase, color, label in (
        (-width / 2, "enqueue", PEER, "per enqueue"),
        (width / 2, "job", OURS, "per processed job"),
    ):
        values = [lookup(results, lib, "roundtrips", phase, "round_trips") for lib in libs]
        xs = [i + offset for i in range(len(libs))]
        ax.bar(xs, values, width, color=color, label=label)
        for x, v in zip(xs, values, strict=True):
            ax.text(x, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(libs)), [display_name(results, lib) for lib in libs], fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title("Redis round trips", fontsize=10)


def _not_measured(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}: not measured", ha="center", transform=ax.transAxes)
    ax.set_axis_off()


def draw(results: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(3, 2, figsize=(13, 13.5))
    panels = (
        (axes[0][0], _enqueue, "enqueue"),
        (axes[0][1], _drain, "drain"),
        (axes[1][0], _latency, "latency"),
        (axes[1][1], _latency_distribution, "latency"),
        (axes[2][0], _roundtrips, "roundtrips"),
    )
    for ax, panel, workload in panels:
        if any(lookup(results, lib, workload) for lib in libraries_in(results)):
            panel(ax, results)
        else:
            _not_measured(ax, workload)
    if results.get("scheduler_scale"):
        _scheduler(axes[2][1], results)
    else:
        _not_measured(axes[2][1], "scheduler at scale (bench/scheduler_scale.py --json)")
    m = results.get("machine", {})
    title = (
        f"django-jobs and peers on one Redis {m.get('redis_server', '')} — {m.get('cpu', '')}, "
        f"{m.get('cores', '?')} cores, {m.get('date', '')}"
    )
    earlier = earlier_runs(results)
    if earlier:
        then = results.get("merged_cpu") if earlier == [results.get("merged_from")] else None
        title += f"\nwhat this run did not measure: from the run of {' and '.join(earlier)}" + (
            f" ({then})" if then and then != m.get("cpu") else ""
        )
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
