import os
import signal
from types import FrameType

from django.core.management.base import BaseCommand, CommandParser

from django_jobs.log import configure_command_logging
from django_jobs.scheduling.database import DatabaseTaskStore
from django_jobs.scheduling.scheduler import JobScheduler


class Command(BaseCommand):
    help = (
        "Run the periodic tasks of the ScheduledTask table (the admin's Scheduled tasks): "
        "enqueue each run when it is due. Run as many as you like; each run is enqueued once. "
        "SIGTERM or SIGINT stops after the task at hand; a second one exits at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Enqueue what is due now, then exit (for running it from cron, say).",
        )
        parser.add_argument(
            "--scheduler-id", help="Name of this scheduler in logs and Redis (default: host.pid)."
        )

    def handle(self, *args: object, **options: object) -> None:
        configure_command_logging("django_jobs", int(options["verbosity"]))  # type: ignore[call-overload]
        scheduler = JobScheduler(
            DatabaseTaskStore(),
            scheduler_id=options["scheduler_id"],  # type: ignore[arg-type]
        )
        if options["once"]:
            scheduler.sync_schedules()
            scheduler.run_pending()
            return
        signals = 0

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                os._exit(1)
            scheduler.stop()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            scheduler.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
