"""The harness's unit tests: ``bench/.venv/bin/python -m pytest bench/tests`` (no Redis, no
timing: they check the parsing and the arithmetic of the report)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
