"""``runworker --reload`` and ``runscheduler --reload`` in real processes: a change to the code
stops the command as SIGTERM does and starts it anew with the new code; an error at start-up
leaves the reloader waiting for the fix; SIGTERM or Ctrl-C to the reloader stops every process.

The code they reload is an app in a folder of the test's own (on ``PYTHONPATH``, in the
settings module ``reload_settings`` there), which the tests edit as a developer would.
"""

import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from subprocess import PIPE, Popen

import pytest
from django.utils import autoreload

from django_jobs import JobStatus
from django_jobs.management.reload import Reloader
from tests.processes import FAST, Processes, wait_until

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/environ").exists(), reason="finds the processes it started in /proc"
)

SETTINGS = """\
from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "reloadjobs"]  # noqa: F405
"""

JOBS = """\
import os
import time
from pathlib import Path

from django_jobs import job

VERSION = {version}


@job(name="reload.version")
def version():
    return VERSION


@job(name="reload.slow")
def slow(seconds):
    (Path(os.environ["JOBS_TEST_LEDGER"]) / f"slow-{{VERSION}}.started").touch()
    time.sleep(seconds)
    return VERSION
"""


class Project(Processes):
    """Processes of the test's project: ``reload_settings`` and the app ``reloadjobs`` in the
    folder ``code``, which the test edits with :meth:`write`."""

    def __init__(self, folder: Path, prefix: str, db: str | None = None) -> None:
        super().__init__(folder / "logs", prefix, FAST, db)
        self.code = folder / "code"
        (self.code / "reloadjobs").mkdir(parents=True)
        self.write("reload_settings.py", SETTINGS)
        self.write("reloadjobs/__init__.py", "")
        self.write("reloadjobs/jobs.py", JOBS.format(version=1))

    def env(self) -> dict[str, str]:
        env = super().env()
        env["DJANGO_SETTINGS_MODULE"] = "reload_settings"
        env["PYTHONPATH"] = os.pathsep.join([str(self.code), env["PYTHONPATH"]])
        return env

    def write(self, name: str, text: str) -> None:
        """Write a file of the project, as an editor would. Its modification time moves on by
        a second at least: the reloader sees it as newer, and Python does not take a cached
        bytecode of the old text for the new (it compares whole seconds and sizes)."""
        path = self.code / name
        before = path.stat().st_mtime_ns if path.exists() else 0
        path.write_text(textwrap.dedent(text))
        stamp = max(time.time_ns(), before + 1_000_000_000)
        os.utime(path, ns=(stamp, stamp))

    def started(self, label: str) -> bool:
        """Whether a ``reload.slow`` job of this label (``slow-<version>``) started."""
        return (self.folder / f"{label}.started").exists()

    def count(self, proc, text: str) -> int:
        return self.output(proc).count(text)

    def wait_for_log(self, proc, text: str, times: int = 1, timeout: float = 30.0) -> None:
        wait_until(
            lambda: self.count(proc, text) >= times,
            timeout=timeout,
            message=f"{text!r} {times} times in the log:\n{self.output(proc)}",
        )


def processes_of(prefix: str) -> set[int]:
    """The live processes started for this test: those with its key prefix in their
    environment (the reloader, the worker's supervisor, its job processes)."""
    marker = f"JOBS_TEST_PREFIX={prefix}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
            except OSError:  # it ended meanwhile, or is not ours to read
                continue
    return found


@pytest.fixture
def project(tmp_path, prefix, jobs_settings):
    jobs_settings.DJANGO_JOBS = {**jobs_settings.DJANGO_JOBS, **FAST}
    made = Project(tmp_path, prefix)
    yield made
    made.close()


def run_job(queue, name, *args, timeout=30.0):
    """Enqueue a job of the project (not registered in the test process) and wait for it."""
    job = queue.enqueue(name, list(args))
    return queue.wait_for(job.id, timeout)


SERVING = "serving default, emails, reports"


