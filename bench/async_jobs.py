#!/usr/bin/env python3
"""Async jobs side by side: a backlog of jobs that each ``await asyncio.sleep(0.1)``, drained by
ONE worker process that runs up to N of them at once, in django-jobs and in the peers that run
asyncio jobs on Redis (Dramatiq's ``AsyncIO`` middleware, arq).

    python3 bench/async_jobs.py                      # 10,000 jobs, N = 100, 3 runs each
    python3 bench/async_jobs.py --jobs 2000 --reps 1 --only django-jobs

Run on demand, never from the tests. Like ``bench/run.py`` it runs in ``bench/.venv`` (made
on first use, with the peers pinned in ``bench/requirements.txt``) and starts a private
redis-server (``harness/redis_server.py``), flushed before each run. Each run enqueues the
backlog, starts the worker and polls one counter every 10 ms until every job is done:

- django-jobs: ``manage.py runworker --concurrency 1 --async-concurrency N --burst``;
- Dramatiq: ``dramatiq --processes 1 --threads N`` with the ``AsyncIO`` middleware;
- arq: ``arq`` with ``max_jobs = N`` and ``burst = True``, from ``bench/.venv-arq`` (arq needs
  redis<6, which Celery's pins in ``bench/.venv`` rule out).

Reported, median of the runs (min-max): jobs/s from the worker's start (start-up included) and
after start-up (from the first job done, less one job's time, to the last), the ideal being
N / 0.1 s; CPU per job of the worker's processes and of redis-server, in the steady state
(``harness.workloads.CpuMeter``), and the CPU other processes of the machine used meanwhile;
Redis commands per job (``INFO stats``, less the harness's polls; commands inside Lua scripts
count too) and script calls per job (``EVALSHA`` and ``EVAL``: one round trip each).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
LIBRARIES = ("django-jobs", "Dramatiq", "arq")


def in_venv() -> None:
    """Re-run this script with ``bench/.venv``'s Python, made first if need be (as run.py)."""
    sys.path.insert(0, str(BENCH))
    import run

    if Path(sys.prefix).resolve() != run.VENV.resolve():
        run.ensure_venv()
        python = str(run.VENV_PYTHON)
        os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])


class Peer:
    """One library: how to enqueue the backlog, start the worker and count what is left."""

    name: str

    def __init__(self, jobs: int, concurrency: int, seconds: float) -> None:
        self.jobs, self.concurrency, self.seconds = jobs, concurrency, seconds

    def enqueue(self) -> None:
        raise NotImplementedError

    def command(self) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        raise NotImplementedError

    def unfinished(self, probe) -> int:  # one Redis command
        raise NotImplementedError


class DjangoJobs(Peer):
    name = "django-jobs"

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsettings")
        import django

        django.setup()
        from django_jobs import JobQueue

        self.queue = JobQueue()

    def enqueue(self) -> None:
        build = self.queue.build_job
        for start in range(0, self.jobs, 1000):
            count = min(1000, self.jobs - start)
            self.queue.enqueue_many(
                [build("benchapp.jobs.nap", [self.seconds]) for _ in range(count)]
            )

    def command(self) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        manage = str(BENCH / "manage.py")
        n = str(self.concurrency)
        worker = ("--concurrency", "1", "--async-concurrency", n, "--burst")
        return (sys.executable, manage, "runworker", *worker), ()

    def unfinished(self, probe) -> int:
        return self.jobs - int(probe.zcard(self.queue.keys.completed))


class Dramatiq(Peer):
    name = "Dramatiq"

    def enqueue(self) -> None:
        from adapters.async_dramatiq import nap

        for _ in range(self.jobs):
            nap.send(self.seconds)

    def command(self) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        from adapters.base import venv_command

        threads = ("--processes", "1", "--threads", str(self.concurrency))
        return venv_command("dramatiq", "adapters.async_dramatiq", *threads), ()

    def unfinished(self, probe) -> int:
        return int(probe.hlen("dramatiq:default.msgs"))


class Arq(Peer):
    """arq, from a virtualenv of its own (``bench/.venv-arq``): it needs redis<6."""

    name = "arq"

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.bin = arq_venv()

    def enqueue(self) -> None:
        from harness.workers import worker_env

        subprocess.run(
            [
                str(self.bin / "python"),
                "-m",
                "adapters.async_arq",
                str(self.jobs),
                str(self.seconds),
            ],
            cwd=BENCH,
            env=worker_env(os.environ["BENCH_REDIS_URL"]),
            check=True,
        )

    def command(self) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        env = (("BENCH_ARQ_MAX_JOBS", str(self.concurrency)),)
        return (str(self.bin / "arq"), "adapters.async_arq.Settings"), env

    def unfinished(self, probe) -> int:
        return int(probe.zcard("arq:queue"))


