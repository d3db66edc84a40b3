"""What chains and groups cost: the drain of plain jobs on this checkout against a base commit
(a job outside any workflow must pay nothing measurable), and the throughput of groups and
chains, in one run.

    python3 bench/workflows.py                          # base: the commit before workflows
    python3 bench/workflows.py --jobs 20000 --reps 5 --base 25849d7 --redis-url redis://...

Run it with a Python that has django-jobs installed (``pip install -e .``). The base commit is
checked out as a git worktree under ``bench/out/`` with a virtualenv of its own (made once).
Without ``--redis-url`` it starts a private redis-server (``harness/redis_server.py``); with
one, it works under ``--prefix`` only and deletes only those keys. Each side drains ``--jobs``
``noop`` jobs with one ``runworker --concurrency 1`` process, timed from its first completion
to its last (its start-up is left out); the sides alternate, ``--reps`` times each, and the
median is reported with the min-max. Then, on this checkout: a group of ``--jobs`` members with
a callback (from ``.delay()`` to the callback's result) and a chain of ``--chain`` steps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(BENCH), str(REPO)]


def base_python(commit: str) -> tuple[Path, Path]:
    """A worktree of ``commit`` and a virtualenv with it installed (both made once)."""
    sha = subprocess.check_output(["git", "-C", str(REPO), "rev-parse", commit], text=True).strip()
    tree = BENCH / "out" / f"base-{sha[:10]}"
    if not tree.exists():
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), sha], check=True
        )
    python = tree / ".venv" / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(tree / ".venv")], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(tree)], check=True)
    return tree, python


def child_env(tree: Path, redis_url: str, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "djsettings",
        # The benchmark's settings and jobs from this checkout; django_jobs from the side's own.
        "PYTHONPATH": os.pathsep.join([str(tree), str(BENCH)]),
        "BENCH_REDIS_URL": redis_url,
        "BENCH_PREFIX": prefix,
    }


def setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsettings")
    django.setup()


def clear(prefix: str) -> None:
    from django_jobs.store.connection import get_redis

    client = get_redis()
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])


def timed_drain(python: str, env: dict[str, str], done: callable, total: int) -> float:
    """Start one worker; seconds from its first completion until ``done()`` reaches ``total``."""
    worker = subprocess.Popen(
        [python, "-m", "django", "runworker", "--concurrency", "1"],
        cwd=str(BENCH),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while done() == 0:
            time.sleep(0.001)
        started = time.perf_counter()
        while done() < total:
            time.sleep(0.002)
        return time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def script_usec(client: Any) -> tuple[float, int]:
    """Redis's CPU microseconds in script calls (``FCALL`` or ``EVALSHA``) so far, and the
    number of calls."""
    stats = client.info("commandstats")
    calls = [stats.get(f"cmdstat_{name}", {}) for name in ("fcall", "evalsha")]
    return float(sum(c.get("usec", 0) for c in calls)), int(sum(c.get("calls", 0) for c in calls))


def drain(kind: str, jobs: int, chain_steps: int, python: str) -> tuple[float, float]:
    """One measurement in this process (run by the parent with the side's Python): seconds,
    and Redis CPU microseconds per script call during the drain (less noisy on a busy machine:
    the cost of the scripts themselves)."""
    setup()
    from benchapp.jobs import count, noop

    from django_jobs import JobQueue

    queue = JobQueue()
    prefix = queue.prefix
    clear(prefix)
    env = dict(os.environ)
    from django_jobs.store.connection import get_redis

    client = get_redis()
    completed = lambda: client.zcard(queue.keys.completed)  # noqa: E731  (one ZCARD a look)
    before = script_usec(client)
    if kind == "plain":
        for first in range(0, jobs, 1000):
            queue.enqueue_many(
                [queue.build_job(noop.name, [i]) for i in range(first, min(first + 1000, jobs))]
            )
        seconds = timed_drain(python, env, completed, jobs)
    elif kind == "group":
        from django_jobs import group

        handle = group(noop.s(i) for i in range(jobs)).then(count.s()).delay()
        seconds = timed_drain(python, env, completed, jobs + 1)
        assert handle.result(timeout=10) == jobs
    else:
        from django_jobs import chain

        handle = chain(noop.s(0), *(noop.si(i) for i in range(1, chain_steps))).delay()
        seconds = timed_drain(python, env, completed, chain_steps)
        assert handle.result(timeout=10) == chain_steps - 1
    after = script_usec(client)
    clear(prefix)
    return seconds, (after[0] - before[0]) / max(after[1] - before[1], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10000, help="jobs per drain (default 10000)")
    parser.add_argument("--chain", type=int, default=2000, help="steps of the chain (2000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per side (default 3)")
    parser.add_argument("--base", default="25849d7", help="the commit to compare with")
    parser.add_argument("--redis-url", default="", help="a Redis to use (default: a private one)")
    parser.add_argument("--prefix", default="{bench-workflows}", help="key prefix in that Redis")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(drain(args.measure, args.jobs, args.chain, sys.executable)))
        return
    tree, base = base_python(args.base)
    server = None
    if not args.redis_url:
        from harness.redis_server import PrivateRedis

        server = PrivateRedis()
        server.start()
        args.redis_url = server.url
    sides = {"this checkout": (REPO, sys.executable), f"base {args.base}": (tree, str(base))}

    def measure(kind: str, side: str) -> float:
        where, python = sides[side]
        env = child_env(where, args.redis_url, args.prefix)
        command = [
            python,
            __file__,
            "--measure",
            kind,
            "--jobs",
            str(args.jobs),
            "--chain",
            str(args.chain),
        ]
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        seconds, usec = json.loads(out.strip().splitlines()[-1])
        cost[side, kind].append(usec)
        return float(seconds)

    cost: dict[tuple[str, str], list[float]] = {}
    for side in sides:
        for kind in ("plain", "group", "chain"):
            cost[side, kind] = []
    try:
        runs: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(args.reps):
            for side in sides:
                runs[side].append(args.jobs / measure("plain", side))
        group_rate = [(args.jobs + 1) / measure("group", "this checkout") for _ in range(args.reps)]
        chain_rate = [args.chain / measure("chain", "this checkout") for _ in range(args.reps)]
    finally:
        if server is not None:
            server.stop()

    def line(label: str, rates: list[float]) -> str:
        return (
            f"| {label} | {statistics.median(rates):,.0f} | {min(rates):,.0f}-{max(rates):,.0f} |"
        )

    print(
        f"{args.jobs:,} jobs a drain, one worker process (--concurrency 1), median of {args.reps}"
    )
    print("| drain | jobs/s | min-max |\n| --- | ---: | ---: |")
    for side, rates in runs.items():
        print(line(f"plain jobs, {side}", rates))
    print("Redis CPU per script call during the plain drains (us, median, min-max):")
    for side in sides:
        usec = cost[side, "plain"]
        print(f"  {side}: {statistics.median(usec):.1f} ({min(usec):.1f}-{max(usec):.1f})")
    print(line(f"a group of {args.jobs:,} and its callback", group_rate))
    print(line(f"a chain of {args.chain:,} steps", chain_rate))


if __name__ == "__main__":
    main()
