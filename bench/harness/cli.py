"""``python bench/run.py``: parse the options, run the workloads, write the report."""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from adapters.base import Adapter

from harness import floor, machine, profile, report, workloads
from harness.config import LIBRARIES, WORKLOADS, Config, quick
from harness.redis_server import PrivateRedis
from harness.workloads import Context

RESULTS_ENV = "BENCH_DRAMATIQ_RESULTS"  # see adapters/lib_dramatiq.py
Results = dict[str, Any]

BENCH = Path(__file__).resolve().parent.parent
DOCS = BENCH.parent / "docs"
OUT = BENCH / "out"


def _csv(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(item.strip().lower() for item in text.split(",") if item.strip())
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(choices)}"
            )
        return items

    return parse


def parse_args(argv: list[str]) -> tuple[Config, argparse.Namespace]:
    defaults = Config()
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark django-jobs against RQ, Celery, Huey and Dramatiq on a private "
        "redis-server. With no options: the full run, written to docs/benchmarks.{md,png,json}.",
    )
    parser.add_argument(
        "--only",
        type=_csv(LIBRARIES),
        default=LIBRARIES,
        metavar="LIBS",
        help=f"comma-separated libraries to run: {', '.join(LIBRARIES)} (default: all); "
        "the others' numbers come from docs/benchmarks.json",
    )
    parser.add_argument(
        "--workloads",
        type=_csv(WORKLOADS),
        default=WORKLOADS,
        metavar="LIST",
        help=f"comma-separated workloads: {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="about a quarter of the jobs (5,000 per drain, a 100,000-job large backlog)",
    )
    parser.add_argument("--reps", type=int, help=f"repetitions (default {defaults.reps})")
    parser.add_argument(
        "--scale-reps",
        type=int,
        help=f"repetitions of each scale run (default {defaults.scale_reps})",
    )
    counts = {
        "bulk_jobs": "jobs of django-jobs' bulk enqueue",
        "bulk_batch": "jobs per enqueue_many() call",
        "drain_jobs": "jobs queued before a one-process drain's worker starts, enqueued one "
        "by one (the enqueue workload)",
        "drain_jobs_2p": "jobs queued before a two-process drain",
        "latency_jobs": "sequential jobs of the latency workload",
        "roundtrip_jobs": "jobs of the round-trip workload",
        "backlog_small": "small backlog of the scale workload (also the jobs timed per run)",
        "backlog_large": "large backlog of the scale workload",
        "floor_commands": "INCRs of the floor workload",
    }
    for name, what in counts.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            help=f"{what} (default {getattr(defaults, name):,})",
        )
    parser.add_argument(
        "--processes",
        type=lambda s: tuple(int(p) for p in s.split(",")),
        help="drain worker processes, e.g. 1 or 1,2 (default 1,2)",
    )
    parser.add_argument(
        "--skip-mode",
        action="append",
        default=[],
        metavar="LIB:MODE",
        help="leave out drain modes whose 'library:mode' starts with this, e.g. "
        "'RQ:Worker (fork' (repeatable)",
    )
    parser.add_argument(
        "--retry-busy",
        type=float,
        metavar="CORES",
        help="run a drain again (once) when other processes used more than this many cores "
        f"meanwhile; 0: never (default {defaults.retry_busy})",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile django-jobs with py-spy (a one-process drain: supervisor and child; "
        "enqueue one by one and bulk) and write the hot spots to bench/out/profile.md",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write benchmarks.{md,png,json} (default: docs/ for a full run, "
        "bench/out/ for --only, --workloads or --quick runs)",
    )
    parser.add_argument(
        "--scheduler-scale",
        type=Path,
        metavar="JSON",
        help="the figures of bench/scheduler_scale.py --json runs, kept in the results and "
        "drawn in the chart (default: those of docs/benchmarks.json, if any)",
    )
    parser.add_argument(
        "--redraw",
        type=Path,
        metavar="RESULTS",
        help="measure nothing: draw benchmarks.png again from this results JSON (e.g. "
        "docs/benchmarks.json, or bench/out/benchmarks.json of a partial run), with "
        "--scheduler-scale if given, into --out (default bench/out/)",
    )
    parser.add_argument(
        "--no-merge",
        action="store_true",
        help="do not fill in libraries and workloads left out from docs/benchmarks.json",
    )
    args = parser.parse_args(argv)
    config = quick(defaults) if args.quick else defaults
    changes: dict[str, Any] = {
        "libraries": tuple(lib for lib in LIBRARIES if lib in args.only),
        "workloads": tuple(w for w in WORKLOADS if w in args.workloads),
        "profile": args.profile,
        "skip_modes": tuple(args.skip_mode),
    }
    for name in [*counts, "reps", "scale_reps", "processes", "retry_busy"]:
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    config = Config(**{**config.to_dict(), **changes})
    if config.reps < 1:
        parser.error("--reps must be at least 1")
    return config, args


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _is_full(config: Config, args: argparse.Namespace) -> bool:
    return not args.quick and config.libraries == LIBRARIES and config.workloads == WORKLOADS


def _sigterm(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt  # so that workers and the private server are stopped on the way out


class Session:
    """One run: the libraries' adapters, the results so far (saved after every workload)."""

    def __init__(self, config: Config, results: Results, save: Callable[[], None]) -> None:
        self.config, self.results, self.save = config, results, save
        self.date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        results["run_date"] = self.date
        self.libraries: dict[str, Any] = results.setdefault("libraries", {})

    def record(self, adapter: Adapter, key: str, workload: str, value: dict[str, Any]) -> None:
        entry = self.libraries.setdefault(key, {})
        entry.update(
            name=adapter.name,
            versions={d: machine.version(d) for d in adapter.distributions},
            setup_notes=adapter.setup_notes,
        )
        entry[workload] = {**value, "measured": self.date, "quick": self.results["config"]["quick"]}
        entry.get("errors", {}).pop(workload, None)
        self.save()

    def attempt(self, key: str, workload: str, action: Callable[[], object]) -> None:
        """Run one workload of one library; a failure is logged and reported, and the run goes
        on with the next."""
        try:
            action()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            _log(f"  {key} {workload} FAILED: {exc}")
            traceback.print_exc()
            errors = self.libraries.setdefault(key, {}).setdefault("errors", {})
            errors[workload] = f"{type(exc).__name__}: {exc}"
            self.save()

    def run(self) -> None:
        from adapters import load

        config = self.config
        with PrivateRedis() as server:
            _log(f"private redis-server at {server.url} (dir {server.dir})")
            self.results["machine"] = machine.describe(server.info("server"))
            os.environ["BENCH_REDIS_URL"] = server.url
            os.environ[RESULTS_ENV] = "1"  # the harness waits for Dramatiq's results
            # The round-trip workload's MONITOR log is written before any worker starts.
            (OUT / "logs").mkdir(parents=True, exist_ok=True)
            ctx = Context(server, config, OUT / "logs", _log)
            if "floor" in config.workloads:
                _log("floor: plain redis-py INCRs, and wake-ups of a blocked process")
                found = floor.floor(
                    server.url, config.reps, config.floor_commands, config.latency_jobs
                )
                self.results["floor"] = {**found, "measured": self.date}
                self.save()
            adapters = {key: load(key) for key in config.libraries}
            for key, adapter in adapters.items():
                self.enqueue_and_drain(ctx, key, adapter)
            for workload in ("latency", "roundtrips"):
                if workload in config.workloads:
                    for key, adapter in adapters.items():
                        _log(f"{adapter.name}: {workload}")
                        measure = getattr(workloads, workload)
                        self.attempt(
                            key,
                            workload,
                            functools.partial(self._measure, adapter, key, workload, measure, ctx),
                        )
            dj = adapters.get("django-jobs")
            if dj is not None and "scale" in config.workloads:
                _log(
                    f"django-jobs: scale, backlogs of {config.backlog_small:,} and "
                    f"{config.backlog_large:,}"
                )
                self.attempt(
                    "django-jobs",
                    "scale",
                    functools.partial(
                        self._measure, dj, "django-jobs", "scale", workloads.scale, ctx
                    ),
                )
            if dj is not None and config.profile:
                _log("django-jobs: profiling a drain and the enqueues with py-spy")
                text = profile.profile(ctx, dj)
                (OUT / "profile.md").write_text(text + "\n")
                print(text)

    def _measure(
        self,
        adapter: Adapter,
        key: str,
        workload: str,
        measure: Callable[[Context, Adapter], dict[str, Any]],
        ctx: Context,
    ) -> None:
        self.record(adapter, key, workload, measure(ctx, adapter))

    def enqueue_and_drain(self, ctx: Context, key: str, adapter: Adapter) -> None:
        config = self.config
        if "drain" in config.workloads:
            _log(f"{adapter.name}: enqueue + drain")

            def drain() -> None:
                drained, enqueued = workloads.drain(ctx, adapter)
                self.record(adapter, key, "drain", drained)
                if "enqueue" in config.workloads:
                    self.record(adapter, key, "enqueue", enqueued)

            self.attempt(key, "drain", drain)
        elif "enqueue" in config.workloads:
            _log(f"{adapter.name}: enqueue, {config.drain_jobs:,} jobs")
            self.attempt(
                key,
                "enqueue",
                functools.partial(self._measure, adapter, key, "enqueue", workloads.enqueue, ctx),
            )
        if "enqueue" in config.workloads and hasattr(adapter, "enqueue_bulk"):
            _log(f"{adapter.name}: bulk enqueue, {config.bulk_jobs:,} jobs")
            self.attempt(
                key,
                "bulk",
                functools.partial(self._measure, adapter, key, "bulk", workloads.bulk, ctx),
            )


def redraw(args: argparse.Namespace) -> int:
    """``--redraw``: the chart again from saved results, nothing measured."""
    results = json.loads(args.redraw.read_text())
    if args.scheduler_scale is not None:
        results["scheduler_scale"] = json.loads(args.scheduler_scale.read_text())
    out = args.out or OUT
    out.mkdir(parents=True, exist_ok=True)
    from harness.chart import draw

    draw(results, out / "benchmarks.png")
    _log(f"wrote {out / 'benchmarks.png'} from {args.redraw}")
    return 0


def main(argv: list[str]) -> int:
    config, args = parse_args(argv)
    if args.redraw is not None:
        return redraw(args)
    full = _is_full(config, args)
    out = args.out or (DOCS if full else OUT)
    out.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _sigterm)

    base: dict[str, Any] = {}
    published = DOCS / "benchmarks.json"
    if not args.no_merge and not full and published.exists():
        base = json.loads(published.read_text())
    results: dict[str, Any] = {
        **base,
        "config": {**config.to_dict(), "quick": args.quick},
        "merged_from": base.get("machine", {}).get("date") if base else None,
        "merged_floor": base.get("floor", {}).get("per_second") if base else None,
        "merged_cpu": base.get("machine", {}).get("cpu") if base else None,
    }
    # The scheduler at scale is a run of its own (bench/scheduler_scale.py --json): a full run
    # keeps the published figures, as a merged one does through ``base``, unless given others.
    if args.scheduler_scale is not None:
        results["scheduler_scale"] = json.loads(args.scheduler_scale.read_text())
    elif full and published.exists():
        kept = json.loads(published.read_text()).get("scheduler_scale")
        if kept:
            results["scheduler_scale"] = kept
    path = out / "benchmarks.json"

    def save() -> None:
        path.write_text(json.dumps(results, indent=1, default=_json_default) + "\n")

    started = time.monotonic()
    try:
        Session(config, results, save).run()
    except KeyboardInterrupt:
        _log("interrupted; the workers and the private redis-server were stopped")
        return 130
    results["run_seconds"] = time.monotonic() - started
    save()
    report.write(results, out)
    _log(f"wrote {out / 'benchmarks.md'}, {out / 'benchmarks.png'}, {path}")
    print()
    print(report.targets_table(results))
    notes = report.missed_notes(results)
    if notes:
        print()
        print(notes)
    _log(f"run time {results['run_seconds'] / 60:.1f} min")
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
