"""The plan behind the Prometheus counters: the job events the scripts count in Redis.

The scripts that make each transition (enqueue, claim, ack, fail, cancel, recover) count it in
one hash, ``Keys.events`` (``count_event`` in ``lua/_lib.lua``), so the counts are the
cluster's, whichever process made the transition. Reading them is one ``HGETALL``.
"""

from __future__ import annotations

from django_jobs.store.calls import text
from django_jobs.store.commands import Command, Plan
from django_jobs.store.keys import Keys

# What the scripts count, as they name it.
EVENTS = (
    "enqueued",
    "started",
    "succeeded",
    "failed",
    "retried",
    "dead",
    "cancelled",
    "recovered",
    "stale",
    "limited",
)


def events(keys: Keys) -> Plan[dict[tuple[str, str, str], int]]:
    """The count of each (event, queue, job name) since the namespace began, in one round trip.

    A field that is not ``<event>|<queue>|<name>`` (written by something else) is left out.
    """
    reply = yield Command(("HGETALL", keys.events))
    # redis-py answers a dict for HGETALL; a flat list is what a script would answer.
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
    counts: dict[tuple[str, str, str], int] = {}
    for raw_field, raw_value in pairs:
        parts = text(raw_field).split("|", 2)
        value = text(raw_value)
        if len(parts) == 3 and value.lstrip("-").isdigit():
            counts[(parts[0], parts[1], parts[2])] = int(value)
    return counts
