"""``benchmarks.png``: four panels of the main numbers, medians with min-max bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from harness.report import DJ, display_name, libraries_in, lookup
from harness.stats import median, spread

OURS, PEER, SECOND = "#2a7ab0", "#9aa5b1", "#e08a2c"


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
        p50 = [median(lookup(results, lib, "latency", f"{key}_p50_ms")) for lib in libs]
        p99 = [median(lookup(results, lib, "latency", f"{key}_p99_ms")) for lib in libs]
        xs = [i + offset for i in range(len(libs))]
        color = OURS if key == "start" else SECOND
        ax.bar(xs, p50, width, color=color, label=f"{label} p50")
        ax.scatter(xs, p99, marker="_", s=200, color="black", zorder=3)
    ax.scatter([], [], marker="_", s=200, color="black", label="p99")
    ax.set_xticks(range(len(libs)), [display_name(results, lib) for lib in libs], fontsize=8)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=7)
    ax.set_title("Idle latency (ms, log scale)", fontsize=10)


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


def draw(results: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    panels = (
        (axes[0][0], _enqueue, "enqueue"),
        (axes[0][1], _drain, "drain"),
        (axes[1][0], _latency, "latency"),
        (axes[1][1], _roundtrips, "roundtrips"),
    )
    for ax, panel, workload in panels:
        if any(lookup(results, lib, workload) for lib in libraries_in(results)):
            panel(ax, results)
        else:
            ax.text(0.5, 0.5, f"{workload}: not measured", ha="center", transform=ax.transAxes)
            ax.set_axis_off()
    m = results.get("machine", {})
    fig.suptitle(
        f"django-jobs and peers on one Redis {m.get('redis_server', '')} — {m.get('cpu', '')}, "
        f"{m.get('cores', '?')} cores, {m.get('date', '')}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
