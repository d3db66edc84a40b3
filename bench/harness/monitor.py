"""Counting Redis commands: ``INFO commandstats`` deltas, split with ``MONITOR``.

``INFO commandstats`` counts every command, those run inside Lua scripts too, so it cannot tell
round trips apart. ``MONITOR`` shows each command with its origin (``[0 127.0.0.1:port]`` for a
client, ``[0 lua]`` inside a script); the harness records it to a file with ``redis-cli`` during
the round-trip workload only (it slows the server down), and takes:

- commands = the ``commandstats`` delta, less the harness's own commands;
- round trips = commands less those run inside scripts (one ``EVALSHA`` is one round trip).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

# e.g.  1795867182.530397 [0 127.0.0.1:40512] "EVALSHA" "9f0c..." "5" ...
LINE = re.compile(r'^\d+\.\d+ \[\d+ ([^\]]+)\] "((?:[^"\\]|\\.)*)"(?: "((?:[^"\\]|\\.)*)")?')
# Commands that commandstats counts per subcommand ("client|setname").
CONTAINERS = {
    "acl", "client", "cluster", "command", "config", "debug", "function", "latency", "memory",
    "module", "object", "pubsub", "script", "slowlog", "xgroup", "xinfo",
}  # fmt: skip


def snapshot(client: redis.Redis) -> Counter[str]:
    """Calls per command so far (``INFO commandstats``), by commandstats' lowercase names."""
    stats = client.info("commandstats")
    return Counter(
        {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}  # type: ignore[index]
    )


def _name(command: str, sub: str | None) -> str:
    command = command.lower()
    if command in CONTAINERS and sub:
        return f"{command}|{sub.lower()}"
    return command


@dataclass
class Phase:
    """The commands of one phase, per command name."""

    total: Counter[str]  # commandstats delta less the harness's commands
    in_scripts: Counter[str]  # run inside Lua scripts (MONITOR)

    @property
    def commands(self) -> int:
        return sum(self.total.values())

    @property
    def round_trips(self) -> int:
        return self.commands - sum(self.in_scripts.values())

    def per(self, n: int) -> dict[str, object]:
        top = self.total - self.in_scripts
        return {
            "commands": self.commands / n,
            "round_trips": self.round_trips / n,
            "top_level": {k: v / n for k, v in top.most_common()},
            "in_scripts": {k: v / n for k, v in self.in_scripts.most_common()},
        }


class Monitor:
    """``redis-cli monitor`` writing to a file; ``phases()`` parses it afterwards."""

    def __init__(self, port: int, path: Path, probe: redis.Redis) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise SystemExit("redis-cli not found: install Redis (apt-get install redis-tools).")
        self.path = path
        self.probe = probe
        self.probe_addr = str(probe.client_info()["addr"])
        with path.open("wb") as out:
            self.process = subprocess.Popen(
                [cli, "-h", "127.0.0.1", "-p", str(port), "monitor"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10
        while not any("O" in str(c.get("flags", "")) for c in probe.client_list()):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-cli monitor did not connect")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop once everything sent so far is in the file."""
        marker = f"bench:end:{time.time()}"
        self.probe.echo(marker)
        deadline = time.monotonic() + 30
        while marker not in self.path.read_text(errors="replace")[-4096:]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.process.terminate()
        self.process.wait()

    def phases(self, snapshots: list[Counter[str]]) -> list[Phase]:
        with self.path.open(errors="replace") as lines:
            return split(lines, self.probe_addr, snapshots)


def _commands(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(origin, command name) of each recorded command; origin is a client's address, or
    ``lua`` for a command run by a script."""
    for line in lines:
        match = LINE.match(line)
        if match:
            yield match[1], _name(match[2], match[3])


def split(lines: Iterable[str], probe_addr: str, snapshots: list[Counter[str]]) -> list[Phase]:
    """Split a ``MONITOR`` recording at the harness's snapshot ``INFO`` calls (made from
    ``probe_addr``): phase k runs from snapshot k's call to snapshot k+1's, as does the
    commandstats delta ``snapshots[k + 1] - snapshots[k]`` (an ``INFO`` counts itself only in
    the next snapshot)."""
    harness: list[Counter[str]] = [Counter() for _ in snapshots]
    scripts: list[Counter[str]] = [Counter() for _ in snapshots]
    index = -1
    for origin, name in _commands(lines):
        if origin == probe_addr and name == "info":
            index += 1  # the call that took snapshot ``index``
        if not 0 <= index < len(snapshots) - 1:
            continue
        if origin == probe_addr:
            harness[index][name] += 1
        elif origin == "lua":
            scripts[index][name] += 1
    return [
        Phase(total=(snapshots[k + 1] - snapshots[k]) - harness[k], in_scripts=scripts[k])
        for k in range(len(snapshots) - 1)
    ]
