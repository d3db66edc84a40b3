#!/usr/bin/env python3
"""How many instructions redis-server runs for a worker's steady-state call, counted by
callgrind: deterministic, so a few percent show even on a busy machine, where timings do not.

One worker's drain of plain jobs, one ``complete_and_claim`` (the ``ack_claim`` script: record
the completion, lease the next job) per job, by this checkout (its scripts as Redis functions,
and as scripts with ``REDIS_FUNCTIONS = False``) and by ``--before`` (default fef288a, the
commit before flow control, chains and groups)::

    .venvs/dev/bin/python bench/instructions.py            # ~2 min
    .venvs/dev/bin/python bench/instructions.py --before HEAD~1 --jobs 2000

``--enqueue`` counts an enqueue instead: one ``enqueue`` script call per ``.delay()`` of a plain
job (what ``JobQueue.enqueue`` sends), ``--jobs`` of them after a first one that loads the
scripts::

    .venvs/dev/bin/python bench/instructions.py --enqueue --before main --jobs 20000

``--costs`` counts, beside this checkout's enqueue, what its parts cost Redis on their own:
a PING, a peer's enqueue (one LPUSH), an HSET of a new hash of a job's six fields, and an
FCALL of an empty function with no argument and with as many as the enqueue sends::

    .venvs/dev/bin/python bench/instructions.py --costs --jobs 2000

Run on demand, never from the tests; needs valgrind (``apt-get install valgrind``) and
redis-server. Each version runs a private ``redis-server`` under ``valgrind --tool=callgrind``
on ``--port``, fills it with ``--jobs`` jobs with its own code (``PYTHONPATH`` names its tree,
as in ``bench/flow.py``), leases one and completes it (so that its scripts are loaded), then
zeroes the counts, drains the rest, and reads the instructions counted in between. The
server's other work (its clock, the client connecting) is in the count too: the same for
every version.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flow import BENCH, REPO, Version, before_tree

PLAIN = "benchapp.jobs.noop"


def child(action: str, count: str, scripts: str) -> None:
    """In a version's bench folder, with its code: ``fill`` (enqueue, lease one, complete it
    and lease the next) or ``drain`` (complete and lease ``count`` times)."""
    sys.path[0] = os.getcwd()
    os.environ["DJANGO_SETTINGS_MODULE"] = "djsettings"
    import django

    django.setup()
    if scripts == "1":
        from django.conf import settings

        settings.DJANGO_JOBS = {**settings.DJANGO_JOBS, "REDIS_FUNCTIONS": False}
    from django_jobs import JobQueue
    from django_jobs.worker.leases import Leases

    queue = JobQueue()
    if action == "enqueue":
        for i in range(int(count)):
            queue.enqueue(PLAIN, [i])
        return
    leases = Leases(queue.prefix)
    held = Path(os.environ["BENCH_HELD"])
    if action == "fill":
        for start in range(0, int(count), 1000):
            n = min(1000, int(count) - start)
            queue.enqueue_many([queue.build_job(PLAIN, [start + i]) for i in range(n)])
        job = leases.claim(["default"], "bench", 300).job
        acked, claim = leases.complete_and_claim(job, 1, ["default"], "bench", 300)
        held.write_text(claim.job.to_json())
        return
    from django_jobs.job import Job

    job = Job.from_json(held.read_text())
    for _ in range(int(count)):
        acked, claim = leases.complete_and_claim(job, 1, ["default"], "bench", 300)
        assert acked
        assert claim.job is not None
        job = claim.job


class Callgrind:
    """``with Callgrind(port) as server:`` a private ``redis-server`` on ``port`` under
    ``valgrind --tool=callgrind``, in a temporary folder of its own (``server.folder``): what
    it runs between :meth:`zero` and :meth:`total` is counted, in instructions."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"

    def __enter__(self) -> Callgrind:
        self._folder = tempfile.TemporaryDirectory(prefix="bench-callgrind-")
        self.folder = folder = Path(self._folder.name)
        port = self.port
        self.server = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={folder}/callgrind.%p",
                "redis-server",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(folder / "valgrind.log").open("w"),
        )
        deadline = time.monotonic() + 60
        while (
            subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout
            != b"PONG\n"
        ):
            if time.monotonic() > deadline or self.server.poll() is not None:
                log = (folder / "valgrind.log").read_text()
                self.__exit__()
                raise SystemExit(log)
            time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True
        )
        self.server.wait(timeout=60)
        self._folder.cleanup()

    def _control(self, option: str) -> None:
        subprocess.run(
            ["callgrind_control", option, str(self.server.pid)], capture_output=True, check=True
        )

    def zero(self) -> None:
        self._control("-z")

    def total(self) -> int:
        """The instructions counted since :meth:`zero` (one dump, removed once read)."""
        self._control("-d")
        (dump,) = self.folder.glob(f"callgrind.{self.server.pid}.*")
        text = dump.read_text()
        dump.unlink()
        totals = [line for line in text.splitlines() if line.startswith(("totals:", "summary:"))]
        return int(totals[0].split()[1])


