"""Workers on many hosts sharing one Redis Cluster: three network namespaces, each with its own
address, host name and worker (tests/netns.py), take jobs from one queue on the cluster. Each
job runs once, every host takes part, and the console lists every worker with its host."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter

import pytest

from django_jobs import JobQueue
from tests import netns
from tests.cluster import FIRST_PORT, Cluster, PortBlock, skip_without_redis_cli
from tests.processes import FAST, Processes, wait_until
from tests.testapp import jobs

WHY_NOT = netns.available()

pytestmark = [
    pytest.mark.cluster,
    skip_without_redis_cli(),
    pytest.mark.skipif(WHY_NOT is not None, reason=f"network namespaces: {WHY_NOT}"),
]


class HostProcesses(Processes):
    """:class:`Processes` whose commands run on one of ``hosts``."""

    def __init__(self, hosts: netns.Hosts, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hosts = hosts

    def start_on(self, index: int, *args: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "django", "runworker", *args]
        return self.spawn(self.hosts.command(index, argv), f"runworker-host-{index}.log")


def test_workers_on_three_hosts_share_a_cluster(configure, monkeypatch, tmp_path, capsys):
    cluster = None
    block_tag = uuid.uuid4().hex[:4]
    group = None
    try:
        # The cluster listens on the bridge's address, which every namespace reaches; its
        # block of ports gives the bridge a subnet no other test uses meanwhile.
        ports = PortBlock()
        subnet = (ports.base - FIRST_PORT) // 10 + 1
        with netns.Hosts(block_tag, subnet, 3) as hosts:
            cluster = Cluster(host=hosts.address, ports=ports).start()
            prefix = f"{{hosts-{uuid.uuid4().hex[:8]}}}"
            monkeypatch.setenv("REDIS_URL", cluster.url)
            monkeypatch.setenv("JOBS_TEST_LEDGER", str(tmp_path))
            configure(REDIS_URL=cluster.url, PREFIX=prefix, **FAST)
            group = HostProcesses(hosts, tmp_path, prefix, FAST)
            for index in (1, 2, 3):
                group.start_on(index, "--concurrency", "2")
            queue = JobQueue()
            wait_until(
                lambda: len([w for w in queue.workers() if w.alive]) == 3,
                timeout=30,
                message="three live workers",
            )

            handles = [jobs.record_host.delay(f"job{n}") for n in range(300)]
            ledger = tmp_path / "record.log"

            def lines():
                return ledger.read_text().split() if ledger.exists() else []

            wait_until(lambda: len(lines()) >= len(handles), timeout=60, message="every job")
            workers = [w for w in queue.workers() if w.alive]
            ran = Counter(line.split("@")[0] for line in lines())
            by_host = Counter(line.split("@")[1] for line in lines())
            with capsys.disabled():
                print(f"\nmany hosts: jobs run by host {dict(sorted(by_host.items()))}")

            assert sorted(w.host for w in workers) == ["host-1", "host-2", "host-3"]
            assert all(w.id.startswith(f"{w.host}.") for w in workers)
            assert [label for label, times in ran.items() if times != 1] == []
            assert len(ran) == len(handles)
            assert set(by_host) == {"host-1", "host-2", "host-3"}
            # A job writes its line before its completion is recorded (a worker records the
            # completions of a batch's quick jobs with its next call, within 50 ms or so).
            wait_until(
                lambda: queue.stats()["states"]["completed"] == len(handles),
                timeout=10,
                message="every completion recorded",
            )
            assert queue.stats()["workers"]["live"] == 3
            assert "Redis refused" not in group.logs(), group.logs()
            group.close()
            group = None
    finally:
        if group is not None:
            group.close()
        if cluster is not None:
            cluster.close()
