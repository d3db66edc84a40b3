import argparse
import contextlib
import logging
import os

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_jobs import validation
from django_jobs.log import configure_command_logging
from django_jobs.management import reload
from django_jobs.management.startup import StopSignals, wait_for_redis
from django_jobs.store import spin
from django_jobs.worker import Worker, metrics
from django_jobs.worker.supervisor import DEFAULT_ASYNC_CONCURRENCY

logger = logging.getLogger("django_jobs.worker")


def _positive_int(value: str) -> int:
    """--async-concurrency: a whole number of 1 or more (argparse reports the message)."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1 or str(number) != value.strip().lstrip("+"):
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value!r}")
    return number


class Command(BaseCommand):
    help = (
        "Run background jobs: N worker processes under one supervisor, each running one sync "
        "job at a time, or up to --async-concurrency async def jobs side by side on its event "
        "loop. SIGTERM or SIGINT stops gracefully; a second one exits at once."
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
            "--async-concurrency",
            type=_positive_int,
            default=DEFAULT_ASYNC_CONCURRENCY,
            metavar="N",
            help=(
                "Async def jobs each worker process runs side by side, each with its own lease, "
                "timeout and cancellation (default: %(default)s). Sync jobs run one at a time, "
                "in a process running no async job."
            ),
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
        parser.add_argument(
            "--metrics-port",
            type=int,
            help=(
                "Serve this worker's Prometheus metrics (run and wait time histograms, all its "
                "processes added up) at http://0.0.0.0:PORT/metrics. Needs django-jobs[prometheus]."
            ),
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help=(
                "For development: start again when code changes, as runserver does. A change "
                "to a module the worker imported, a template or a translation stops it as "
                "SIGTERM does (running jobs finish within --grace), then starts it anew; after "
                "an error at start (a syntax error, say) it waits for the next change. Not with "
                "--burst or --max-jobs."
            ),
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
        port = options["metrics_port"]
        if port is not None and not 1 <= int(port) <= 65535:  # type: ignore[call-overload]
            raise CommandError("--metrics-port must be a port number, 1 to 65535.")
        configure_command_logging("django_jobs", int(options["verbosity"]))  # type: ignore[call-overload]
        spin.stop_polling()
        if options["reload"]:
            if options["burst"] or options["max_jobs"] is not None:
                raise CommandError(
                    "--reload runs a worker until it is stopped: not with --burst or --max-jobs."
                )
            status = reload.run_with_reloader("runworker")
            if status is not None:  # the reloader, stopped; its child runs on from here
                raise SystemExit(status)
        worker = Worker(
            queues,
            concurrency=options["concurrency"],  # type: ignore[arg-type]
            burst=bool(options["burst"]),
            max_jobs=options["max_jobs"],  # type: ignore[arg-type]
            worker_id=options["worker_id"],  # type: ignore[arg-type]
            grace=float(options["grace"]),  # type: ignore[arg-type]
            verbosity=int(options["verbosity"]),  # type: ignore[call-overload]
            async_concurrency=int(options["async_concurrency"]),  # type: ignore[call-overload]
        )
        with contextlib.ExitStack() as stack:
            if port is not None:
                # Before the worker starts its processes: they inherit where to write values.
                try:
                    stack.enter_context(metrics.serving(int(port)))  # type: ignore[call-overload]
                except (ImproperlyConfigured, OSError) as exc:
                    raise CommandError(f"--metrics-port {port}: {exc}") from None
            status = self._run(worker)
        if status:
            raise SystemExit(status)

    def _run(self, worker: Worker) -> int:
        # A wrong password or user is reported now, and ends the command; Redis not answering
        # is waited out, as it is once the worker runs. (The worker sets its own signal
        # handlers when it starts.)
        with StopSignals() as signals:
            if not wait_for_redis(worker.jobs.keys, signals.event, f"worker {worker.worker_id}"):
                logger.info(
                    "worker %s: %s before Redis answered; exiting", worker.worker_id, signals.name
                )
                return 0
        return worker.run()
