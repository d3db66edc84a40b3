"""The periodic tasks of the ``ScheduledTask`` table: what ``manage.py runscheduler`` and the
admin use. The tasks declared in ``DJANGO_JOBS["SCHEDULES"]`` are merged into it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Q

from django_jobs.gc_pause import collector_paused
from django_jobs.models import ScheduledTask as Model
from django_jobs.queue import JobQueue
from django_jobs.scheduling.changes import database_version, has_database_version, mark_broken
from django_jobs.scheduling.errors import InvalidSchedule
from django_jobs.scheduling.stores import RunRecord
from django_jobs.scheduling.task import TASK_FIELDS, ScheduledTask, task_from_row
from django_jobs.serialization import utcnow
from django_jobs.store import calls
from django_jobs.store.execute import run

logger = logging.getLogger("django_jobs.scheduler")

_NAME = TASK_FIELDS.index("name")


class DatabaseTaskStore:
    """The tasks of the ``ScheduledTask`` table (``django_jobs.models``).

    Its :meth:`version` changes with every write to the table, whoever makes it: a counter
    that triggers keep in the database (SQLite, PostgreSQL; see
    :mod:`~django_jobs.scheduling.changes`), and one in Redis that ``save()`` and ``delete()``
    bump. The scheduler reads it each time it wakes, at least every :data:`WAKE_EVERY` seconds.
    """

    def __init__(self, jobs: JobQueue | None = None) -> None:
        self.jobs = jobs or JobQueue()
        # Each row's fingerprint and task (None: unreadable) as of the last load().
        self._loaded: dict[int, tuple[int, ScheduledTask | None]] = {}

    def _task(self, name: str, make: Callable[[], ScheduledTask]) -> ScheduledTask | None:
        try:
            return make()
        except InvalidSchedule as exc:  # saved without clean(): broken, said once
            mark_broken(self, name, exc)
            return None

    def load(self) -> list[ScheduledTask]:
        """All tasks. Every row is read raw in one query, but only those that are new or
        changed since the last call are made into tasks: the others are given as the same
        objects."""
        before = self._loaded
        loaded: dict[int, tuple[int, ScheduledTask | None]] = {}
        convert = _converters(self._connection())
        with collector_paused():
            for row in self._rows():
                pk, raw = row[0], row[1:]
                # A changed row whose hash stays the same (odds 2**-64) is seen at its next change.
                mark = hash(raw)
                kept = before.get(pk)
                if kept is not None and kept[0] == mark:
                    loaded[pk] = kept
                else:
                    values = convert(raw)
                    task = self._task(values[_NAME], partial(task_from_row, values))
                    loaded[pk] = (mark, task)
        self._loaded = loaded
        return [task for _, task in loaded.values() if task is not None]

    def _connection(self) -> Any:
        return connections[router.db_for_read(Model)]

    def _rows(self) -> list[tuple[Any, ...]]:
        """Each row's primary key and :data:`TASK_FIELDS` columns, as the database gives them:
        the ORM's model instances cost more CPU than making the tasks (issue 18)."""
        connection = self._connection()
        quote = connection.ops.quote_name
        columns = ", ".join(quote(Model._meta.get_field(name).column) for name in TASK_FIELDS)
        pk = quote(Model._meta.pk.column)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {pk}, {columns} FROM {quote(Model._meta.db_table)}")
            return cursor.fetchall()  # type: ignore[no-any-return]

    def version(self) -> Any:
        return database_version(Model), run(calls.schedules_version(self.jobs.keys))

    def sees_every_write(self) -> bool:
        return has_database_version(Model)

    def get(self, name: str) -> ScheduledTask | None:
        values = Model.objects.filter(name=name).values_list(*TASK_FIELDS).first()
        return None if values is None else self._task(name, partial(task_from_row, values))

    def add(self, task: ScheduledTask) -> ScheduledTask:
        row = Model.objects.filter(name=task.name).first() or Model(name=task.name)
        row.set_definition(task)
        row.save()
        return row.to_task()  # type: ignore[no-any-return]

    def remove(self, name: str) -> bool:
        deleted, _ = Model.objects.filter(name=name).delete()
        return bool(deleted)

    def set_enabled(self, name: str, enabled: bool) -> ScheduledTask | None:
        row = Model.objects.filter(name=name).first()
        if row is None:
            return None
        row.enabled = enabled
        row.save()
        return self._task(name, row.to_task)

    def set_next_run(self, name: str, next_run: datetime) -> ScheduledTask | None:
        Model.objects.filter(name=name, enabled=True, next_run__isnull=True).update(
            next_run=next_run
        )
        return self.get(name)

    def record(self, records: Sequence[RunRecord]) -> None:
        # Raw statements, one text per shape run with executemany, in one transaction: a
        # scheduler records nearly every tick it enqueues, and compiling the ORM's conditional
        # UPDATE cost more CPU than the tick's script, and on SQLite a commit (with its fsync)
        # per tick held the next ticks up (issue 18, 100,000 tasks).
        alias = router.db_for_write(Model)
        connection = connections[alias]
        adapt = connection.ops.adapt_datetimefield_value
        shapes: dict[tuple[int, bool], list[list[Any]]] = {}
        for record in records:
            params = [adapt(due) for due in record.fired]
            if record.fired:
                params += [adapt(record.fired[-1])] * 2
            if record.expected_next is not None:
                params.append(adapt(record.expected_next))
            params += [adapt(record.next_run), record.name]
            shape = (len(record.fired), record.expected_next is None)
            shapes.setdefault(shape, []).append(params)
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            for (runs, unscheduled), rows in shapes.items():
                cursor.executemany(_record_sql(connection, runs, unscheduled), rows)

    def forget_next_run(self, name: str, expected_next: datetime | None) -> None:
        Model.objects.filter(name=name, next_run=expected_next).update(next_run=None)

    def mark_broken(self, name: str, reason: str) -> bool:
        rows = Model.objects.filter(name=name)
        # Only the first scheduler to find it broken for this reason marks it (and says so).
        marked = rows.exclude(broken_reason=reason).update(
            broken_reason=reason, broken_at=utcnow(), next_run=None
        )
        if not marked:
            rows.filter(next_run__isnull=False).update(next_run=None)
        return bool(marked)

    def mark_sound(self, name: str) -> None:
        Model.objects.filter(name=name, broken_reason__isnull=False).update(
            broken_reason=None, broken_at=None
        )

    def sync(self, declared: dict[str, ScheduledTask]) -> None:
        """Write the declared tasks into the table, keeping what was changed in the admin.

        A new task is created. For an existing one each field takes the declared value unless
        it was changed in the admin since it was last written from the settings (then the
        admin's value stays, with a warning if the settings changed it too); ``enabled`` is
        only set when the task is created. Tasks that were declared and no longer are, are
        deleted. Several schedulers starting at once are fine.
        """
        for attempt in range(3):
            try:
                with transaction.atomic():
                    self._sync(declared)
                return
            except IntegrityError:  # Another scheduler created the same task just now.
                if attempt == 2:
                    raise

    def _sync(self, declared: dict[str, ScheduledTask]) -> None:
        rows = {
            row.name: row
            for row in Model.objects.select_for_update().filter(
                Q(name__in=list(declared)) | Q(code_definition__isnull=False)
            )
        }
        for name, task in declared.items():
            wanted = task.definition()
            row = rows.get(name)
            if row is None:
                row = Model(name=name)
                row.set_definition(task)
                row.code_definition = wanted
                row.save()
                logger.info("task %s added from DJANGO_JOBS['SCHEDULES']", name)
                continue
            current = self._task(name, row.to_task)
            if current is None:  # Unreadable: the declaration replaces it.
                row.set_definition(task, enabled=False)
                row.code_definition = wanted
                row.save()
                continue
            have = current.definition()
            base = row.code_definition
            if base is None:  # Made in the admin: its fields count as changed there.
                logger.info(
                    "task %s (made in the admin) is now declared in DJANGO_JOBS['SCHEDULES']; "
                    "its fields stay as they are",
                    name,
                )
                base = wanted
            merged = dict(have)
            for key, value in wanted.items():
                before = base.get(key, have[key])
                if have[key] == before:  # not changed in the admin: the settings decide
                    merged[key] = value
                elif value != before and value != have[key]:
                    logger.warning(
                        "task %s: DJANGO_JOBS['SCHEDULES'] sets %s to %r, but it was changed "
                        "to %r in the admin; the admin's value stays",
                        name,
                        key,
                        value,
                        have[key],
                    )
            if merged == have and row.code_definition == wanted:
                continue
            try:
                task = ScheduledTask.from_definition(name, merged)
            except InvalidSchedule as exc:
                logger.warning(
                    "task %s: the settings' changes do not fit the admin's (%s); the admin's "
                    "fields stay",
                    name,
                    exc,
                )
                task = current
            row.set_definition(task, enabled=False)
            row.code_definition = wanted
            row.save()
        for name, row in rows.items():
            if name not in declared and row.code_definition is not None:
                row.delete()
                logger.info("task %s deleted: it is no longer in DJANGO_JOBS['SCHEDULES']", name)


