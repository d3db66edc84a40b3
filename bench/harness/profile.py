"""``--profile``: django-jobs under py-spy (a one-process drain, and both enqueues), as Markdown.

py-spy samples from outside the process (on-CPU samples only), so what it profiles runs at
nearly full speed. For each process role the summary gives where the CPU goes by package, the
hottest functions by own time, and django-jobs' functions by inclusive time. The raw samples
stay in ``bench/out/logs/django-jobs-profile-*.txt`` (collapsed stacks, for flamegraph tools).

``python -m harness.profile enqueue|bulk N BATCH`` (run by the harness under py-spy) enqueues N
jobs.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from adapters.base import VENV_BIN, DrainMode

from harness.results import number
from harness.workers import Workers, worker_env
from harness.workloads import Context, fill, wait_done

# A collapsed-stack frame: "ChildLoop._process (django_jobs/worker/child.py:354)"
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
PROCESS = re.compile(r"^process \d+:")
RATE = 200  # samples per second

Frame = tuple[str, str]  # (function, file)


def _package(path: str) -> str:
    """py-spy names files by import path (``redis/connection.py``): the top-level package."""
    return path.split("/", 1)[0].removesuffix(".py")


def _parse(raw: Path) -> dict[str, list[tuple[list[Frame], int]]]:
    """Stacks (root first) and their sample counts, per process."""
    stacks: dict[str, list[tuple[list[Frame], int]]] = defaultdict(list)
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        process, frames = "?", []
        for part in stack.split(";"):
            if PROCESS.match(part):
                process = part  # the last one: a child's stack starts with its parent's
            elif match := FRAME.match(part):
                frames.append((match["func"], match["file"]))
        if frames:
            stacks[process].append((frames, int(count)))
    return stacks


def _role(stacks: list[tuple[list[Frame], int]]) -> str:
    functions = {func for frames, _ in stacks for func, _ in frames}
    if "child_main" in functions:
        return "worker child (claims, runs and records jobs)"
    if "Worker.run" in functions:
        return "worker supervisor"
    return "enqueuer"


def _caller(callers: Counter[str]) -> str:
    (name, count), total = callers.most_common(1)[0], sum(callers.values())
    return f"`{name}` ({count / total:.0%})" if name != "-" else "-"


def summarise(raw: Path, jobs: int, top: int = 15) -> str:
    leaves: dict[str, Counter[Frame]] = defaultdict(Counter)
    # For each leaf: the django-jobs function nearest to it on the stack (who led there).
    via: dict[Frame, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[Frame]] = defaultdict(Counter)
    packages: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    imports: Counter[str] = Counter()  # start-up: samples under an import, left out
    for stacks in _parse(raw).values():
        role = _role(stacks)
        for frames, count in stacks:
            if any(path.startswith("<frozen importlib") for _, path in frames):
                imports[role] += count
                continue
            totals[role] += count
            leaves[role][frames[-1]] += count
            callers = [f for f, p in frames[:-1] if p.startswith("django_jobs/")]
            via[frames[-1]][callers[-1] if callers else "-"] += count
            packages[role][_package(frames[-1][1])] += count
            for frame in {f for f in frames if f[1].startswith("django_jobs/")}:
                inclusive[role][frame] += count
    lines = []
    for role in sorted(totals, key=lambda r: -totals[r]):
        total = totals[role]
        lines += [
            f"### {role}: {total:,} samples, {number(total / jobs, 3)} per job "
            f"({imports[role]:,} more during imports, left out)",
            "",
            "| Package (own time) | Share |",
            "| --- | --- |",
            *(f"| {p} | {c / total:.1%} |" for p, c in packages[role].most_common(8)),
            "",
            "| Hottest functions (own time) | Share | Mostly reached from (django-jobs) |",
            "| --- | --- | --- |",
            *(
                f"| `{f}` ({p}) | {c / total:.1%} | {_caller(via[(f, p)])} |"
                for (f, p), c in leaves[role].most_common(top)
            ),
            "",
            "| django-jobs functions (inclusive time; the entry path, on 95% of samples and "
            "more, left out) | Share |",
            "| --- | --- |",
            *(
                f"| `{f}` ({p}) | {c / total:.1%} |"
                for (f, p), c in [i for i in inclusive[role].most_common() if i[1] < total * 0.95][
                    :top
                ]
            ),
            "",
        ]
    return "\n".join(lines)


def _spy(raw: Path, command: tuple[str, ...]) -> tuple[str, ...]:
    return (
        str(VENV_BIN / "py-spy"),
        "record",
        "--subprocesses",
        "--rate", str(RATE),
        "--format", "raw",
        "--output", str(raw),
        "--",
        *command,
    )  # fmt: skip


def profile_drain(ctx: Context, adapter: Any) -> str:
    """Fill ``drain_jobs`` jobs and drain them with one process under py-spy."""
    n = ctx.config.drain_jobs
    raw = ctx.logs / "django-jobs-profile-drain.txt"
    (mode,) = adapter.drain_modes(1)
    fill(ctx, adapter, n)
    with ctx.server.client() as probe:
        start = time.perf_counter()
        spied = DrainMode("py-spy", 1, (_spy(raw, mode.commands[0]),))
        workers = ctx.start(adapter, spied, "profile drain")
        try:
            done = wait_done(ctx, adapter, probe, n, workers, 600)
            workers.wait(60)  # py-spy writes its file once the worker exits
        finally:
            workers.stop()
    return (
        f"## Drain: {number(n)} no-op jobs, `runworker --concurrency 1 --burst`, "
        f"{number(n / (done - start))} jobs/s under py-spy\n\n{summarise(raw, n)}"
    )


def profile_enqueue(ctx: Context, how: str, n: int) -> str:
    """Enqueue ``n`` jobs (``how``: "enqueue" one by one, or "bulk") in a process under py-spy."""
    raw = ctx.logs / f"django-jobs-profile-{how}.txt"
    ctx.fresh()
    batch = ctx.config.bulk_batch
    command = (sys.executable, "-m", "harness.profile", how, str(n), str(batch))
    env = worker_env(ctx.server.url)
    start = time.perf_counter()
    workers = Workers([_spy(raw, command)], env, ctx.logs / f"django-jobs-profile-{how}.log")
    try:
        if not workers.wait(600) or workers.failed():
            raise RuntimeError(f"profiling {how} failed; see {workers.log}")
    finally:
        workers.stop()
    title = "`noop.delay(i)` one by one"
    if how == "bulk":
        title = f"`enqueue_many`, batches of {number(batch)}"
    return (
        f"## Enqueue: {number(n)} jobs, {title} ({number(time.perf_counter() - start, 1)} s "
        f"under py-spy, Python start-up included)\n\n{summarise(raw, n)}"
    )


def profile(ctx: Context, adapter: Any) -> str:
    n = ctx.config.drain_jobs
    return "\n".join(
        [
            "# django-jobs: where the CPU goes",
            "",
            f"`py-spy record --rate {RATE}`, on-CPU samples only: time spent waiting for Redis or "
            "for the pipe is not in these shares. Shares are of the role's own samples. py-spy "
            "pauses the process for each sample, which slows it down and inflates its sample "
            "count (so no CPU time per job here: the drain table of `benchmarks.md` has exact "
            "ones); `--nonblocking` does not pause, but then misattributes much of the time to "
            "the frame that was current before a blocking read.",
            "",
            profile_drain(ctx, adapter),
            profile_enqueue(ctx, "enqueue", n),
            profile_enqueue(ctx, "bulk", ctx.config.bulk_jobs),
        ]
    )


def _enqueue_main(how: str, n: int, batch: int) -> None:
    from adapters import load

    adapter: Any = load("django-jobs")
    if how == "bulk":
        for first in range(0, n, batch):
            adapter.enqueue_bulk(first, min(batch, n - first))
    else:
        for i in range(n):
            adapter.enqueue(i)


if __name__ == "__main__":
    _enqueue_main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
