from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_jobs.exceptions import JobsError
from django_jobs.management.jobs import act, inspect
from django_jobs.management.jobs.base import Context, add_parser, one_line

SUBCOMMANDS = {sub.name: sub for sub in (*inspect.SUBCOMMANDS, *act.SUBCOMMANDS)}


class Command(BaseCommand):
    help = (
        "See and operate the jobs in Redis: stats, list, show, workers, requeue, cancel, "
        "delete, purge, enqueue. `manage.py jobs SUBCOMMAND --help` tells more; --json writes "
        "JSON. Exit status: 0 done, 1 an error, 2 bad usage."
    )

    # Settings are checked where they are read (a bad one is a one-line error here too); the
    # system checks would add their own report of an unreachable Redis to every error.
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        # Django's own options (--verbosity, --traceback, ...), accepted after a subcommand too.
        shared = [
            action
            for action in parser._actions
            if action.option_strings and action.dest not in ("help", "version")
        ]
        subparsers = parser.add_subparsers(
            dest="subcommand", required=True, metavar="SUBCOMMAND", title="subcommands"
        )
        self.parsers = {
            name: add_parser(subparsers, sub, shared) for name, sub in SUBCOMMANDS.items()
        }

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["subcommand"]
        try:
            SUBCOMMANDS[name].run(Context(self, self.parsers[name], options))
        except (JobsError, ImproperlyConfigured) as exc:
            # Redis not answering or refusing access, a bad setting: one line, with the
            # password of the URL already taken out by the store.
            raise CommandError(one_line(exc)) from None
