"""Log output for the management commands when the project did not configure it."""

from __future__ import annotations

import logging
import sys
import time


class _Formatter(logging.Formatter):
    """``logging.Formatter`` whose time, to the second, is formatted once a second: a worker
    writes two lines per job, thousands a second, and the same text each time."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None or self.default_msec_format is None:
            return super().formatTime(record, datefmt)
        second, text = self._second  # one attribute, read and written whole: thread-safe
        if int(record.created) != second:
            second = int(record.created)
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, text)
        return self.default_msec_format % (text, record.msecs)


def configure_command_logging(name: str, verbosity: int) -> None:
    """Send ``name``'s records to stderr, unless ``LOGGING`` already gave it a handler.

    Verbosity 0 shows warnings, 1 (the default) one line per job, 2 and more debug output.
    """
    logger = logging.getLogger(name)
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
    logger.propagate = False
