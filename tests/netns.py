"""Hosts of their own for worker processes: a network namespace each (``ip netns``), joined to
the test's host by a veth pair on a bridge, and a host name each (a UTS namespace), so that
their workers have distinct hosts, addresses and ids as on separate machines.

Needs root and a kernel that lets it make namespaces (``available()`` says; tests skip
otherwise). The bridge's address is where the test's servers listen for them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def available() -> str | None:
    """``None`` if network and UTS namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    if not (shutil.which("ip") and shutil.which("unshare")):
        return "needs ip (iproute2) and unshare (util-linux)"
    name = f"djjobs-probe-{os.getpid()}"
    made = _ip("netns", "add", name, check=False)
    if made.returncode != 0:
        return f"ip netns add is not allowed here: {made.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    probe = subprocess.run(
        ["unshare", "--uts", "hostname", "probe"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"unshare --uts is not allowed here: {probe.stderr.strip()}"
    return None


class Hosts:
    """``count`` namespaces ``<tag>-1``... on the bridge ``djb<tag>`` of subnet
    ``10.213.<subnet>.0/24``: the bridge is ``.1``, host i is ``.(10 + i)``."""

    def __init__(self, tag: str, subnet: int, count: int) -> None:
        self.tag, self.count = tag, count
        self.bridge = f"djb{tag}"[:15]
        self.address = f"10.213.{subnet}.1"
        self.names = [f"djjobs-{tag}-{i}" for i in range(1, count + 1)]
        self._subnet = subnet

    def __enter__(self) -> Hosts:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, name in enumerate(self.names, 1):
                outer, inner = f"djh{self.tag}{i}"[:15], f"djn{self.tag}{i}"[:15]
                _ip("netns", "add", name)
                _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
                _ip("link", "set", outer, "master", self.bridge, "up")
                _ip("link", "set", inner, "netns", name)
                inside = ("netns", "exec", name, "ip")
                _ip(*inside, "addr", "add", f"10.213.{self._subnet}.{10 + i}/24", "dev", inner)
                _ip(*inside, "link", "set", inner, "up")
                _ip(*inside, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def command(self, index: int, argv: list[str]) -> list[str]:
        """``argv`` run on host ``index`` (from 1), whose host name is ``host-<index>``."""
        script = f'hostname host-{index} && exec "$@"'
        namespace = ("ip", "netns", "exec", self.names[index - 1], "unshare", "--uts")
        return [*namespace, "sh", "-c", script, "sh", *argv]

    def __exit__(self, *exc: object) -> None:
        for name in self.names:
            with contextlib.suppress(Exception):
                _ip("netns", "del", name, check=False)  # its end of each veth pair goes too
        with contextlib.suppress(Exception):
            _ip("link", "del", self.bridge, check=False)
