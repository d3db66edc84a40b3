import logging
import os

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_jobs import validation
from django_jobs.log import configure_command_logging
from django_jobs.management.startup import StopSignals, wait_for_redis
from django_jobs.worker import Worker

logger = logging.getLogger("django_jobs.worker")


class Command(BaseCommand):
    help = (
        "Run background jobs: N worker processes under one supervisor, each running one job "
        "at a time. SIGTERM or SIGINT stops gracefully; a second one exits at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queues",
            help="Comma-separated queues to serve (default: all of DJANGO_JOBS['QUEUES']).",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=os.cpu_count() or 1,
            help="Number of worker processes (default: the number of CPUs, %(default)s here).",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help=(
                "Exit when the served queues are empty: status 0, or 1 (and the log says which) "
                "when jobs of processes that died are left RUNNING until their leases expire."
            ),
        )
        parser.add_argument("--max-jobs", type=int, help="Exit after taking this many jobs.")
        parser.add_argument(
            "--worker-id", help="Name of this worker in job records (default: host.pid)."
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=30.0,
            help="Seconds running jobs get to finish after SIGTERM (default: %(default)s).",
        )

    def handle(self, *args: object, **options: object) -> None:
        queues = None
        if options["queues"]:
            names = [q.strip() for q in str(options["queues"]).split(",") if q.strip()]
            try:
                queues = validation.served_queues(names)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        for name in ("concurrency", "max_jobs"):
            value = options[name]
            if value is not None and int(value) < 1:  # type: ignore[call-overload]
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1.")
        if float(options["grace"]) < 0:  # type: ignore[arg-type]
            raise CommandError("--grace must not be negative.")
        configure_command_logging("django_jobs", int(options["verbosity"]))  # type: ignore[call-overload]
        worker = Worker(
            queues,
            concurrency=options["concurrency"],  # type: ignore[arg-type]
            burst=bool(options["burst"]),
            max_jobs=options["max_jobs"],  # type: ignore[arg-type]
            worker_id=options["worker_id"],  # type: ignore[arg-type]
            grace=float(options["grace"]),  # type: ignore[arg-type]
            verbosity=int(options["verbosity"]),  # type: ignore[call-overload]
        )
        # A wrong password or user is reported now, and ends the command; Redis not answering
        # is waited out, as it is once the worker runs. (The worker sets its own signal
        # handlers when it starts.)
        with StopSignals() as signals:
            if not wait_for_redis(worker.jobs.keys, signals.event, f"worker {worker.worker_id}"):
                logger.info(
                    "worker %s: %s before Redis answered; exiting", worker.worker_id, signals.name
                )
                return
        status = worker.run()
        if status:
            raise SystemExit(status)
