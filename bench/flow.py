#!/usr/bin/env python3
"""What flow control (unique jobs, rate and concurrency limits) costs, measured in one run:

1. drains of plain jobs (no limits) by this checkout and by the commit before flow control
   (``--before``, default fef288a), alternated ``--reps`` times: the cost of having the feature
   compiled in, for the jobs that do not use it;
2. claims one after another from one process: round trips, Redis commands and Redis time per
   claim of a plain job (by both versions), of a job whose rate and concurrency limits let it
   run, and of a claim that parks a limited job on its way to the next one;
3. drains of limited jobs: limits that never hold a job back (what their bookkeeping costs),
   a rate limit of 200/s and a concurrency limit of 1, with two worker processes.

    .venvs/dev/bin/python bench/flow.py                       # ~8 min on 2 cores
    .venvs/dev/bin/python bench/flow.py --jobs 5000 --reps 3 --port 8641

Run on demand, never from the tests, with a Python that has django-jobs installed (``pip
install -e .``). It starts a private redis-server (``harness/redis_server.py``: a free port,
or ``--port``), flushed before each run, and exports the ``--before`` commit with ``git
archive`` into ``bench/out/`` (git-ignored). Each version enqueues its jobs, claims and runs
its worker (``bench/manage.py runworker``) with its own code, in its own bench folder:
``PYTHONPATH`` names its tree, which comes before an editable install, and the enqueuer and
the claims (``flow.py child ...``) check where ``django_jobs`` came from.
A drain is timed from the worker's start until the ``completed`` index holds every job;
"after start-up" counts from the job that finished at 10% to the last one (for the rate
limit, from the one at two seconds' worth of tokens, after the bucket's first burst). CPU per
job is the worker's processes' and redis-server's over the whole drain (start-up included);
"other load" is what the rest of the machine used meanwhile: check it first when a number
jumps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

PLAIN, UNHINDERED, RATED, SERIAL = (
    f"benchapp.jobs.{name}" for name in ("noop", "unhindered", "rated", "serial")
)
RATE = 200  # benchapp.jobs.rated: "200/s"
COMPLETED = "{bench}:completed"  # djsettings' PREFIX; keys.py's completed index


@dataclass(frozen=True)
class Version:
    """One tree of django-jobs: its code enqueues the jobs and runs the worker."""

    label: str
    root: Path

    def env(self, url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        return {**env, "BENCH_REDIS_URL": url, "PYTHONPATH": str(self.root)}

    def child(self, url: str, *args: str) -> dict[str, float]:
        """Run ``bench/flow.py child *args`` with this version's code (see :func:`child`)."""
        done = subprocess.run(
            [sys.executable, str(BENCH / "flow.py"), "child", *args],
            cwd=self.root / "bench",
            env=self.env(url),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"{self.label}: {' '.join(args)} failed:\n{done.stderr}")
        answer = json.loads(done.stdout.splitlines()[-1])
        where = Path(answer.pop("django_jobs"))
        if where != self.root / "django_jobs":
            raise SystemExit(f"{self.label}: django_jobs came from {where}, not {self.root}")
        return answer

    def workers(self, url: str, processes: int, log: Path) -> list[subprocess.Popen[bytes]]:
        """``processes`` worker processes of one child each (not --burst, which would stop
        while limited jobs wait for a token)."""
        command = [sys.executable, "manage.py", "runworker", "--concurrency", "1"]
        with log.open("ab") as out:
            return [
                subprocess.Popen(
                    command,
                    cwd=self.root / "bench",
                    env=self.env(url),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                for _ in range(processes)
            ]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def before_tree(revision: str) -> Version:
    """The ``revision``'s files, exported once into bench/out/."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", revision],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    root = BENCH / "out" / f"rev-{sha}"
    if not (root / "django_jobs").exists():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", sha], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return Version(f"before ({sha})", root)


TICK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all cores spent busy so far (/proc/stat: all but idle and iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / TICK


def process_table() -> dict[int, tuple[int, float]]:
    """Each process's parent and CPU seconds (with those of the children it reaped)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            cpu = sum(int(f) for f in fields[11:15]) / TICK  # utime, stime, cutime, cstime
            found[int(stat.parent.name)] = (int(fields[1]), cpu)
    return found


def tree_cpu(table: dict[int, tuple[int, float]], roots: set[int]) -> float:
    """CPU seconds of processes ``roots`` and of all their descendants in ``table``."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [pid for pid in roots if pid in table]
    while todo:
        pid = todo.pop()
        total += table[pid][1]
        todo += children.get(pid, [])
    return total


def script_calls(client) -> tuple[int, int, int]:
    """Script calls (``FCALL``, ``EVALSHA``, ``EVAL``: one round trip each), the microseconds
    Redis spent in them (the commands they ran included), and all commands, so far."""
    stats = client.info("commandstats")
    names = ("fcall", "evalsha", "eval")
    scripts = [stats.get(f"cmdstat_{name}", {}) for name in names]
    calls = sum(int(s.get("calls", 0)) for s in scripts)
    usec = sum(int(s.get("usec", 0)) for s in scripts)
    return calls, usec, sum(int(v["calls"]) for v in stats.values())


def drain(
    server, version: Version, name: str, count: int, processes: int, skip: int, log: Path
) -> dict[str, float]:
    """One drain of ``count`` jobs called ``name`` by ``processes`` worker processes."""
    server.flush()
    version.child(server.url, "enqueue", name, str(count))
    probe = server.client()
    scripts_before, _, commands_before = script_calls(probe)
    polls = 0
    # CPU: of the worker processes; of redis-server; of everything this process started
    # (the two, and itself), and of the whole machine, to tell how busy the others kept it.
    busy, table = machine_busy(), process_table()
    redis_pid = server.process.pid
    mine, redis_cpu = tree_cpu(table, {os.getpid()}), table[redis_pid][1]
    started = time.monotonic()
    procs = version.workers(server.url, processes, log)
    try:
        while probe.zcard(COMPLETED) < count:
            polls += 1
            if any(proc.poll() is not None for proc in procs):
                raise SystemExit(f"{version.label}: a worker exited; see {log}")
            if time.monotonic() - started > 600:
                raise SystemExit(f"{version.label}: {name} did not drain; see {log}")
            time.sleep(0.01)
        done = time.monotonic()
        table = process_table()
        mine = tree_cpu(table, {os.getpid()}) - mine
        # Clock ticks of 10 ms: a machine with nothing else running may come out just below 0.
        other = max(machine_busy() - busy - mine, 0.0) / (done - started)
        worker_cpu = tree_cpu(table, {proc.pid for proc in procs})
        redis_cpu = table[redis_pid][1] - redis_cpu
    finally:
        stop(procs)
    scripts, _, commands = script_calls(probe)
    finished = [score for _, score in probe.zrange(COMPLETED, 0, -1, withscores=True)]
    # Less the harness's polls (ZCARD) and its two looks at commandstats (INFO).
    commands -= commands_before + polls + 2
    return {
        "wall": count / (done - started),
        "steady": (count - 1 - skip) / (finished[-1] - finished[skip]),
        "scripts": (scripts - scripts_before) / count,
        "commands": commands / count,
        "worker_cpu": worker_cpu / count * 1e6,
        "redis_cpu": redis_cpu / count * 1e6,
        "other": other,
    }


def child(action: str, what: str, count: str) -> dict[str, object]:
    """In a version's bench folder, with its code: ``enqueue <job name> <count>``, or
    ``claims <layout> <count>`` (see :func:`claims`). Answers where django_jobs came from."""
    sys.path[0] = os.getcwd()  # that version's djsettings and benchapp, not this folder's
    os.environ["DJANGO_SETTINGS_MODULE"] = "djsettings"
    import django

    django.setup()
    import django_jobs
    from django_jobs import JobQueue

    answer: dict[str, object] = {"django_jobs": str(Path(django_jobs.__file__).parent)}
    queue = JobQueue()
    if action == "enqueue":
        for start in range(0, int(count), 1000):
            n = min(1000, int(count) - start)
            queue.enqueue_many([queue.build_job(what, [start + i]) for i in range(n)])
    else:
        answer.update(claims(queue, what, int(count)))
    return answer


def claims(queue, layout: str, count: int) -> dict[str, float]:
    """``count`` claims from one process, one after another: round trips, Redis commands, the
    time Redis spent in them and the time at the client, per claim. ``layout``: "plain" jobs;
    "limited" jobs, whose limits let them run; "parks-one": with one job holding the slot of a
    concurrency limit of 1, pairs of a job of that limit (which the claim parks) and a plain
    one (which it takes)."""
    import redis

    from django_jobs.worker.leases import Leases

    names = {"plain": [PLAIN], "limited": [UNHINDERED], "parks-one": [SERIAL, PLAIN]}[layout]
    jobs = [queue.build_job(names[0], [-1])]
    jobs += [queue.build_job(name, [i]) for i in range(count) for name in names]
    for start in range(0, len(jobs), 1000):
        queue.enqueue_many(jobs[start : start + 1000])
    leases = Leases(queue.prefix)
    leases.claim(["default"], "bench", 300)  # loads the script; takes the slot when there is one
    probe = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    scripts_before, usec_before, commands_before = script_calls(probe)
    started = time.perf_counter()
    for _ in range(count):
        assert leases.claim(["default"], "bench", 300).job.name == names[-1]
    elapsed = time.perf_counter() - started
    scripts, usec, commands = script_calls(probe)
    scripts -= scripts_before
    # Inside the scripts: all commands, less the calls themselves and one INFO.
    inside = commands - commands_before - scripts - 1
    return {
        "trips": scripts / count,
        "inside": inside / count,
        "redis_us": (usec - usec_before) / count,
        "us": elapsed / count * 1e6,
    }


def spread(values: list[float], digits: int = 0) -> str:
    def show(value: float) -> str:
        return f"{value:,.{digits}f}"

    return f"{show(statistics.median(values))} ({show(min(values))}-{show(max(values))})"


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |", flush=True)


def drain_row(label: str, runs: list[dict[str, float]]) -> tuple[str, ...]:
    column = {key: [run[key] for run in runs] for key in runs[0]}
    return (
        label,
        spread(column["wall"]),
        spread(column["steady"]),
        spread(column["worker_cpu"]),
        spread(column["redis_cpu"]),
        spread(column["scripts"], 2),
        spread(column["commands"], 1),
        spread(column["other"], 2),
    )


DRAIN_HEADER = (
    "jobs",
    "jobs/s from start",
    "jobs/s after start-up",
    "worker CPU µs/job",
    "Redis CPU µs/job",
    "script calls/job",
    "Redis commands/job",
    "other load (cores)",
)


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        print(json.dumps(child(*sys.argv[2:])))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--before", default="fef288a", help="the commit without flow control")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs of each drain")
    parser.add_argument("--rate-jobs", type=int, default=3_000, help="jobs of the 200/s drain")
    parser.add_argument("--claims", type=int, default=2_000, help="claims of each kind")
    parser.add_argument("--reps", type=int, default=5, help="runs of each plain drain")
    parser.add_argument("--limited-reps", type=int, default=3, help="of each limited drain")
    parser.add_argument("--port", type=int, default=0, help="the private Redis's (0: any)")
    args = parser.parse_args()
    from harness.redis_server import PrivateRedis

    logs = BENCH / "out" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    after = Version("this checkout", REPO)
    before = before_tree(args.before)
    skip = args.jobs // 10
    with PrivateRedis(port=args.port) as server:
        print(f"\n1. Drain of {args.jobs:,} plain jobs, one worker process; median (min-max)\n")
        runs: dict[Version, list[dict[str, float]]] = {before: [], after: []}
        for rep in range(args.reps):
            for version in (before, after) if rep % 2 == 0 else (after, before):
                log = logs / f"flow-{version.root.name}.log"
                runs[version].append(drain(server, version, PLAIN, args.jobs, 1, skip, log))
        table(DRAIN_HEADER, [drain_row(v.label, r) for v, r in runs.items()])
        for version in runs:
            for run in runs[version]:
                run["cpu"] = run["worker_cpu"] + run["redis_cpu"]
        print()
        for key, what in (
            ("wall", "jobs/s from start"),
            ("steady", "jobs/s after start-up"),
            ("cpu", "CPU µs/job, worker and Redis"),
        ):
            ratio = statistics.median(r[key] for r in runs[after]) / statistics.median(
                r[key] for r in runs[before]
            )
            pairs = [a[key] / b[key] for a, b in zip(runs[after], runs[before], strict=True)]
            print(f"this checkout / before, {what}: {ratio:.3f} (run by run: {spread(pairs, 3)})")

        print(f"\n2. {args.claims:,} claims one after another from one process, per claim\n")
        kinds = {
            f"plain, {before.label}": (before, "plain"),
            "plain": (after, "plain"),
            "limited, let run": (after, "limited"),
            "parks a limited job, takes the next": (after, "parks-one"),
        }
        measured: dict[str, list[dict[str, float]]] = {label: [] for label in kinds}
        for _ in range(args.reps):
            for label, (version, layout) in kinds.items():
                server.flush()
                measured[label].append(
                    version.child(server.url, "claims", layout, str(args.claims))
                )
        rows = []
        for label, results in measured.items():
            column = {key: [r[key] for r in results] for key in results[0]}
            rows.append(
                (
                    label,
                    spread(column["trips"], 2),
                    spread(column["inside"], 1),
                    spread(column["redis_us"], 1),
                    spread(column["us"]),
                )
            )
        header = ("claim", "round trips", "Redis commands in it", "Redis µs", "µs at the client")
        table(header, rows)

        print("\n3. Drains of limited jobs; median (min-max)\n")
        limited = {
            "plain, 1 process": (PLAIN, args.jobs, 1, skip),
            "limits never reached, 1 process": (UNHINDERED, args.jobs, 1, skip),
            "plain, 2 processes": (PLAIN, args.jobs, 2, skip),
            f"rate limit {RATE}/s, 2 processes": (RATED, args.rate_jobs, 2, 2 * RATE),
            "concurrency limit 1, 2 processes": (SERIAL, args.jobs // 4, 2, args.jobs // 40),
        }
        rows = []
        for label, (name, count, processes, first) in limited.items():
            log = logs / "flow-limited.log"
            results = [
                drain(server, after, name, count, processes, first, log)
                for _ in range(args.limited_reps)
            ]
            rows.append(drain_row(label, results))
        table(DRAIN_HEADER, rows)


if __name__ == "__main__":
    main()