def count(version: Version, jobs: int, port: int, scripts: bool, enqueue: bool = False) -> float:
    """Instructions redis-server ran per ``ack_claim`` of a drain by ``version`` (per
    ``enqueue`` of one plain job, with ``enqueue``)."""
    with Callgrind(port) as server:
        env = {**version.env(server.url), "BENCH_HELD": str(server.folder / "held.json")}
        calls = jobs - 3  # the fill leases two jobs; the last claim must still find one

        def run(action: str, n: int) -> None:
            command = [sys.executable, str(BENCH / "instructions.py"), "child", action, str(n)]
            subprocess.run(
                [*command, "1" if scripts else "0"],
                cwd=version.root / "bench",
                env=env,
                check=True,
            )

        if enqueue:
            calls = jobs
        run("enqueue" if enqueue else "fill", 1 if enqueue else jobs)
        server.zero()
        run("enqueue" if enqueue else "drain", calls)
        return server.total() / calls


# What one enqueue of a plain job writes (its record, as the enqueue script writes it), and
# an argument list as long as the one-job enqueue's call sends (2 keys, 14 values).
RECORD = (
    *("name", "benchapp.jobs.noop", "queue", "default", "priority", "1"),
    *("created_at", "1796402280.787640", "status", "pending", "args", "[2]"),
)
ENQUEUE_ARGUMENTS = 16

# The references of --costs: a label and the command of call ``i`` (each writes new keys).
COSTS: tuple[tuple[str, Any], ...] = (
    ("PING", lambda i: ("PING",)),
    ("LPUSH of a 60-byte value (a peer's enqueue)", lambda i: ("LPUSH", "{c}:q", "x" * 60)),
    ("SET of a new key, 100 bytes", lambda i: ("SET", f"{{c}}:s{i}", "x" * 100)),
    ("HSET of a new hash of a job's 6 fields", lambda i: ("HSET", f"{{c}}:h{i}", *RECORD)),
    ("FCALL of an empty function, no argument", lambda i: ("FCALL", "empty", 0)),
    (
        f"FCALL of an empty function, {ENQUEUE_ARGUMENTS} arguments",
        lambda i: ("FCALL", "empty", 2, "{c}:a", "{c}:b", *[f"value{i}"] * (ENQUEUE_ARGUMENTS - 2)),
    ),
)


def costs(port: int, calls: int) -> list[tuple[str, float]]:
    """Instructions redis-server runs per call of each of :data:`COSTS`, ``calls`` times
    each: what the parts of an enqueue cost Redis, beside a peer's one command."""
    import redis

    with Callgrind(port) as server:
        client = redis.Redis.from_url(server.url)
        client.function_load(
            "#!lua name=bench_costs\n"
            "redis.register_function('empty', function(keys, args) return {} end)"
        )
        rows = []
        for label, command in COSTS:
            for i in range(10):  # warm: the first calls load code and grow tables
                client.execute_command(*command(-1 - i))
            server.zero()
            for i in range(calls):
                client.execute_command(*command(i))
            rows.append((label, server.total() / calls))
        return rows


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        child(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--before", default="fef288a", help="the commit to compare with")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs of each drain")
    parser.add_argument("--port", type=int, default=8795, help="the private Redis's")
    parser.add_argument("--enqueue", action="store_true", help="count .delay(), not the drain")
    parser.add_argument(
        "--costs", action="store_true", help="count plain commands beside this checkout's enqueue"
    )
    args = parser.parse_args()
    after = Version("this checkout", REPO)
    if args.costs:
        rows = costs(args.port, args.jobs)
        enqueue = count(after, args.jobs, args.port, False, enqueue=True)
        rows.append(("this checkout's enqueue of a plain job (`.delay()`, FCALL)", enqueue))
        print(f"\nredis-server instructions per call ({args.jobs:,} calls each)\n")
        print("| call | instructions | PING = 1 |\n| --- | --- | --- |")
        for label, value in rows:
            print(f"| {label} | {value:,.0f} | {value / rows[0][1]:.1f} |")
        return
    before = before_tree(args.before)
    # The drain compares with a commit from before the functions (its scripts, whatever
    # REDIS_FUNCTIONS says); an enqueue with both forms.
    kinds = (("functions", False), ("scripts", True)) if args.enqueue else (("scripts", False),)
    rows = [
        (f"{before.label}, {kind}", count(before, args.jobs, args.port, scripts, args.enqueue))
        for kind, scripts in kinds
    ]
    rows += [
        (f"this checkout, {kind}", count(after, args.jobs, args.port, scripts, args.enqueue))
        for kind, scripts in (("functions", False), ("scripts", True))
    ]
    what = f"enqueue ({args.jobs:,}" if args.enqueue else f"ack_claim ({args.jobs - 3:,}"
    print(f"\nredis-server instructions per plain {what} calls)\n")
    print("| version | instructions | ratio |\n| --- | --- | --- |")
    for label, value in rows:
        print(f"| {label} | {value:,.0f} | {value / rows[0][1]:.3f} |")


if __name__ == "__main__":
    main()
