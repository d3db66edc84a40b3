"""Django's task API (``django.tasks``, or the ``django-tasks`` backport) on django-jobs: the
backend (:mod:`~django_jobs.tasks.backend`), one run of a task in a worker
(:mod:`~django_jobs.tasks.runs`) and the imports that differ by Django version
(:mod:`~django_jobs.tasks.compat`)."""
