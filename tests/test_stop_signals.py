"""A command's stop by signal (``management/startup.py`` ``StopSignals``): the rest of the same
request, arriving as the process ends cleanly, does not kill it."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Ctrl-C reaches a `--reload` parent and its command alike; the parent forwards a SIGTERM,
# which can come after the command stopped and left StopSignals' block, as it exits.
STOPPED_THEN_FORWARDED = textwrap.dedent(
    """
    import os, signal, time
    from django_jobs.management.startup import StopSignals

    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.event.wait(5)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    print("exited cleanly")
    """
)


def test_a_sigterm_of_the_same_request_after_the_stop_does_not_kill_the_process():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-c", STOPPED_THEN_FORWARDED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "exited cleanly"), done.stderr