def arq_venv() -> Path:
    """``bench/.venv-arq``'s bin folder, made (or brought up to ``requirements-arq.txt``)."""
    import hashlib
    import venv

    folder = BENCH / ".venv-arq"
    requirements = BENCH / "requirements-arq.txt"
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = folder / ".bench-installed"
    if not (stamp.exists() and stamp.read_text() == wanted):
        print(f"==> Installing arq into {folder}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(folder)
        pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-r", str(requirements)], check=True)
        stamp.write_text(wanted)
    return folder / "bin"


def drain(peer: Peer, server, logs: Path) -> dict[str, float]:
    """One run: the backlog enqueued, then the worker started and timed until all are done."""
    from harness.workers import Workers, worker_env
    from harness.workloads import CpuMeter

    server.flush()
    peer.enqueue()
    probe = server.client()
    assert peer.unfinished(probe) == peer.jobs, "the backlog is not all there"
    before = int(server.info("stats")["total_commands_processed"])
    scripts_before = _script_calls(server)
    command, env = peer.command()
    polls = 0
    first_done = None
    started = time.monotonic()
    workers = Workers([command], worker_env(server.url, env), logs / f"{peer.name}.log")
    try:
        meter = CpuMeter(workers, probe, peer.jobs)
        deadline = started + max(120.0, peer.jobs * peer.seconds * 2)
        while True:
            left = peer.unfinished(probe)
            polls += 1
            now = time.monotonic()
            if first_done is None and left < peer.jobs:
                first_done = now
            if left == 0:
                break
            if now > deadline or workers.failed():
                raise SystemExit(f"{peer.name}: {left} jobs left; see {workers.log}")
            meter(peer.jobs - left)
            time.sleep(0.01)
        done = time.monotonic()
    finally:
        workers.stop()
    # The harness's own commands: its polls, and the INFO and CLIENT commands of its looks.
    commands = int(server.info("stats")["total_commands_processed"]) - before - polls
    scripts = _script_calls(server) - scripts_before
    cpu = meter.result()
    assert first_done is not None
    return {
        "wall": peer.jobs / (done - started),
        "steady": peer.jobs / (done - (first_done - peer.seconds)),
        "worker_us": cpu["cpu_main_us"] + cpu["cpu_children_us"],
        "redis_us": cpu["cpu_redis_us"],
        "other": cpu["background_cores"],
        "commands_per_job": commands / peer.jobs,
        "scripts_per_job": scripts / peer.jobs,
    }


def _script_calls(server) -> int:
    """Script calls so far (``FCALL``, ``EVALSHA`` and ``EVAL``): each is one round trip."""
    stats = server.info("commandstats")
    names = ("fcall", "evalsha", "eval")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in names)


def spread(values: list[float], digits: int = 0) -> str:
    def show(value: float) -> str:
        return f"{value:,.{digits}f}"

    return f"{show(statistics.median(values))} ({show(min(values))}-{show(max(values))})"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100, help="N: jobs at once")
    parser.add_argument("--seconds", type=float, default=0.1, help="each job's sleep")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default=",".join(LIBRARIES), help="comma-separated libraries")
    args = parser.parse_args()
    in_venv()
    from harness.redis_server import PrivateRedis

    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(LIBRARIES)
    if unknown:
        parser.error(f"unknown libraries {sorted(unknown)}: choose among {', '.join(LIBRARIES)}")
    logs = BENCH / "out" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ideal = args.concurrency / args.seconds
    print(
        f"{args.jobs:,} jobs of asyncio.sleep({args.seconds}), one worker process running up "
        f"to {args.concurrency} at once (ideal {ideal:,.0f} jobs/s); median of {args.reps} "
        "(min-max)"
    )
    header = (
        "library",
        "jobs/s from start",
        "jobs/s after start-up",
        "worker CPU µs/job",
        "Redis CPU µs/job",
        "Redis commands/job",
        "script calls/job",
        "other load (cores)",
    )
    print(" | ".join(header))
    with PrivateRedis() as server:
        os.environ["BENCH_REDIS_URL"] = server.url
        kinds: dict[str, Callable[..., Peer]] = {"django-jobs": DjangoJobs, "Dramatiq": Dramatiq}
        kinds["arq"] = Arq
        for name in chosen:
            peer = kinds[name](args.jobs, args.concurrency, args.seconds)
            runs = [drain(peer, server, logs) for _ in range(args.reps)]
            column = {key: [run[key] for run in runs] for key in runs[0]}
            print(
                " | ".join(
                    (
                        name,
                        spread(column["wall"]),
                        spread(column["steady"]),
                        spread(column["worker_us"]),
                        spread(column["redis_us"]),
                        spread(column["commands_per_job"], 1),
                        spread(column["scripts_per_job"], 2),
                        spread(column["other"], 2),
                    )
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