def _converters(connection: Any) -> Callable[[Sequence[Any]], list[Any]]:
    """What turns the raw :data:`TASK_FIELDS` columns of a row into the values the ORM reads:
    the backend's and the fields' converters, as its compiler applies them (for one load).

    The converted values of a column other than a JSON one (a datetime, a bool) are immutable:
    each raw value is converted once, and its value shared by the rows that have it (the next
    runs of many tasks are the same few seconds; on SQLite a datetime is parsed from text)."""
    steps = []
    for index, name in enumerate(TASK_FIELDS):
        field = Model._meta.get_field(name)
        column = field.get_col(Model._meta.db_table)
        functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if functions:
            steps.append((index, column, functions, field.get_internal_type() != "JSONField"))
    converted: dict[tuple[int, Any], Any] = {}

    def convert(raw: Sequence[Any]) -> list[Any]:
        values = list(raw)
        for index, column, functions, shared in steps:
            key = (index, values[index])
            if shared and key in converted:
                values[index] = converted[key]
                continue
            for function in functions:
                values[index] = function(values[index], column, connection)
            if shared:
                converted[key] = values[index]
        return values

    return convert


def _record_sql(connection: Any, runs: int, unscheduled: bool) -> str:
    """The UPDATE of :meth:`DatabaseTaskStore.record` for a record of ``runs`` fired runs and
    an expected next run (``unscheduled``: none). Its parameters: each fired run, the last one
    twice (none of these when ``runs`` is 0), the expected next run (unless ``unscheduled``),
    the next run, the task's name. Every right-hand side reads the row as it was."""
    quote = connection.ops.quote_name
    name, last, count, next_run = (
        quote(Model._meta.get_field(field).column)
        for field in ("name", "last_run", "run_count", "next_run")
    )
    later = f"CASE WHEN {last} IS NULL OR {last} < %s THEN"  # a run not counted yet
    sets = []
    if runs:
        # The fired runs later than the stored last_run: recording twice counts once.
        sets.append(f"{count} = {count} + " + " + ".join([f"{later} 1 ELSE 0 END"] * runs))
        sets.append(f"{last} = {later} %s ELSE {last} END")
    expected = f"{next_run} IS NULL" if unscheduled else f"{next_run} = %s"
    sets.append(f"{next_run} = CASE WHEN {expected} THEN %s ELSE {next_run} END")
    table = quote(Model._meta.db_table)
    return f"UPDATE {table} SET {', '.join(sets)} WHERE {name} = %s"
