"""The worker (``manage.py runworker``): a supervisor process (:mod:`~.supervisor`) and its
child processes (:mod:`~.child`), each claiming and running one job at a time
(:mod:`~.execute`) under a lease (:mod:`~.leases`)."""

from django_jobs.worker.supervisor import Worker

__all__ = ["Worker"]
