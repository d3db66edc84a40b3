"""Log output for the management commands when the project did not configure it."""

from __future__ import annotations

import logging
import sys


def configure_command_logging(name: str, verbosity: int) -> None:
    """Send ``name``'s records to stderr, unless ``LOGGING`` already gave it a handler.

    Verbosity 0 shows warnings, 1 (the default) one line per job, 2 and more debug output.
    """
    logger = logging.getLogger(name)
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
    logger.propagate = False
