"""Broken tasks (``broken_reason``, ``broken_at``), and the schedules' version kept by the database.

``django_jobs_schedulesversion`` is one row whose ``version`` triggers on the
``django_jobs_scheduledtask`` table bump on every insert, delete and update of a column users
edit, however the write is made (``save()``, ``QuerySet.update()``, ``bulk_create``, raw SQL).
Running schedulers read it every second (``scheduling/changes.py``) and load the tasks again
when it changed. The schedulers' own columns (the run state and the broken marks) are left out,
so that recording a run does not make every scheduler load every task.

SQLite and PostgreSQL only (per-row triggers on SQLite, which has no others; per-statement on
PostgreSQL). On other databases there is no table: the schedulers rely on the Redis counter that
``save()`` and ``delete()`` bump, and on their reload every 30 s. A migration that adds a column
users edit must create the triggers again (:func:`create_triggers` with the new model).
"""

from django.db import migrations, models

TABLE = "django_jobs_schedulesversion"
TASKS = "django_jobs_scheduledtask"
# The schedulers' columns: their writes are no edits.
SCHEDULER_COLUMNS = {"last_run", "next_run", "run_count", "broken_reason", "broken_at"}
TRIGGERS = ("django_jobs_tasks_inserted", "django_jobs_tasks_updated", "django_jobs_tasks_deleted")
BUMP = f"UPDATE {TABLE} SET version = version + 1 WHERE id = 1"


def edited_columns(model, quote):
    return ", ".join(
        quote(field.column)
        for field in model._meta.concrete_fields
        if field.column not in SCHEDULER_COLUMNS
    )


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor not in ("sqlite", "postgresql"):
        return
    schema_editor.execute(
        f"CREATE TABLE {TABLE} (id integer PRIMARY KEY CHECK (id = 1), version bigint NOT NULL)"
    )
    schema_editor.execute(f"INSERT INTO {TABLE} (id, version) VALUES (1, 0)")
    install_triggers(schema_editor, apps.get_model("django_jobs", "ScheduledTask"))


def install_triggers(schema_editor, model):
    """The triggers on ``model``'s table (the tasks'). Dropping that table drops them: whoever
    creates it again outside the migrations (a test, say) calls this too."""
    vendor, run = schema_editor.connection.vendor, schema_editor.execute
    if vendor not in ("sqlite", "postgresql"):
        return
    columns = edited_columns(model, schema_editor.quote_name)
    inserted, updated, deleted = TRIGGERS
    if vendor == "sqlite":
        for name, event in (
            (inserted, "INSERT"),
            (updated, f"UPDATE OF {columns}"),
            (deleted, "DELETE"),
        ):
            run(f"CREATE TRIGGER {name} AFTER {event} ON {TASKS} BEGIN {BUMP}; END")
        return
    run(
        f"CREATE OR REPLACE FUNCTION {TABLE}_bump() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN {BUMP}; RETURN NULL; END $$"
    )
    for name, event in (
        (inserted, "INSERT"),
        (updated, f"UPDATE OF {columns}"),
        (deleted, "DELETE OR TRUNCATE"),
    ):
        run(
            f"CREATE TRIGGER {name} AFTER {event} ON {TASKS} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_bump()"
        )


def drop_triggers(apps, schema_editor):
    vendor, run = schema_editor.connection.vendor, schema_editor.execute
    if vendor not in ("sqlite", "postgresql"):
        return
    for name in TRIGGERS:
        run(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {TASKS}" if vendor == "postgresql" else ""))
    if vendor == "postgresql":
        run(f"DROP FUNCTION IF EXISTS {TABLE}_bump()")
    run(f"DROP TABLE IF EXISTS {TABLE}")


class Migration(migrations.Migration):
    dependencies = [
        ("django_jobs", "0003_job"),
    ]

    operations = [
        migrations.AddField(
            model_name="scheduledtask",
            name="broken_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="scheduledtask",
            name="broken_reason",
            field=models.TextField(blank=True, editable=False, null=True, verbose_name="broken"),
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
