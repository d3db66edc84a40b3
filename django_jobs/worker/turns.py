"""Claims from queues on several shards (:mod:`django_jobs.store.shards`): which shard a claim
asks first, and the claim that asks each in turn. :class:`~django_jobs.worker.leases.Leases`
is the one user."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from django_jobs.job import Job, new_id
from django_jobs.serialization import dumps
from django_jobs.store import lease_calls, shards
from django_jobs.store.commands import Plan
from django_jobs.store.keys import Keys, Namespace


@dataclass(frozen=True)
class Claim:
    """What a claim found: a leased job, or the time (epoch seconds) the next one is due.

    ``held``: a claim of ``only`` some job names took nothing because the next job, by strict
    priority, has another name (it waits for a process that may take any job). ``more``: the
    jobs a claim of a batch leased after ``job``, to run after it in this order.
    """

    job: Job | None
    next_due: float | None
    held: bool = False
    more: tuple[Job, ...] = ()


def _names(only: Collection[str] | None) -> str:
    """The ``only`` argument of the claim scripts: a JSON list of names, ``""`` for any job."""
    if only is None:
        return ""
    if isinstance(only, str):
        raise TypeError("only takes a collection of job names, not a string.")
    return dumps(sorted(only))


class ShardTurns(Namespace):
    """The claims of a worker process whose queues live on one shard or several."""

    def __init__(self, prefix: str | None = None) -> None:
        super().__init__(prefix)
        # With queues on several shards, the shard a claim asks first (see _rotation).
        self._turn = 0
        self._order: list[Keys] = []  # the shards of the last claim, in their own order

    def _claimed(self, keys: Keys, claimed: lease_calls.Claimed, token: str) -> Plan[Claim | None]:
        raise NotImplementedError  # Leases reads a claim's reply

    def _rotation(self, served: list[str]) -> list[tuple[Keys, list[str]]]:
        """The served queues by shard, in the order this claim asks them: from the shard whose
        turn it is. Within a shard a claim keeps strict priority; across shards they take turns
        (see docs/sharding.md): after a job from one shard, the next claim asks the next shard
        first, so a job waits at most for one job of each other shard per process."""
        groups = [(self.shard_keys(s), qs) for s, qs in shards.by_shard(served).items()]
        self._order = [keys for keys, _ in groups]
        turn = self._turn % len(groups)
        return groups[turn:] + groups[:turn]

    def _took(self, keys: Keys) -> None:
        """The claim took a job from the shard of ``keys``: the next one asks the next shard."""
        self._turn = self._order.index(keys) + 1

    def _claim_from(
        self,
        rotation: list[tuple[Keys, list[str]]],
        only: Collection[str] | None,
        options: dict[str, Any],
        resend: bool,
    ) -> Plan[Claim]:
        """Claim from each shard of ``rotation`` in turn until one gives a job (one script
        call each, the same token: one lease at most). A resend asks again in the same order;
        the shard that leased under the token gives that job back."""
        names = _names(only)
        next_due: float | None = None
        for keys, queues in rotation:
            while True:
                claimed = yield from lease_calls.claim(
                    keys, queues=queues, resend=resend, only=names, **options
                )
                claim = yield from self._claimed(keys, claimed, options["token"])
                if claim is not None:
                    break
                # That record was buried: claim the next one, with a fresh token.
                options = {**options, "token": new_id()}
                resend = False
            if claim.job is not None:
                if len(rotation) > 1:
                    self._took(keys)
                return claim
            if claim.held:
                return claim  # the next job of that shard is of another kind: see Claim
            if claim.next_due is not None:
                next_due = min(next_due or claim.next_due, claim.next_due)
        return Claim(None, next_due)
