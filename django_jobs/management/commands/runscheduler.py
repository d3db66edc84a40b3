import logging

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_jobs.exceptions import StoreError
from django_jobs.log import configure_command_logging
from django_jobs.management import reload
from django_jobs.management.startup import StopSignals, wait_for_redis
from django_jobs.scheduling.database import DatabaseTaskStore
from django_jobs.scheduling.scheduler import JobScheduler
from django_jobs.scheduling.ticks import HEARTBEAT_TIMEOUT
from django_jobs.store import spin

logger = logging.getLogger("django_jobs.scheduler")

#: Seconds a stopping scheduler waits for the call it is in (a frozen Redis or database may hold
#: it up to their time-outs) before it exits without it: what the call did or did not do is safe
#: either way (a run is enqueued by one script or not at all; the next scheduler records it).
STOP_WAIT = 5.0


class Command(BaseCommand):
    help = (
        "Run the periodic tasks of the ScheduledTask table (the admin's Scheduled tasks): "
        "enqueue each run when it is due. Run as many as you like; each run is enqueued once. "
        "SIGTERM or SIGINT stops after the task at hand (within a few seconds, even while "
        "Redis does not answer); a second one exits at once. Exits with an error at start if "
        "Redis refuses access (a wrong password or user)."
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
        parser.add_argument(
            "--reload",
            action="store_true",
            help=(
                "For development: start again when code changes, as runserver does. A change "
                "to a module the scheduler imported, a template or a translation stops it as "
                "SIGTERM does, then starts it anew; after an error at start (a syntax error, "
                "say) it waits for the next change. Not with --once."
            ),
        )

    def handle(self, *args: object, **options: object) -> None:
        configure_command_logging("django_jobs", int(options["verbosity"]))  # type: ignore[call-overload]
        spin.stop_polling()
        if options["reload"]:
            if options["once"]:
                raise CommandError(
                    "--reload runs a scheduler until it is stopped: not with --once."
                )
            status = reload.run_with_reloader("runscheduler")
            if status is not None:  # the reloader, stopped; its child runs on from here
                raise SystemExit(status)
        scheduler = JobScheduler(
            DatabaseTaskStore(),
            scheduler_id=options["scheduler_id"],  # type: ignore[arg-type]
        )
        who = f"scheduler {scheduler.scheduler_id}"
        if options["once"]:
            try:
                scheduler.sync_schedules()
                scheduler.run_pending()
            except StoreError as exc:
                raise CommandError(f"{who}: {exc}") from None
            return
        with StopSignals() as signals:
            # A wrong password or user is reported now, and ends the command; Redis not
            # answering is waited out, as it is once the scheduler runs.
            if not wait_for_redis(scheduler.jobs.keys, signals.event, who):
                logger.info("%s: %s before Redis answered; exiting", who, signals.name)
                return
            scheduler.start()
            while scheduler.running and not signals.event.wait(0.5):
                pass
            scheduler.stop(timeout=STOP_WAIT)
            if scheduler.running:
                logger.warning(
                    "%s: %s, but a call to Redis or the database has not returned after %gs; "
                    "exiting without it (it counts as running for %gs more)",
                    who,
                    signals.name,
                    STOP_WAIT,
                    HEARTBEAT_TIMEOUT,
                )