def test_worker_restarts_on_a_change_and_runs_the_new_code(project, queue):
    worker = project.start("--reload", "--concurrency", "1")
    assert run_job(queue, "reload.version").result == 1

    project.write("reloadjobs/jobs.py", JOBS.format(version=2))
    project.wait_for_log(worker, SERVING, times=2)
    assert run_job(queue, "reload.version").result == 2

    # A module the new code imports (the reloader itself never imported it) is watched too.
    project.write("reloadjobs/helpers.py", "VALUE = 3\n")
    project.write(
        "reloadjobs/jobs.py", JOBS.format(version="__import__('reloadjobs.helpers').helpers.VALUE")
    )
    project.wait_for_log(worker, SERVING, times=3)
    assert run_job(queue, "reload.version").result == 3
    project.write("reloadjobs/helpers.py", "VALUE = 4\n")
    project.wait_for_log(worker, SERVING, times=4)
    assert run_job(queue, "reload.version").result == 4

    log = project.output(worker)
    assert log.count("SIGTERM: finishing running jobs") == 3, log
    assert "watching for file changes with StatReloader" in log
    assert worker.poll() is None


def test_a_syntax_error_leaves_the_reloader_waiting_for_the_fix(project, queue):
    worker = project.start("--reload", "--concurrency", "1")
    assert run_job(queue, "reload.version").result == 1

    project.write("reloadjobs/jobs.py", "def broken(:\n")
    project.wait_for_log(worker, "SyntaxError")
    project.wait_for_log(worker, "runworker exited with status 1; it starts again when")
    time.sleep(1.5)
    assert worker.poll() is None, project.output(worker)

    project.write("reloadjobs/jobs.py", JOBS.format(version=5))
    assert run_job(queue, "reload.version").result == 5
    assert project.count(worker, SERVING) == 2


def test_a_job_running_at_the_change_finishes_before_the_restart(project, queue):
    worker = project.start("--reload", "--concurrency", "1")
    project.wait_for_log(worker, SERVING)
    running = queue.enqueue("reload.slow", [4])
    wait_until(lambda: project.started("slow-1"), message="the slow job to start")

    project.write("reloadjobs/jobs.py", JOBS.format(version=2))
    project.wait_for_log(worker, "changed: stopping runworker to start it again")
    after = run_job(queue, "reload.version")

    slow = queue.wait_for(running.id, 30)
    assert (slow.status, slow.result, slow.retry_count, slow.lost_count) == (
        JobStatus.COMPLETED,
        1,
        0,
        0,
    )
    assert after.result == 2
    assert slow.finished_at <= after.started_at
    assert slow.worker_id.split(":")[0] != after.worker_id.split(":")[0]
    log = project.output(worker)
    assert log.index("stopped after 1 jobs") < log.rindex(SERVING), log


def test_a_job_that_outlasts_the_grace_period_is_given_back_and_runs_on_the_new_code(
    project, queue
):
    worker = project.start("--reload", "--concurrency", "1", "--grace", "0.5")
    project.wait_for_log(worker, SERVING)
    running = queue.enqueue("reload.slow", [60])
    wait_until(lambda: project.started("slow-1"), message="the slow job to start")

    project.write("reloadjobs/jobs.py", JOBS.format(version=2))

    # Version 2 sleeps 60 s too: its start is what shows that the job came back at once.
    wait_until(lambda: project.started("slow-2"), timeout=30, message="its rerun")
    rerun = queue.get_job(running.id)
    assert (rerun.status, rerun.lost_count) == (JobStatus.RUNNING, 0)
    assert project.stop(worker) == 0, project.output(worker)
    assert processes_of(project.prefix) == set()


def test_sigterm_to_the_reloader_stops_the_worker_gracefully_and_every_process(
    project, queue, prefix
):
    worker = project.start("--reload", "--concurrency", "2")
    assert run_job(queue, "reload.version").result == 1
    # The reloader, the worker's supervisor and its two job processes: no reloader in those.
    assert len(processes_of(prefix)) == 4
    running = queue.enqueue("reload.slow", [1.5])
    wait_until(lambda: project.started("slow-1"), message="the slow job to start")

    assert project.stop(worker) == 0, project.output(worker)

    assert queue.get_job(running.id).status is JobStatus.COMPLETED
    assert processes_of(prefix) == set(), project.output(worker)
    log = project.output(worker)
    assert "SIGTERM: stopping runworker, then exiting" in log
    assert "exiting now" not in log


