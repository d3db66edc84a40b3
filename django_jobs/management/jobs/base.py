"""What the subcommands of ``manage.py jobs`` share: how one is declared, the options all of
them take, writing human or JSON answers, asking for confirmation, and errors as one line."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_jobs import describe
from django_jobs.job import Job
from django_jobs.management.jobs import output
from django_jobs.queue import JobQueue


@dataclass(frozen=True)
class Subcommand:
    """One subcommand: its name, one line of help, a function that adds its own arguments to
    its parser, and the function that runs it. ``confirms``: it changes or deletes jobs and asks
    first, unless ``--noinput`` (``--no-input``, ``--yes``) is given."""

    name: str
    help: str
    arguments: Callable[[CommandParser], None]
    run: Callable[[Context], None]
    confirms: bool = False


def add_parser(subparsers: Any, subcommand: Subcommand, shared: list[argparse.Action]) -> Any:
    """The parser of ``subcommand``, with ``--json``, ``--noinput`` where it confirms, and the
    options of every Django command (``--verbosity``, ``--traceback``, …) accepted after the
    subcommand's name too."""
    parser = subparsers.add_parser(
        subcommand.name, help=subcommand.help, description=subcommand.help
    )
    subcommand.arguments(parser)
    parser.add_argument(
        "--json", action="store_true", help="Write JSON (stable keys: see docs/cli.md)."
    )
    if subcommand.confirms:
        parser.add_argument(
            "--noinput",
            "--no-input",
            "--yes",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation.",
        )
    for action in shared:
        # SUPPRESS: argparse copies every value of a subparser's namespace over the main one,
        # so a default here would undo e.g. `jobs -v 2 stats`; hidden from the subcommand's
        # help, which `manage.py jobs --help` shows.
        accepted = copy.copy(action)
        accepted.default = argparse.SUPPRESS
        accepted.help = argparse.SUPPRESS
        parser._add_action(accepted)
    return parser


class Context:
    """What a subcommand runs with: its options, the queue, and the command's output."""

    def __init__(self, command: BaseCommand, parser: CommandParser, options: dict[str, Any]):
        self.command = command
        self.parser = parser
        self.options = options
        self.json = bool(options.get("json"))
        self.queue = JobQueue()

    def write(self, text: str = "", style: Callable[[str], str] | None = None, ending: str = "\n"):
        """A line for people (``style``: one of the command's ``self.style`` colours)."""
        self.command.stdout.write(text, style_func=style, ending=ending)

    def write_json(self, data: Any, *, compact: bool = False) -> None:
        """``data`` as JSON (see :func:`~django_jobs.management.jobs.output.to_json`); compact
        is one line, for a stream of documents."""
        self.command.stdout.write(output.to_json(data, compact=compact))

    def flush(self) -> None:
        self.command.stdout.flush()

    @property
    def style(self) -> Any:
        return self.command.style

    def usage_error(self, message: str) -> None:
        """Refuse the options as argparse does: the usage and ``message``, status 2 (a
        :class:`CommandError` under ``call_command``)."""
        self.parser.error(message)

    def confirm(self, question: str) -> None:
        """Ask ``question`` (on stderr, so that ``--json`` output stays clean) unless
        ``--noinput``; :class:`CommandError` unless the answer is yes."""
        if not self.options.get("interactive", True):
            return
        self.command.stderr.write(f"{question} [y/N] ", ending="")
        self.command.stderr.flush()
        try:
            answer = input()
        except EOFError:
            raise CommandError(
                "Nothing done: no answer to the confirmation (input is closed); pass --noinput "
                "to run without asking."
            ) from None
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandError("Nothing done: not confirmed.")


def one_line(exc: BaseException) -> str:
    """An error's message on one line, for ``CommandError: …``."""
    return " ".join(str(exc).split()) or type(exc).__name__


def job_dict(job: Job) -> dict[str, Any]:
    """A job as ``--json`` writes it: :meth:`Job.to_dict`, its ``attempt``, and each error's
    ``failed_at`` as ISO 8601 in UTC like every other time."""
    data = job.to_dict()
    data["attempt"] = job.attempt
    data["waiting_on"] = job.waiting_on  # the limit that holds a pending job back, or None
    data["errors"] = [
        {**entry, "failed_at": output.iso(describe.moment(entry.get("failed_at")))}
        if isinstance(entry, dict)
        else entry
        for entry in job.errors
    ]
    return data
