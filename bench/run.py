#!/usr/bin/env python3
"""Benchmark django-jobs against RQ, Celery, Huey and Dramatiq: ``python bench/run.py --help``.

This file only bootstraps, with the standard library: it creates ``bench/.venv`` (django-jobs
from this checkout, editable, plus the peers pinned in ``bench/requirements.txt``), then runs
the harness (``bench/harness``) with that virtualenv's Python. See ``bench/README.md``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV = BENCH / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".bench-installed"


def _wanted() -> str:
    """What the virtualenv must hold: the pins and the project's own dependencies."""
    digest = hashlib.sha256()
    for path in (BENCH / "requirements.txt", REPO / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 (this file may be run by any python3)
        sys.exit(f"The benchmark needs Python 3.11 or newer, not {sys.version.split()[0]}.")
    if not VENV_PYTHON.exists():
        print(f"==> Creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    wanted = _wanted()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("==> Installing django-jobs (editable) and the peers into bench/.venv", flush=True)
    requirements = str(BENCH / "requirements.txt")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    subprocess.run(
        [str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "-e", str(REPO), "-r", requirements],
        check=True,
        env=env,
    )
    STAMP.write_text(wanted)


def main() -> None:
    in_venv = Path(sys.prefix).resolve() == VENV.resolve()
    if not in_venv:
        ensure_venv()
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])
    sys.path.insert(0, str(BENCH))
    from harness.cli import main as harness_main

    sys.exit(harness_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