def test_ctrl_c_stops_the_reloader_and_its_worker_gracefully(project, queue, prefix):
    """Ctrl-C sends SIGINT to the whole process group: the reloader forwards a SIGTERM as well,
    which the worker takes for the same request, not for a second one."""
    worker = project.start("--reload", "--concurrency", "1")
    project.wait_for_log(worker, SERVING)
    running = queue.enqueue("reload.slow", [1.5])
    wait_until(lambda: project.started("slow-1"), message="the slow job to start")

    os.killpg(worker.pid, signal.SIGINT)

    assert worker.wait(timeout=30) == 0, project.output(worker)
    assert queue.get_job(running.id).status is JobStatus.COMPLETED
    assert processes_of(prefix) == set()


def test_reload_refuses_burst_and_max_jobs(project):
    for extra in (["--burst"], ["--max-jobs", "3"]):
        done = project.run("runworker", "--reload", *extra)
        assert done.returncode == 1
        assert "--reload runs a worker until it is stopped" in done.stderr


STARTED, STOPPED = " started\n", " stopped\n"  # the scheduler's lines


@pytest.fixture
def scheduler_project(tmp_path, prefix, jobs_settings):
    made = Project(tmp_path, prefix, db=str(tmp_path / "schedules.sqlite3"))
    made.settings["SCHEDULES"] = {"tick": {"job": "reload.version", "interval": 1}}
    migrated = made.run("migrate", "--verbosity", "0")
    assert migrated.returncode == 0, migrated.stderr
    yield made
    made.close()


def test_scheduler_restarts_on_a_change_and_stops_cleanly_on_ctrl_c(
    scheduler_project, queue, prefix
):
    project = scheduler_project
    scheduler = project.start("--reload", "--verbosity", "2", command="runscheduler")
    project.wait_for_log(scheduler, STARTED)
    wait_until(lambda: queue.list_jobs("pending"), message="a run of the task")

    project.write("reloadjobs/jobs.py", JOBS.format(version=2))
    project.wait_for_log(scheduler, "changed: stopping runscheduler to start it again")
    project.wait_for_log(scheduler, STOPPED)
    project.wait_for_log(scheduler, STARTED, times=2)
    before = len(queue.list_jobs("pending", limit=1000))
    wait_until(
        lambda: len(queue.list_jobs("pending", limit=1000)) > before,
        message="a run enqueued by the new scheduler",
    )

    os.killpg(scheduler.pid, signal.SIGINT)

    assert scheduler.wait(timeout=30) == 0, project.output(scheduler)
    assert project.count(scheduler, STOPPED) == 2
    assert processes_of(prefix) == set()


READY = "import sys; print('ready', flush=True); "
SLEEP = "import time; time.sleep(30)"


@pytest.mark.parametrize(
    ("script", "killed", "status"),
    [
        # SIGTERM's default action, as for a child whose interpreter reset its handler on the
        # way out after Ctrl-C stopped it, before the SIGTERM forwarded by the reloader came.
        (READY + SLEEP, False, 0),
        (
            "import signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(3)); "
            + READY
            + SLEEP,
            False,
            3,
        ),
        (READY + SLEEP, True, 1),
    ],
    ids=["ended_by_the_stop", "own_status", "killed_otherwise"],
)
def test_a_stopped_reloader_ends_with_its_childs_status_and_0_when_the_stop_ended_it(
    tmp_path, monkeypatch, script, killed, status
):
    # What it would start again is not asked here (a test process's argv may be "-c").
    monkeypatch.setattr(autoreload, "get_child_arguments", lambda: [sys.executable])
    reloader = Reloader("runscheduler", tmp_path / "modules.json")
    child = reloader.child = Popen([sys.executable, "-c", script], stdout=PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    if killed:  # by something else than the reloader, before the stop
        child.kill()
        child.wait()
    reloader.requests.add(signal.SIGINT)  # Ctrl-C: the reloader asks the child to stop

    assert reloader._finish() == status
    child.stdout.close()


def test_runscheduler_reload_refuses_once(scheduler_project):
    done = scheduler_project.run("runscheduler", "--reload", "--once")
    assert done.returncode == 1
    assert "--reload runs a scheduler until it is stopped: not with --once." in done.stderr


def test_reload_is_in_the_help_of_both_commands(project):
    for command in ("runworker", "runscheduler"):
        done = project.run(command, "--help")
        assert "--reload" in done.stdout
        assert "start again when code changes, as runserver does" in " ".join(done.stdout.split())
