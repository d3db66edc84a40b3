"""The subcommands of ``manage.py jobs`` (``management/commands/jobs.py`` parses and dispatches):
:mod:`.inspect` looks (stats, list, show, workers), :mod:`.act` changes (requeue, cancel,
delete, purge, enqueue); :mod:`.base` is what they share and :mod:`.output` how they write."""
