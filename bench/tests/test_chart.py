import json
from pathlib import Path

from harness import cli
from harness.chart import draw
from harness.stats import QUANTILES, distribution
from test_report import _results


def _scheduler_scale() -> dict:
    def run(database: str, p50: float, p99: float) -> dict:
        return {
            "database": database,
            "tasks": 20_000,
            "seconds": 20.0,
            "measured": "2026-12-03 10:42 UTC",
            "cpu_per_s": 0.12,
            "rss_mib": 94,
            "ticks": 560,
            "late_p50_s": p50,
            "late_p99_s": p99,
            "late_max_s": p99 + 0.05,
            "lateness_s": distribution([p50 / 2, p50, p50, p99]),
        }

    return {"sqlite": run("sqlite", 0.07, 0.63), "postgresql": run("postgresql", 0.06, 0.33)}


def test_distribution_keeps_the_percentiles_of_every_sample() -> None:
    dist = distribution([float(v) for v in range(1, 101)])
    assert dist["q"] == list(QUANTILES)
    assert dist["v"][0] == 1.0
    assert dist["v"][-1] == 100.0
    assert dist["v"][dist["q"].index(50)] == 50.5
    assert dist["v"] == sorted(dist["v"])


def test_chart_draws_distributions_p50_p99_only_and_the_scheduler(tmp_path: Path) -> None:
    results = _results()
    latency = results["libraries"]["django-jobs"]["latency"]
    latency["done_p50_ms"], latency["done_p99_ms"] = [1.2], [2.5]
    latency["distribution_ms"] = {
        "start": distribution([0.5, 0.8, 0.9, 2.0]),
        "done": distribution([0.9, 1.2, 1.3, 2.5]),
    }
    # Huey from a run before the distributions were kept: its p50 and p99 only.
    results["libraries"]["huey"]["latency"] = {
        "start_p50_ms": [0.3],
        "start_p99_ms": [1.1],
        "done_p50_ms": [0.9],
        "done_p99_ms": [1.4],
        "measured": "2026-11-28 13:04 UTC",
    }
    results["scheduler_scale"] = _scheduler_scale()
    draw(results, tmp_path / "benchmarks.png")
    assert (tmp_path / "benchmarks.png").stat().st_size > 10_000


def test_chart_without_latency_or_scheduler(tmp_path: Path) -> None:
    results = _results()
    del results["libraries"]["django-jobs"]["latency"]
    draw(results, tmp_path / "benchmarks.png")
    assert (tmp_path / "benchmarks.png").exists()


def test_redraw_adds_the_scheduler_figures_and_measures_nothing(tmp_path: Path) -> None:
    saved, scale = tmp_path / "benchmarks.json", tmp_path / "scheduler_scale.json"
    saved.write_text(json.dumps(_results()))
    scale.write_text(json.dumps(_scheduler_scale()))
    argv = ["--redraw", str(saved), "--scheduler-scale", str(scale), "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    assert (tmp_path / "benchmarks.png").exists()
    assert not (tmp_path / "benchmarks.md").exists()
