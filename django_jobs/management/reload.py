"""``--reload`` for ``runworker`` and ``runscheduler``: start again when the code changes, as
``runserver`` does.

The process the user starts (the *reloader*) runs no worker or scheduler itself. It runs the
command in a child process, with the same arguments and in the same process group, and watches
files with Django's :class:`~django.utils.autoreload.StatReloader`: the modules it imported, the
modules the child imported (the child lists them as it starts, so a module that changed code
began to import is watched too) and what ``autoreload_started`` receivers add (templates,
translations). When one changes, it asks the child to stop as SIGTERM does (a worker lets its
running jobs finish within its grace period and gives the rest back; a scheduler finishes the
task at hand) and starts it again once it has exited.

``runserver`` can do its restarting inside the process it serves from, in a thread; a worker
cannot: its supervisor needs the main thread for its signal handlers and asyncio loop, and its
job processes are forked from it. Here the worker's processes are the ones they are without
``--reload``, and none of them runs a reloader.

A child that ends by itself (an error as it starts, such as a syntax error in a changed file)
is started again at the next change: the reloader waits for the fix. SIGTERM or SIGINT to the
reloader stops the child as it would stop the command, then the reloader; a second one makes
the child exit at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from django.utils import autoreload

from django_jobs.management.startup import StopRequests

logger = logging.getLogger("django_jobs.reload")

#: Set in the child's environment: the file where it lists the modules it imported.
CHILD_ENV = "DJANGO_JOBS_RELOAD_MODULES"


def run_with_reloader(command: str) -> int | None:
    """``--reload``: in the process the user started, run ``command`` in child processes,
    started again at each change of the code, until SIGTERM or SIGINT; return the exit status.

    In such a child, return ``None`` (it then runs the command) once it has listed the modules
    it imported for its reloader.
    """
    modules = os.environ.pop(CHILD_ENV, None)  # what the child starts must not inherit it
    if modules is not None:
        _list_modules(Path(modules))
        return None
    with tempfile.TemporaryDirectory(prefix="django-jobs-reload-") as folder:
        return Reloader(command, Path(folder) / "modules.json").run()


def _list_modules(path: Path) -> None:
    """Write the files of this process's modules, with their modification times, to ``path``
    for the reloader (in one step: it may read it at any time)."""
    files = {}
    for file in autoreload.iter_all_python_module_files():
        try:
            files[str(file)] = file.stat().st_mtime
        except OSError:
            continue
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(files))
    partial.replace(path)


class Watcher(autoreload.StatReloader):
    """What Django's :class:`~django.utils.autoreload.StatReloader` watches (the modules of
    this process, and what ``autoreload_started`` receivers add), and the modules the child
    lists; the reloader calls :meth:`poll` between its other work, where ``StatReloader`` runs
    a loop that ends the process at the first change."""

    def __init__(self, modules: Path) -> None:
        super().__init__()
        self.modules = modules  # where the child lists its modules
        self.modules_read: int | None = None
        self.mtimes: dict[Path, float] = {}

    def poll(self) -> list[Path]:
        """Look at every watched file once: the files changed since the last look (none at
        the first)."""
        self._read_modules()
        changed = []
        for file, mtime in self.snapshot_files():
            before = self.mtimes.get(file)
            self.mtimes[file] = mtime
            if before is not None and mtime > before:
                changed.append(file)
        return changed

    def _read_modules(self) -> None:
        try:
            stamp = self.modules.stat().st_mtime_ns
            if stamp == self.modules_read:
                return
            files = json.loads(self.modules.read_text())
        except (OSError, ValueError):
            return  # not written yet (a child is starting, or failed to)
        self.modules_read = stamp
        for name, mtime in files.items():
            file = Path(name)
            self.extra_files.add(file)
            # As the child saw it: a change made after it imported the module is one.
            self.mtimes.setdefault(file, mtime)


class Reloader:
    """Runs ``command`` (``runworker``, ``runscheduler``) in a child process, restarted when a
    watched file changes, until SIGTERM or SIGINT. See the module's documentation."""

    def __init__(self, command: str, modules: Path) -> None:
        self.command = command
        self.args = autoreload.get_child_arguments()
        self.env = {**os.environ, CHILD_ENV: str(modules)}
        if getattr(sys.stdout, "write_through", False):  # python -u: so is the child
            self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.watcher = Watcher(modules)
        self.requests = StopRequests()
        self.child: subprocess.Popen[bytes] | None = None
        self.asked = False  # whether the child was asked to stop
        self.restarting = False

    def run(self) -> int:
        """Run until stopped; the exit status of the last child (0 after a clean stop)."""
        autoreload.autoreload_started.send(sender=self.watcher)
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        logger.info(
            "%s --reload: watching for file changes with %s",
            self.command,
            autoreload.StatReloader.__name__,
        )
        try:
            return self._loop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self.child is not None and self.child.poll() is None:
                # Only on an error of the reloader itself: the child must not outlive it.
                self._ask_to_stop()
                self.child.wait()

    def _loop(self) -> int:
        self._start()
        while True:
            changed = self.watcher.poll()
            self._pause()
            if self.requests.count:
                return self._finish()
            if self.child is not None and self.child.poll() is not None:
                code, self.child = self.child.returncode, None
                if not self.restarting:
                    logger.error(
                        "%s exited with status %s; it starts again when a watched file changes",
                        self.command,
                        code,
                    )
            if changed and self.child is not None and not self.restarting:
                logger.info("%s changed: stopping %s to start it again", changed[0], self.command)
                self.restarting = True
                self._ask_to_stop()
            elif self.child is None and (changed or self.restarting):
                if changed:
                    logger.info("%s changed: starting %s", changed[0], self.command)
                self.restarting = False
                self._start()

    def _pause(self) -> None:
        """Wait a second (``StatReloader.SLEEP_TIME``) between looks at the files, or until the
        child exits."""
        if self.child is None:
            time.sleep(self.watcher.SLEEP_TIME)
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.child.wait(self.watcher.SLEEP_TIME)

    def _start(self) -> None:
        if self.requests.count:
            return  # a stop came first
        self.child = subprocess.Popen(self.args, env=self.env)
        self.asked = False

    def _ask_to_stop(self) -> None:
        assert self.child is not None
        self.asked = True
        if self.child.returncode is None:
            self.child.send_signal(signal.SIGTERM)

    def _finish(self) -> int:
        """After SIGTERM or SIGINT: wait for the child to stop; its status (0 without one)."""
        if self.child is None:
            return 0
        if not self.asked:  # it started as the signal came
            self._ask_to_stop()
        code = self.child.wait()
        if code == -signal.SIGTERM:
            # The SIGTERM sent to stop it found no handler of its own: it had not set it up
            # yet (it was starting), or its interpreter had reset it on the way out after a
            # clean stop (Ctrl-C reaches it before the SIGTERM forwarded here). Either way
            # it was running nothing: a clean stop.
            return 0
        return code if code >= 0 else 1  # killed by a signal

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.requests.add(signum):
            return  # a SIGTERM forwarded right after a Ctrl-C, say: the same request
        if self.requests.count == 1:
            logger.info("%s: stopping %s, then exiting", signal.Signals(signum).name, self.command)
        if self.child is None:
            return
        # Forward the first request unless the child is stopping for a restart already (it
        # then just is not started again); a second one makes it exit at once. Ctrl-C reaches
        # the child too, as it shares the process group: it counts a SIGTERM within a second
        # of it as the same request.
        if self.requests.count > 1 or not self.asked:
            self._ask_to_stop()
